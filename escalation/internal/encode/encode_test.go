package encode

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
)

// plain strings stay on the fast path; special ones are escaped by
// encoding/json, or are not valid UTF-8, and go to it.
var (
	plain   = []string{"", "alice", "Disk full on db-1", "é", "日本語", "🚨 paging", "a b\u00a0c", "https://am.example/#/alerts?x=1", "{}[]:,", "+15550100", "@alice:example.org"}
	special = []string{"\b", "\f", "\r", "\x1f", "\x00", "\\\\u2028", "a\u2028b\u2029c", "x\xffy\xc0\x80", "x<y", "y>x", "a&b", `"quoted"`, `back\slash`, "line\nbreak", "\t", "\x01", "\x7f", "\xff\xfe", "\u2028", "\u2029", "ok\xc3"}
)

// filler fills any value by reflection, so every field of every type is
// set, whatever fields the types gain later.
type filler struct {
	r *rand.Rand
	// specialChance is the chance that a string needs escaping.
	specialChance float64
}

var timeType = reflect.TypeFor[time.Time]()

func (f *filler) fill(v reflect.Value) {
	if f.r.IntN(4) == 0 {
		return // leave it zero: omitempty and omitzero must be right
	}
	if v.Type() == timeType {
		v.Set(reflect.ValueOf(f.time()))
		return
	}
	switch v.Kind() {
	case reflect.String:
		if f.r.Float64() < f.specialChance {
			v.SetString(special[f.r.IntN(len(special))])
		} else {
			v.SetString(plain[f.r.IntN(len(plain))])
		}
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt([]int64{1, -1, 7, 1 << 40, -(1 << 62)}[f.r.IntN(5)])
	case reflect.Uint64, reflect.Uint, reflect.Uint32:
		v.SetUint([]uint64{1, 42, 1 << 63, ^uint64(0)}[f.r.IntN(4)])
	case reflect.Struct:
		for i := range v.NumField() {
			f.fill(v.Field(i))
		}
	case reflect.Slice:
		n := f.r.IntN(4) // 0: empty, not nil
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := range n {
			f.fill(s.Index(i))
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for range f.r.IntN(5) { // 0: empty, not nil
			k := reflect.New(v.Type().Key()).Elem()
			f.fill(k)
			e := reflect.New(v.Type().Elem()).Elem()
			f.fill(e)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	default:
		panic("encode test: fill does not know " + v.Type().String())
	}
}

// time is a time as a store meets it, in several zones, or one that
// encoding/json refuses.
func (f *filler) time() time.Time {
	t := time.Unix(1_700_000_000+f.r.Int64N(1e8), f.r.Int64N(1e9))
	switch f.r.IntN(8) {
	case 0:
		return t.Truncate(time.Second)
	case 1:
		return t.In(time.FixedZone("IST", 5*3600+1800))
	case 2:
		return t.In(time.FixedZone("PST", -8*3600))
	case 3:
		return t.In(time.FixedZone("LMT", 3600+17)) // an offset in seconds
	case 4:
		if f.r.IntN(4) == 0 {
			return time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) // refused
		}
	}
	return t.UTC()
}

// cases builds n random values of T.
func cases[T any](seed uint64, n int, specialChance float64) []T {
	f := &filler{r: rand.New(rand.NewPCG(seed, 1)), specialChance: specialChance}
	out := make([]T, n)
	for i := range out {
		// fill skips a quarter of values: the top level always gets filled.
		v := reflect.ValueOf(&out[i]).Elem()
		for j := range v.NumField() {
			f.fill(v.Field(j))
		}
	}
	return out
}

// check compares encode's output for every value with encoding/json's, byte
// for byte (and its errors), and counts the values encoded without
// encoding/json's help.
func check[T any](t *testing.T, name string, vals []T, fn func([]byte, *T) ([]byte, error), fast func(*T) bool) {
	t.Helper()
	quick := 0
	for i := range vals {
		v := &vals[i]
		want, werr := json.Marshal(v)
		got, gerr := fn([]byte("prefix:"), v)
		if (werr != nil) != (gerr != nil) {
			t.Fatalf("%s %d: error %v, encoding/json's %v\nvalue: %#v", name, i, gerr, werr, *v)
		}
		if werr != nil {
			if gerr.Error() != werr.Error() {
				t.Fatalf("%s %d: error %q, encoding/json's %q", name, i, gerr, werr)
			}
			continue
		}
		if !bytes.Equal(got, append([]byte("prefix:"), want...)) {
			t.Fatalf("%s %d:\n got %s\nwant prefix:%s", name, i, got, want)
		}
		if fast(v) {
			quick++
		}
	}
	// The fast path is what is under test: most values must take it.
	if quick < len(vals)/2 {
		t.Fatalf("%s: only %d of %d values were encoded without encoding/json", name, quick, len(vals))
	}
	t.Logf("%s: %d of %d encoded without encoding/json", name, quick, len(vals))
}

// fastOnly runs fill on a fresh encoder and reports whether it stayed on
// the fast path.
func fastOnly[T any](fill func(*enc, *T)) func(*T) bool {
	return func(v *T) bool {
		var e enc
		fill(&e, v)
		return !e.slow
	}
}

func TestEncodingIsEncodingJSONs(t *testing.T) {
	const n = 3000
	for _, seed := range []uint64{1, 2, 3} {
		check(t, "incident", cases[escalation.Incident](seed, n, 0.2), Incident, fastOnly((*enc).incident))
		check(t, "event", cases[escalation.Event](seed, n, 0.2), Event, fastOnly((*enc).event))
		check(t, "page", cases[escalation.PageRecord](seed, n, 0.2), Page, fastOnly((*enc).page))
		check(t, "group", cases[escalation.Group](seed, n, 0.2), Group, fastOnly((*enc).group))
	}
}

// TestEdgeCases names the shapes random filling may reach only rarely.
func TestEdgeCases(t *testing.T) {
	at := time.Date(2026, 11, 26, 23, 33, 0, 120, time.UTC)
	incidents := []escalation.Incident{
		{},
		{Alerts: []escalation.Alert{}},
		{Alerts: []escalation.Alert{{}}},
		{Escalation: escalation.Escalation{Policy: "default"}},
		{Escalation: escalation.Escalation{Started: true}},
		{Escalation: escalation.Escalation{Policy: "p", Started: true, Since: 3, Repages: 2}},
		{ID: 7, Title: "x", CommonLabels: map[string]string{"b": "2", "a": "1", "B": "0", "": "empty"}, OpenedAt: at},
	}
	check(t, "incident", incidents, Incident, func(*escalation.Incident) bool { return true })
	groups := []escalation.Group{
		{}, {Open: 1}, {LastEnd: map[string]time.Time{"fp": at}}, {ByHand: map[string]time.Time{"fp": at}},
		{Open: 2, LastEnd: map[string]time.Time{}, ByHand: map[string]time.Time{"b": at, "a": at.Add(time.Hour)}},
	}
	check(t, "group", groups, Group, func(*escalation.Group) bool { return true })
	events := []escalation.Event{{}, {At: at, Kind: escalation.EvOpened, Text: "opened"}}
	check(t, "event", events, Event, func(*escalation.Event) bool { return true })
	pages := []escalation.PageRecord{{}, {ID: "1-1", Status: escalation.PageSent, CreatedAt: at, HeldAt: at}}
	check(t, "page", pages, Page, func(*escalation.PageRecord) bool { return true })
}
