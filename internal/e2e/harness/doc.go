// Package harness starts the real third-party programs Klaxon's end-to-end tests
// talk to, each on loopback in a test's temporary directory, and stops them when
// the test ends.
//
// StartAlertmanager runs a real Prometheus Alertmanager (built from the tools
// module tools/alertmanager) whose only receiver is a webhook with bearer-token
// authentication, as an operator would configure it in front of Klaxon. The
// returned Alertmanager posts, resolves and lists alerts through its API v2.
//
// StartEtcd runs a real etcd cluster (v3.7, built from tools/etcd), 3 members
// by default, each a subprocess with its own data directory; members can be
// killed and restarted to test failover.
//
// The harness never sleeps to wait: it polls a condition until a deadline, and
// it prints the program's log when the test fails.
package harness
