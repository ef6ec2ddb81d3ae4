package matrix

import (
	"fmt"
	"html"
	"net/url"
	"sort"
	"strings"
	"unicode/utf8"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Rendering limits. A Matrix event must stay under 65536 bytes including both
// bodies, so every piece of alert text is bounded.
const (
	maxAlertsShown  = 10
	maxLabelsShown  = 8
	maxFieldRunes   = 600
	maxTitleRunes   = 200
	maxBodyBytes    = 24 << 10 // per body (plain and HTML)
	ackInstructions = `Reply "ack" (or 1) to acknowledge, "escalate" (or 2) to escalate — or react with ✅.`
)

// labelsHidden are shown elsewhere in the message, not in the label list.
var labelsHidden = map[string]bool{"alertname": true, "severity": true}

// textBuilder builds the plain and HTML bodies side by side.
type textBuilder struct {
	plain, html strings.Builder
}

func (b *textBuilder) text(s string) {
	b.plain.WriteString(s)
	b.html.WriteString(html.EscapeString(s))
}

func (b *textBuilder) bold(s string) {
	b.plain.WriteString(s)
	b.html.WriteString("<strong>" + html.EscapeString(s) + "</strong>")
}

func (b *textBuilder) code(s string) {
	b.plain.WriteString(s)
	b.html.WriteString("<code>" + html.EscapeString(s) + "</code>")
}

func (b *textBuilder) newline() {
	b.plain.WriteString("\n")
	b.html.WriteString("<br>")
}

// link writes label linking to u, only when u is an absolute http(s) URL; a
// forged javascript: or data: URL is shown as inert text.
func (b *textBuilder) link(label, u string) {
	if !safeURL(u) {
		b.text(label + ": " + truncate(u, maxFieldRunes) + " (not an http(s) link)")
		return
	}
	b.plain.WriteString(label + ": " + u)
	b.html.WriteString(`<a href="` + html.EscapeString(u) + `">` + html.EscapeString(label) + "</a>")
}

// pill mentions a user: the display name in plain text with the id, and a
// matrix.to link in HTML, which clients render as a pill.
func (b *textBuilder) pill(user id.UserID, name string) {
	if name == "" {
		name = string(user)
	}
	if name == string(user) {
		b.plain.WriteString(name)
	} else {
		b.plain.WriteString(name + " (" + string(user) + ")")
	}
	b.html.WriteString(`<a href="` + html.EscapeString(user.URI().MatrixToURL()) + `">` + html.EscapeString(name) + "</a>")
}

// content returns the message content, truncating over-long bodies.
func (b *textBuilder) content(mentions []id.UserID) *event.MessageEventContent {
	c := &event.MessageEventContent{
		MsgType:       event.MsgText,
		Body:          truncateBytes(b.plain.String(), maxBodyBytes),
		Format:        event.FormatHTML,
		FormattedBody: b.html.String(),
		Mentions:      &event.Mentions{UserIDs: mentions},
	}
	if len(c.FormattedBody) > maxBodyBytes {
		// Truncated HTML could be malformed: send plain text only (the
		// mention still notifies through m.mentions).
		c.Format, c.FormattedBody = "", ""
	}
	return c
}

func safeURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && len(s) <= 2048
}

// truncate shortens s to at most n runes and makes it a single line.
func truncate(s string, n int) string {
	s = strings.TrimSpace(s)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

func oneLine(s string, n int) string {
	return truncate(strings.Join(strings.Fields(s), " "), n)
}

func truncateBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "\n… (truncated)"
}

// recipientName is the name to show for p's recipient.
func recipientName(r notifiers.Recipient) string {
	switch {
	case r.Name != "":
		return r.Name
	case r.PersonID != "":
		return r.PersonID
	}
	return r.MatrixID
}

// compactPage returns p with only what renderPage shows, so the copy kept in
// State for later edits stays small whatever Alertmanager sent, and the
// number of alerts left out.
func compactPage(p notifiers.Page) (notifiers.Page, int) {
	extra := 0
	if len(p.Alerts) > maxAlertsShown {
		extra = len(p.Alerts) - maxAlertsShown
		p.Alerts = p.Alerts[:maxAlertsShown]
	}
	alerts := make([]notifiers.Alert, len(p.Alerts))
	for i, a := range p.Alerts {
		a.Labels = compactMap(a.Labels, 2*maxLabelsShown)
		a.Annotations = compactMap(map[string]string{
			"summary": a.Annotations["summary"], "description": a.Annotations["description"],
			"runbook_url": a.Annotations["runbook_url"]}, 3)
		a.GeneratorURL = truncate(a.GeneratorURL, 4096)
		alerts[i] = a
	}
	p.Alerts = alerts
	p.Title = truncate(p.Title, 2*maxTitleRunes)
	p.Text = truncate(p.Text, 2*maxFieldRunes)
	p.Severity = truncate(p.Severity, 80)
	return p, extra
}

// compactMap keeps at most n keys (the alphabetically first, plus alertname
// and severity) and truncates long values.
func compactMap(m map[string]string, n int) map[string]string {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if v != "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := map[string]string{}
	for i, k := range keys {
		if i < n || labelsHidden[k] {
			out[truncate(k, 100)] = truncate(m[k], maxFieldRunes+1)
		}
	}
	return out
}

// renderPage renders a page: a mention of the person, what is wrong, where to
// look and how to acknowledge. status, if set, is shown first (edits); paged
// lists the people paged so far; extraAlerts counts alerts left out of p.
func renderPage(p notifiers.Page, status string, paged []string, extraAlerts int) *event.MessageEventContent {
	var b textBuilder
	if status != "" {
		b.bold(status)
		b.newline()
	}
	head := "🚨 "
	switch {
	case p.Synthetic:
		head = "⚠️ Klaxon alarm: "
	case p.Kind == notifiers.KindNotice:
		head = "ℹ️ "
	}
	b.bold(fmt.Sprintf("%sIncident #%d", head, p.Incident))
	if p.Severity != "" {
		b.text(" · ")
		b.bold(strings.ToUpper(oneLine(p.Severity, 40)))
	}
	if t := oneLine(p.Title, maxTitleRunes); t != "" {
		b.text(" · " + t)
	}
	b.newline()

	var mentions []id.UserID
	if mx := id.UserID(p.Recipient.MatrixID); p.Kind == notifiers.KindPage && validUserID(mx) {
		mentions = []id.UserID{mx}
		b.pill(mx, recipientName(p.Recipient))
		b.text(": you are being paged.")
		b.newline()
	}
	// How to answer comes before the details, so truncation cannot cut it.
	if p.Kind == notifiers.KindPage && status == "" {
		b.text(ackInstructions)
		b.newline()
	}
	if len(paged) > 1 {
		b.text("Paged so far: " + strings.Join(paged, ", "))
		b.newline()
	}
	if t := strings.TrimSpace(p.Text); t != "" {
		b.text(truncate(t, maxFieldRunes))
		b.newline()
	}

	renderAlerts(&b, p.Alerts, extraAlerts)

	if p.ExternalURL != "" {
		b.link("Alertmanager", p.ExternalURL)
		b.newline()
	}
	if p.Link != "" {
		b.link("Klaxon", p.Link)
		b.newline()
	}
	return b.content(mentions)
}

func renderAlerts(b *textBuilder, alerts []notifiers.Alert, extra int) {
	if len(alerts) == 0 {
		return
	}
	total := len(alerts) + extra
	b.text(fmt.Sprintf("Alerts (%d):", total))
	b.newline()
	for i, a := range alerts {
		if i == maxAlertsShown {
			break
		}
		b.text("• ")
		name := a.Name()
		if name == "" {
			name = "(unnamed alert)"
		}
		b.bold(oneLine(name, maxTitleRunes))
		if sev := a.Labels["severity"]; sev != "" {
			b.text(" [" + oneLine(sev, 40) + "]")
		}
		if a.Status == "resolved" {
			b.text(" (resolved)")
		}
		if s := a.Annotations["summary"]; s != "" {
			b.text(" — " + oneLine(s, maxFieldRunes))
		}
		b.newline()
		if d := a.Annotations["description"]; d != "" {
			b.text("  " + oneLine(d, maxFieldRunes))
			b.newline()
		}
		if ls := keyLabels(a.Labels); ls != "" {
			b.text("  ")
			b.code(ls)
			b.newline()
		}
		var links []func()
		if a.GeneratorURL != "" {
			u := a.GeneratorURL
			links = append(links, func() { b.link("source", u) })
		}
		if r := a.Annotations["runbook_url"]; r != "" {
			links = append(links, func() { b.link("runbook", r) })
		}
		if len(links) > 0 {
			b.text("  ")
			for j, l := range links {
				if j > 0 {
					b.text(" · ")
				}
				l()
			}
			b.newline()
		}
	}
	if shown := min(len(alerts), maxAlertsShown); total > shown {
		b.text(fmt.Sprintf("… and %d more", total-shown))
		b.newline()
	}
}

// keyLabels renders the labels worth showing, sorted, bounded.
func keyLabels(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		if !labelsHidden[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var parts []string
	for i, k := range keys {
		if i == maxLabelsShown {
			parts = append(parts, fmt.Sprintf("+%d more", len(keys)-maxLabelsShown))
			break
		}
		parts = append(parts, oneLine(k, 60)+"="+oneLine(labels[k], 120))
	}
	return strings.Join(parts, " ")
}

// renderUpdate renders a thread reply about a state change or a notice.
func renderUpdate(p notifiers.Page) *event.MessageEventContent {
	var b textBuilder
	text := strings.TrimSpace(p.Text)
	if text == "" {
		text = defaultUpdateText(p)
	}
	b.text(truncate(text, maxFieldRunes*2))
	if p.Kind == notifiers.KindNotice && len(p.Alerts) > 0 {
		b.newline()
		renderAlerts(&b, p.Alerts, 0)
	}
	c := b.content(nil)
	c.MsgType = event.MsgNotice
	return c
}

func defaultUpdateText(p notifiers.Page) string {
	switch p.Kind {
	case notifiers.KindAcknowledged:
		return fmt.Sprintf("Incident #%d acknowledged.", p.Incident)
	case notifiers.KindUnacknowledged:
		return fmt.Sprintf("Incident #%d: acknowledgement withdrawn, paging resumes.", p.Incident)
	case notifiers.KindEscalated:
		return fmt.Sprintf("Incident #%d escalated.", p.Incident)
	case notifiers.KindResolved:
		return fmt.Sprintf("Incident #%d resolved.", p.Incident)
	}
	return fmt.Sprintf("Incident #%d: %s", p.Incident, oneLine(p.Title, maxTitleRunes))
}

// statusLine is the line shown at the top of the alert message after p.
// ok is false for kinds that leave the status alone.
func statusLine(p notifiers.Page) (line string, ok bool) {
	detail := oneLine(p.Text, maxTitleRunes)
	with := func(s string) string {
		if detail == "" {
			return s
		}
		return s + " — " + detail
	}
	switch p.Kind {
	case notifiers.KindAcknowledged:
		return with("✅ ACKNOWLEDGED"), true
	case notifiers.KindUnacknowledged:
		return with("🚨 FIRING (acknowledgement withdrawn)"), true
	case notifiers.KindEscalated:
		return with("⏫ ESCALATED"), true
	case notifiers.KindResolved:
		return with("✔️ RESOLVED"), true
	}
	return "", false
}

// renderText renders a short plain notice (bot confirmations).
func renderText(s string) *event.MessageEventContent {
	var b textBuilder
	b.text(s)
	c := b.content(nil)
	c.MsgType = event.MsgNotice
	return c
}

// validUserID reports whether u is a well-formed @user:server id.
func validUserID(u id.UserID) bool {
	if !strings.HasPrefix(string(u), "@") || len(u) > 255 {
		return false
	}
	_, _, err := u.Parse()
	return err == nil
}
