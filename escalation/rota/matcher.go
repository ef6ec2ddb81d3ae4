package rota

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// MatchOp is an Alertmanager label matcher operator.
type MatchOp string

// The matcher operators, as Alertmanager spells them.
const (
	MatchEqual     MatchOp = "="
	MatchNotEqual  MatchOp = "!="
	MatchRegexp    MatchOp = "=~"
	MatchNotRegexp MatchOp = "!~"
)

// Matcher tests one label, Alertmanager style: a missing label has the empty
// value, and regular expressions are anchored at both ends.
type Matcher struct {
	Name  string
	Op    MatchOp
	Value string
	re    *regexp.Regexp
}

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// maxMatcherLen bounds one matcher's text (and so its regular expression).
const maxMatcherLen = 1024

// ParseMatcher reads one matcher: name, operator, value; the value may be
// double-quoted (with Go escapes) or bare, e.g. severity=~"warning|info",
// team!=db, env="prod".
func ParseMatcher(s string) (Matcher, error) {
	if len(s) > maxMatcherLen {
		return Matcher{}, fmt.Errorf("matcher longer than %d bytes", maxMatcherLen)
	}
	s = strings.TrimSpace(s)
	i := strings.IndexAny(s, "=!")
	if i <= 0 {
		return Matcher{}, fmt.Errorf("matcher %q: want name, operator (=, !=, =~, !~) and value", s)
	}
	name := strings.TrimSpace(s[:i])
	rest := s[i:]
	var op MatchOp
	for _, o := range []MatchOp{MatchRegexp, MatchNotRegexp, MatchNotEqual, MatchEqual} {
		if strings.HasPrefix(rest, string(o)) {
			op = o
			break
		}
	}
	if op == "" {
		return Matcher{}, fmt.Errorf("matcher %q: want an operator =, !=, =~ or !~", s)
	}
	if !labelName.MatchString(name) {
		return Matcher{}, fmt.Errorf("matcher %q: invalid label name %q", s, name)
	}
	val := strings.TrimSpace(rest[len(op):])
	if strings.HasPrefix(val, `"`) {
		u, err := strconv.Unquote(val)
		if err != nil {
			return Matcher{}, fmt.Errorf("matcher %q: badly quoted value", s)
		}
		val = u
	} else if strings.ContainsAny(val, `"`) {
		return Matcher{}, fmt.Errorf("matcher %q: badly quoted value", s)
	}
	m := Matcher{Name: name, Op: op, Value: val}
	if op == MatchRegexp || op == MatchNotRegexp {
		if _, err := regexp.Compile(val); err != nil {
			return Matcher{}, fmt.Errorf("matcher %q: invalid regular expression: %v", s, err)
		}
		re, err := regexp.Compile("^(?:" + val + ")$")
		if err != nil {
			return Matcher{}, fmt.Errorf("matcher %q: invalid regular expression: %v", s, err)
		}
		m.re = re
	}
	return m, nil
}

// Matches reports whether labels satisfy m.
func (m Matcher) Matches(labels map[string]string) bool {
	v := labels[m.Name]
	switch m.Op {
	case MatchEqual:
		return v == m.Value
	case MatchNotEqual:
		return v != m.Value
	case MatchRegexp:
		return m.re != nil && m.re.MatchString(v)
	case MatchNotRegexp:
		return m.re != nil && !m.re.MatchString(v)
	}
	return false
}

// String renders m in Alertmanager syntax with a quoted value.
func (m Matcher) String() string {
	return m.Name + string(m.Op) + strconv.Quote(m.Value)
}

func matchAll(ms []Matcher, labels map[string]string) bool {
	for _, m := range ms {
		if !m.Matches(labels) {
			return false
		}
	}
	return true
}
