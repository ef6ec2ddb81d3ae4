// Package deploytest checks what Klaxon ships besides its source, with the
// ecosystem's own tools built from the tools modules under tools/: the .deb and
// .rpm packages and their systemd unit (nfpm, dpkg, systemd-analyze), the
// release configuration (goreleaser), the OCI image (tools/ociimage), the Helm
// chart (helm lint and template, decoded with the Kubernetes API types), the
// alerting rules (promtool), the Grafana dashboard (against a running klaxon
// serve's /metrics) and the example Alertmanager configuration (amtool).
//
// The package holds only tests; `go test ./internal/deploytest` runs them.
package deploytest
