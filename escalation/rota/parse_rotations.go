package rota

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

var handoffPattern = regexp.MustCompile(`^(?:([A-Za-z]+)\s+)?([0-9]{1,2}):([0-9]{2})$`)

// MaxShift is the longest shift a rotation may have.
const MaxShift = 366 * 24 * time.Hour

func parseWeekday(s string) (time.Weekday, bool) {
	s = strings.ToLower(s)
	for d := time.Sunday; d <= time.Saturday; d++ {
		name := strings.ToLower(d.String())
		if s == name || s == name[:3] {
			return d, true
		}
	}
	return 0, false
}

func (b *builder) rotations(n *yaml.Node, path string) {
	for _, e := range b.pairs(n, path, "a mapping of rotation id to rotation") {
		id := e.key.Value
		p := join(path, id)
		if !b.id(e.key, p, "rotation") {
			continue
		}
		b.rotationNode[id] = e.key
		rot, _ := b.rotation(id, e.val, p) // kept even when invalid: see people
		rot.line, rot.col = e.key.Line, e.key.Column
		b.r.Rotations[id] = rot
	}
	// Overrides are checked once every rotation is known.
	for _, ref := range b.overrideRefs {
		b.checkOverrideEffect(ref)
	}
}

func (b *builder) rotation(id string, n *yaml.Node, path string) (*Rotation, bool) {
	f := b.fields(n, path, "members", "shift", "handoff", "start", "overrides", "reminder")
	b.require(n, path, f, "members", "handoff", "start")
	ok := n.Kind == yaml.MappingNode
	rot := &Rotation{ID: id, Shift: DefaultShift, Location: b.r.Location, Reminder: DefaultReminder}

	if e, has := f["reminder"]; has {
		rp := join(path, "reminder")
		if e.val.Kind == yaml.ScalarNode && strings.TrimSpace(e.val.Value) == "off" {
			rot.Reminder = 0
		} else if d, good := b.duration(e.val, rp); good {
			if d <= 0 || d > 7*24*time.Hour {
				b.errorf(e.val, rp, "reminder %q must be more than 0 and at most 7d before the shift (or off)", e.val.Value)
				ok = false
			} else {
				rot.Reminder = d
			}
		} else {
			ok = false
		}
	}

	if e, has := f["members"]; has {
		mp := join(path, "members")
		items := b.list(e.val, mp, false)
		if e.val.Kind == yaml.SequenceNode && len(items) == 0 {
			b.errorf(e.val, mp, "no members: a rotation needs at least one person")
			ok = false
		}
		first := map[string]int{}
		for i, m := range items {
			ip := index(mp, i)
			pid, good := b.personRef(m, ip)
			if !good {
				ok = false
				continue
			}
			if j, dup := first[pid]; dup {
				b.errorf(m, ip, "%s is already in this rotation at members[%d]: one person would hold two places of the same rotation", pid, j)
				ok = false
				continue
			}
			first[pid] = i
			rot.Members = append(rot.Members, pid)
		}
	}

	if e, has := f["shift"]; has {
		sp := join(path, "shift")
		if d, good := b.duration(e.val, sp); good {
			switch {
			case d%time.Hour != 0:
				b.errorf(e.val, sp, "shift %q must be a whole number of hours or days", e.val.Value)
				ok = false
			case d > MaxShift:
				b.errorf(e.val, sp, "shift %q is longer than %s", e.val.Value, FormatDuration(MaxShift))
				ok = false
			default:
				rot.Shift = d
			}
		} else {
			ok = false
		}
	}

	var weekday *time.Weekday
	var hour, minute int
	var handoffNode *yaml.Node
	if e, has := f["handoff"]; has {
		hp := join(path, "handoff")
		handoffNode = e.val
		if s, good := b.str(e.val, hp); good {
			m := handoffPattern.FindStringSubmatch(strings.TrimSpace(s))
			var perr string
			if m == nil {
				perr = "want a time such as \"09:00\", or a weekday and a time such as \"monday 09:00\""
			} else {
				hour, _ = strconv.Atoi(m[2])
				minute, _ = strconv.Atoi(m[3])
				if hour > 23 || minute > 59 {
					perr = "time of day out of range"
				}
				if m[1] != "" {
					if d, good := parseWeekday(m[1]); good {
						weekday = &d
					} else {
						perr = fmt.Sprintf("unknown weekday %q", m[1])
					}
				}
			}
			if perr != "" {
				b.errorf(e.val, hp, "invalid handoff %q: %s", s, perr)
				ok = false
			}
		} else {
			ok = false
		}
	}
	if weekday != nil && rot.Shift%(7*24*time.Hour) != 0 {
		b.errorf(handoffNode, join(path, "handoff"), "a handoff weekday needs a shift of whole weeks, but shift is %s", FormatDuration(rot.Shift))
		ok = false
	}

	if e, has := f["start"]; has {
		sp := join(path, "start")
		if s, good := b.str(e.val, sp); good {
			d, err := time.Parse("2006-01-02", strings.TrimSpace(s))
			switch {
			case err != nil:
				b.errorf(e.val, sp, "invalid start date %q: want YYYY-MM-DD", s)
				ok = false
			case d.Year() < 1970 || d.Year() > 2200:
				b.errorf(e.val, sp, "start date %q out of range (1970 to 2200)", s)
				ok = false
			case weekday != nil && d.Weekday() != *weekday:
				b.errorf(e.val, sp, "%s is a %s, but the handoff is on %s", s, d.Weekday(), strings.ToLower(weekday.String()))
				ok = false
			default:
				rot.start = civil{d.Add(time.Duration(hour)*time.Hour + time.Duration(minute)*time.Minute)}
				rot.Start = rot.start.instant(rot.Location)
			}
		} else {
			ok = false
		}
	}

	b.pendingRefs = nil
	if e, has := f["overrides"]; has && !b.overrides(rot, e.val, join(path, "overrides")) {
		ok = false
	}
	if ok {
		// Only a valid rotation's overrides are checked for effect.
		b.overrideRefs = append(b.overrideRefs, b.pendingRefs...)
	}
	return rot, ok
}

// parseLocalTime reads "2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02"
// (midnight) in loc, or an RFC 3339 time with an explicit offset.
func parseLocalTime(s string, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			if t.Year() < 1970 || t.Year() > 2200 {
				return time.Time{}, fmt.Errorf("%q out of range (1970 to 2200)", s)
			}
			return civil{t}.instant(loc), nil
		}
	}
	return time.Time{}, fmt.Errorf("invalid time %q: want \"YYYY-MM-DD HH:MM\" (local time) or RFC 3339", s)
}

func (b *builder) overrides(rot *Rotation, n *yaml.Node, path string) bool {
	ok := true
	type placed struct {
		o    Override
		node *yaml.Node
		i    int
	}
	var list []placed
	for i, item := range b.list(n, path, false) {
		ip := index(path, i)
		f := b.fields(item, ip, "who", "instead_of", "from", "to", "reason")
		b.require(item, ip, f, "who", "from", "to")
		good := item.Kind == yaml.MappingNode
		var o Override
		if e, has := f["who"]; has {
			id, g := b.personRef(e.val, join(ip, "who"))
			o.Person, good = id, good && g
		}
		if e, has := f["instead_of"]; has {
			id, g := b.personRef(e.val, join(ip, "instead_of"))
			o.InsteadOf, good = id, good && g
			if g && id == o.Person {
				b.errorf(e.val, join(ip, "instead_of"), "%s cannot cover for themselves", id)
				good = false
			}
		}
		for _, name := range []string{"from", "to"} {
			e, has := f[name]
			if !has {
				continue
			}
			s, g := b.str(e.val, join(ip, name))
			if !g {
				good = false
				continue
			}
			t, err := parseLocalTime(s, rot.Location)
			if err != nil {
				b.errorf(e.val, join(ip, name), "%v", err)
				good = false
				continue
			}
			if name == "from" {
				o.Start = t
			} else {
				o.End = t
			}
		}
		if e, has := f["reason"]; has {
			if s, g := b.str(e.val, join(ip, "reason")); g {
				o.Reason = strings.TrimSpace(s)
			}
		}
		if good && !o.Start.Before(o.End) {
			b.errorf(f["to"].val, join(ip, "to"), "override ends (%s) before it starts (%s)",
				o.End.In(rot.Location).Format("2006-01-02 15:04"), o.Start.In(rot.Location).Format("2006-01-02 15:04"))
			good = false
		}
		if !good {
			ok = false
			continue
		}
		list = append(list, placed{o, item, i})
	}
	slices.SortStableFunc(list, func(a, c placed) int { return a.o.Start.Compare(c.o.Start) })
	for i := 1; i < len(list); i++ {
		prev, cur := list[i-1], list[i]
		if cur.o.Start.Before(prev.o.End) {
			b.errorf(cur.node, index(path, cur.i), "override overlaps %s[%d] (line %d): overrides on one rotation may not overlap",
				path, prev.i, prev.node.Line)
			ok = false
			// keep the one that ends later as the reference for the next comparison
			if prev.o.End.After(cur.o.End) {
				list[i] = prev
			}
		}
	}
	if ok {
		for _, pl := range list {
			rot.Overrides = append(rot.Overrides, pl.o)
			b.pendingRefs = append(b.pendingRefs, overrideRef{rot: rot, o: pl.o, node: pl.node, path: index(path, pl.i)})
		}
	}
	return ok
}

// checkOverrideEffect warns about overrides that change nothing.
func (b *builder) checkOverrideEffect(ref overrideRef) {
	o := ref.o
	if o.InsteadOf == "" {
		return
	}
	if !slices.Contains(ref.rot.Members, o.InsteadOf) {
		b.warnf(ref.node, ref.path, "override for %s, who is not in rotation %q: it has no effect", o.InsteadOf, ref.rot.ID)
		return
	}
	if len(ref.rot.Members) == 0 || ref.rot.Shift <= 0 {
		return
	}
	// Every member takes a turn within len(Members)+1 shifts (plus slack for
	// clock changes): a longer override surely meets instead_of.
	if o.End.Sub(o.Start) > time.Duration(len(ref.rot.Members)+1)*ref.rot.Shift+3*time.Hour {
		return
	}
	base := *ref.rot
	base.Overrides = nil
	for _, s := range Shifts(&base, o.Start, o.End) {
		if s.Person == o.InsteadOf {
			return
		}
	}
	b.warnf(ref.node, ref.path, "override for %s, who is not on call for %q between %s and %s: it has no effect",
		o.InsteadOf, ref.rot.ID, o.Start.In(ref.rot.Location).Format("2006-01-02 15:04"), o.End.In(ref.rot.Location).Format("2006-01-02 15:04"))
}
