package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/klaxon-oncall/klaxon/escalation"
)

// webhookPayload is Alertmanager's webhook body, version "4". It is our own
// struct: Alertmanager's package would pull in hundreds of packages.
type webhookPayload struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []webhookAlert    `json:"alerts"`
}

type webhookAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// Limits on what one payload may carry, beyond the body size limit.
const (
	maxAlerts   = 10000
	maxGroupKey = 4096
)

// malformed explains why json.Unmarshal refused body: the decoder's error
// for the first value (its messages name the problem better, "unexpected
// EOF" for a truncated body), or data after it. Only refused bodies pay for
// the second parse.
func malformed(body []byte) error {
	var p webhookPayload
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&p); err != nil {
		return fmt.Errorf("malformed JSON: %s", oneLine(err))
	}
	return errors.New("malformed JSON: trailing data after the payload")
}

// ParseWebhook parses and validates an Alertmanager webhook body (version "4").
// Errors are one line, fit for a 400 answer.
func ParseWebhook(body []byte) (escalation.Notification, error) {
	var p webhookPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return escalation.Notification{}, malformed(body)
	}
	switch {
	case p.Version == "":
		return escalation.Notification{}, errors.New(`missing version (want "4")`)
	case p.Version != "4":
		return escalation.Notification{}, fmt.Errorf("unsupported payload version %q (want \"4\")", clip(p.Version))
	case p.GroupKey == "":
		return escalation.Notification{}, errors.New("missing groupKey")
	case len(p.GroupKey) > maxGroupKey:
		return escalation.Notification{}, fmt.Errorf("groupKey longer than %d bytes", maxGroupKey)
	case len(p.Alerts) == 0:
		return escalation.Notification{}, errors.New("missing alerts")
	case len(p.Alerts) > maxAlerts:
		return escalation.Notification{}, fmt.Errorf("more than %d alerts", maxAlerts)
	case p.Status != "" && p.Status != "firing" && p.Status != "resolved":
		return escalation.Notification{}, fmt.Errorf("unknown status %q", clip(p.Status))
	case p.TruncatedAlerts < 0:
		return escalation.Notification{}, errors.New("negative truncatedAlerts")
	}
	n := escalation.Notification{
		GroupKey:          p.GroupKey,
		Status:            p.Status,
		Receiver:          Shown(p.Receiver),
		GroupLabels:       shownMap(p.GroupLabels),
		CommonLabels:      shownMap(p.CommonLabels),
		CommonAnnotations: shownMap(p.CommonAnnotations),
		ExternalURL:       Shown(p.ExternalURL),
		TruncatedAlerts:   p.TruncatedAlerts,
		Alerts:            make([]escalation.Alert, 0, len(p.Alerts)),
	}
	seen := make(map[string]bool, len(p.Alerts))
	for i, a := range p.Alerts {
		if a.Status != "firing" && a.Status != "resolved" {
			return escalation.Notification{}, fmt.Errorf("alerts[%d]: status %q is neither firing nor resolved", i, clip(a.Status))
		}
		a.Labels, a.Annotations, a.GeneratorURL = shownMap(a.Labels), shownMap(a.Annotations), Shown(a.GeneratorURL)
		if len(a.Labels) == 0 {
			return escalation.Notification{}, fmt.Errorf("alerts[%d]: no labels", i)
		}
		if a.StartsAt.IsZero() {
			return escalation.Notification{}, fmt.Errorf("alerts[%d]: missing startsAt", i)
		}
		fp := a.Fingerprint
		if fp == "" {
			fp = fingerprint(a.Labels)
		}
		if seen[fp] {
			return escalation.Notification{}, fmt.Errorf("alerts[%d]: duplicate fingerprint %q", i, clip(fp))
		}
		seen[fp] = true
		n.Alerts = append(n.Alerts, escalation.Alert{
			Fingerprint:  fp,
			Status:       a.Status,
			Labels:       a.Labels,
			Annotations:  a.Annotations,
			StartsAt:     a.StartsAt.UTC(),
			EndsAt:       a.EndsAt.UTC(),
			GeneratorURL: a.GeneratorURL,
		})
	}
	return n, nil
}

// Shown strips Unicode format characters (category Cf: bidirectional
// overrides and isolates such as U+202E, zero-width spaces and joiners, soft
// hyphens) from text an alert brings, so what the web pages, the API, texts,
// calls and PagerDuty show is what it says. They are stripped once, as the
// webhook is parsed: the incident keeps no text that displays one way and
// reads another. The group key is left as Alertmanager sent it: it is an
// identity, never shown as text.
func Shown(s string) string {
	for i, r := range s {
		if unicode.Is(unicode.Cf, r) {
			return s[:i] + strings.Map(func(r rune) rune {
				if unicode.Is(unicode.Cf, r) {
					return -1
				}
				return r
			}, s[i:])
		}
	}
	return s
}

// shownMap applies Shown to m's keys and values (a copy only when needed).
func shownMap(m map[string]string) map[string]string {
	dirty := false
	for k, v := range m {
		if Shown(k) != k || Shown(v) != v {
			dirty = true
			break
		}
	}
	if !dirty {
		return m
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[Shown(k)] = Shown(v)
	}
	return out
}

// fingerprint derives a stable id for an alert that came without one.
func fingerprint(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0xff})
		h.Write([]byte(labels[k]))
		h.Write([]byte{0xff})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// maxQuoted bounds how much of an error about client input is shown: the
// decoder's messages quote the offending value whole (a 500 KB number came
// back in a 500 KB answer and a 500 KB log line).
const maxQuoted = 256

// oneLine is err's message on one line, cut to maxQuoted bytes (on a rune
// boundary): fit to quote client input back in an answer or a log.
func oneLine(err error) string {
	m := strings.ReplaceAll(err.Error(), "\n", " ")
	if len(m) <= maxQuoted {
		return m
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(m[cut]) {
		cut--
	}
	return m[:cut] + "… (" + strconv.Itoa(len(m)) + " bytes)"
}

// clip shortens attacker-supplied text quoted back in an error.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
