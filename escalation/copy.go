package escalation

import "maps"

// Clone returns a deep copy of inc: changing the copy's maps and alerts
// leaves inc as it was.
func (inc *Incident) Clone() *Incident {
	c := *inc
	c.GroupLabels = maps.Clone(inc.GroupLabels)
	c.CommonLabels = maps.Clone(inc.CommonLabels)
	c.CommonAnnotations = maps.Clone(inc.CommonAnnotations)
	if inc.Alerts != nil {
		c.Alerts = make([]Alert, len(inc.Alerts))
		for i, a := range inc.Alerts {
			a.Labels = maps.Clone(a.Labels)
			a.Annotations = maps.Clone(a.Annotations)
			c.Alerts[i] = a
		}
	}
	return &c
}

// Same reports whether inc and o hold the same values field by field, so
// that writing one where the other is stored would change nothing. Times
// compare as values, location and monotonic reading included: an equal
// instant written differently counts as a change.
func (inc *Incident) Same(o *Incident) bool {
	if inc.ID != o.ID || inc.GroupKey != o.GroupKey || inc.State != o.State || inc.Title != o.Title ||
		inc.Severity != o.Severity || inc.Receiver != o.Receiver || inc.ExternalURL != o.ExternalURL ||
		inc.OpenedAt != o.OpenedAt || inc.UpdatedAt != o.UpdatedAt || inc.AckedAt != o.AckedAt ||
		inc.AckedBy != o.AckedBy || inc.AckedVia != o.AckedVia || inc.ResolvedAt != o.ResolvedAt ||
		inc.Synthetic != o.Synthetic || inc.Escalation != o.Escalation {
		return false
	}
	if !sameMap(inc.GroupLabels, o.GroupLabels) || !sameMap(inc.CommonLabels, o.CommonLabels) ||
		!sameMap(inc.CommonAnnotations, o.CommonAnnotations) || len(inc.Alerts) != len(o.Alerts) || (inc.Alerts == nil) != (o.Alerts == nil) {
		return false
	}
	for i := range inc.Alerts {
		a, b := &inc.Alerts[i], &o.Alerts[i]
		if a.Fingerprint != b.Fingerprint || a.Status != b.Status || a.StartsAt != b.StartsAt || a.EndsAt != b.EndsAt ||
			a.GeneratorURL != b.GeneratorURL || !sameMap(a.Labels, b.Labels) || !sameMap(a.Annotations, b.Annotations) {
			return false
		}
	}
	return true
}

// sameMap is maps.Equal that also tells nil from empty (JSON does: null
// against {}).
func sameMap(a, b map[string]string) bool {
	return (a == nil) == (b == nil) && maps.Equal(a, b)
}
