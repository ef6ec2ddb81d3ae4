package web

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/rota"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// pageData is what every page template gets.
type pageData struct {
	Title  string
	Nav    string // the menu entry to mark
	Viewer *rota.Person
	CSRF   string
	Done   string // the result of the action just taken
	Robots bool   // keep the page out of search indexes and previews
	// Session is set for a signed-in person (menu, sign-out); a signed link's
	// page has a Viewer but no session.
	Session bool
	// Live, Events and Version, when set, make the page's live part refresh
	// itself: Live is its fragment's URL, Events the event stream's.
	Live, Events, Version string
	Data                  any
}

// incidentRow is an incident in the list.
type incidentRow struct {
	ID        uint64
	State     escalation.State
	Severity  string
	Title     string
	Opened    time.Time
	Age       string
	Paged     []string // who was paged, in order
	AckedBy   string
	AckedVia  string
	Exhausted bool
	Synthetic bool
}

// alertView is one alert on the incident page.
type alertView struct {
	Name, Status, Summary, Description, Runbook, Generator string
	Labels                                                 [][2]string
	Started                                                time.Time
}

// pageView is one page on the incident page with its delivery status.
type pageView struct {
	At      time.Time
	Person  string
	Channel notifiers.Channel
	Kind    notifiers.Kind
	Status  escalation.PageStatus
	Detail  string
}

// linkView is set on an incident page opened through a signed link.
type linkView struct {
	Token   string
	Expires time.Time
	MovedOn bool // the incident moved to another step since this page
}

// detailView is the incident page.
type detailView struct {
	incidentRow
	Alerts   []alertView
	Timeline []escalation.Event
	Pages    []pageView
	Step     string // where the escalation stands
	Link     *linkView

	inc   escalation.Incident
	pages []escalation.PageRecord
}

// listLimit bounds the incident list.
const listLimit = 100

func (w *Web) openIncidents(ctx context.Context) ([]incidentRow, error) {
	var all []escalation.Incident
	for _, st := range []escalation.State{escalation.Open, escalation.Acknowledged} {
		list, err := w.cfg.Store.Incidents(ctx, escalation.Filter{State: st, Limit: listLimit})
		if err != nil {
			return nil, err
		}
		all = append(all, list...)
	}
	slices.SortFunc(all, func(a, b escalation.Incident) int { return cmpDesc(a.ID, b.ID) })
	if len(all) > listLimit {
		all = all[:listLimit]
	}
	rows := make([]incidentRow, 0, len(all))
	for _, inc := range all {
		pages, err := w.cfg.Store.Pages(ctx, inc.ID)
		if err != nil {
			return nil, err
		}
		rows = append(rows, w.row(inc, pages))
	}
	return rows, nil
}

func cmpDesc(a, b uint64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

func (w *Web) row(inc escalation.Incident, pages []escalation.PageRecord) incidentRow {
	r := incidentRow{ID: inc.ID, State: inc.State, Severity: inc.Severity, Title: shown(inc.Title), Opened: inc.OpenedAt,
		Age: age(w.cfg.Now().Sub(inc.OpenedAt)), AckedBy: inc.AckedBy, AckedVia: inc.AckedVia,
		Exhausted: inc.Escalation.Exhausted, Synthetic: inc.Synthetic}
	seen := map[string]bool{}
	for _, p := range pages {
		if p.Kind != notifiers.KindPage {
			continue
		}
		n := p.Recipient.Name
		if n == "" {
			n = p.Recipient.PersonID
		}
		if n != "" && !seen[n] {
			seen[n] = true
			r.Paged = append(r.Paged, n)
		}
	}
	return r
}

// age says how long ago, for a lock-screen glance: "45s", "12m", "3h 5m", "2d 4h".
func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", max(0, int(d.Seconds())))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
}

func (w *Web) detail(ctx context.Context, id uint64) (detailView, error) {
	inc, err := w.cfg.Store.Incident(ctx, id)
	if err != nil {
		return detailView{}, err
	}
	pages, err := w.cfg.Store.Pages(ctx, id)
	if err != nil {
		return detailView{}, err
	}
	tl, err := w.cfg.Store.Timeline(ctx, id)
	if err != nil {
		return detailView{}, err
	}
	// Text from outside (alerts stored before the webhook stripped format
	// characters, a PagerDuty user's name, a provider's error) is shown
	// without Unicode format characters (bidirectional overrides and the like).
	for i := range tl {
		tl[i].Text, tl[i].Actor = shown(tl[i].Text), shown(tl[i].Actor)
	}
	d := detailView{incidentRow: w.row(inc, pages), Timeline: tl, inc: inc, pages: pages}
	for _, a := range inc.Alerts {
		av := alertView{Name: shown(a.Labels["alertname"]), Status: a.Status, Summary: shown(a.Annotations["summary"]),
			Description: shown(a.Annotations["description"]), Runbook: webURL(a.Annotations["runbook_url"]),
			Generator: webURL(a.GeneratorURL), Started: a.StartsAt}
		for _, k := range slices.Sorted(maps.Keys(a.Labels)) {
			av.Labels = append(av.Labels, [2]string{shown(k), shown(a.Labels[k])})
		}
		d.Alerts = append(d.Alerts, av)
	}
	for _, p := range pages {
		n := p.Recipient.Name
		if n == "" {
			n = p.Recipient.PersonID
		}
		d.Pages = append(d.Pages, pageView{At: p.CreatedAt, Person: n, Channel: p.Channel, Kind: p.Kind, Status: p.Status, Detail: shown(p.LastError)})
	}
	switch e := inc.Escalation; {
	case inc.State == escalation.Resolved:
	case e.Exhausted:
		d.Step = "every step paged; repeating the fallback"
	case e.Started:
		d.Step = fmt.Sprintf("step %d, round %d of policy %s", e.Step+1, e.Round+1, e.Policy)
	}
	return d, nil
}

// shown drops Unicode format characters (category Cf) from s.
func shown(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, s)
}

// webURL keeps only http(s) links, so an annotation cannot smuggle a
// javascript: URL into a page.
func webURL(s string) string {
	if strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://") {
		return s
	}
	return ""
}

// onCallRow is one rotation on the on-call page.
type onCallRow struct {
	Rotation    string
	Person      *rota.Person
	Until       time.Time
	Override    bool
	CoveringFor string
	Reason      string
	Next        *rota.Person
	Calendar    string
}

const horizon = 400 * 24 * time.Hour

func (w *Web) onCallView() []onCallRow {
	r := w.cfg.Rota.Current()
	now := w.cfg.Now()
	var out []onCallRow
	for _, id := range r.RotationIDs() {
		rot := r.Rotations[id]
		row := onCallRow{Rotation: id}
		if s, ok := rota.Current(rot, now, horizon); ok {
			row.Person, row.Until, row.Override, row.Reason = r.People[s.Person], s.End, s.Override, s.Reason
			if s.Override {
				if p := r.People[s.Scheduled]; p != nil {
					row.CoveringFor = p.Name
				}
			}
			if next, ok := rota.Current(rot, s.End, horizon); ok {
				row.Next = r.People[next.Person]
			}
			row.Calendar = "/rota.ics?person=" + s.Person
		}
		out = append(out, row)
	}
	return out
}

// rotaDays is how far the rota page looks ahead.
const rotaDays = 14

type rotaViewData struct {
	Valid     bool
	Source    string
	Errors    []string
	Warnings  []string
	LoadedAt  time.Time
	Rotations []rotaShifts
}

type rotaShifts struct {
	Rotation string
	Shifts   []shiftView
}

type shiftView struct {
	Person    string
	Start     time.Time
	End       time.Time
	Override  bool
	Scheduled string
	Reason    string
	Now       bool
}

func (w *Web) rotaView() rotaViewData {
	wt := w.cfg.Rota
	r := wt.Current()
	now := w.cfg.Now()
	v := rotaViewData{Valid: wt.Valid(), Source: r.Source, Errors: wt.Errors(), LoadedAt: wt.LoadedAt()}
	for _, x := range wt.Warnings() {
		v.Warnings = append(v.Warnings, x.String())
	}
	name := func(id string) string {
		if p := r.People[id]; p != nil {
			return p.Name
		}
		return id
	}
	for _, id := range r.RotationIDs() {
		rs := rotaShifts{Rotation: id}
		for _, s := range rota.Shifts(r.Rotations[id], now, now.AddDate(0, 0, rotaDays)) {
			rs.Shifts = append(rs.Shifts, shiftView{Person: name(s.Person), Start: s.Start.In(r.Location), End: s.End.In(r.Location),
				Override: s.Override, Scheduled: name(s.Scheduled), Reason: s.Reason, Now: !now.Before(s.Start) && now.Before(s.End)})
		}
		v.Rotations = append(v.Rotations, rs)
	}
	return v
}

type statusViewData struct {
	Health
	HasHealth bool
	StoreOK   bool
	StoreErr  string
	Counts    map[string]int
}

func (w *Web) statusView(ctx context.Context) statusViewData {
	var v statusViewData
	if w.cfg.Health != nil {
		v.Health, v.HasHealth = w.cfg.Health(ctx), true
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := w.cfg.Store.Ping(ctx); err != nil {
		v.StoreErr = "not writable"
	} else {
		v.StoreOK = true
	}
	v.Counts = map[string]int{}
	if c, err := w.cfg.Store.Counts(ctx); err == nil {
		for k, n := range c {
			v.Counts[string(k)] = n
		}
	}
	return v
}

var funcs = template.FuncMap{
	"clock": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("Mon 2 Jan 15:04 UTC")
	},
	"short": func(t time.Time) string { return t.UTC().Format("15:04:05") },
	"day": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Format("Mon 2 Jan 15:04")
	},
	"iso":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"lower": strings.ToLower,
	"id":    func(n uint64) string { return strconv.FormatUint(n, 10) },
	// buttons bundles what the action buttons of an incident need.
	"buttons": func(r incidentRow, csrf string, link *linkView, from string) buttonsView {
		return buttonsView{Row: r, CSRF: csrf, Link: link, From: from}
	},
}

// buttonsView is what the "buttons" template needs.
type buttonsView struct {
	Row  incidentRow
	CSRF string
	Link *linkView
	From string
}

func parseTemplates() (map[string]*template.Template, error) {
	base, err := template.New("base").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, name := range []string{"list", "incident", "oncall", "rota", "status", "signin", "error"} {
		t, err := template.Must(base.Clone()).ParseFS(templateFS, "templates/"+name+".html")
		if err != nil {
			return nil, err
		}
		out[name] = t
	}
	return out, nil
}

func (w *Web) render(rw http.ResponseWriter, r *http.Request, code int, name string, d pageData) {
	var buf bytes.Buffer
	if err := w.pages[name].ExecuteTemplate(&buf, "layout", d); err != nil {
		w.log.Error("web: rendering", "page", name, "error", err)
		http.Error(rw, "could not render the page", http.StatusInternalServerError)
		return
	}
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	rw.WriteHeader(code)
	_, _ = rw.Write(buf.Bytes())
}

func (w *Web) renderPart(rw http.ResponseWriter, name, part string, d pageData) {
	var buf bytes.Buffer
	if err := w.pages[name].ExecuteTemplate(&buf, part, d); err != nil {
		w.log.Error("web: rendering", "page", name, "error", err)
		http.Error(rw, "could not render the page", http.StatusInternalServerError)
		return
	}
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = rw.Write(buf.Bytes())
}

type errorView struct{ Heading, Message string }

func (w *Web) fail(rw http.ResponseWriter, r *http.Request, code int, heading, msg string) {
	w.render(rw, r, code, "error", pageData{Title: heading, Robots: true, Data: errorView{heading, msg}})
}

// RowView is the incident's list row, for the buttons template.
func (d detailView) RowView() incidentRow { return d.incidentRow }
