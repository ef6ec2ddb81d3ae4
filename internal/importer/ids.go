package importer

import (
	"strconv"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// slug turns a source name into a rota id: lower case letters, digits and
// '-', at most 48 characters, never empty.
func slug(s, fallback string) string {
	var b strings.Builder
	dash := false
	for _, r := range norm.NFKD.String(s) {
		switch {
		case unicode.Is(unicode.Mn, r):
			continue // accents dropped: "José" → "jose"
		case r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(unicode.ToLower(r))
		default:
			dash = true
		}
		if b.Len() >= 48 {
			break
		}
	}
	out := strings.Trim(b.String(), "-")
	if out == "" {
		out = fallback
	}
	return out
}

// namer hands out unique ids.
type namer struct{ used map[string]bool }

func newNamer() *namer { return &namer{used: map[string]bool{}} }

// take returns base, or base-2, base-3, ... when taken.
func (n *namer) take(base string) string {
	id := base
	for i := 2; n.used[id]; i++ {
		id = base + "-" + strconv.Itoa(i)
	}
	n.used[id] = true
	return id
}
