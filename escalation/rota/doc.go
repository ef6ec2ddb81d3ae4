// Package rota reads rota.yaml — who is on call, how they are reached and which
// escalation policy an alert follows — and answers the time questions the
// escalation engine and the rota commands ask: who is on call at a given
// instant, which shifts fall in a window, what changes between two versions.
//
// Parsing is strict: unknown fields, unknown references, malformed contact
// details, bad durations and overlapping overrides are all errors, and Parse
// reports every one of them with file:line:column and a path into the document.
//
// Time logic is pure (every function takes the instant it is asked about) and
// works in the rota's own time zone: a handoff at Monday 09:00 stays at 09:00
// local time across daylight-saving changes. The package embeds the time zone
// database (time/tzdata) so that a minimal machine resolves every IANA zone.
package rota

import _ "time/tzdata" // resolve IANA zones on machines without /usr/share/zoneinfo
