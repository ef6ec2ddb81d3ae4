package selftest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// HeartbeatStatus is the outbound heartbeat's last result.
type HeartbeatStatus struct {
	Configured bool      `json:"configured"`
	LastTry    time.Time `json:"last_try,omitzero"`
	LastOK     time.Time `json:"last_ok,omitzero"`
	// Error is why the last try failed or was withheld (the URL's host only).
	Error string `json:"error,omitempty"`
}

// Heartbeat returns the outbound heartbeat's last result.
func (m *Monitor) Heartbeat() HeartbeatStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.beat
	s.Configured = m.cfg.HeartbeatURL != ""
	return s
}

func (m *Monitor) noteHeartbeat(err error) {
	now := m.cfg.Clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.beat.LastTry, m.beat.Error = now, ""
	if err != nil {
		m.beat.Error = err.Error()
	} else {
		m.beat.LastOK = now
	}
}

// heartbeat fetches the heartbeat URL once. While no channel can page anyone
// the heartbeat is withheld, so the outside monitor raises the alarm Klaxon
// itself cannot deliver. Failures are logged, never fatal. The URL is a
// secret (anyone holding it can fake Klaxon's liveness): only its host is logged.
func (m *Monitor) heartbeat(ctx context.Context) error {
	u, _ := url.Parse(m.cfg.HeartbeatURL) // validated by New
	if err := m.noneUp(); err != nil {
		m.heartbeats.WithLabelValues("withheld").Inc()
		m.log.Error("heartbeat withheld: no channel can page anyone, so the outside monitor should raise the alarm", "host", u.Host)
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.cfg.HeartbeatURL, nil)
	if err != nil {
		return m.heartbeatFailed(u, errors.New("cannot build the request"))
	}
	req.Header.Set("User-Agent", "klaxon-heartbeat")
	resp, err := m.cfg.HTTPClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL
		}
		return m.heartbeatFailed(u, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return m.heartbeatFailed(u, fmt.Errorf("answered %s", resp.Status))
	}
	m.heartbeats.WithLabelValues("ok").Inc()
	m.log.Debug("heartbeat sent", "host", u.Host)
	return nil
}

func (m *Monitor) heartbeatFailed(u *url.URL, err error) error {
	m.heartbeats.WithLabelValues("failed").Inc()
	err = fmt.Errorf("heartbeat to %s failed: %s", u.Host, redact(err.Error(), m.cfg.HeartbeatURL, u))
	m.log.Warn("heartbeat failed; the outside monitor may raise an alarm", "error", err)
	return err
}

// redact removes the URL's path, query and user info from s.
func redact(s, raw string, u *url.URL) string {
	secrets := []string{raw, u.RawQuery, u.EscapedPath(), u.Path}
	if u.User != nil {
		secrets = append(secrets, u.User.String())
	}
	for _, secret := range secrets {
		if len(secret) > 1 {
			s = strings.ReplaceAll(s, secret, "…")
		}
	}
	return s
}
