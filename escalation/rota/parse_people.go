package rota

import (
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

var (
	e164Pattern      = regexp.MustCompile(`^\+[1-9][0-9]{1,14}$`)
	matrixPattern    = regexp.MustCompile(`^@[a-z0-9._=/+\-]+:(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$`)
	pdUserPattern    = regexp.MustCompile(`^P[A-Z0-9]{5,19}$`)
	emailPattern     = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)
	phoneDecorations = strings.NewReplacer(" ", "", "-", "", "(", "", ")", "", ".", "")
)

// ValidPhone reports whether s is an E.164 number: +, country code, subscriber
// number, 15 digits at most, no spaces.
func ValidPhone(s string) bool { return e164Pattern.MatchString(s) }

// ValidMatrixID reports whether s is a Matrix user id: @localpart:server.
func ValidMatrixID(s string) bool { return len(s) <= 255 && matrixPattern.MatchString(s) }

// ValidPagerDutyUser reports whether s is a PagerDuty user id (PXXXXXX) or an email.
func ValidPagerDutyUser(s string) bool {
	return pdUserPattern.MatchString(s) || (len(s) <= 254 && emailPattern.MatchString(s))
}

func (b *builder) people(n *yaml.Node, path string) {
	for _, e := range b.pairs(n, path, "a mapping of person id to details") {
		id := e.key.Value
		p := join(path, id)
		if !b.id(e.key, p, "person") {
			continue
		}
		b.personNode[id] = e.key
		// Kept even when invalid (the rota is rejected anyway) so that
		// references to it do not add "unknown person" noise.
		person, _ := b.person(id, e.val, p)
		b.r.People[id] = person
	}
	if n.Kind == yaml.MappingNode && len(n.Content) == 0 {
		b.errorf(n, path, "no people: a rota needs someone to page")
	}
}

func (b *builder) person(id string, n *yaml.Node, path string) (*Person, bool) {
	f := b.fields(n, path, "name", "phone", "matrix", "pagerduty", "email", "timezone")
	person := &Person{ID: id, Name: id}
	ok := n.Kind == yaml.MappingNode
	if e, has := f["name"]; has {
		if s, good := b.str(e.val, join(path, "name")); good && strings.TrimSpace(s) != "" {
			person.Name = strings.TrimSpace(s)
		}
	}
	if e, has := f["phone"]; has {
		pp := join(path, "phone")
		if s, good := b.str(e.val, pp); good {
			switch {
			case ValidPhone(s):
				person.Phone = s
			case ValidPhone(phoneDecorations.Replace(s)):
				b.errorf(e.val, pp, "phone %q is not E.164: write %q", s, phoneDecorations.Replace(s))
				ok = false
			default:
				b.errorf(e.val, pp, "phone %q is not E.164: want + and country code, e.g. +15555550100", s)
				ok = false
			}
		} else {
			ok = false
		}
	}
	if e, has := f["matrix"]; has {
		pp := join(path, "matrix")
		if s, good := b.str(e.val, pp); good && ValidMatrixID(s) {
			person.MatrixID = s
		} else {
			if good {
				b.errorf(e.val, pp, "invalid Matrix user id %q: want @user:server, e.g. @alice:example.org", s)
			}
			ok = false
		}
	}
	if e, has := f["pagerduty"]; has {
		pp := join(path, "pagerduty")
		if s, good := b.str(e.val, pp); good && ValidPagerDutyUser(s) {
			person.PagerDutyUser = s
		} else {
			if good {
				b.errorf(e.val, pp, "invalid PagerDuty user %q: want a user id such as PABC123 or an email", s)
			}
			ok = false
		}
	}
	if e, has := f["email"]; has {
		pp := join(path, "email")
		if s, good := b.str(e.val, pp); good && len(s) <= 254 && emailPattern.MatchString(s) {
			person.Email = s
		} else {
			if good {
				b.errorf(e.val, pp, "invalid email %q: want name@example.org", s)
			}
			ok = false
		}
	}
	if e, has := f["timezone"]; has {
		if loc, good := b.location(e.val, join(path, "timezone")); good {
			person.Location = loc
		} else {
			ok = false
		}
	}
	return person, ok
}
