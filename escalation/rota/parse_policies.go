package rota

import (
	"regexp"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// MaxRepeat bounds a policy's repeat count.
const MaxRepeat = 100

var routingKeyPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

func (b *builder) policies(n *yaml.Node, path string) {
	for _, e := range b.pairs(n, path, "a mapping of policy id to policy") {
		id := e.key.Value
		p := join(path, id)
		if !b.id(e.key, p, "policy") {
			continue
		}
		pol, _ := b.policy(id, e.val, p) // kept even when invalid: see people
		b.r.Policies[id] = pol
	}
}

func (b *builder) policy(id string, n *yaml.Node, path string) (*Policy, bool) {
	f := b.fields(n, path, "steps", "repeat", "fallback", "ack_timeout", "repage_every", "pagerduty_acks")
	b.require(n, path, f, "steps")
	ok := n.Kind == yaml.MappingNode
	pol := &Policy{ID: id, AckTimeout: DefaultAckTimeout}
	if e, has := f["steps"]; has {
		sp := join(path, "steps")
		items := b.list(e.val, sp, false)
		if e.val.Kind == yaml.SequenceNode && len(items) == 0 {
			b.errorf(e.val, sp, "no steps: a policy needs at least one step")
			ok = false
		}
		for i, item := range items {
			step, good := b.step(item, index(sp, i))
			if !good {
				ok = false
				continue
			}
			pol.Steps = append(pol.Steps, step)
			b.stepRefs = append(b.stepRefs, stepRef{policy: id, path: index(sp, i), step: step})
		}
	}
	if e, has := f["repeat"]; has {
		v, good := b.integer(e.val, join(path, "repeat"), 0, MaxRepeat)
		pol.Repeat, ok = v, ok && good
	}
	if e, has := f["fallback"]; has {
		fp := join(path, "fallback")
		for i, item := range b.list(e.val, fp, true) {
			t, good := b.target(item, index(fp, i))
			if !good {
				ok = false
				continue
			}
			pol.Fallback = append(pol.Fallback, t)
		}
	}
	if e, has := f["ack_timeout"]; has {
		d, good := b.duration(e.val, join(path, "ack_timeout"))
		pol.AckTimeout, ok = d, ok && good
	}
	if e, has := f["repage_every"]; has {
		d, good := b.duration(e.val, join(path, "repage_every"))
		pol.RepageEvery, ok = d, ok && good
	}
	if e, has := f["pagerduty_acks"]; has {
		pp := join(path, "pagerduty_acks")
		switch v, good := b.str(e.val, pp); {
		case !good:
			ok = false
		case v == "rota":
		case v == "anyone":
			pol.PagerDutyAcksAnyone = true
		default:
			b.errorf(e.val, pp, "%q: want rota (only people on the rota; the default) or anyone", v)
			ok = false
		}
	}
	return pol, ok
}

func (b *builder) step(n *yaml.Node, path string) (Step, bool) {
	f := b.fields(n, path, "notify", "via", "wait", "routing_key")
	b.require(n, path, f, "notify", "via", "wait")
	ok := n.Kind == yaml.MappingNode
	var st Step
	if e, has := f["notify"]; has {
		np := join(path, "notify")
		items := b.list(e.val, np, true)
		if e.val.Kind == yaml.SequenceNode && len(items) == 0 {
			b.errorf(e.val, np, "nobody to notify")
			ok = false
		}
		single := e.val.Kind != yaml.SequenceNode
		for i, item := range items {
			ip := np
			if !single {
				ip = index(np, i)
			}
			t, good := b.target(item, ip)
			if !good {
				ok = false
				continue
			}
			st.Targets = append(st.Targets, t)
		}
	}
	if e, has := f["via"]; has {
		vp := join(path, "via")
		items := b.list(e.val, vp, true)
		if e.val.Kind == yaml.SequenceNode && len(items) == 0 {
			b.errorf(e.val, vp, "no channels: name at least one of %s", channelList())
			ok = false
		}
		single := e.val.Kind != yaml.SequenceNode
		for i, item := range items {
			ip := vp
			if !single {
				ip = index(vp, i)
			}
			s, good := b.str(item, ip)
			if !good {
				ok = false
				continue
			}
			ch := notifiers.Channel(s)
			switch {
			case !ch.Valid():
				b.errorf(item, ip, "unknown channel %q (channels: %s)%s", s, channelList(), didYouMean(s, channelNames()))
				ok = false
			case slices.Contains(st.Channels, ch):
				b.errorf(item, ip, "channel %q named twice", s)
				ok = false
			default:
				st.Channels = append(st.Channels, ch)
			}
		}
	}
	if e, has := f["wait"]; has {
		d, good := b.duration(e.val, join(path, "wait"))
		st.Wait, ok = d, ok && good
	}
	if e, has := f["routing_key"]; has {
		rp := join(path, "routing_key")
		// The routing key is a credential: never echo it.
		if s, good := b.str(e.val, rp); good && routingKeyPattern.MatchString(s) {
			st.RoutingKey = s
			if !slices.Contains(st.Channels, notifiers.PagerDuty) && len(st.Channels) > 0 {
				b.warnf(e.val, rp, "routing_key is used by the pagerduty channel only, which this step does not use")
			}
		} else {
			if good {
				b.errorf(e.val, rp, "invalid routing key: want 1 to 128 letters, digits, '-' or '_'")
			}
			ok = false
		}
	}
	return st, ok
}

func channelNames() []string {
	out := make([]string, len(notifiers.Channels))
	for i, c := range notifiers.Channels {
		out[i] = string(c)
	}
	return out
}

// target reads who a step notifies: "primary" (the rotation's on-call),
// {rotation: primary}, {person: alice} or {everyone: primary}.
func (b *builder) target(n *yaml.Node, path string) (Target, bool) {
	if n.Kind == yaml.ScalarNode {
		id, ok := b.rotationRef(n, path)
		return Target{Rotation: id}, ok
	}
	if n.Kind != yaml.MappingNode {
		b.errorf(n, path, "want a rotation id or one of {rotation: id}, {person: id}, {everyone: rotation id}, found %s", kindName(n))
		return Target{}, false
	}
	f := b.fields(n, path, "rotation", "person", "everyone")
	if len(f) != 1 {
		if len(f) > 1 || len(n.Content) == 0 {
			b.errorf(n, path, "name exactly one of rotation, person, everyone")
		}
		return Target{}, false
	}
	for k, e := range f {
		p := join(path, k)
		switch k {
		case "rotation":
			id, ok := b.rotationRef(e.val, p)
			return Target{Rotation: id}, ok
		case "everyone":
			id, ok := b.rotationRef(e.val, p)
			return Target{Rotation: id, Everyone: true}, ok
		case "person":
			id, ok := b.personRef(e.val, p)
			return Target{Person: id}, ok
		}
	}
	return Target{}, false
}

func (b *builder) routes(n *yaml.Node, path string) {
	items := b.list(n, path, false)
	if n.Kind == yaml.SequenceNode && len(items) == 0 {
		b.errorf(n, path, "no routes: end the list with a default route (a route without match)")
		return
	}
	defaultAt := -1
	for i, item := range items {
		ip := index(path, i)
		f := b.fields(item, ip, "match", "policy")
		b.require(item, ip, f, "policy")
		rt := Route{Line: item.Line, Column: item.Column}
		if e, has := f["match"]; has {
			mp := join(ip, "match")
			ms := b.list(e.val, mp, true)
			if e.val.Kind == yaml.SequenceNode && len(ms) == 0 {
				b.errorf(e.val, mp, "empty match: leave match out for the default route")
			}
			for j, m := range ms {
				jp := index(mp, j)
				s, ok := b.str(m, jp)
				if !ok {
					continue
				}
				matcher, err := ParseMatcher(s)
				if err != nil {
					b.errorf(m, jp, "%v", err)
					continue
				}
				rt.Matchers = append(rt.Matchers, matcher)
			}
		}
		if e, has := f["policy"]; has {
			pp := join(ip, "policy")
			if s, ok := b.str(e.val, pp); ok {
				if b.r.Policies[s] == nil {
					b.errorf(e.val, pp, "unknown policy %q%s", s, didYouMean(s, b.r.PolicyIDs()))
				}
				rt.Policy = s
			}
		}
		if _, has := f["match"]; !has && item.Kind == yaml.MappingNode {
			if defaultAt >= 0 {
				b.errorf(item, ip, "a second default route (the first is routes[%d]): only the last route may leave out match", defaultAt)
			} else {
				defaultAt = i
			}
		}
		b.r.Routes = append(b.r.Routes, rt)
	}
	switch {
	case len(items) == 0:
	case defaultAt < 0:
		b.errorf(n, path, "no default route: end the list with a route without match")
	case defaultAt != len(items)-1:
		b.errorf(items[defaultAt], index(path, defaultAt), "the default route (no match) must be the last route: the routes after it are never used")
	}
}
