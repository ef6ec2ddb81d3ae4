package rota

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// parser collects every error and warning while it walks the YAML tree.
type parser struct {
	file  string
	errs  []*Error
	warns []Warning
}

func (p *parser) pos(n *yaml.Node, path string) Position {
	pos := Position{File: p.file, Path: path}
	if n != nil {
		pos.Line, pos.Column = n.Line, n.Column
	}
	return pos
}

func (p *parser) errorf(n *yaml.Node, path, format string, args ...any) {
	p.errs = append(p.errs, &Error{Position: p.pos(n, path), Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) warnf(n *yaml.Node, path, format string, args ...any) {
	p.warns = append(p.warns, Warning{Position: p.pos(n, path), Msg: fmt.Sprintf(format, args...)})
}

// kv is one key and value of a YAML mapping.
type kv struct {
	key, val *yaml.Node
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// pairs returns a mapping's entries in file order, reporting duplicate keys
// and non-string keys. It returns nil (after an error) when n is not a mapping.
func (p *parser) pairs(n *yaml.Node, path, want string) []kv {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, path, "want %s, found %s", want, kindName(n))
		return nil
	}
	seen := map[string]*yaml.Node{}
	var out []kv
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.errorf(k, path, "keys must be plain names, found %s", kindName(k))
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			p.errorf(k, join(path, k.Value), "duplicate key %q (first at line %d)", k.Value, prev.Line)
			continue
		}
		seen[k.Value] = k
		out = append(out, kv{k, v})
	}
	return out
}

// fields checks that mapping n has only the known keys and returns them by name.
func (p *parser) fields(n *yaml.Node, path string, known ...string) map[string]kv {
	out := map[string]kv{}
	for _, e := range p.pairs(n, path, "a mapping") {
		ok := false
		for _, k := range known {
			ok = ok || k == e.key.Value
		}
		if !ok {
			msg := fmt.Sprintf("unknown field %q", e.key.Value)
			if s := suggest(e.key.Value, known); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			} else {
				msg += " (known: " + strings.Join(known, ", ") + ")"
			}
			p.errorf(e.key, join(path, e.key.Value), "%s", msg)
			continue
		}
		out[e.key.Value] = e
	}
	return out
}

// require reports a missing field of mapping n.
func (p *parser) require(n *yaml.Node, path string, f map[string]kv, names ...string) {
	if n.Kind != yaml.MappingNode {
		return // already reported
	}
	for _, name := range names {
		if _, ok := f[name]; !ok {
			p.errorf(n, path, "missing field %q", name)
		}
	}
}

// str returns a scalar's text; it reports (and returns ok=false) anything else.
func (p *parser) str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.errorf(n, path, "want a value, found %s", kindName(n))
		return "", false
	}
	if len(n.Value) > maxScalar {
		p.errorf(n, path, "value longer than %d bytes", maxScalar)
		return "", false
	}
	return n.Value, true
}

const maxScalar = 4096

// list returns a sequence's items; a single scalar counts as a one-item list
// when allowScalar is set.
func (p *parser) list(n *yaml.Node, path string, allowScalar bool) []*yaml.Node {
	switch {
	case n.Kind == yaml.SequenceNode:
		return n.Content
	case allowScalar && n.Kind == yaml.ScalarNode && n.Tag != "!!null":
		return []*yaml.Node{n}
	case allowScalar && n.Kind == yaml.MappingNode:
		return []*yaml.Node{n}
	}
	p.errorf(n, path, "want a list, found %s", kindName(n))
	return nil
}

func (p *parser) integer(n *yaml.Node, path string, min, max int) (int, bool) {
	s, ok := p.str(n, path)
	if !ok {
		return 0, false
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < min || v > max {
		p.errorf(n, path, "want a whole number from %d to %d, found %q", min, max, s)
		return 0, false
	}
	return v, true
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// id checks an identifier used as a key (person, rotation, policy).
func (p *parser) id(k *yaml.Node, path, what string) bool {
	if !idPattern.MatchString(k.Value) {
		p.errorf(k, path, "invalid %s id %q: use letters, digits, '_', '.', '-' (at most 64)", what, k.Value)
		return false
	}
	return true
}

// checkNoAliases rejects anchors and aliases: they make a rota hard to read in
// review and, nested, blow up in size.
func (p *parser) checkNoAliases(n *yaml.Node, depth int) {
	if depth > 64 {
		p.errorf(n, "", "document nested too deeply")
		return
	}
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		p.errorf(n, "", "YAML anchors and aliases are not supported in a rota: write the value out")
		return
	}
	for _, c := range n.Content {
		p.checkNoAliases(c, depth+1)
	}
}

// suggest returns the known name closest to s, if close enough to be a typo.
func suggest(s string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(s, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
