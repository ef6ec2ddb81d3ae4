// Package doclinks checks the links inside the repository's documentation:
// every relative Markdown link and #anchor, and every link that names a file
// of this repository by its GitHub address (the Prometheus rules'
// runbook_url among them), must resolve to a file, a directory or a heading
// that exists. It reads files only; it never touches the network.
package doclinks

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// RepoURL is the GitHub address of this repository. A link under it names a
// file of the repository (…/blob/REF/PATH or …/tree/REF/PATH, or the README
// for the bare address) and is checked like a relative one.
const RepoURL = "https://github.com/klaxon-oncall/klaxon"

// Link is one link found in a file.
type Link struct {
	File   string // slash-separated path from the repository root
	Line   int    // 1-based
	Target string // as written
}

// Broken is a link that does not resolve, and why.
type Broken struct {
	Link
	Reason string
}

func (b Broken) String() string {
	return fmt.Sprintf("%s:%d: %s: %s", b.File, b.Line, b.Target, b.Reason)
}

// skipDir reports whether a directory is outside the documentation: Git's
// own, the separate tool modules, and test data (whose Markdown, if any, is
// input to a test, not documentation).
func skipDir(rel, name string) bool {
	return rel != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules" || rel == "tools")
}

// Check walks the repository at root and returns every broken link of its
// Markdown files and of the runbook_url annotations under deploy/prometheus.
func Check(root string) ([]Broken, error) {
	var mdFiles, ruleFiles []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if skipDir(rel, d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case strings.HasSuffix(rel, ".md"):
			mdFiles = append(mdFiles, rel)
		case strings.HasPrefix(rel, "deploy/prometheus/") && (strings.HasSuffix(rel, ".yaml") || strings.HasSuffix(rel, ".yml")):
			ruleFiles = append(ruleFiles, rel)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	r := &resolver{root: root, anchors: map[string]map[string]bool{}}
	var broken []Broken
	for _, f := range mdFiles {
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil {
			return nil, err
		}
		for _, l := range MarkdownLinks(f, b) {
			if reason := r.check(l); reason != "" {
				broken = append(broken, Broken{l, reason})
			}
		}
	}
	for _, f := range ruleFiles {
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil {
			return nil, err
		}
		for _, l := range RunbookURLs(f, b) {
			if !strings.HasPrefix(l.Target, RepoURL) {
				continue // a runbook kept elsewhere is not ours to check
			}
			if reason := r.check(l); reason != "" {
				broken = append(broken, Broken{l, reason})
			}
		}
	}
	return broken, nil
}

var (
	fenceRe = regexp.MustCompile("^ {0,3}(```+|~~~+)")
	// An inline link or image: [text](target "title") or ![alt](<target>).
	// The text may hold one level of brackets (an image inside a link).
	inlineRe = regexp.MustCompile(`!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*(<[^>]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)(?:\s+(?:"[^"]*"|'[^']*'|\([^)]*\)))?\s*\)`)
	// A reference definition: [label]: target
	refDefRe = regexp.MustCompile(`^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)`)
	codeRe   = regexp.MustCompile("`+[^`]*`+")
	headRe   = regexp.MustCompile(`^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$`)
	htmlIDRe = regexp.MustCompile(`<a\s[^>]*(?:name|id)\s*=\s*"([^"]+)"`)
	// runbook_url: VALUE, quoted or not, in YAML.
	runbookRe = regexp.MustCompile(`runbook_url:\s*['"]?([^'"\s]+)`)
)

// MarkdownLinks returns the links of a Markdown file: inline links and
// images, and reference definitions, outside fenced code blocks and code
// spans.
func MarkdownLinks(file string, src []byte) []Link {
	var out []Link
	inFence, fence := false, ""
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if m := fenceRe.FindStringSubmatch(line); m != nil {
			switch {
			case !inFence:
				inFence, fence = true, m[1]
			case strings.HasPrefix(m[1], fence) && strings.TrimSpace(line) == m[1]:
				inFence = false
			}
			continue
		}
		if inFence {
			continue
		}
		line = codeRe.ReplaceAllString(line, "")
		if m := refDefRe.FindStringSubmatch(line); m != nil {
			out = append(out, Link{file, n, strings.Trim(m[1], "<>")})
			continue
		}
		out = append(out, inlineLinks(file, n, line)...)
	}
	return out
}

// inlineLinks returns the inline links of one line, and those inside their
// text (an image inside a link: [![badge](img.svg)](target)).
func inlineLinks(file string, n int, line string) []Link {
	var out []Link
	for _, m := range inlineRe.FindAllStringSubmatch(line, -1) {
		out = append(out, Link{file, n, strings.Trim(m[2], "<>")})
		out = append(out, inlineLinks(file, n, m[1])...)
	}
	return out
}

// RunbookURLs returns the runbook_url values of a YAML file.
func RunbookURLs(file string, src []byte) []Link {
	var out []Link
	for n, line := range strings.Split(string(src), "\n") {
		if m := runbookRe.FindStringSubmatch(line); m != nil {
			out = append(out, Link{file, n + 1, m[1]})
		}
	}
	return out
}

// Anchors returns the anchors GitHub gives a Markdown file's headings (see
// Slug; a repeated heading gets -1, -2, …), and the ids and names of its
// HTML anchors.
func Anchors(src []byte) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	inFence, fence := false, ""
	for _, line := range strings.Split(string(src), "\n") {
		if m := fenceRe.FindStringSubmatch(line); m != nil {
			switch {
			case !inFence:
				inFence, fence = true, m[1]
			case strings.HasPrefix(m[1], fence) && strings.TrimSpace(line) == m[1]:
				inFence = false
			}
			continue
		}
		if inFence {
			continue
		}
		for _, m := range htmlIDRe.FindAllStringSubmatch(line, -1) {
			out[m[1]] = true
		}
		m := headRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		s := Slug(m[2])
		if k := seen[s]; k > 0 {
			seen[s]++
			s = fmt.Sprintf("%s-%d", s, k)
		} else {
			seen[s] = 1
		}
		out[s] = true
	}
	return out
}

var linkTextRe = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)

// Slug is GitHub's anchor for a heading: the text of its inline links kept,
// their targets dropped; lower case; every character that is not a letter,
// a digit, a space, '-' or '_' dropped; each space turned into '-'.
func Slug(heading string) string {
	heading = linkTextRe.ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// resolver checks links against the files under root, caching each
// Markdown file's anchors.
type resolver struct {
	root    string
	anchors map[string]map[string]bool
}

// check returns why l does not resolve, or "" when it does (or is not a
// link into this repository).
func (r *resolver) check(l Link) string {
	target := l.Target
	var rel string // the target's path from the repository root
	switch {
	case strings.HasPrefix(target, RepoURL):
		rest := strings.TrimPrefix(target, RepoURL)
		frag := ""
		if i := strings.IndexByte(rest, '#'); i >= 0 {
			rest, frag = rest[:i], rest[i:]
		}
		rest = strings.TrimSuffix(rest, "/")
		switch {
		case rest == "":
			rel = "README.md"
		case strings.HasPrefix(rest, "/blob/"), strings.HasPrefix(rest, "/tree/"):
			parts := strings.SplitN(rest, "/", 4) // "", blob, REF, PATH
			if len(parts) < 4 || parts[3] == "" {
				rel = "."
			} else {
				rel = parts[3]
			}
		case strings.HasPrefix(rest, "/"):
			return "" // issues, releases, …: not a file
		default:
			return "" // another repository whose name starts like ours
		}
		target = "/" + rel + frag
	case strings.Contains(target, "://"), strings.HasPrefix(target, "mailto:"), strings.HasPrefix(target, "//"):
		return "" // outside the repository: not checked (no network)
	}

	pathPart, frag, _ := strings.Cut(target, "#")
	pathPart, _, _ = strings.Cut(pathPart, "?")
	if p, err := url.PathUnescape(pathPart); err == nil {
		pathPart = p
	}
	switch {
	case pathPart == "":
		rel = l.File // #anchor in the same file
	case strings.HasPrefix(pathPart, "/"):
		rel = path.Clean(strings.TrimPrefix(pathPart, "/"))
	default:
		rel = path.Clean(path.Join(path.Dir(l.File), pathPart))
	}
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return "points outside the repository"
	}
	fi, err := os.Stat(filepath.Join(r.root, filepath.FromSlash(rel)))
	if err != nil {
		return "no such file or directory: " + rel
	}
	if frag == "" {
		return ""
	}
	if fi.IsDir() || !strings.HasSuffix(rel, ".md") {
		return "" // GitHub's anchors into code (#L12) and directories are not headings
	}
	anchors, err := r.anchorsOf(rel)
	if err != nil {
		return err.Error()
	}
	if f, err := url.PathUnescape(frag); err == nil {
		frag = f
	}
	if !anchors[frag] {
		return fmt.Sprintf("%s has no heading with anchor #%s (anchors: %s)", rel, frag, nearest(frag, anchors))
	}
	return ""
}

func (r *resolver) anchorsOf(rel string) (map[string]bool, error) {
	if a, ok := r.anchors[rel]; ok {
		return a, nil
	}
	b, err := os.ReadFile(filepath.Join(r.root, filepath.FromSlash(rel)))
	if err != nil {
		return nil, err
	}
	a := Anchors(b)
	r.anchors[rel] = a
	return a, nil
}

// nearest lists a file's anchors, those sharing a word with want first, to
// make a typo easy to see; at most five.
func nearest(want string, anchors map[string]bool) string {
	var all []string
	for a := range anchors {
		all = append(all, a)
	}
	slices.Sort(all)
	words := strings.Split(want, "-")
	score := func(a string) int {
		n := 0
		for _, w := range words {
			if w != "" && strings.Contains(a, w) {
				n++
			}
		}
		return n
	}
	slices.SortStableFunc(all, func(a, b string) int { return score(b) - score(a) })
	if len(all) > 5 {
		all = append(all[:5], "…")
	}
	if len(all) == 0 {
		return "none"
	}
	return strings.Join(all, ", ")
}
