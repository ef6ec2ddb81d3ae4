package importer

import "time"

// CommonZone is the time zone most of ss use (ties go to the name that sorts
// first), UTC for none: the imported rota's zone when none is asked for.
func CommonZone(ss []*Schedule) *time.Location {
	count := map[string]int{}
	best := ""
	for _, s := range ss {
		n := s.Location.String()
		count[n]++
		if count[n] > count[best] || (count[n] == count[best] && n < best) {
			best = n
		}
	}
	for _, s := range ss {
		if s.Location.String() == best {
			return s.Location
		}
	}
	return time.UTC
}
