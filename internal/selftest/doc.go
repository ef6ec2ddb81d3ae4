// Package selftest keeps Klaxon from being silent about its own failures.
//
// A Monitor runs every configured channel's self-test on a jittered schedule,
// keeps each channel's verdict (up, degraded, down; why; since when; last
// success) durable in the state store, and turns bad news into alarms: a
// synthetic incident raised through the real escalation engine, which pages
// the on-call person on the channels that still work (the engine skips every
// channel the Monitor's Health reports down, so an alarm is never routed
// through the channel it is about).
//
// Besides channel self-tests the Monitor watches:
//   - the Alertmanager Watchdog alert, a dead man's switch: Intercept strips it
//     from webhooks and resets a durable deadline; silence past the deadline
//     raises the "watchdog" alarm;
//   - failed sends during real pages (Evidence);
//   - the rota: an invalid reload raises the "rota" alarm; nobody reachable on
//     call in the coming week raises the "coverage" alarm;
//   - that at least one channel can page anyone (Ready, klaxon_channels_up);
//
// and optionally pings an outside heartbeat URL every minute so that Klaxon's
// own death is noticed elsewhere.
//
// Alarm keys are "channel:<name>", "watchdog", "rota" and "coverage".
package selftest
