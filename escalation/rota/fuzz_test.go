package rota

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(base))
	for _, p := range []string{filepath.Join("..", "..", "rota.yaml"), filepath.Join("testdata", "broken.yaml")} {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(strings.Replace(base, "7d", "1h", 1)))
	f.Add([]byte("a: &a [x]\nb: *a\n"))
	f.Add([]byte("timezone: UTC\npeople: {}\n"))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, warns, err := Parse("f.yaml", data)
		if err != nil {
			if r != nil {
				t.Fatal("a rota and an error")
			}
			if len(ErrorStrings(err)) == 0 {
				t.Fatal("an error without problems")
			}
			for _, e := range ErrorStrings(err) {
				if !strings.HasPrefix(e, "f.yaml") {
					t.Fatalf("error without the file name: %q", e)
				}
			}
			return
		}
		_ = warns
		// A valid rota is self-consistent: every reference resolves.
		for _, rt := range r.Routes {
			if r.Policies[rt.Policy] == nil {
				t.Fatalf("route to unknown policy %q", rt.Policy)
			}
		}
		if len(r.Routes) == 0 || len(r.Routes[len(r.Routes)-1].Matchers) != 0 {
			t.Fatal("no default route last")
		}
		for _, p := range r.Policies {
			for _, s := range p.Steps {
				if s.Wait <= 0 || len(s.Channels) == 0 || len(s.Targets) == 0 {
					t.Fatalf("bad step %+v", s)
				}
			}
		}
		at := time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC)
		for _, rot := range r.Rotations {
			for _, s := range Shifts(rot, at, at.Add(3*24*time.Hour)) {
				if r.People[s.Person] == nil || !s.Start.Before(s.End) {
					t.Fatalf("bad shift %+v", s)
				}
				if got := OnCall(rot, s.Start); got != s.Person {
					t.Fatalf("OnCall at shift start = %q, shift says %q", got, s.Person)
				}
			}
		}
	})
}
