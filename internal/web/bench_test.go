package web

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkListPage renders the incident list with 100 open incidents, each
// with its pages read from the store: what a phone waits for on every
// refresh.
func BenchmarkListPage(b *testing.B) {
	f := newFixture(b, nil)
	for i := range 100 {
		f.fire(fmt.Sprint("g", i))
	}
	mux := http.NewServeMux()
	f.web.Register(muxRouter{mux})
	cookie := &http.Cookie{Name: f.web.CookieName(), Value: f.signIn(aliceToken)}
	size := 0
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest("GET", "/", nil)
		req.AddCookie(cookie)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("%d", rec.Code)
		}
		size = rec.Body.Len()
	}
	b.ReportMetric(float64(size), "bytes/page")
}

// BenchmarkLinkPage renders the page a signed link opens.
func BenchmarkLinkPage(b *testing.B) {
	f := newFixture(b, nil)
	f.fire("g1")
	mux := http.NewServeMux()
	f.web.Register(muxRouter{mux})
	path := f.linkFor("alice")[len(f.srv.URL):]
	b.ResetTimer()
	for b.Loop() {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != 200 {
			b.Fatalf("%d", rec.Code)
		}
	}
}
