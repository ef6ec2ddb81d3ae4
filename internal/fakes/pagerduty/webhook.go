package fakepagerduty

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// deliveryJob is one webhook waiting to be sent; done, when set, receives the
// result.
type deliveryJob struct {
	eventID   string
	eventType string
	body      []byte
	url       string
	secrets   []string
	done      chan Delivery
}

// ErrNoIncident is returned by Acknowledge, Resolve, Unacknowledge and
// Reassign when no open incident has the dedup key.
var ErrNoIncident = errors.New("fakepagerduty: no open incident with that dedup key")

// Acknowledge acknowledges the open incident with dedupKey as user byUser (a
// user id, e.g. DefaultUserID), as a person would in the PagerDuty app, and
// sends the signed incident.acknowledged webhook. It returns once the webhook
// was delivered (or delivery failed), with the delivery; without a configured
// webhook the Delivery is zero.
func (s *Server) Acknowledge(dedupKey, byUser string) (Delivery, error) {
	return s.change(dedupKey, byUser, StatusAcknowledged, "incident.acknowledged")
}

// Resolve resolves the open incident with dedupKey as user byUser and sends
// the signed incident.resolved webhook.
func (s *Server) Resolve(dedupKey, byUser string) (Delivery, error) {
	return s.change(dedupKey, byUser, StatusResolved, "incident.resolved")
}

// Unacknowledge returns the acknowledged incident with dedupKey to triggered
// (PagerDuty does this when an acknowledgement times out; agent is then the
// service) and sends the signed incident.unacknowledged webhook.
func (s *Server) Unacknowledge(dedupKey string) (Delivery, error) {
	return s.change(dedupKey, "", StatusTriggered, "incident.unacknowledged")
}

// Reassign reassigns the open incident with dedupKey to user toUser, done by
// byUser, and sends the signed incident.reassigned webhook.
func (s *Server) Reassign(dedupKey, byUser, toUser string) (Delivery, error) {
	s.mu.Lock()
	inc := s.latestLocked(dedupKey)
	if inc == nil || !inc.Open() {
		s.mu.Unlock()
		return Delivery{}, ErrNoIncident
	}
	inc.AssignedTo = toUser
	done := s.enqueueWebhookLocked(inc, "incident.reassigned", byUser, s.now(), make(chan Delivery, 1))
	s.mu.Unlock()
	return s.wait(done), nil
}

func (s *Server) change(dedupKey, byUser, status, eventType string) (Delivery, error) {
	s.mu.Lock()
	inc := s.latestLocked(dedupKey)
	if inc == nil || !inc.Open() {
		s.mu.Unlock()
		return Delivery{}, ErrNoIncident
	}
	agent := byUser
	if agent == "" {
		agent = inc.ServiceID
	}
	now := s.now()
	s.setStatusLocked(inc, status, agent, now)
	done := s.enqueueWebhookLocked(inc, eventType, agent, now, make(chan Delivery, 1))
	s.mu.Unlock()
	return s.wait(done), nil
}

func (s *Server) wait(done chan Delivery) Delivery {
	if done == nil {
		return Delivery{}
	}
	select {
	case d := <-done:
		return d
	case <-s.done:
		return Delivery{Err: errors.New("fakepagerduty: server closed")}
	}
}

// Redeliver sends a webhook already delivered once again, byte for byte and
// with the same signature and X-Webhook-Id, as PagerDuty's retries do.
func (s *Server) Redeliver(eventID string) (Delivery, error) {
	s.mu.Lock()
	var job *deliveryJob
	for _, d := range s.deliveries {
		if d.EventID == eventID {
			job = &deliveryJob{eventID: d.EventID, eventType: d.EventType, body: d.Body,
				url: s.webhookURL, secrets: s.webhookSecrets, done: make(chan Delivery, 1)}
			break
		}
	}
	s.mu.Unlock()
	if job == nil {
		return Delivery{}, fmt.Errorf("fakepagerduty: no delivery with event id %q", eventID)
	}
	s.mu.Lock()
	s.pushLocked(*job)
	s.mu.Unlock()
	return s.wait(job.done), nil
}

// enqueueWebhookLocked queues the v3 webhook for an incident change, if a
// webhook is configured, and returns done (nil when nothing was queued).
func (s *Server) enqueueWebhookLocked(inc *Incident, eventType, agent string, at time.Time, done chan Delivery) chan Delivery {
	if s.webhookURL == "" {
		return nil
	}
	data := s.incidentJSONLocked(inc, false)
	if s.omitIncidentKey {
		delete(data, "incident_key")
	}
	var agentRef any
	if agent != "" {
		agentRef = s.agentRefLocked(agent)
	}
	id := s.nextIDLocked("01WEBHOOKEVT")
	body, err := json.Marshal(map[string]any{"event": map[string]any{
		"id":            id,
		"event_type":    eventType,
		"resource_type": "incident",
		"occurred_at":   at.UTC().Format("2006-01-02T15:04:05.000Z"),
		"agent":         agentRef,
		"client":        map[string]any{"name": "PagerDuty"},
		"data":          data,
	}})
	if err != nil {
		panic(err)
	}
	s.pushLocked(deliveryJob{eventID: id, eventType: eventType, body: body, url: s.webhookURL, secrets: s.webhookSecrets, done: done})
	return done
}

// pushLocked queues a delivery without blocking (the queue is unbounded, so
// an incident change made while holding the lock never waits on a receiver).
func (s *Server) pushLocked(job deliveryJob) {
	s.pending = append(s.pending, job)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// deliverLoop sends queued webhooks one at a time, so that they arrive in the
// order they were generated, as PagerDuty promises per incident.
func (s *Server) deliverLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.done:
			return
		case <-s.wake:
		}
		for {
			s.mu.Lock()
			if len(s.pending) == 0 {
				s.mu.Unlock()
				break
			}
			job := s.pending[0]
			s.pending = s.pending[1:]
			s.mu.Unlock()
			d := s.post(job)
			s.mu.Lock()
			s.deliveries = append(s.deliveries, d)
			s.mu.Unlock()
			if job.done != nil {
				job.done <- d // buffered, one result per job
			}
		}
	}
}

func (s *Server) post(job deliveryJob) Delivery {
	d := Delivery{EventID: job.eventID, EventType: job.eventType, Body: job.body, Signature: Sign(job.body, job.secrets...)}
	req, err := http.NewRequest(http.MethodPost, job.url, bytes.NewReader(job.body))
	if err != nil {
		d.Err = err
		return d
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "PagerDuty-Webhook/V3.0")
	req.Header.Set("X-Webhook-Id", job.eventID)
	req.Header.Set("X-Webhook-Subscription", "PSUB001")
	if d.Signature != "" {
		req.Header.Set("X-PagerDuty-Signature", d.Signature)
	}
	resp, err := s.webhookClient.Do(req)
	if err != nil {
		d.Err = err
		return d
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	d.Status = resp.StatusCode
	return d
}

// Sign returns the X-PagerDuty-Signature header value for body: one
// "v1=<hex HMAC-SHA256>" per secret, comma-separated. It returns "" when there
// are no secrets.
func Sign(body []byte, secrets ...string) string {
	var sigs []string
	for _, secret := range secrets {
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		sigs = append(sigs, "v1="+hex.EncodeToString(mac.Sum(nil)))
	}
	return strings.Join(sigs, ",")
}
