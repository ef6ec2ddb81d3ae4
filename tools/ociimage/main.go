// Command ociimage builds Klaxon's OCI image without a container daemon or a
// registry: a scratch image holding the static klaxon binary, the example rota
// and an empty /data, run as a non-root user, written as an OCI image layout
// directory (push it with `crane push DIR REF` or `skopeo copy oci:DIR ...`).
//
//	go tool -modfile=tools/ociimage/go.mod ociimage -out dist/image \
//	    -binary linux/amd64=dist/klaxon_linux_amd64 -binary linux/arm64=dist/klaxon_linux_arm64 \
//	    -rota rota.yaml -version 1.2.3 -revision $(git rev-parse HEAD)
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's fixed shape; the README, the Helm chart and the tests rely on it.
const (
	binaryPath = "/usr/bin/klaxon"
	rotaPath   = "/etc/klaxon/rota.yaml"
	dataDir    = "/data"
	uid        = 65532 // "nonroot" in distroless images
	port       = "9797/tcp"
)

// binaries collects repeated -binary OS/ARCH=PATH flags.
type binaries map[string]string

func (b binaries) String() string { return fmt.Sprint(map[string]string(b)) }

func (b binaries) Set(s string) error {
	plat, path, ok := strings.Cut(s, "=")
	if !ok || path == "" {
		return fmt.Errorf("want OS/ARCH=PATH, got %q", s)
	}
	if _, err := v1.ParsePlatform(plat); err != nil || !strings.HasPrefix(plat, "linux/") {
		return fmt.Errorf("platform %q: want linux/ARCH", plat)
	}
	if _, dup := b[plat]; dup {
		return fmt.Errorf("platform %s given twice", plat)
	}
	b[plat] = path
	return nil
}

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("ociimage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bins := binaries{}
	fs.Var(bins, "binary", "OS/ARCH=PATH of a static klaxon binary (repeat for each platform)")
	out := fs.String("out", "", "OCI image layout directory to write (must not exist)")
	rota := fs.String("rota", "rota.yaml", "rota to ship as "+rotaPath)
	version := fs.String("version", "dev", "version label")
	revision := fs.String("revision", "", "source revision label")
	source := fs.String("source", "https://github.com/klaxon-oncall/klaxon", "source repository label")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(bins) == 0 || *out == "" {
		return errors.New("need -out and at least one -binary")
	}
	if _, err := os.Stat(*out); err == nil {
		return fmt.Errorf("%s exists: refusing to mix images", *out)
	}
	created := time.Unix(0, 0).UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH %q: %v", s, err)
		}
		created = time.Unix(n, 0).UTC()
	}
	rotaYAML, err := os.ReadFile(*rota)
	if err != nil {
		return err
	}
	labels := map[string]string{
		"org.opencontainers.image.title":       "klaxon",
		"org.opencontainers.image.description": "Alert routing and escalation for Prometheus Alertmanager",
		"org.opencontainers.image.version":     *version,
		"org.opencontainers.image.revision":    *revision,
		"org.opencontainers.image.source":      *source,
		"org.opencontainers.image.created":     created.Format(time.RFC3339),
	}
	var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	plats := make([]string, 0, len(bins))
	for p := range bins {
		plats = append(plats, p)
	}
	sort.Strings(plats)
	for _, p := range plats {
		plat, _ := v1.ParsePlatform(p)
		img, err := image(bins[p], plat, rotaYAML, labels, created)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform:    plat,
			Annotations: map[string]string{"org.opencontainers.image.version": *version},
		}})
	}
	_, err = layout.Write(*out, idx)
	return err
}

// image builds one platform's image.
func image(bin string, plat *v1.Platform, rota []byte, labels map[string]string, created time.Time) (v1.Image, error) {
	exe, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	if err := checkStatic(exe, plat.Architecture); err != nil {
		return nil, fmt.Errorf("%s: %w", bin, err)
	}
	layerTar, err := rootfs(exe, rota, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: created}, CreatedBy: "klaxon tools/ociimage", Comment: "klaxon binary, example rota, /data",
	}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = plat.OS, plat.Architecture, plat.Variant
	cf.Created = v1.Time{Time: created}
	cf.Config = v1.Config{
		User:         fmt.Sprintf("%d:%d", uid, uid),
		Entrypoint:   []string{binaryPath},
		Cmd:          []string{"serve"},
		WorkingDir:   dataDir,
		ExposedPorts: map[string]struct{}{port: {}},
		Volumes:      map[string]struct{}{dataDir: {}},
		Env: []string{
			// Listening beyond loopback: Klaxon refuses to start without
			// KLAXON_WEBHOOK_TOKEN(_FILE) and KLAXON_API_TOKEN(_FILE).
			"KLAXON_LISTEN=:9797",
			"KLAXON_DATA=" + dataDir,
			"KLAXON_ROTA=" + rotaPath,
			"KLAXON_LOG_FORMAT=json",
		},
		Labels:     labels,
		StopSignal: "SIGTERM",
	}
	return mutate.ConfigFile(img, cf)
}

// checkStatic refuses a binary that needs a dynamic loader (a scratch image
// has none) or was built for another architecture.
func checkStatic(exe []byte, arch string) error {
	f, err := elf.NewFile(bytes.NewReader(exe))
	if err != nil {
		return fmt.Errorf("not a Linux executable: %v", err)
	}
	defer f.Close()
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "arm": elf.EM_ARM, "386": elf.EM_386, "ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390, "riscv64": elf.EM_RISCV}
	if m, ok := want[arch]; !ok || f.Machine != m {
		return fmt.Errorf("built for %s, not %s", f.Machine, arch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked (build with CGO_ENABLED=0)")
		}
	}
	return nil
}

// rootfs is the image's single layer: the binary, the rota, an empty /data
// owned by the non-root user, and /etc/passwd naming that user.
func rootfs(exe, rota []byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64, owner int) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: owner, Gid: owner, ModTime: mtime})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: mtime}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:klaxon:%s:/sbin/nologin\n", uid, uid, dataDir)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", uid)
	steps := []func() error{
		func() error { return dir("etc", 0o755, 0) },
		func() error { return file("etc/passwd", 0o644, []byte(passwd)) },
		func() error { return file("etc/group", 0o644, []byte(group)) },
		func() error { return dir("etc/klaxon", 0o755, 0) },
		func() error { return file(strings.TrimPrefix(rotaPath, "/"), 0o644, rota) },
		func() error { return dir("usr", 0o755, 0) },
		func() error { return dir("usr/bin", 0o755, 0) },
		func() error { return file(strings.TrimPrefix(binaryPath, "/"), 0o755, exe) },
		func() error { return dir(strings.TrimPrefix(dataDir, "/"), 0o700, uid) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
