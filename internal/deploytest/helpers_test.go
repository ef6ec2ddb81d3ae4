package deploytest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/klaxon-oncall/klaxon/internal/testtools"
)

// testVersion is stamped into the binary the package and image tests build.
const testVersion = "9.8.7-deploytest"

var root = testtools.Root()

// path is a file of the repository.
func path(rel string) string { return filepath.Join(root, filepath.FromSlash(rel)) }

// run runs a command in dir and returns its combined output; it fails the test
// (with the output) if the command fails.
func run(tb testing.TB, dir string, env []string, name string, args ...string) string {
	tb.Helper()
	out, err := tryRun(dir, env, name, args...)
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return out
}

// tryRun is run that returns the error instead of failing.
func tryRun(dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

var (
	staticOnce sync.Once
	staticBin  string
	staticErr  string
	tmpRoot    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if tmpRoot != "" {
		os.RemoveAll(tmpRoot)
	}
	os.Exit(code)
}

// releaseBinary builds cmd/klaxon once as a release does (.goreleaser.yaml):
// static (CGO_ENABLED=0), -trimpath, the version stamped with -ldflags.
func releaseBinary(tb testing.TB) string {
	tb.Helper()
	staticOnce.Do(func() {
		dir, err := os.MkdirTemp("", "klaxon-release-")
		if err != nil {
			staticErr = err.Error()
			return
		}
		tmpRoot = dir
		out := filepath.Join(dir, "klaxon")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+testVersion, "-o", out, "./cmd/klaxon")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			staticErr = "building klaxon: " + err.Error() + "\n" + string(b)
			return
		}
		staticBin = out
	})
	if staticErr != "" {
		tb.Fatal(staticErr)
	}
	return staticBin
}

// needCommand skips the test when a system program is missing; .ci/run
// installs them on CI, so there a missing one fails instead.
func needCommand(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("%s is not installed (.ci/run should have installed it)", name)
		}
		tb.Skipf("%s is not installed here (.ci/run installs it on CI)", name)
	}
	return p
}
