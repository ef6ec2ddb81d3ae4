// Package encode writes the records a store keeps (incidents, timeline
// events, page records, Alertmanager groups) as JSON, byte for byte as
// encoding/json.Marshal writes them, without reflection.
//
// The store's single writer encodes every record it writes, and
// encoding/json spent a fifth of that writer's time working out, by
// reflection, what these fixed types look like. What is stored does not
// change: the same bytes, read back by encoding/json as before, so a store
// written by this Klaxon opens in an older one. Anything out of the ordinary
// (a string that needs escaping, a time encoding/json refuses) is handed to
// encoding/json itself, so the rare cases are its own too; the tests fill
// every field of every type at random, by reflection, and compare with
// encoding/json, so a field added to a type and not here fails them.
package encode

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Incident appends inc as JSON to b.
func Incident(b []byte, inc *escalation.Incident) ([]byte, error) {
	e := enc{b: slices.Grow(b, 1024+512*len(inc.Alerts))}
	e.incident(inc)
	return e.result(b, inc)
}

// Event appends ev as JSON to b.
func Event(b []byte, ev *escalation.Event) ([]byte, error) {
	e := enc{b: slices.Grow(b, 256)}
	e.event(ev)
	return e.result(b, ev)
}

// Page appends p as JSON to b.
func Page(b []byte, p *escalation.PageRecord) ([]byte, error) {
	e := enc{b: slices.Grow(b, 512)}
	e.page(p)
	return e.result(b, p)
}

// Group appends g as JSON to b.
func Group(b []byte, g *escalation.Group) ([]byte, error) {
	e := enc{b: slices.Grow(b, 128)}
	e.group(g)
	return e.result(b, g)
}

// enc is one encoding under way. slow is set when something must be left
// to encoding/json (which then encodes the whole value: its output, or its
// error, is the answer).
type enc struct {
	b    []byte
	slow bool
}

func (e *enc) result(b []byte, v any) ([]byte, error) {
	if !e.slow {
		return e.b, nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return b, err
	}
	return append(b, data...), nil
}

func (e *enc) incident(inc *escalation.Incident) {
	e.uintF(`{"id":`, inc.ID)
	e.strF(`,"groupKey":`, inc.GroupKey)
	e.strF(`,"state":`, string(inc.State))
	e.strF(`,"title":`, inc.Title)
	e.optStr(`,"severity":`, inc.Severity)
	e.optStr(`,"receiver":`, inc.Receiver)
	e.optStr(`,"externalURL":`, inc.ExternalURL)
	e.optMap(`,"groupLabels":`, inc.GroupLabels)
	e.optMap(`,"commonLabels":`, inc.CommonLabels)
	e.optMap(`,"commonAnnotations":`, inc.CommonAnnotations)
	e.key(`,"alerts":`)
	if inc.Alerts == nil {
		e.key(`null`)
	} else {
		e.b = append(e.b, '[')
		for i := range inc.Alerts {
			if i > 0 {
				e.b = append(e.b, ',')
			}
			e.alert(&inc.Alerts[i])
		}
		e.b = append(e.b, ']')
	}
	e.timeF(`,"openedAt":`, inc.OpenedAt)
	e.timeF(`,"updatedAt":`, inc.UpdatedAt)
	e.optTime(`,"acknowledgedAt":`, inc.AckedAt)
	e.optStr(`,"acknowledgedBy":`, inc.AckedBy)
	e.optStr(`,"acknowledgedVia":`, inc.AckedVia)
	e.optTime(`,"resolvedAt":`, inc.ResolvedAt)
	e.optBool(`,"synthetic":`, inc.Synthetic)
	e.key(`,"escalation":`)
	e.escalation(&inc.Escalation)
	e.b = append(e.b, '}')
}

func (e *enc) alert(a *escalation.Alert) {
	e.strF(`{"fingerprint":`, a.Fingerprint)
	e.strF(`,"status":`, a.Status)
	e.key(`,"labels":`)
	e.strMap(a.Labels)
	e.optMap(`,"annotations":`, a.Annotations)
	e.timeF(`,"startsAt":`, a.StartsAt)
	e.optTime(`,"endsAt":`, a.EndsAt)
	e.optStr(`,"generatorURL":`, a.GeneratorURL)
	e.b = append(e.b, '}')
}

func (e *enc) escalation(x *escalation.Escalation) {
	e.b = append(e.b, '{')
	if x.Policy != "" {
		e.strF(`"policy":`, x.Policy)
		e.b = append(e.b, ',')
	}
	if x.Started {
		e.key(`"started":true,`)
	}
	e.intF(`"round":`, int64(x.Round))
	e.intF(`,"step":`, int64(x.Step))
	e.uintF(`,"generation":`, x.Generation)
	e.optTime(`,"stepAt":`, x.StepAt)
	e.optTime(`,"nextAt":`, x.NextAt)
	e.optBool(`,"exhausted":`, x.Exhausted)
	e.optBool(`,"fallback":`, x.Fallback)
	if x.Since != 0 {
		e.uintF(`,"since":`, x.Since)
	}
	e.optBool(`,"waiting":`, x.Waiting)
	if x.Repages != 0 {
		e.intF(`,"repages":`, int64(x.Repages))
	}
	e.optTime(`,"confirmBy":`, x.ConfirmBy)
	e.b = append(e.b, '}')
}

func (e *enc) event(ev *escalation.Event) {
	e.timeF(`{"at":`, ev.At)
	e.strF(`,"kind":`, string(ev.Kind))
	e.strF(`,"text":`, ev.Text)
	e.optStr(`,"actor":`, ev.Actor)
	e.optStr(`,"channel":`, ev.Channel)
	e.optStr(`,"pageId":`, ev.PageID)
	e.b = append(e.b, '}')
}

func (e *enc) page(p *escalation.PageRecord) {
	e.strF(`{"id":`, p.ID)
	e.uintF(`,"incident":`, p.Incident)
	e.intF(`,"seq":`, int64(p.Seq))
	e.strF(`,"kind":`, string(p.Kind))
	e.strF(`,"channel":`, string(p.Channel))
	e.key(`,"recipient":`)
	e.recipient(&p.Recipient)
	e.uintF(`,"generation":`, p.Generation)
	e.intF(`,"step":`, int64(p.Step))
	e.intF(`,"round":`, int64(p.Round))
	e.optStr(`,"routingKey":`, p.RoutingKey)
	e.optStr(`,"text":`, p.Text)
	e.optStr(`,"via":`, string(p.Via))
	e.strF(`,"status":`, string(p.Status))
	e.intF(`,"attempts":`, int64(p.Attempts))
	e.timeF(`,"createdAt":`, p.CreatedAt)
	e.optTime(`,"nextTry":`, p.NextTry)
	e.optStr(`,"lastError":`, p.LastError)
	e.optStr(`,"providerId":`, p.ProviderID)
	e.optTime(`,"heldAt":`, p.HeldAt)
	e.optStr(`,"foldedInto":`, p.FoldedInto)
	e.optTime(`,"sentAt":`, p.SentAt)
	e.optTime(`,"confirmBy":`, p.ConfirmBy)
	e.b = append(e.b, '}')
}

// recipient has no JSON tags: encoding/json names its fields as Go does.
func (e *enc) recipient(r *notifiers.Recipient) {
	e.strF(`{"PersonID":`, r.PersonID)
	e.strF(`,"Name":`, r.Name)
	e.strF(`,"Phone":`, r.Phone)
	e.strF(`,"MatrixID":`, r.MatrixID)
	e.strF(`,"PagerDutyUser":`, r.PagerDutyUser)
	e.b = append(e.b, '}')
}

func (e *enc) group(g *escalation.Group) {
	sep := `{`
	if g.Open != 0 {
		e.key(sep + `"open":`)
		e.uint(g.Open)
		sep = `,`
	}
	if len(g.LastEnd) > 0 {
		e.key(sep + `"lastEnd":`)
		e.times(g.LastEnd)
		sep = `,`
	}
	if len(g.ByHand) > 0 {
		e.key(sep + `"byHand":`)
		e.times(g.ByHand)
		sep = `,`
	}
	if sep == `{` {
		e.b = append(e.b, '{')
	}
	e.b = append(e.b, '}')
}

// key appends literal JSON (a key with its punctuation).
func (e *enc) key(s string) { e.b = append(e.b, s...) }

func (e *enc) uint(v uint64) { e.b = strconv.AppendUint(e.b, v, 10) }

func (e *enc) int(v int64) { e.b = strconv.AppendInt(e.b, v, 10) }

// str appends s quoted and escaped as encoding/json escapes strings:
// quotes, backslashes and control characters; <, > and & (HTML-safe);
// invalid UTF-8 as U+FFFD; U+2028 and U+2029 (JSONP-safe).
func (e *enc) str(s string) {
	b := append(e.b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	e.b = append(b, '"')
}

const hex = "0123456789abcdef"

// strF, uintF, intF and timeF append a key (with its punctuation) and a value.
func (e *enc) strF(key, s string) {
	e.key(key)
	e.str(s)
}

func (e *enc) uintF(key string, v uint64) {
	e.key(key)
	e.uint(v)
}

func (e *enc) intF(key string, v int64) {
	e.key(key)
	e.int(v)
}

func (e *enc) timeF(key string, t time.Time) {
	e.key(key)
	e.time(t)
}

func (e *enc) optStr(key, s string) {
	if s != "" {
		e.strF(key, s)
	}
}

func (e *enc) optBool(key string, v bool) {
	if v {
		e.key(key)
		e.key("true")
	}
}

// time appends t as time.Time.MarshalJSON does (RFC 3339 with nanoseconds);
// a time it refuses (a year past 9999) is left to encoding/json.
func (e *enc) time(t time.Time) {
	e.b = append(e.b, '"')
	b, err := t.AppendText(e.b)
	if err != nil {
		e.slow = true
		return
	}
	e.b = append(b, '"')
}

func (e *enc) optTime(key string, t time.Time) {
	if !t.IsZero() {
		e.timeF(key, t)
	}
}

// strMap appends m with its keys sorted, as encoding/json does (null when nil).
func (e *enc) strMap(m map[string]string) {
	switch {
	case m == nil:
		e.key("null")
		return
	case len(m) == 0:
		e.key("{}")
		return
	}
	var buf [16]string
	for i, k := range sortedKeys(buf[:], m) {
		e.mapKey(i, k)
		e.str(m[k])
	}
	e.b = append(e.b, '}')
}

func (e *enc) optMap(key string, m map[string]string) {
	if len(m) > 0 {
		e.key(key)
		e.strMap(m)
	}
}

// times appends m with its keys sorted (m is not empty).
func (e *enc) times(m map[string]time.Time) {
	var buf [16]string
	for i, k := range sortedKeys(buf[:], m) {
		e.mapKey(i, k)
		e.time(m[k])
	}
	e.b = append(e.b, '}')
}

// mapKey opens an object (i == 0) or separates its members, and appends key k.
func (e *enc) mapKey(i int, k string) {
	if i == 0 {
		e.b = append(e.b, '{')
	} else {
		e.b = append(e.b, ',')
	}
	e.str(k)
	e.b = append(e.b, ':')
}

func sortedKeys[V any](buf []string, m map[string]V) []string {
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
