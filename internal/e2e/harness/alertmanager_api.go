package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// AMAlert is an alert as a client posts it to Alertmanager's POST /api/v2/alerts
// (the API's postableAlert). Zero times are left out: Alertmanager then sets
// startsAt to now and endsAt to now + resolve_timeout. An alert whose endsAt is
// in the past is resolved.
type AMAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitzero"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Fingerprint returns the fingerprint Alertmanager gives a's label set.
func (a AMAlert) Fingerprint() string { return AMFingerprint(a.Labels) }

// AMGettableAlert is an alert as GET /api/v2/alerts returns it.
type AMGettableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	UpdatedAt    time.Time         `json:"updatedAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
	Receivers    []struct {
		Name string `json:"name"`
	} `json:"receivers"`
	Status struct {
		// State is "active", "suppressed" or "unprocessed".
		State       string   `json:"state"`
		SilencedBy  []string `json:"silencedBy"`
		InhibitedBy []string `json:"inhibitedBy"`
	} `json:"status"`
}

// AMStatus is the part of GET /api/v2/status a test may check.
type AMStatus struct {
	Cluster struct {
		// Status is "disabled" when gossip is off, as the harness runs it.
		Status string `json:"status"`
	} `json:"cluster"`
	Config struct {
		// Original is the loaded alertmanager.yml as Alertmanager re-marshals it.
		Original string `json:"original"`
	} `json:"config"`
	Uptime      time.Time         `json:"uptime"`
	VersionInfo map[string]string `json:"versionInfo"`
}

// amMaxResponse bounds what the harness reads from one API response.
const amMaxResponse = 8 << 20

// amRequestTimeout bounds one API call when the caller's context has no deadline.
const amRequestTimeout = 10 * time.Second

// amClient speaks Alertmanager's API v2 at base.
type amClient struct {
	base *url.URL
	http *http.Client
}

func newAMClient(base *url.URL) *amClient {
	return &amClient{base: base, http: &http.Client{Timeout: amRequestTimeout}}
}

// do sends method path with body (JSON, or nil) and decodes a 200 response's
// JSON into out (unless out is nil). Errors carry the status and the start of
// the response body.
func (c *amClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("alertmanager %s %s: encoding request: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	u := c.base.JoinPath(path)
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("alertmanager %s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("alertmanager %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, amMaxResponse+1))
	if err != nil {
		return fmt.Errorf("alertmanager %s %s: reading response: %w", method, path, err)
	}
	if len(b) > amMaxResponse {
		return fmt.Errorf("alertmanager %s %s: response larger than %d bytes", method, path, amMaxResponse)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("alertmanager %s %s: %s: %s", method, path, resp.Status, amSnippet(b))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("alertmanager %s %s: decoding response: %w: %s", method, path, err, amSnippet(b))
	}
	return nil
}

// amSnippet returns the start of a response body for an error message.
func amSnippet(b []byte) string {
	const n = 512
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = s[:n] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// postAlerts posts alerts; Alertmanager answers 400 naming the invalid ones.
func (c *amClient) postAlerts(ctx context.Context, alerts []AMAlert) error {
	if len(alerts) == 0 {
		return errors.New("alertmanager POST /api/v2/alerts: no alerts")
	}
	for i, a := range alerts {
		if len(a.Labels) == 0 {
			return fmt.Errorf("alertmanager POST /api/v2/alerts: alert %d has no labels", i)
		}
	}
	return c.do(ctx, http.MethodPost, "/api/v2/alerts", alerts, nil)
}

// alerts lists the alerts Alertmanager holds that have not resolved, sorted by
// fingerprint.
func (c *amClient) alerts(ctx context.Context) ([]AMGettableAlert, error) {
	var out []AMGettableAlert
	if err := c.do(ctx, http.MethodGet, "/api/v2/alerts", nil, &out); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b AMGettableAlert) int { return strings.Compare(a.Fingerprint, b.Fingerprint) })
	return out, nil
}

func (c *amClient) status(ctx context.Context) (AMStatus, error) {
	var s AMStatus
	err := c.do(ctx, http.MethodGet, "/api/v2/status", nil, &s)
	return s, err
}

// AMFingerprint returns the fingerprint Alertmanager (Prometheus's
// model.LabelSet.Fingerprint) gives a label set: FNV-1a 64 over the label names
// in order, each name and value followed by the byte 0xff, as 16 hex digits.
// It is the "fingerprint" of an alert in webhooks and API responses.
func AMFingerprint(labels map[string]string) string {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
		sep      = 0xff
	)
	names := make([]string, 0, len(labels))
	for n := range labels {
		names = append(names, n)
	}
	slices.Sort(names)
	var h uint64 = offset64
	add := func(s string) {
		for i := 0; i < len(s); i++ {
			h ^= uint64(s[i])
			h *= prime64
		}
		h ^= sep
		h *= prime64
	}
	for _, n := range names {
		add(n)
		add(labels[n])
	}
	return fmt.Sprintf("%016x", h)
}

// AMGroupKey returns the groupKey of webhooks for alerts of the root route
// grouped by groupLabels (the grouped-by labels and their values), e.g.
// {}:{alertname="DiskFull"}.
func AMGroupKey(groupLabels map[string]string) string {
	names := make([]string, 0, len(groupLabels))
	for n := range groupLabels {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString("{}:{")
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%q", n, groupLabels[n])
	}
	b.WriteString("}")
	return b.String()
}

// AMWebhookStats are Alertmanager's own counters for its webhook integration,
// read from /metrics: what it tried to deliver and what failed. An e2e test can
// check that Klaxon accepted every notification (NotificationsFailed == 0), or
// that a refused one was not retried.
type AMWebhookStats struct {
	// Notifications and NotificationsFailed count notifications (one per
	// group flush, after retries); Failed sums all failure reasons.
	Notifications, NotificationsFailed float64
	// Requests and RequestsFailed count HTTP requests, retries included.
	Requests, RequestsFailed float64
}

func (c *amClient) webhookStats(ctx context.Context) (AMWebhookStats, error) {
	u := c.base.JoinPath("/metrics")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return AMWebhookStats{}, fmt.Errorf("alertmanager GET /metrics: %w", err)
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := c.http.Do(req)
	if err != nil {
		return AMWebhookStats{}, fmt.Errorf("alertmanager GET /metrics: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, amMaxResponse+1))
	switch {
	case err != nil:
		return AMWebhookStats{}, fmt.Errorf("alertmanager GET /metrics: reading response: %w", err)
	case len(b) > amMaxResponse:
		return AMWebhookStats{}, fmt.Errorf("alertmanager GET /metrics: response larger than %d bytes", amMaxResponse)
	case resp.StatusCode != http.StatusOK:
		return AMWebhookStats{}, fmt.Errorf("alertmanager GET /metrics: %s: %s", resp.Status, amSnippet(b))
	}
	return parseAMWebhookStats(string(b))
}

// parseAMWebhookStats sums the webhook integration's samples of the
// notification counters in a Prometheus text exposition.
func parseAMWebhookStats(text string) (AMWebhookStats, error) {
	var s AMWebhookStats
	targets := map[string]*float64{
		"alertmanager_notifications_total":                &s.Notifications,
		"alertmanager_notifications_failed_total":         &s.NotificationsFailed,
		"alertmanager_notification_requests_total":        &s.Requests,
		"alertmanager_notification_requests_failed_total": &s.RequestsFailed,
	}
	found := false
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, hasLabels := strings.Cut(line, "{")
		labels := ""
		if hasLabels {
			var ok bool
			labels, rest, ok = strings.Cut(rest, "}")
			if !ok {
				return AMWebhookStats{}, fmt.Errorf("alertmanager /metrics line %d: unclosed label set", n+1)
			}
		} else {
			name, rest, _ = strings.Cut(line, " ")
		}
		dst, ok := targets[name]
		if !ok || !strings.Contains(","+labels+",", `,integration="webhook",`) {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return AMWebhookStats{}, fmt.Errorf("alertmanager /metrics line %d: no value", n+1)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return AMWebhookStats{}, fmt.Errorf("alertmanager /metrics line %d: %w", n+1, err)
		}
		*dst += v
		found = true
	}
	if !found {
		return AMWebhookStats{}, errors.New("alertmanager /metrics: no webhook notification counters")
	}
	return s, nil
}
