package faketwilio

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// Signature computes X-Twilio-Signature as Twilio does: HMAC-SHA1, keyed
// with the auth token, over the full URL followed by each POST parameter's
// name and value in name order, base64-encoded. For GET requests params is
// empty (the query is part of the URL).
func Signature(authToken, fullURL string, params url.Values) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(fullURL)
	for _, k := range keys {
		for _, v := range params[k] {
			b.WriteString(k)
			b.WriteString(v)
		}
	}
	mac := hmac.New(sha1.New, []byte(authToken))
	mac.Write([]byte(b.String()))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Callback is one request the fake made to the application, as Twilio made it.
type Callback struct {
	Method    string
	URL       string
	Params    url.Values
	Signature string
	// Status and Body are the application's answer.
	Status int
	Body   string
}

// post sends a signed callback like Twilio and records it as the last one.
func (s *Server) post(method, target string, params url.Values) *Callback {
	s.t.Helper()
	cb := &Callback{Method: method, URL: target, Params: cloneValues(params)}
	if method == http.MethodGet {
		u, err := url.Parse(target)
		if err != nil {
			s.t.Fatalf("faketwilio: bad callback URL %q: %v", target, err)
		}
		q := u.Query()
		for k, vs := range params {
			q[k] = append(q[k], vs...)
		}
		u.RawQuery = q.Encode()
		cb.URL, cb.Params = u.String(), url.Values{}
	}
	cb.Signature = Signature(s.token, cb.URL, cb.Params)
	s.send(cb)
	s.mu.Lock()
	s.last = cb
	s.mu.Unlock()
	return cb
}

// send performs cb's request and fills in the answer.
func (s *Server) send(cb *Callback) {
	s.t.Helper()
	var body io.Reader
	if cb.Method == http.MethodPost {
		body = strings.NewReader(cb.Params.Encode())
	}
	req, err := http.NewRequest(cb.Method, cb.URL, body)
	if err != nil {
		s.t.Fatalf("faketwilio: callback %s: %v", cb.URL, err)
	}
	if cb.Method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("X-Twilio-Signature", cb.Signature)
	req.Header.Set("User-Agent", "TwilioProxy/1.1")
	req.Header.Set("I-Twilio-Idempotency-Token", cb.Signature)
	resp, err := s.hc.Do(req)
	if err != nil {
		s.t.Fatalf("faketwilio: callback %s: %v", cb.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	cb.Status, cb.Body = resp.StatusCode, string(b)
}

// RetryLastCallback sends the last callback again, exactly as before (same
// parameters and signature), as Twilio does when it retries, and returns
// the application's answer.
func (s *Server) RetryLastCallback() *Callback {
	s.t.Helper()
	s.mu.Lock()
	last := s.last
	s.mu.Unlock()
	if last == nil {
		s.t.Fatalf("faketwilio: no callback to retry")
	}
	return s.Resend(last)
}

// Resend sends cb again exactly as before, as Twilio does when it retries,
// and returns the application's new answer.
func (s *Server) Resend(last *Callback) *Callback {
	s.t.Helper()
	again := &Callback{Method: last.Method, URL: last.URL, Params: cloneValues(last.Params), Signature: last.Signature}
	s.send(again)
	return again
}

// LastCallback returns the last callback the fake sent, or nil.
func (s *Server) LastCallback() *Callback {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}
