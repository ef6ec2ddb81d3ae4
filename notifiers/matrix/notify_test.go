package matrix

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

func mustNotify(t *testing.T, n *Notifier, p notifiers.Page) notifiers.Receipt {
	t.Helper()
	r, err := n.Notify(context.Background(), p)
	if err != nil {
		t.Fatalf("Notify(%s %s): %v", p.Kind, p.ID, err)
	}
	return r
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

func relatesTo(c map[string]any) map[string]any {
	r, _ := c["m.relates_to"].(map[string]any)
	return r
}

func mentionIDs(c map[string]any) []any {
	m, ok := c["m.mentions"].(map[string]any)
	if !ok {
		return nil
	}
	ids, _ := m["user_ids"].([]any)
	return ids
}

func TestPageMessageContent(t *testing.T) {
	f := newFakeHS(t)
	n, _, _, _ := newTestNotifier(t, f, nil)
	rec := mustNotify(t, n, testPage())

	ev := f.sentEvents()
	if len(ev) != 1 {
		t.Fatalf("sent %d events, want 1", len(ev))
	}
	e := ev[0]
	if e.Room != testRoom || e.Type != "m.room.message" || e.Txn != "out-42-1" {
		t.Errorf("sent to %s %s txn %s; want %s m.room.message txn out-42-1", e.Room, e.Type, e.Txn, testRoom)
	}
	if rec.ProviderID != e.EventID {
		t.Errorf("receipt provider id %q, want %q", rec.ProviderID, e.EventID)
	}
	body, html := str(e.Content, "body"), str(e.Content, "formatted_body")
	if str(e.Content, "format") != "org.matrix.custom.html" || str(e.Content, "msgtype") != "m.text" {
		t.Errorf("format/msgtype = %q/%q", e.Content["format"], e.Content["msgtype"])
	}
	for _, want := range []string{
		"Incident #42", "CRITICAL", "HighErrorRate on api", "Alice (@alice:example.org)",
		"HighErrorRate", "5xx ratio above 5%", "The API returns errors for 12% of requests.",
		"instance=api-1:9090", "job=api", "https://prometheus.example.org/graph?g0.expr=rate",
		"https://runbooks.example.org/api-errors", "https://alertmanager.example.org",
		"https://klaxon.example.org/incidents/42", `"ack"`, "escalate", "✅",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("plain body lacks %q:\n%s", want, body)
		}
	}
	for _, want := range []string{
		`<a href="https://matrix.to/#/@alice:example.org">Alice</a>`,
		`<a href="https://runbooks.example.org/api-errors">runbook</a>`,
		`<a href="https://prometheus.example.org/graph?g0.expr=rate">source</a>`,
		`<a href="https://alertmanager.example.org">Alertmanager</a>`,
		`<strong>HighErrorRate</strong>`,
	} {
		if !strings.Contains(html, want) {
			t.Errorf("HTML body lacks %q:\n%s", want, html)
		}
	}
	if strings.Contains(body, "severity=") || strings.Contains(body, "alertname=") {
		t.Errorf("label list repeats alertname/severity:\n%s", body)
	}
	if ids := mentionIDs(e.Content); len(ids) != 1 || ids[0] != "@alice:example.org" {
		t.Errorf("m.mentions.user_ids = %v, want [@alice:example.org]", ids)
	}
}

func TestPageRenderingHostileInput(t *testing.T) {
	tests := []struct {
		name   string
		mod    func(*notifiers.Page)
		check  func(t *testing.T, body, html string, c map[string]any)
		detail string
	}{
		{
			name: "forged links are not linked",
			mod: func(p *notifiers.Page) {
				p.Alerts[0].GeneratorURL = "javascript:alert(1)"
				p.Alerts[0].Annotations["runbook_url"] = "data:text/html,<script>x</script>"
				p.ExternalURL = "//evil.example.org"
			},
			check: func(t *testing.T, body, html string, _ map[string]any) {
				for _, bad := range []string{`href="javascript:`, `href="data:`, `href="//evil`, "<script>"} {
					if strings.Contains(html, bad) {
						t.Errorf("HTML contains %q:\n%s", bad, html)
					}
				}
				if !strings.Contains(body, "not an http(s) link") {
					t.Errorf("plain body does not flag the bad link:\n%s", body)
				}
			},
		},
		{
			name: "HTML in annotations is escaped",
			mod: func(p *notifiers.Page) {
				p.Alerts[0].Annotations["summary"] = `<img src=x onerror=alert(1)> & "q"`
				p.Title = "<b>bold</b>"
			},
			check: func(t *testing.T, body, html string, _ map[string]any) {
				if strings.Contains(html, "<img") || strings.Contains(html, "<b>bold") {
					t.Errorf("HTML not escaped:\n%s", html)
				}
				if !strings.Contains(html, "&lt;img src=x") || !strings.Contains(body, "<img src=x") {
					t.Errorf("escaped text missing:\nplain %s\nhtml %s", body, html)
				}
			},
		},
		{
			name: "oversized payload is bounded",
			mod: func(p *notifiers.Page) {
				a := p.Alerts[0]
				a.Annotations = map[string]string{"summary": strings.Repeat("x", 100000), "description": strings.Repeat("é", 50000)}
				a.Labels = map[string]string{"alertname": strings.Repeat("N", 5000)}
				for i := 0; i < 40; i++ {
					a.Labels["l"+strings.Repeat("k", i)] = strings.Repeat("v", 1000)
				}
				p.Alerts = nil
				for i := 0; i < 500; i++ {
					p.Alerts = append(p.Alerts, a)
				}
				p.Title = strings.Repeat("t", 10000)
			},
			check: func(t *testing.T, body, html string, _ map[string]any) {
				if len(body) > maxBodyBytes+100 || len(html) > maxBodyBytes+100 {
					t.Errorf("bodies are %d and %d bytes, want ≤ %d", len(body), len(html), maxBodyBytes)
				}
				if !strings.Contains(body, "Incident #42") || !strings.Contains(body, "Alerts (500)") || !strings.Contains(body, ackInstructions) {
					t.Errorf("the head line or the alert count was lost:\n%.300s", body)
				}
			},
		},
		{
			name: "no Matrix id: no mention",
			mod: func(p *notifiers.Page) {
				p.Recipient.MatrixID = ""
			},
			check: func(t *testing.T, body, html string, c map[string]any) {
				if len(mentionIDs(c)) != 0 || strings.Contains(html, "matrix.to") {
					t.Errorf("mentions someone without a Matrix id: %v\n%s", c["m.mentions"], html)
				}
			},
			detail: "not mentioned",
		},
		{
			name: "malformed Matrix id: no mention",
			mod: func(p *notifiers.Page) {
				p.Recipient.MatrixID = "alice@example.org"
			},
			check: func(t *testing.T, body, html string, c map[string]any) {
				if len(mentionIDs(c)) != 0 {
					t.Errorf("mentions a malformed id: %v", c["m.mentions"])
				}
			},
			detail: "not mentioned",
		},
		{
			name: "missing fields",
			mod: func(p *notifiers.Page) {
				p.Alerts = []notifiers.Alert{{}}
				p.Severity, p.Title, p.ExternalURL, p.Link = "", "", "", ""
			},
			check: func(t *testing.T, body, html string, _ map[string]any) {
				if !strings.Contains(body, "(unnamed alert)") || !strings.Contains(body, "Incident #42") {
					t.Errorf("body:\n%s", body)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeHS(t)
			n, _, _, _ := newTestNotifier(t, f, nil)
			p := testPage()
			tc.mod(&p)
			rec := mustNotify(t, n, p)
			ev := f.sentEvents()
			if len(ev) != 1 {
				t.Fatalf("sent %d events", len(ev))
			}
			tc.check(t, str(ev[0].Content, "body"), str(ev[0].Content, "formatted_body"), ev[0].Content)
			if !strings.Contains(rec.Detail, tc.detail) {
				t.Errorf("receipt detail %q lacks %q", rec.Detail, tc.detail)
			}
		})
	}
}

func TestPageRetryReusesTransaction(t *testing.T) {
	f := newFakeHS(t)
	n, st, _, _ := newTestNotifier(t, f, nil)
	p := testPage()

	// The send succeeds but saving state fails (a crash in between): the
	// engine retries the same outbox entry.
	f.mu.Lock()
	f.fail = map[string][]failure{}
	f.mu.Unlock()
	st.mu.Lock()
	st.fail = errors.New("disk full")
	st.mu.Unlock()
	if _, err := n.Notify(context.Background(), p); err == nil || notifiers.IsPermanent(err) {
		t.Fatalf("Notify with a failing state store = %v, want a temporary error", err)
	}
	st.mu.Lock()
	st.fail = nil
	st.mu.Unlock()
	// The state store failed before the send: nothing went out yet.
	r1 := mustNotify(t, n, p)
	r2 := mustNotify(t, n, p)
	if r1.ProviderID == "" || r1.ProviderID != r2.ProviderID {
		t.Errorf("retries gave event ids %q and %q, want the same", r1.ProviderID, r2.ProviderID)
	}
	if got := len(f.sentEvents()); got != 1 {
		t.Errorf("homeserver stored %d events after a retry, want 1", got)
	}
}

func TestPageRetryAfterLostResponse(t *testing.T) {
	f := newFakeHS(t)
	n, _, _, _ := newTestNotifier(t, f, nil)
	p := testPage()
	// The homeserver stores the event, but the answer is lost (502 from a
	// proxy). The retry uses the same transaction id, so no second post.
	mustNotify(t, n, p)
	n2, _, _, _ := newTestNotifier(t, f, nil) // fresh state: the first result was never recorded
	r := mustNotify(t, n2, p)
	if got := f.sentEvents(); len(got) != 1 || r.ProviderID != got[0].EventID {
		t.Errorf("after a retry the server holds %d events and the receipt says %q", len(got), r.ProviderID)
	}
}

func TestLaterPagesGoToTheThread(t *testing.T) {
	f := newFakeHS(t)
	n, _, _, _ := newTestNotifier(t, f, nil)
	root := mustNotify(t, n, testPage()).ProviderID

	p2 := testPage()
	p2.ID = "out-42-2"
	p2.Recipient = notifiers.Recipient{PersonID: "bob", Name: "Bob", MatrixID: "@bob:example.org"}
	r2 := mustNotify(t, n, p2)
	mustNotify(t, n, p2) // retry: nothing new

	ev := f.sentEvents()
	if len(ev) != 3 {
		t.Fatalf("sent %d events, want root, thread page, edit", len(ev))
	}
	page := ev[1]
	rel := relatesTo(page.Content)
	if page.Txn != "out-42-2" || rel["rel_type"] != "m.thread" || rel["event_id"] != root || r2.ProviderID != page.EventID {
		t.Errorf("second page: txn %s relates_to %v receipt %s", page.Txn, rel, r2.ProviderID)
	}
	if ids := mentionIDs(page.Content); len(ids) != 1 || ids[0] != "@bob:example.org" {
		t.Errorf("second page mentions %v, want bob", ids)
	}
	edit := ev[2]
	if rel := relatesTo(edit.Content); rel["rel_type"] != "m.replace" || rel["event_id"] != root {
		t.Errorf("edit relates_to %v", rel)
	}
	nc, _ := edit.Content["m.new_content"].(map[string]any)
	if !strings.Contains(str(nc, "body"), "Paged so far: Alice, Bob") {
		t.Errorf("edited body:\n%s", str(nc, "body"))
	}
	if ids := mentionIDs(edit.Content); len(ids) != 0 {
		t.Errorf("edit pings %v again", ids)
	}
}

func TestUpdatesThreadAndEdit(t *testing.T) {
	tests := []struct {
		kind   notifiers.Kind
		text   string
		status string // "" = no edit
	}{
		{notifiers.KindAcknowledged, "Acknowledged by Alice (via phone)", "✅ ACKNOWLEDGED — Acknowledged by Alice (via phone)"},
		{notifiers.KindEscalated, "", "⏫ ESCALATED"},
		{notifiers.KindResolved, "all alerts resolved", "✔️ RESOLVED — all alerts resolved"},
		{notifiers.KindUnacknowledged, "", "🚨 FIRING (acknowledgement withdrawn)"},
		{notifiers.KindNotice, "2 more alerts joined", ""},
	}
	for _, tc := range tests {
		t.Run(string(tc.kind), func(t *testing.T) {
			f := newFakeHS(t)
			n, _, _, _ := newTestNotifier(t, f, nil)
			root := mustNotify(t, n, testPage()).ProviderID
			u := testPage()
			u.ID, u.Kind, u.Text = "out-42-u", tc.kind, tc.text
			r := mustNotify(t, n, u)
			mustNotify(t, n, u) // a retry posts nothing new
			ev := f.sentEvents()
			wantN := 3
			if tc.status == "" {
				wantN = 2
			}
			if len(ev) != wantN {
				t.Fatalf("sent %d events, want %d", len(ev), wantN)
			}
			reply := ev[1]
			if rel := relatesTo(reply.Content); rel["rel_type"] != "m.thread" || rel["event_id"] != root {
				t.Errorf("update relates_to %v, want thread of %s", rel, root)
			}
			if str(reply.Content, "msgtype") != "m.notice" || r.ProviderID != reply.EventID {
				t.Errorf("update msgtype %v receipt %s", reply.Content["msgtype"], r.ProviderID)
			}
			if tc.text != "" && !strings.Contains(str(reply.Content, "body"), tc.text) {
				t.Errorf("update body %q lacks %q", reply.Content["body"], tc.text)
			}
			if len(mentionIDs(reply.Content)) != 0 {
				t.Errorf("update pings %v", mentionIDs(reply.Content))
			}
			if tc.status == "" {
				return
			}
			nc, _ := ev[2].Content["m.new_content"].(map[string]any)
			if !strings.HasPrefix(str(nc, "body"), tc.status+"\n") {
				t.Errorf("edited body does not start with %q:\n%s", tc.status, str(nc, "body"))
			}
			if strings.Contains(str(nc, "body"), ackInstructions) {
				t.Error("edited message still asks to acknowledge")
			}
		})
	}
}

func TestUpdateWithoutAlertMessage(t *testing.T) {
	f := newFakeHS(t)
	n, _, _, _ := newTestNotifier(t, f, nil)
	p := testPage()
	p.Kind = notifiers.KindResolved
	r := mustNotify(t, n, p)
	if r.ProviderID != "" || len(f.sentEvents()) != 0 {
		t.Errorf("resolved without an alert message: receipt %+v, %d events", r, len(f.sentEvents()))
	}
	p.Kind, p.Text, p.Synthetic = notifiers.KindNotice, "Klaxon: PagerDuty recovered", true
	r = mustNotify(t, n, p)
	if ev := f.sentEvents(); len(ev) != 1 || r.ProviderID != ev[0].EventID || relatesTo(ev[0].Content) != nil {
		t.Fatalf("notice without an alert message: %+v", ev)
	}
	if body := str(f.sentEvents()[0].Content, "body"); !strings.Contains(body, "Klaxon alarm") || !strings.Contains(body, "PagerDuty recovered") {
		t.Errorf("notice body:\n%s", body)
	}
}

func TestNotifyRejectsMalformedPages(t *testing.T) {
	f := newFakeHS(t)
	n, _, _, _ := newTestNotifier(t, f, nil)
	for _, p := range []notifiers.Page{
		{Kind: notifiers.KindPage, Incident: 1},
		{ID: "x", Kind: "shout", Incident: 1},
	} {
		if _, err := n.Notify(context.Background(), p); !notifiers.IsPermanent(err) {
			t.Errorf("Notify(%+v) = %v, want a permanent error", p, err)
		}
	}
	if len(f.sentEvents()) != 0 {
		t.Error("malformed pages were sent")
	}
}

func TestDirectMessages(t *testing.T) {
	f := newFakeHS(t)
	n, _, _, _ := newTestNotifier(t, f, func(c *Config) { c.DirectMessages = true })
	r := mustNotify(t, n, testPage())
	p2 := testPage()
	p2.ID, p2.Incident = "out-43-1", 43
	mustNotify(t, n, p2)
	if len(f.created) != 1 {
		t.Fatalf("created %d rooms, want one direct room reused", len(f.created))
	}
	if f.created[0]["is_direct"] != true {
		t.Errorf("createRoom %v, want is_direct", f.created[0])
	}
	if inv, _ := f.created[0]["invite"].([]any); len(inv) != 1 || inv[0] != "@alice:example.org" {
		t.Errorf("createRoom invite %v", f.created[0]["invite"])
	}
	var dms int
	for _, e := range f.sentEvents() {
		if strings.HasPrefix(e.Room, "!dm") {
			dms++
		}
	}
	if dms != 2 || !strings.Contains(r.Detail, "direct message") {
		t.Errorf("%d direct messages, detail %q", dms, r.Detail)
	}

	// A failing direct room does not fail the page.
	f.failNext("/rooms/"+urlEscape(f.joined[1])+"/send", 403, `{"errcode":"M_FORBIDDEN","error":"not in room"}`)
	p3 := testPage()
	p3.ID, p3.Incident = "out-44-1", 44
	r3 := mustNotify(t, n, p3)
	if !strings.Contains(r3.Detail, "direct message failed") {
		t.Errorf("detail %q does not report the failed direct message", r3.Detail)
	}
}

func TestAliasResolvedOnce(t *testing.T) {
	f := newFakeHS(t)
	f.aliases["#alerts:example.org"] = testRoom
	n, _, _, _ := newTestNotifier(t, f, func(c *Config) { c.Room = "#alerts:example.org" })
	mustNotify(t, n, testPage())
	delete(f.aliases, "#alerts:example.org")
	p := testPage()
	p.ID, p.Incident = "out-2", 2
	mustNotify(t, n, p)
	if ev := f.sentEvents(); len(ev) != 2 || ev[1].Room != testRoom {
		t.Fatalf("events %+v", ev)
	}

	f2 := newFakeHS(t)
	n2, _, _, _ := newTestNotifier(t, f2, func(c *Config) { c.Room = "#missing:example.org" })
	_, err := n2.Notify(context.Background(), testPage())
	if !notifiers.IsPermanent(err) || !strings.Contains(err.Error(), "#missing:example.org") {
		t.Errorf("unknown alias: %v, want a permanent error naming it", err)
	}
}

func TestNotifyHonoursContext(t *testing.T) {
	f := newFakeHS(t)
	n, _, _, _ := newTestNotifier(t, f, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	_, err := n.Notify(ctx, testPage())
	if err == nil || notifiers.IsPermanent(err) {
		t.Errorf("cancelled Notify = %v, want a temporary error", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Error("cancelled Notify did not return promptly")
	}
}

func TestConcurrentNotifiesForOneIncident(t *testing.T) {
	f := newFakeHS(t)
	n, _, _, _ := newTestNotifier(t, f, nil)
	mustNotify(t, n, testPage())
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			p := testPage()
			p.ID = fmt.Sprintf("out-42-n%d", i)
			p.Kind, p.Text = notifiers.KindNotice, fmt.Sprintf("notice %d", i)
			if _, err := n.Notify(context.Background(), p); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := len(f.sentEvents()); got != 21 {
		t.Errorf("sent %d events, want 21", got)
	}
	n.incMu.Lock()
	defer n.incMu.Unlock()
	if len(n.incLock) != 0 {
		t.Errorf("%d incident locks left behind", len(n.incLock))
	}
}

// TestUpdateFromMatrixAnswerOnlyEdits: when the answer came from the alert's
// own thread the bot has confirmed there already, so the update only edits
// the alert message.
func TestUpdateFromMatrixAnswerOnlyEdits(t *testing.T) {
	f := newFakeHS(t)
	n, _, _, _ := newTestNotifier(t, f, nil)
	mustNotify(t, n, testPage())
	u := testPage()
	u.ID, u.Kind, u.Text, u.Via = "out-42-u", notifiers.KindAcknowledged, "Acknowledged by Alice (via matrix)", notifiers.Matrix
	mustNotify(t, n, u)
	ev := f.sentEvents()
	if len(ev) != 2 {
		t.Fatalf("sent %d events, want the page and one edit", len(ev))
	}
	if rel := relatesTo(ev[1].Content); rel["rel_type"] != "m.replace" {
		t.Fatalf("second event relates %v, want an edit (m.replace)", rel)
	}
}

// TestMessages: a message outside any incident mentions the person in the
// alert room, or goes to their direct room; it never starts an incident
// thread, a retry reuses its transaction, and a person without a Matrix id
// is a permanent failure.
func TestMessages(t *testing.T) {
	msg := notifiers.Page{ID: "notice-1", Kind: notifiers.KindMessage, Channel: notifiers.Matrix,
		Recipient: notifiers.Recipient{PersonID: "alice", Name: "Alice", MatrixID: "@alice:example.org"},
		Text:      "From Mon 2 Mar 09:00 to Mon 9 Mar 09:00 you are on call for primary, instead of Bob"}
	t.Run("alert room", func(t *testing.T) {
		f := newFakeHS(t)
		n, _, _, _ := newTestNotifier(t, f, nil)
		r := mustNotify(t, n, msg)
		mustNotify(t, n, msg) // a retry: the homeserver deduplicates its transaction
		second := msg
		second.ID = "notice-2"
		mustNotify(t, n, second)
		ev := f.sentEvents()
		if len(ev) != 2 || ev[0].Txn == ev[1].Txn {
			t.Fatalf("sent %+v", ev)
		}
		c := ev[0].Content
		if !strings.Contains(str(c, "body"), "Alice (@alice:example.org): From Mon 2 Mar") || len(mentionIDs(c)) != 1 || relatesTo(c) != nil {
			t.Errorf("content %v", c)
		}
		if ev[1].Content["m.relates_to"] != nil {
			t.Error("a second message went into a thread")
		}
		if !strings.Contains(r.Detail, "mention") {
			t.Errorf("detail %q", r.Detail)
		}
	})
	t.Run("direct room", func(t *testing.T) {
		f := newFakeHS(t)
		n, _, _, _ := newTestNotifier(t, f, func(c *Config) { c.DirectMessages = true })
		r := mustNotify(t, n, msg)
		ev := f.sentEvents()
		if len(ev) != 1 || !strings.HasPrefix(ev[0].Room, "!dm") || !strings.Contains(r.Detail, "direct message") {
			t.Fatalf("sent %+v, detail %q", ev, r.Detail)
		}
	})
	t.Run("no Matrix id", func(t *testing.T) {
		f := newFakeHS(t)
		n, _, _, _ := newTestNotifier(t, f, nil)
		bad := msg
		bad.Recipient.MatrixID = ""
		if _, err := n.Notify(context.Background(), bad); !notifiers.IsPermanent(err) {
			t.Fatalf("err %v, want permanent", err)
		}
	})
}
