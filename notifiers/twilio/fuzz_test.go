package twilio

import (
	"bufio"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	faketwilio "github.com/klaxon-oncall/klaxon/internal/fakes/twilio"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// wellFormedXML reports whether s parses as XML from start to end.
func wellFormedXML(s string) bool {
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// FuzzCallback feeds correctly signed arbitrary callbacks to every Twilio
// endpoint: the handler must never panic or fail with 500, and whatever it
// answers with 200 is well-formed TwiML. Seeds: testdata/callbacks.txt.
func FuzzCallback(f *testing.F) {
	fh, err := os.Open("testdata/callbacks.txt")
	if err != nil {
		f.Fatal(err)
	}
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if line := sc.Text(); line != "" && !strings.HasPrefix(line, "#") {
			parts := strings.SplitN(line, "\t", 3)
			f.Add(parts[0], parts[1], parts[2])
		}
	}
	fh.Close()
	e := newEnv(f)
	f.Fuzz(func(t *testing.T, endpoint, query, body string) {
		target := callbackPrefix + endpoint
		if query != "" {
			target += "?" + query
		}
		req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(body))
		if err != nil || req.URL.Path != callbackPrefix+endpoint || req.URL.RawQuery != query {
			t.Skip("not a request a client can send")
		}
		form, _ := url.ParseQuery(body)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Twilio-Signature", faketwilio.Signature(testToken, e.tw.cfg.PublicURL+target, form))
		rec := httptest.NewRecorder()
		e.tw.Handler().ServeHTTP(rec, req)
		switch rec.Code {
		case 200:
			if !wellFormedXML(rec.Body.String()) {
				t.Fatalf("200 with malformed TwiML %q", rec.Body.String())
			}
		case 204, 400, 403, 404, 405, 413, 415:
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
		}
	})
}

// FuzzSMSBody feeds arbitrary reply texts from a paged number: only the
// documented reply codes act (1/ack… acknowledge, 2/esc… escalate), and the
// answer is always a well-formed TwiML reply.
func FuzzSMSBody(f *testing.F) {
	for _, s := range []string{"1", "2", "ack", "ACK!", " Escalate. ", "stop", "HELP", "thanks, on it", "1 2", "", "\u00a01", "ok"} {
		f.Add(s)
	}
	e := newEnv(f)
	if err := e.tw.putJSON(context.Background(), bucketSMSRoute, alice, smsRoute{PageID: "42-1", Incident: 42}); err != nil {
		f.Fatal(err)
	}
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, text string) {
		before := len(e.resp.responses())
		form := url.Values{"From": {alice}, "To": {faketwilio.DefaultFrom}, "Body": {text},
			"MessageSid": {"SMfuzz" + strconv.FormatInt(n.Add(1), 10)}, "AccountSid": {e.fake.AccountSID()}}
		req := httptest.NewRequest(http.MethodPost, callbackPrefix+"sms", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Twilio-Signature", faketwilio.Signature(testToken, e.tw.cfg.PublicURL+callbackPrefix+"sms", form))
		rec := httptest.NewRecorder()
		e.tw.Handler().ServeHTTP(rec, req)
		if rec.Code != 200 || !wellFormedXML(rec.Body.String()) {
			t.Fatalf("reply %q: %d %q", text, rec.Code, rec.Body.String())
		}
		got := e.resp.responses()[before:]
		word := strings.ToLower(strings.Trim(strings.TrimSpace(text), ".!"))
		want := map[string]notifiers.Action{"1": notifiers.Ack, "ack": notifiers.Ack, "acknowledge": notifiers.Ack, "a": notifiers.Ack, "ok": notifiers.Ack,
			"2": notifiers.Escalate, "esc": notifiers.Escalate, "escalate": notifiers.Escalate, "e": notifiers.Escalate}[word]
		switch {
		case want == "" && len(got) != 0:
			t.Fatalf("reply %q acted: %+v", text, got)
		case want != "" && (len(got) != 1 || got[0].Action != want || got[0].Incident != 42 || got[0].From != alice):
			t.Fatalf("reply %q: responses %+v, want one %s", text, got, want)
		}
	})
}
