package deploytest

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
	"github.com/klaxon-oncall/klaxon/internal/testtools"
)

// buildImage runs tools/ociimage on the release binary and returns the OCI
// layout directory.
func buildImage(t *testing.T, binary string) (string, string) {
	t.Helper()
	tool := testtools.Tool(t, "ociimage", "klaxon-tools/ociimage")
	out := filepath.Join(t.TempDir(), "image")
	platform := "linux/" + runtime.GOARCH
	msg, err := tryRun(root, nil, tool, "-out", out, "-binary", platform+"="+binary, "-rota", "rota.yaml",
		"-version", testVersion, "-revision", "0123456789abcdef")
	if err != nil {
		return "", msg
	}
	return out, ""
}

// blob reads a content-addressed blob of an OCI layout.
func blob(t *testing.T, layout, digest string) []byte {
	t.Helper()
	algo, hex, ok := strings.Cut(digest, ":")
	if !ok || algo != "sha256" {
		t.Fatalf("digest %q", digest)
	}
	b, err := os.ReadFile(filepath.Join(layout, "blobs", algo, hex))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Platform  *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
	} `json:"platform"`
}

// TestImageIsStaticNonRootAndServes builds the OCI image without a daemon,
// reads it as a registry would (index, manifest, config, layer), checks its
// configuration, then runs the binary extracted from the layer: --version,
// and serve answering /healthz.
func TestImageIsStaticNonRootAndServes(t *testing.T) {
	layout, msg := buildImage(t, releaseBinary(t))
	if layout == "" {
		t.Fatalf("ociimage: %s", msg)
	}
	var layoutFile struct {
		Version string `json:"imageLayoutVersion"`
	}
	mustJSON(t, readFile(t, filepath.Join(layout, "oci-layout")), &layoutFile)
	if layoutFile.Version != "1.0.0" {
		t.Fatalf("oci-layout version %q", layoutFile.Version)
	}
	// index.json is the image index: one manifest per platform.
	var platforms struct{ Manifests []descriptor }
	mustJSON(t, readFile(t, filepath.Join(layout, "index.json")), &platforms)
	var mdesc *descriptor
	for i, m := range platforms.Manifests {
		if m.Platform != nil && m.Platform.OS == "linux" && m.Platform.Architecture == runtime.GOARCH {
			mdesc = &platforms.Manifests[i]
		}
	}
	if mdesc == nil {
		t.Fatalf("no linux/%s manifest in %+v", runtime.GOARCH, platforms.Manifests)
	}
	var manifest struct {
		MediaType string
		Config    descriptor
		Layers    []descriptor
	}
	mustJSON(t, blob(t, layout, mdesc.Digest), &manifest)
	if manifest.MediaType != "application/vnd.oci.image.manifest.v1+json" || len(manifest.Layers) != 1 {
		t.Fatalf("manifest %+v: want an OCI manifest with one layer on scratch", manifest)
	}
	var config struct {
		OS, Architecture string
		Config           struct {
			User         string
			Entrypoint   []string
			Cmd          []string
			Env          []string
			ExposedPorts map[string]struct{}
			Volumes      map[string]struct{}
			Labels       map[string]string
		}
	}
	mustJSON(t, blob(t, layout, manifest.Config.Digest), &config)
	c := config.Config
	if c.User == "" || strings.HasPrefix(c.User, "0") || strings.HasPrefix(c.User, "root") {
		t.Errorf("user %q: want a non-root user", c.User)
	}
	if strings.Join(c.Entrypoint, " ") != "/usr/bin/klaxon" || strings.Join(c.Cmd, " ") != "serve" {
		t.Errorf("entrypoint %v cmd %v, want [/usr/bin/klaxon] [serve]", c.Entrypoint, c.Cmd)
	}
	if _, ok := c.ExposedPorts["9797/tcp"]; !ok || len(c.ExposedPorts) != 1 {
		t.Errorf("exposed ports %v, want 9797/tcp", c.ExposedPorts)
	}
	if _, ok := c.Volumes["/data"]; !ok {
		t.Errorf("volumes %v, want /data", c.Volumes)
	}
	for k, v := range map[string]string{"org.opencontainers.image.version": testVersion,
		"org.opencontainers.image.revision": "0123456789abcdef", "org.opencontainers.image.title": "klaxon"} {
		if c.Labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, c.Labels[k], v)
		}
	}
	env := map[string]string{}
	for _, e := range c.Env {
		k, v, _ := strings.Cut(e, "=")
		env[k] = v
	}
	if env["KLAXON_DATA"] != "/data" || env["KLAXON_ROTA"] != "/etc/klaxon/rota.yaml" {
		t.Errorf("env %v: want data in /data and the rota in /etc/klaxon", c.Env)
	}
	for k := range env {
		if strings.Contains(k, "TOKEN") || strings.Contains(k, "SECRET") {
			t.Errorf("the image's config carries a secret setting %s", k)
		}
	}

	// The layer: unpack it as a container runtime would and run what is in it.
	rootfs := t.TempDir()
	owners := untar(t, blob(t, layout, manifest.Layers[0].Digest), rootfs)
	if owners["data"] != 65532 {
		t.Errorf("/data is owned by %d, want the image's user 65532 (a read-only root leaves only /data writable)", owners["data"])
	}
	bin := filepath.Join(rootfs, "usr/bin/klaxon")
	if out := run(t, root, nil, bin, "--version"); strings.TrimSpace(out) != "klaxon "+testVersion {
		t.Errorf("the image's klaxon --version = %q", out)
	}
	// Run it with the image's settings, except where a test must differ:
	// loopback with port 0 instead of :9797 and a temporary /data.
	var kenv []string
	for k, v := range env {
		switch k {
		case "KLAXON_LISTEN", "KLAXON_DATA":
		case "KLAXON_ROTA":
			kenv = append(kenv, k+"="+filepath.Join(rootfs, v))
		default:
			kenv = append(kenv, k+"="+v)
		}
	}
	k := harness.StartKlaxon(t, harness.KlaxonConfig{Binary: bin, Rota: filepath.Join(rootfs, "etc/klaxon/rota.yaml"),
		WebhookToken: "image-webhook-token", APIToken: "image-api-token", Env: kenv})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", k.URL()+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz answered %d", resp.StatusCode)
	}
	if !strings.Contains(k.Logs(), testVersion) {
		t.Errorf("klaxon serve from the image does not log its version %s", testVersion)
	}
}

// TestImageBuilderRefusesDynamicBinaries: a scratch image has no dynamic
// loader, so a cgo binary would not start in it; the builder says so.
func TestImageBuilderRefusesDynamicBinaries(t *testing.T) {
	// The test binary itself is built with the default settings; if cgo is
	// off here it is static and this check has nothing to refuse.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if out, _ := tryRun(root, nil, "go", "env", "CGO_ENABLED"); strings.TrimSpace(out) != "1" {
		t.Skip("cgo is off: no dynamic binary to try")
	}
	layout, msg := buildImage(t, exe)
	if layout != "" {
		t.Fatal("ociimage accepted a dynamically linked binary")
	}
	if !strings.Contains(msg, "dynamically linked") {
		t.Errorf("ociimage's refusal does not say why: %s", msg)
	}
	notELF := filepath.Join(t.TempDir(), "klaxon")
	os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755)
	if layout, msg := buildImage(t, notELF); layout != "" || !strings.Contains(msg, "not a Linux executable") {
		t.Errorf("ociimage on a shell script: %q", msg)
	}
}

// untar unpacks a gzipped layer into dir and returns each entry's owner.
func untar(t *testing.T, layer []byte, dir string) map[string]int {
	t.Helper()
	zr, err := gzip.NewReader(strings.NewReader(string(layer)))
	if err != nil {
		t.Fatal(err)
	}
	owners := map[string]int{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Clean(h.Name)
		if strings.HasPrefix(name, "..") || filepath.IsAbs(name) {
			t.Fatalf("layer entry %q escapes the root", h.Name)
		}
		owners[name] = h.Uid
		p := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			os.MkdirAll(filepath.Dir(p), 0o755)
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&os.ModePerm)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			f.Close()
		default:
			t.Fatalf("unexpected layer entry %q of type %c", h.Name, h.Typeflag)
		}
	}
	return owners
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
}
