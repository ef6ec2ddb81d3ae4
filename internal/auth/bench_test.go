package auth

import (
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkAuthenticate is the cost of one API request's token check with
// 100 named tokens in the file (a stat per call; the file is re-read only
// when it changes).
func BenchmarkAuthenticate(b *testing.B) {
	path := filepath.Join(b.TempDir(), "tokens")
	var last string
	for range 100 {
		tok, _, err := Create(path, API, Scope{Person: "alice"}, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		last = tok
	}
	f := NewFile(path, "admin")
	for b.Loop() {
		if _, _, ok := f.Authenticate(last); !ok {
			b.Fatal("not authenticated")
		}
	}
}
