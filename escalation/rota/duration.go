package rota

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"time"
)

var daysPrefix = regexp.MustCompile(`^([0-9]+)d(.*)$`)

// ParseDuration reads a Go duration ("5m", "1h30m") optionally led by whole
// days ("7d", "1d12h"). Days are 24 hours of wall-clock time.
func ParseDuration(s string) (time.Duration, error) {
	var d time.Duration
	rest := s
	if m := daysPrefix.FindStringSubmatch(s); m != nil {
		n, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil || n > math.MaxInt64/int64(24*time.Hour) {
			return 0, fmt.Errorf("invalid duration %q: too many days", s)
		}
		d = time.Duration(n) * 24 * time.Hour
		rest = m[2]
		if rest == "" {
			return d, nil
		}
	}
	if rest == "" {
		return 0, fmt.Errorf("invalid duration %q: want e.g. 5m, 1h30m or 7d", s)
	}
	r, err := time.ParseDuration(rest)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want e.g. 5m, 1h30m or 7d", s)
	}
	if r < 0 || d+r < d {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	return d + r, nil
}

// FormatDuration renders d the way rota.yaml would spell it: whole days as
// "7d", the rest as a Go duration without zero units ("1h30m", "5m").
func FormatDuration(d time.Duration) string {
	if d <= 0 {
		return d.String()
	}
	day := 24 * time.Hour
	out := ""
	if d >= day {
		out = strconv.FormatInt(int64(d/day), 10) + "d"
		d %= day
		if d == 0 {
			return out
		}
	}
	s := d.String()
	// Trim "0s" and "0m" tails: 1h0m0s → 1h, 1h30m0s → 1h30m.
	for _, suf := range []string{"0s", "0m"} {
		if len(s) > len(suf) && s[len(s)-len(suf):] == suf && (s[len(s)-len(suf)-1] < '0' || s[len(s)-len(suf)-1] > '9') {
			s = s[:len(s)-len(suf)]
		}
	}
	return out + s
}

// ParseTime reads an instant as the rota commands and files take it: RFC 3339
// ("2026-03-02T09:00:00Z"), or "YYYY-MM-DD HH:MM" or "YYYY-MM-DD" as local
// time in loc.
func ParseTime(s string, loc *time.Location) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("invalid time %q: want RFC 3339, \"YYYY-MM-DD HH:MM\" or \"YYYY-MM-DD\"", s)
}
