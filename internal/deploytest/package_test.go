package deploytest

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/klaxon-oncall/klaxon/internal/testtools"
)

// buildPackage builds a .deb or .rpm of the release binary with nfpm and the
// repository's deploy/packaging/nfpm.yaml, returning its path.
func buildPackage(t *testing.T, packager string) string {
	t.Helper()
	nfpm := testtools.Tool(t, "nfpm", "github.com/goreleaser/nfpm/v2/cmd/nfpm")
	out := t.TempDir()
	env := []string{"KLAXON_BINARY=" + releaseBinary(t), "VERSION=" + testVersion, "GOARCH=" + runtime.GOARCH}
	run(t, root, env, nfpm, "pkg", "--config", "deploy/packaging/nfpm.yaml", "--packager", packager, "--target", out)
	files, _ := filepath.Glob(filepath.Join(out, "*."+packager))
	if len(files) != 1 {
		t.Fatalf("nfpm made %v, want one .%s", files, packager)
	}
	return files[0]
}

// installDeb installs the .deb with dpkg into an empty root (so the test
// machine is left alone) and returns that root. Maintainer scripts run too,
// outside a chroot with DPKG_ROOT set, as Debian's chrootless installs do.
func installDeb(t *testing.T, deb string) string {
	t.Helper()
	dpkg := needCommand(t, "dpkg")
	if os.Geteuid() != 0 {
		t.Skip("dpkg --root needs root")
	}
	r := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		if err := os.MkdirAll(filepath.Join(r, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"var/lib/dpkg/status", "var/lib/dpkg/available"} {
		if err := os.WriteFile(filepath.Join(r, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(t, root, nil, dpkg, "--root="+r, "--force-script-chrootless", "-i", deb)
	return r
}

// TestDebInstallsBinaryConfigAndUnit builds the .deb, installs it with
// `dpkg -i`, and checks that the files land where docs/install.md says, that the
// configuration is marked as such, that the installed binary carries the
// stamped version, and that `dpkg -r` keeps the operator's configuration.
func TestDebInstallsBinaryConfigAndUnit(t *testing.T) {
	deb := buildPackage(t, "deb")
	info := run(t, root, nil, needCommand(t, "dpkg-deb"), "--info", deb)
	// nfpm turns a semver pre-release into Debian's "~" (sorts before 9.8.7).
	debVersion := strings.Replace(testVersion, "-", "~", 1)
	for _, want := range []string{"Package: klaxon", "Version: " + debVersion, "Architecture: " + runtime.GOARCH} {
		if !strings.Contains(info, want) {
			t.Errorf("dpkg-deb --info lacks %q:\n%s", want, info)
		}
	}
	r := installDeb(t, deb)

	want := []struct {
		path, same string
		mode       os.FileMode
	}{
		{"usr/bin/klaxon", "", 0o755},
		{"usr/lib/systemd/system/klaxon.service", "deploy/packaging/klaxon.service", 0o644},
		{"etc/klaxon/rota.yaml", "rota.yaml", 0o644},
		{"etc/klaxon/klaxon.env", "deploy/packaging/klaxon.env", 0o640},
		{"etc/klaxon/secrets", "", os.ModeDir | 0o700},
	}
	for _, w := range want {
		fi, err := os.Stat(filepath.Join(r, w.path))
		if err != nil {
			t.Errorf("not installed: /%s", w.path)
			continue
		}
		if fi.Mode()&(os.ModeDir|os.ModePerm) != w.mode {
			t.Errorf("/%s has mode %v, want %v", w.path, fi.Mode(), w.mode)
		}
		if w.same != "" {
			got, _ := os.ReadFile(filepath.Join(r, w.path))
			src, _ := os.ReadFile(path(w.same))
			if !bytes.Equal(got, src) {
				t.Errorf("/%s differs from %s", w.path, w.same)
			}
		}
	}
	out := run(t, root, nil, filepath.Join(r, "usr/bin/klaxon"), "--version")
	if strings.TrimSpace(out) != "klaxon "+testVersion {
		t.Errorf("installed klaxon --version = %q, want %q", out, "klaxon "+testVersion)
	}

	query := run(t, root, nil, needCommand(t, "dpkg-query"), "--admindir="+filepath.Join(r, "var/lib/dpkg"), "-W", "-f=${Status}\n${Conffiles}\n", "klaxon")
	if !strings.Contains(query, "install ok installed") {
		t.Errorf("dpkg does not list klaxon as installed:\n%s", query)
	}
	for _, c := range []string{"/etc/klaxon/rota.yaml", "/etc/klaxon/klaxon.env"} {
		if !strings.Contains(query, " "+c+" ") {
			t.Errorf("%s is not a conffile (an upgrade would overwrite the operator's edits):\n%s", c, query)
		}
	}

	// Removing (not purging) keeps the operator's configuration.
	run(t, root, nil, needCommand(t, "dpkg"), "--root="+r, "--force-script-chrootless", "-r", "klaxon")
	if _, err := os.Stat(filepath.Join(r, "usr/bin/klaxon")); err == nil {
		t.Error("dpkg -r left /usr/bin/klaxon behind")
	}
	if _, err := os.Stat(filepath.Join(r, "etc/klaxon/rota.yaml")); err != nil {
		t.Error("dpkg -r removed the operator's /etc/klaxon/rota.yaml")
	}
}

// TestRPMHoldsTheSameFiles builds the .rpm. No rpm tool is installed, so it
// checks the lead and that the header names every file the .deb installs.
func TestRPMHoldsTheSameFiles(t *testing.T) {
	rpm, err := os.ReadFile(buildPackage(t, "rpm"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(rpm, []byte{0xed, 0xab, 0xee, 0xdb}) {
		t.Fatalf("not an RPM (lead % x)", rpm[:4])
	}
	for _, name := range []string{"klaxon.service", "rota.yaml", "klaxon.env", "secrets", "/usr/bin/", "/etc/klaxon/", "/usr/lib/systemd/system/", strings.Split(testVersion, "-")[0]} {
		if !bytes.Contains(rpm, []byte(name)) {
			t.Errorf("RPM header does not name %q", name)
		}
	}
}

// unit returns the systemd unit's settings, key → values in order.
func unit(t *testing.T, text string) map[string][]string {
	t.Helper()
	kv := map[string][]string{}
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "[") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("unit line %q is not KEY=VALUE", l)
		}
		kv[k] = append(kv[k], v)
	}
	return kv
}

// TestSystemdUnitIsHardenedAndVerifies: the unit as installed passes
// `systemd-analyze verify` (with ExecStart pointing at the installed binary,
// since the test does not install into /usr) and scores at most 1.5 on
// `systemd-analyze security` (0 is locked down, 10 is exposed), and it has
// the hardening settings docs/install.md describes.
func TestSystemdUnitIsHardenedAndVerifies(t *testing.T) {
	text, err := os.ReadFile(path("deploy/packaging/klaxon.service"))
	if err != nil {
		t.Fatal(err)
	}
	kv := unit(t, string(text))
	for k, v := range map[string]string{
		"DynamicUser": "yes", "StateDirectory": "klaxon", "ProtectSystem": "strict", "NoNewPrivileges": "yes",
		"Restart": "always", "ExecReload": "/bin/kill -HUP $MAINPID", "ExecStart": "/usr/bin/klaxon serve",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "EnvironmentFile": "-/etc/klaxon/klaxon.env",
		"LoadCredential": "secret:/etc/klaxon/secrets",
	} {
		if !slices.Contains(kv[k], v) {
			t.Errorf("%s=%v, want %s", k, kv[k], v)
		}
	}
	if !slices.Contains(kv["SystemCallFilter"], "@system-service") {
		t.Errorf("SystemCallFilter=%v: want the @system-service allow list", kv["SystemCallFilter"])
	}

	analyze := needCommand(t, "systemd-analyze")
	bin := releaseBinary(t)
	dir := t.TempDir()
	verifiable := strings.Replace(string(text), "ExecStart=/usr/bin/klaxon", "ExecStart="+bin, 1)
	f := filepath.Join(dir, "klaxon.service")
	if err := os.WriteFile(f, []byte(verifiable), 0o644); err != nil {
		t.Fatal(err)
	}
	// verify only warns (exit 0) about a value it cannot parse: any output is a finding.
	if out, err := tryRun(dir, nil, analyze, "verify", f); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	run(t, dir, nil, analyze, "security", "--offline=true", "--threshold=15", f)

	// The checks can fail: a typo and a unit without hardening are refused.
	typo := filepath.Join(t.TempDir(), "klaxon.service")
	os.WriteFile(typo, []byte(strings.Replace(verifiable, "ProtectSystem=strict", "ProtectSystem=strickt", 1)), 0o644)
	if out, err := tryRun(dir, nil, analyze, "verify", typo); err == nil && !strings.Contains(out, "strickt") {
		t.Errorf("systemd-analyze verify said nothing about ProtectSystem=strickt:\n%s", out)
	}
	bare := filepath.Join(t.TempDir(), "klaxon.service")
	os.WriteFile(bare, []byte("[Service]\nExecStart="+bin+" serve\n"), 0o644)
	if out, err := tryRun(dir, nil, analyze, "security", "--offline=true", "--threshold=15", bare); err == nil {
		t.Errorf("systemd-analyze security passed an unhardened unit:\n%s", out)
	}
}

// TestEnvFileNamesRealSettings: every variable klaxon.env sets or mentions is
// one klaxon serve reads (cmd/klaxon, the channels' config.go), and every secret is read from a file that systemd
// hands over from /etc/klaxon/secrets.
func TestEnvFileNamesRealSettings(t *testing.T) {
	env, err := os.ReadFile(path("deploy/packaging/klaxon.env"))
	if err != nil {
		t.Fatal(err)
	}
	var src bytes.Buffer
	files, _ := filepath.Glob(path("cmd/klaxon/*.go"))
	more, _ := filepath.Glob(path("notifiers/*/config.go"))
	for _, f := range append(files, more...) {
		if !strings.HasSuffix(f, "_test.go") {
			b, _ := os.ReadFile(f)
			src.Write(b)
		}
	}
	re := regexp.MustCompile(`(?m)^#?(KLAXON_[A-Z0-9_]+)=(.*)$`)
	matches := re.FindAllStringSubmatch(string(env), -1)
	if len(matches) < 10 {
		t.Fatalf("klaxon.env names only %d settings", len(matches))
	}
	for _, m := range matches {
		name, value := m[1], m[2]
		base := strings.TrimSuffix(name, "_FILE")
		if !bytes.Contains(src.Bytes(), []byte(`"`+base+`"`)) {
			t.Errorf("klaxon.env: %s is not a setting klaxon serve reads", name)
		}
		if strings.HasSuffix(name, "_FILE") && !strings.HasPrefix(value, "/run/credentials/klaxon.service/secret_") {
			t.Errorf("klaxon.env: %s=%s is not a credential systemd loads from /etc/klaxon/secrets", name, value)
		}
		if strings.Contains(name, "TOKEN") && !strings.HasSuffix(name, "_FILE") {
			t.Errorf("klaxon.env: %s puts a secret in the file itself", name)
		}
	}
}
