// Package deploytest checks what Klaxon ships besides its source, with the
// ecosystem's own tools built from the tools modules under tools/: the .deb and
// .rpm packages and their systemd unit (nfpm, dpkg, systemd-analyze), the
// release configuration (.goreleaser.yaml, against the nfpm one), the OCI image (tools/ociimage), the Helm
// chart (helm lint and template by tools/helm/helmcheck, decoded with the
// Kubernetes API types), the alerting rules (promtool check and test by
// tools/prometheus/promrules), the Grafana dashboard (against a running klaxon
// serve's /metrics) and the example Alertmanager configuration (amtool).
//
// The package holds only tests; `go test ./internal/deploytest` runs them.
package deploytest
