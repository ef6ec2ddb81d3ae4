// Package testtools builds the real third-party programs the end-to-end tests run
// (Prometheus Alertmanager, the Dendrite Matrix homeserver, etcd) from their own tools
// modules under tools/, so that Klaxon's go.mod stays lean. Binaries come out of
// the Go build cache: the first build is slow, later ones are instant.
package testtools

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// Root is the repository's top directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	mu    sync.Mutex
	built = map[string]string{}
)

// Tool returns the path of the binary for tool pkg declared in the tools module
// tools/<module>/go.mod, building it with `go tool -n` (which prints the cached
// binary's path after building it). It fails the test if the build fails.
func Tool(tb testing.TB, module, pkg string) string {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	key := module + " " + pkg
	if p, ok := built[key]; ok {
		return p
	}
	dir := filepath.Join(Root(), "tools", module)
	cmd := exec.Command("go", "tool", "-n", pkg)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("building %s in %s: %v\n%s", pkg, dir, err, stderr.String())
	}
	p := strings.TrimSpace(stdout.String())
	if p == "" {
		tb.Fatalf("go tool -n %s printed no path", pkg)
	}
	built[key] = p
	return p
}

// Klaxon builds cmd/klaxon into dir and returns the binary's path.
func Klaxon(tb testing.TB, dir string) string {
	tb.Helper()
	out := filepath.Join(dir, "klaxon")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/klaxon")
	cmd.Dir = Root()
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("building klaxon: %v\n%s", err, b)
	}
	return out
}
