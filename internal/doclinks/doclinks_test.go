package doclinks

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// repoRoot is the directory holding go.mod, above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// TestRepositoryLinks is the check itself: every relative link and #anchor
// of every Markdown file in the repository (README.md, docs/, deploy/, …;
// not tools/ or testdata), and every runbook_url under deploy/prometheus
// that names this repository, resolves. A failure names file:line and the
// broken target.
func TestRepositoryLinks(t *testing.T) {
	root := repoRoot(t)
	broken, err := Check(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range broken {
		t.Errorf("%s", b)
	}
	// The check must have seen the documentation, or it proves nothing.
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(MarkdownLinks("README.md", b)); n < 10 {
		t.Errorf("README.md: only %d links found; is the parser blind?", n)
	}
}

func TestSlug(t *testing.T) {
	for _, tc := range []struct{ heading, want string }{
		{"Klaxon", "klaxon"},
		{"A five-minute tour", "a-five-minute-tour"},
		{"Debian / RPM package", "debian--rpm-package"},
		{"Kubernetes (Helm)", "kubernetes-helm"},
		{"The never-quiet contract", "the-never-quiet-contract"},
		{"`klaxon serve` flags", "klaxon-serve-flags"},
		{"**Bold** and _snake_case_", "bold-and-_snake_case_"},
		{"status and selftest", "status-and-selftest"},
		{"ADR 0002: several replicas share etcd, with one fenced leader", "adr-0002-several-replicas-share-etcd-with-one-fenced-leader"},
		{"See [Web](web.md#x) now", "see-web-now"},
		{"Café: naïve", "café-naïve"},
		{"Emoji ✅ here", "emoji--here"},
	} {
		if got := Slug(tc.heading); got != tc.want {
			t.Errorf("Slug(%q) = %q, want %q", tc.heading, got, tc.want)
		}
	}
}

func TestAnchors(t *testing.T) {
	src := "# Title\n\n## Usage\n\ntext\n\n## Usage\n\n```sh\n# not a heading\n```\n\n### Closed ###\n\n<a id=\"custom\"></a>\n#NoSpace\n"
	got := Anchors([]byte(src))
	for _, want := range []string{"title", "usage", "usage-1", "closed", "custom"} {
		if !got[want] {
			t.Errorf("anchor %q missing from %v", want, got)
		}
	}
	for _, not := range []string{"not-a-heading", "nospace"} {
		if got[not] {
			t.Errorf("anchor %q should not exist (%v)", not, got)
		}
	}
}

func TestMarkdownLinks(t *testing.T) {
	src := strings.Join([]string{
		"See [install](docs/install.md) and ![shot](docs/images/a.png \"title\").", // 1
		"A [ref][x] and `[code](not/a/link.md)`.",                                  // 2
		"[x]: docs/ref.md",        // 3
		"```",                     // 4
		"[fenced](not/a/link.md)", // 5
		"```",                     // 6
		"[![badge](img.svg)](https://example.org) [anchor](#usage) [angle](<a b.md>)", // 7
		"[paren](docs/a_(b).md)", // 8
	}, "\n")
	var got []string
	for _, l := range MarkdownLinks("README.md", []byte(src)) {
		got = append(got, l.Target+"@"+strconv.Itoa(l.Line))
	}
	want := []string{"docs/install.md@1", "docs/images/a.png@1", "docs/ref.md@3", "img.svg@7", "https://example.org@7", "#usage@7", "a b.md@7", "docs/a_(b).md@8"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("links:\n got %q\nwant %q", got, want)
	}
}

// TestCheckFindsBrokenLinks builds a small repository and breaks each kind
// of link once.
func TestCheckFindsBrokenLinks(t *testing.T) {
	root := t.TempDir()
	write := func(rel, content string) {
		t.Helper()
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("README.md", strings.Join([]string{
		"# Klaxon",
		"## Two commands",
		"[ok file](docs/a.md)", // 3
		"[ok anchor](docs/a.md#the-never-quiet-contract)",                             // 4
		"[ok self](#two-commands)",                                                    // 5
		"[ok dir](docs/)",                                                             // 6
		"[ok image](docs/images/x.png)",                                               // 7
		"[ok outside](https://example.org/nope.md)",                                   // 8
		"[missing file](docs/nope.md)",                                                // 9
		"[missing anchor](docs/a.md#never-quiet)",                                     // 10
		"[missing self](#three-commands)",                                             // 11
		"[escapes](../outside.md)",                                                    // 12
		"[ok repo url](" + RepoURL + "/blob/main/docs/a.md#the-never-quiet-contract)", // 13
		"[bad repo url](" + RepoURL + "/blob/main/docs/gone.md)",                      // 14
		"[ok repo readme](" + RepoURL + "#klaxon)",                                    // 15
		"[ok issues](" + RepoURL + "/issues/1)",                                       // 16
	}, "\n"))
	write("docs/a.md", "# A\n\n## The never-quiet contract\n\n[back](../README.md#two-commands)\n")
	write("docs/images/x.png", "png")
	write("tools/x/README.md", "[ignored](nope.md)\n")
	write("internal/x/testdata/y.md", "[ignored](nope.md)\n")
	write("deploy/prometheus/rules.yaml", strings.Join([]string{
		"groups:",
		"  - rules:",
		"      - annotations:",
		"          runbook_url: " + RepoURL + "/blob/main/docs/a.md", // 4
		"      - annotations:",
		"          runbook_url: '" + RepoURL + "/blob/main/docs/runbooks/gone.md'", // 6
		"      - annotations:",
		"          runbook_url: " + RepoURL + "#gone", // 8
		"      - annotations:",
		"          runbook_url: https://wiki.example.org/klaxon", // 10
	}, "\n"))

	broken, err := Check(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range broken {
		got = append(got, b.File+":"+strconv.Itoa(b.Line))
	}
	want := []string{"README.md:9", "README.md:10", "README.md:11", "README.md:12", "README.md:14",
		"deploy/prometheus/rules.yaml:6", "deploy/prometheus/rules.yaml:8"}
	if !slices.Equal(got, want) {
		t.Errorf("broken links at\n got %v\nwant %v\n%v", got, want, broken)
	}
	for _, b := range broken {
		if !strings.Contains(b.String(), b.Target) || b.Reason == "" {
			t.Errorf("%v: the message must name the target and the reason", b)
		}
	}
}

// TestReadmeTestCommandIsCIs: the test command the README gives is the one
// .ci/run runs, word for word, so a newcomer runs what CI runs.
func TestReadmeTestCommandIsCIs(t *testing.T) {
	root := repoRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	ci, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	const cmd = "go test -race -timeout 30m ./..."
	var inReadme bool
	for _, l := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(l, cmd+" ") || l == cmd {
			inReadme = true
		}
	}
	if !inReadme {
		t.Errorf("README.md: no line starts with the test command %q", cmd)
	}
	if !slices.Contains(strings.Split(string(ci), "\n"), cmd) {
		t.Errorf(".ci/run: does not run the README's test command %q on a line of its own", cmd)
	}
}
