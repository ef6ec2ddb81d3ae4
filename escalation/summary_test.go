package escalation

import (
	"strings"
	"testing"
)

// TestFoldSummaryBounded: a carrier page's summary has a fixed maximum size
// however many pages are held for its person, and counts them honestly.
func TestFoldSummaryBounded(t *testing.T) {
	many := func(n int) []uint64 {
		out := make([]uint64, n)
		for i := range out {
			out[i] = uint64(1_000_000 - i)
		}
		return out
	}
	for _, c := range []struct {
		name   string
		own    uint64
		status PageStatus
		held   Held
		want   string
	}{
		{"nothing else held", 7, PageDeferred, Held{Count: 1, Newest: []uint64{7}}, ""},
		{"two", 3, PagePending, Held{Count: 1, Newest: []uint64{4}}, "2 incidents need you; newest: 3, 4"},
		{"carrier held itself", 3, PageDeferred, Held{Count: 2, Newest: []uint64{4, 3}}, "2 incidents need you; newest: 3, 4"},
		{"a storm", 1_000_001, PagePending, Held{Count: 41_236, Newest: many(1000)},
			"41,237 incidents need you; newest: 1000001, 1000000, 999999, 999998"},
		{"a flood", 1 << 40, PagePending, Held{Count: 1 << 40, Newest: many(100_000)},
			"1,099,511,627,777 incidents need you; newest: 1099511627776, 1000000, 999999, 999998"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := foldSummary(c.own, PageRecord{Status: c.status}, c.held)
			if got != c.want {
				t.Errorf("got %q\nwant %q", got, c.want)
			}
			if len(got) > 120 || strings.Count(got, ",") > 12 {
				t.Errorf("summary of %d bytes: not bounded", len(got))
			}
		})
	}
}
