package rota

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// MaxFileSize is the largest rota file Parse accepts.
const MaxFileSize = 1 << 20

// Load reads and parses the rota file at path. See Parse.
func Load(path string) (*Rota, []Warning, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, nil, FileError(path, err)
	}
	return Parse(path, data)
}

// FileError is the *Errors Load returns when path cannot be read.
func FileError(path string, err error) error {
	return &Errors{List: []*Error{{Position: Position{File: path}, Msg: err.Error()}}}
}

// ReadFile reads a rota file of at most MaxFileSize bytes.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("file larger than %d bytes", MaxFileSize)
	}
	return data, nil
}

// Parse reads a rota from data; filename is used in messages only. On
// success it returns the rota and its warnings (also in Rota.Warnings). On
// failure the error is an *Errors listing every problem found, each with
// file:line:column and the path of the field.
//
// Parse never reads the clock: warnings that depend on the date (a rotation
// that has not started yet) come from Rota.Gaps.
func Parse(filename string, data []byte) (*Rota, []Warning, error) {
	p := &parser{file: filename}
	if len(data) > MaxFileSize {
		p.errorf(nil, "", "file larger than %d bytes", MaxFileSize)
		return nil, nil, p.result()
	}
	root, err := decodeOne(data)
	if err != nil {
		p.errs = append(p.errs, yamlError(filename, err))
		return nil, nil, p.result()
	}
	p.checkNoAliases(root, 0)
	if len(p.errs) > 0 {
		return nil, nil, p.result()
	}
	b := &builder{parser: p, r: &Rota{
		Source:    filename,
		People:    map[string]*Person{},
		Rotations: map[string]*Rotation{},
		Policies:  map[string]*Policy{},
		Limits:    map[notifiers.Channel]Limit{},
	}, personNode: map[string]*yaml.Node{}, rotationUsed: map[string]bool{}}
	b.build(root)
	if err := p.result(); err != nil {
		return nil, nil, err
	}
	b.staticWarnings()
	sortWarnings(p.warns)
	b.r.Warnings = p.warns
	return b.r, p.warns, nil
}

func (p *parser) result() error {
	if len(p.errs) == 0 {
		return nil
	}
	sortErrors(p.errs)
	return &Errors{List: p.errs}
}

// decodeOne decodes exactly one YAML document into a node tree.
func decodeOne(data []byte) (*yaml.Node, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("empty file: a rota needs timezone, people, rotations, policies and routes")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, errors.New("empty document: a rota needs timezone, people, rotations, policies and routes")
		}
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("line %d: more than one YAML document: a rota is one document", extra.Line)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, errors.New("empty document")
	}
	return doc.Content[0], nil
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlError turns a YAML syntax error into an Error with its line.
func yamlError(file string, err error) *Error {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{Position: Position{File: file, Line: line}, Msg: "invalid YAML: " + m[2]}
	}
	return &Error{Position: Position{File: file}, Msg: strings.TrimPrefix(msg, "yaml: ")}
}

// builder turns the checked YAML tree into a Rota.
type builder struct {
	*parser
	r *Rota
	// nodes kept for warnings found after the walk
	personNode   map[string]*yaml.Node
	rotationNode map[string]*yaml.Node
	rotationUsed map[string]bool
	overrideRefs []overrideRef
	pendingRefs  []overrideRef // of the rotation being read
	stepRefs     []stepRef
}

type overrideRef struct {
	rot  *Rotation
	o    Override
	node *yaml.Node
	path string
}

type stepRef struct {
	policy string
	path   string
	step   Step
}

func (b *builder) build(root *yaml.Node) {
	f := b.fields(root, "", "timezone", "owners", "limits", "people", "rotations", "policies", "routes")
	b.require(root, "", f, "timezone", "people", "rotations", "policies", "routes")
	b.r.Location = time.UTC
	if e, ok := f["timezone"]; ok {
		if loc, ok := b.location(e.val, "timezone"); ok {
			b.r.Location = loc
		}
	}
	if e, ok := f["people"]; ok {
		b.people(e.val, "people")
	}
	b.rotationNode = map[string]*yaml.Node{}
	if e, ok := f["rotations"]; ok {
		b.rotations(e.val, "rotations")
	}
	if e, ok := f["policies"]; ok {
		b.policies(e.val, "policies")
	}
	if e, ok := f["routes"]; ok {
		b.routes(e.val, "routes")
	}
	if e, ok := f["owners"]; ok {
		for i, n := range b.list(e.val, "owners", true) {
			if id, ok := b.personRef(n, index("owners", i)); ok {
				b.r.Owners = append(b.r.Owners, id)
			}
		}
	}
	if e, ok := f["limits"]; ok {
		b.limits(e.val, "limits")
	}
}

func (b *builder) location(n *yaml.Node, path string) (*time.Location, bool) {
	s, ok := b.str(n, path)
	if !ok {
		return nil, false
	}
	if s == "" || s == "Local" || strings.HasPrefix(s, "/") || strings.Contains(s, "..") {
		b.errorf(n, path, "unknown time zone %q: use an IANA name such as Europe/London", s)
		return nil, false
	}
	loc, err := time.LoadLocation(s)
	if err != nil {
		b.errorf(n, path, "unknown time zone %q: use an IANA name such as Europe/London", s)
		return nil, false
	}
	return loc, true
}

func (b *builder) personRef(n *yaml.Node, path string) (string, bool) {
	id, ok := b.str(n, path)
	if !ok {
		return "", false
	}
	if b.r.People[id] == nil {
		if b.r.Rotations[id] != nil {
			b.errorf(n, path, "unknown person %q (%q is a rotation)", id, id)
		} else {
			b.errorf(n, path, "unknown person %q%s", id, didYouMean(id, b.r.PersonIDs()))
		}
		return "", false
	}
	return id, true
}

func (b *builder) rotationRef(n *yaml.Node, path string) (string, bool) {
	id, ok := b.str(n, path)
	if !ok {
		return "", false
	}
	if b.r.Rotations[id] == nil {
		if _, declared := b.rotationNode[id]; declared {
			return "", false // the rotation itself is invalid and already reported
		}
		if b.r.People[id] != nil {
			b.errorf(n, path, "unknown rotation %q (%q is a person: write {person: %s})", id, id, id)
		} else {
			b.errorf(n, path, "unknown rotation %q%s", id, didYouMean(id, b.r.RotationIDs()))
		}
		return "", false
	}
	b.rotationUsed[id] = true
	return id, true
}

func didYouMean(s string, known []string) string {
	if m := suggest(s, known); m != "" {
		return fmt.Sprintf(" (did you mean %q?)", m)
	}
	return ""
}

func (b *builder) limits(n *yaml.Node, path string) {
	for _, e := range b.pairs(n, path, "a mapping of channel to {count, per}") {
		p := join(path, e.key.Value)
		ch := notifiers.Channel(e.key.Value)
		if !ch.Valid() {
			b.errorf(e.key, p, "unknown channel %q (channels: %s)", e.key.Value, channelList())
			continue
		}
		f := b.fields(e.val, p, "count", "per")
		b.require(e.val, p, f, "count", "per")
		var l Limit
		ok := true
		if c, has := f["count"]; has {
			l.Count, ok = b.integer(c.val, join(p, "count"), 1, 10000)
		}
		if c, has := f["per"]; has {
			var ok2 bool
			l.Per, ok2 = b.duration(c.val, join(p, "per"))
			ok = ok && ok2
		}
		if ok && l.Count > 0 && l.Per > 0 {
			b.r.Limits[ch] = l
		}
	}
}

func channelList() string {
	names := make([]string, len(notifiers.Channels))
	for i, c := range notifiers.Channels {
		names[i] = string(c)
	}
	return strings.Join(names, ", ")
}

// duration reads a positive duration.
func (b *builder) duration(n *yaml.Node, path string) (time.Duration, bool) {
	s, ok := b.str(n, path)
	if !ok {
		return 0, false
	}
	d, err := ParseDuration(s)
	if err != nil {
		b.errorf(n, path, "%v", err)
		return 0, false
	}
	if d <= 0 {
		b.errorf(n, path, "must be longer than zero, found %q", s)
		return 0, false
	}
	return d, true
}
