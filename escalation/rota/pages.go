package rota

import (
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Paged is one person a step pages, with the channels it reaches them on.
type Paged struct {
	Person   string
	Channels []notifiers.Channel
}

// StepPages returns who a step paging targets on channels would page at
// instant at, in the order the engine plans them: each person once, on each of
// the channels they have a contact detail for (PagerDuty pages through the
// step's service and needs none). People reached on no channel are left out.
func (r *Rota) StepPages(targets []Target, channels []notifiers.Channel, at time.Time) []Paged {
	var out []Paged
	seen := map[string]bool{}
	for _, t := range targets {
		for _, p := range r.Resolve(t, at) {
			if seen[p.ID] {
				continue
			}
			seen[p.ID] = true
			var chans []notifiers.Channel
			for _, c := range channels {
				if c == notifiers.PagerDuty || p.Contact(c) != "" {
					chans = append(chans, c)
				}
			}
			if len(chans) > 0 {
				out = append(out, Paged{Person: p.ID, Channels: chans})
			}
		}
	}
	return out
}
