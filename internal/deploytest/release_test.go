package deploytest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klaxon-oncall/klaxon/internal/testtools"
)

type nfpmContent struct {
	Src      string `yaml:"src"`
	Dst      string `yaml:"dst"`
	Type     string `yaml:"type"`
	FileInfo struct {
		Mode int `yaml:"mode"`
	} `yaml:"file_info"`
}

type nfpmCommon struct {
	Maintainer  string            `yaml:"maintainer"`
	Description string            `yaml:"description"`
	Section     string            `yaml:"section"`
	Homepage    string            `yaml:"homepage"`
	Contents    []nfpmContent     `yaml:"contents"`
	Scripts     map[string]string `yaml:"scripts"`
}

// TestGoreleaserPackagesMatchNFPMConfig: the release (.goreleaser.yaml) and
// the packages CI builds and installs (deploy/packaging/nfpm.yaml) hold the
// same files, scripts and metadata, so what CI tested is what ships; and the
// release builds static, stamped linux/amd64 and arm64 binaries.
func TestGoreleaserPackagesMatchNFPMConfig(t *testing.T) {
	var direct nfpmCommon
	readYAML(t, path("deploy/packaging/nfpm.yaml"), &direct)
	var gr struct {
		Version int `yaml:"version"`
		Builds  []struct {
			Main    string   `yaml:"main"`
			Env     []string `yaml:"env"`
			Goos    []string `yaml:"goos"`
			Goarch  []string `yaml:"goarch"`
			Flags   []string `yaml:"flags"`
			Ldflags []string `yaml:"ldflags"`
		} `yaml:"builds"`
		NFPMs []struct {
			nfpmCommon `yaml:",inline"`
			Formats    []string `yaml:"formats"`
			Bindir     string   `yaml:"bindir"`
		} `yaml:"nfpms"`
	}
	readYAML(t, path(".goreleaser.yaml"), &gr)
	if gr.Version != 2 || len(gr.Builds) != 1 || len(gr.NFPMs) != 1 {
		t.Fatalf(".goreleaser.yaml: want version 2, one build and one nfpms entry: %+v", gr)
	}
	b := gr.Builds[0]
	if b.Main != "./cmd/klaxon" || !slices.Contains(b.Env, "CGO_ENABLED=0") || !slices.Equal(b.Goos, []string{"linux"}) ||
		!slices.Equal(b.Goarch, []string{"amd64", "arm64"}) || !slices.Contains(b.Flags, "-trimpath") ||
		len(b.Ldflags) != 1 || !strings.Contains(b.Ldflags[0], "-X main.version={{ .Version }}") {
		t.Errorf("the release build is not static, stamped linux/amd64+arm64 from ./cmd/klaxon: %+v", b)
	}
	p := gr.NFPMs[0]
	if !slices.Equal(p.Formats, []string{"deb", "rpm"}) || p.Bindir != "/usr/bin" {
		t.Errorf("nfpms: formats %v bindir %q, want deb+rpm into /usr/bin", p.Formats, p.Bindir)
	}
	render := func(cs []nfpmContent) []string {
		var out []string
		for _, c := range cs {
			if c.Dst == "/usr/bin/klaxon" { // goreleaser adds the binary itself (bindir)
				continue
			}
			out = append(out, fmt.Sprintf("%s <- %s [%s] %o", c.Dst, c.Src, c.Type, c.FileInfo.Mode))
		}
		slices.Sort(out)
		return out
	}
	if g, d := render(p.Contents), render(direct.Contents); !slices.Equal(g, d) {
		t.Errorf("contents differ:\n.goreleaser.yaml %v\nnfpm.yaml        %v", g, d)
	}
	for k, v := range direct.Scripts {
		if p.Scripts[k] != v {
			t.Errorf("script %s: .goreleaser.yaml %q, nfpm.yaml %q", k, p.Scripts[k], v)
		}
	}
	if len(p.Scripts) != len(direct.Scripts) {
		t.Errorf("scripts differ: %v vs %v", p.Scripts, direct.Scripts)
	}
	for name, pair := range map[string][2]string{"maintainer": {p.Maintainer, direct.Maintainer}, "description": {p.Description, direct.Description},
		"section": {p.Section, direct.Section}, "homepage": {p.Homepage, direct.Homepage}} {
		if pair[0] != pair[1] {
			t.Errorf("%s differs: %q vs %q", name, pair[0], pair[1])
		}
	}
}

// TestGoreleaserConfigDecodesStrictly: .goreleaser.yaml is a goreleaser v2
// configuration that decodes strictly into goreleaser's own config type
// (tools/goreleaser/grcheck: goreleaser's config.Load without building
// goreleaser), and a misspelt key or a wrong version fails that check.
func TestGoreleaserConfigDecodesStrictly(t *testing.T) {
	grcheck := testtools.Tool(t, "goreleaser", "klaxon-tools/goreleaser/grcheck")
	run(t, root, nil, grcheck, path(".goreleaser.yaml"))
	orig, err := os.ReadFile(path(".goreleaser.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string][2]string{
		"misspelt key":  {"\nnfpms:", "\nnfmps:"},
		"nested typo":   {"formats:", "fromats:"},
		"wrong version": {"version: 2", "version: 1"},
	} {
		t.Run(name, func(t *testing.T) {
			broken := strings.Replace(string(orig), c[0], c[1], 1)
			if broken == string(orig) {
				t.Fatalf("%q is no longer in .goreleaser.yaml; update this test", c[0])
			}
			f := filepath.Join(t.TempDir(), ".goreleaser.yaml")
			if err := os.WriteFile(f, []byte(broken), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := tryRun(root, nil, grcheck, f); err == nil {
				t.Fatalf("grcheck accepted it:\n%s", out)
			}
		})
	}
}
