// Package rotatests reads a rota test file (rota_test.yaml) and checks its
// cases against a rota: for an alert's labels at a given time, which policy
// the routes choose, who each step pages and on which channels, and who is on
// call. It is what `klaxon rota test` runs in a rota repository's CI.
package rotatests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/klaxon-oncall/klaxon/escalation/rota"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// File is a parsed rota test file.
type File struct {
	// Path is the file's name as given to Parse.
	Path string
	// Rota is the rota file the cases test, relative to the test file's
	// directory ("rota.yaml" when the file names none).
	Rota  string
	Cases []Case
}

// Case is one test case: an instant and alert labels, and what the rota must
// give for them. Expectations left out are not checked.
type Case struct {
	Name   string
	Line   int
	At     string
	atLine int
	Labels map[string]string
	// Policy is the policy the routes must choose ("" when not checked).
	Policy     string
	policyLine int
	// Steps, when HasSteps, lists every step of the policy: person id →
	// channels the step pages them on.
	Steps     []Expect
	HasSteps  bool
	stepsLine int
	// Fallback, when HasFallback, is who the fallback list pages.
	Fallback     Expect
	HasFallback  bool
	fallbackLine int
	// OnCall maps rotation id → the person on call ("nobody" for none).
	OnCall     map[string]string
	onCallLine map[string]int
}

// Expect is who one step pages: person id → channels.
type Expect struct {
	People map[string][]string
	Line   int
}

// RotaPath returns the rota file the cases test, resolved against the test
// file's directory.
func (f *File) RotaPath() string {
	if filepath.IsAbs(f.Rota) {
		return f.Rota
	}
	return filepath.Join(filepath.Dir(f.Path), f.Rota)
}

// Failure is one expectation the rota does not meet.
type Failure struct {
	// Pos is file:line of the expectation.
	Pos  string
	Case string
	// What names the expectation: "policy", "steps[1]", "oncall.primary".
	What      string
	Want, Got string
}

// String formats f for a terminal: where, which case, the expectation and
// what the rota gives.
func (f Failure) String() string {
	return fmt.Sprintf("%s: case %q: %s:\n    want: %s\n    rota gives: %s", f.Pos, f.Case, f.What, f.Want, f.Got)
}

// maxCases bounds one file, like the rota's own size limit.
const maxCases = 10000

type fileDoc struct {
	Rota  string      `yaml:"rota"`
	Cases []yaml.Node `yaml:"cases"`
}

type caseDoc struct {
	Name     string            `yaml:"name"`
	At       string            `yaml:"at"`
	Labels   map[string]string `yaml:"labels"`
	Policy   yaml.Node         `yaml:"policy"`
	Steps    yaml.Node         `yaml:"steps"`
	Fallback yaml.Node         `yaml:"fallback"`
	OnCall   yaml.Node         `yaml:"oncall"`
}

// Parse reads a rota test file; filename is used in messages. Errors carry
// file:line.
func Parse(filename string, data []byte) (*File, error) {
	if len(data) > rota.MaxFileSize {
		return nil, fmt.Errorf("%s: file larger than %d bytes", filename, rota.MaxFileSize)
	}
	var doc fileDoc
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty file: want rota and cases", filename)
		}
		return nil, yamlError(filename, err)
	}
	f := &File{Path: filename, Rota: doc.Rota}
	if f.Rota == "" {
		f.Rota = "rota.yaml"
	}
	if len(doc.Cases) == 0 {
		return nil, fmt.Errorf("%s: no cases", filename)
	}
	if len(doc.Cases) > maxCases {
		return nil, fmt.Errorf("%s: more than %d cases", filename, maxCases)
	}
	var errs []string
	bad := func(line int, format string, args ...any) {
		errs = append(errs, fmt.Sprintf("%s:%d: %s", filename, line, fmt.Sprintf(format, args...)))
	}
	names := map[string]int{}
	for i := range doc.Cases {
		n := &doc.Cases[i]
		c, err := parseCase(n)
		if err != nil {
			bad(n.Line, "cases[%d]: %v", i, err)
			continue
		}
		if c.Name == "" {
			bad(n.Line, "cases[%d]: missing name", i)
			continue
		}
		if prev, dup := names[c.Name]; dup {
			bad(n.Line, "cases[%d]: name %q is already used at line %d", i, c.Name, prev)
		}
		names[c.Name] = n.Line
		if c.At == "" {
			bad(n.Line, "case %q: missing at (the time to test)", c.Name)
		}
		if c.Policy == "" && !c.HasSteps && !c.HasFallback && len(c.OnCall) == 0 {
			bad(n.Line, "case %q: expects nothing: give policy, steps, fallback or oncall", c.Name)
		}
		f.Cases = append(f.Cases, *c)
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "\n"))
	}
	return f, nil
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*?)(?: in type \S+)?$`)

// yamlError gives each of the YAML library's messages file:line.
func yamlError(file string, err error) error {
	msgs := []string{err.Error()}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	for i, m := range msgs {
		if g := yamlLine.FindStringSubmatch(m); g != nil {
			msgs[i] = fmt.Sprintf("%s:%s: %s", file, g[1], g[2])
		} else {
			msgs[i] = file + ": " + strings.TrimPrefix(m, "yaml: ")
		}
	}
	return errors.New(strings.Join(msgs, "\n"))
}

func parseCase(n *yaml.Node) (*Case, error) {
	if n.Kind != yaml.MappingNode {
		return nil, errors.New("want a mapping with name, at, labels and expectations")
	}
	if err := knownKeys(n, "name", "at", "labels", "policy", "steps", "fallback", "oncall"); err != nil {
		return nil, err
	}
	var d caseDoc
	if err := n.Decode(&d); err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	c := &Case{Name: d.Name, Line: n.Line, At: d.At, atLine: n.Line, Labels: d.Labels}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "at" {
			c.atLine = n.Content[i+1].Line
		}
	}
	if d.Policy.Kind != 0 {
		if d.Policy.Kind != yaml.ScalarNode || d.Policy.Value == "" {
			return nil, fmt.Errorf("line %d: policy: want a policy id", d.Policy.Line)
		}
		c.Policy, c.policyLine = d.Policy.Value, d.Policy.Line
	}
	if d.Steps.Kind != 0 {
		if d.Steps.Kind != yaml.SequenceNode {
			return nil, fmt.Errorf("line %d: steps: want a list, one entry per step", d.Steps.Line)
		}
		c.HasSteps, c.stepsLine = true, d.Steps.Line
		for i, s := range d.Steps.Content {
			e, err := parseExpect(s)
			if err != nil {
				return nil, fmt.Errorf("line %d: steps[%d]: %v", s.Line, i, err)
			}
			c.Steps = append(c.Steps, e)
		}
	}
	if d.Fallback.Kind != 0 {
		e, err := parseExpect(&d.Fallback)
		if err != nil {
			return nil, fmt.Errorf("line %d: fallback: %v", d.Fallback.Line, err)
		}
		c.Fallback, c.HasFallback, c.fallbackLine = e, true, d.Fallback.Line
	}
	if d.OnCall.Kind != 0 {
		if d.OnCall.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("line %d: oncall: want rotation: person", d.OnCall.Line)
		}
		c.OnCall, c.onCallLine = map[string]string{}, map[string]int{}
		for i := 0; i+1 < len(d.OnCall.Content); i += 2 {
			k, v := d.OnCall.Content[i], d.OnCall.Content[i+1]
			if v.Kind != yaml.ScalarNode || v.Value == "" {
				return nil, fmt.Errorf("line %d: oncall.%s: want a person id or nobody", v.Line, k.Value)
			}
			c.OnCall[k.Value], c.onCallLine[k.Value] = v.Value, k.Line
		}
	}
	return c, nil
}

// parseExpect reads {person: [channels]} (a single channel may be a string;
// {} means the step pages nobody).
func parseExpect(n *yaml.Node) (Expect, error) {
	e := Expect{People: map[string][]string{}, Line: n.Line}
	if n.Kind != yaml.MappingNode {
		return e, errors.New("want person: [channels], e.g. {alice: [matrix, phone]}")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var chans []string
		switch v.Kind {
		case yaml.ScalarNode:
			chans = []string{v.Value}
		case yaml.SequenceNode:
			for _, c := range v.Content {
				chans = append(chans, c.Value)
			}
		default:
			return e, fmt.Errorf("%s: want a channel or a list of channels", k.Value)
		}
		for _, c := range chans {
			if !notifiers.Channel(c).Valid() {
				return e, fmt.Errorf("%s: unknown channel %q (known: matrix, pagerduty, phone, sms)", k.Value, c)
			}
		}
		e.People[k.Value] = chans
	}
	return e, nil
}

func knownKeys(n *yaml.Node, known ...string) error {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i].Value; !slices.Contains(known, k) {
			return fmt.Errorf("line %d: unknown field %q (known: %s)", n.Content[i].Line, k, strings.Join(known, ", "))
		}
	}
	return nil
}

// Run checks every case against r and returns the failures, in file order.
func (f *File) Run(r *rota.Rota) []Failure {
	var out []Failure
	for _, c := range f.Cases {
		out = append(out, f.runCase(r, c)...)
	}
	return out
}

func (f *File) runCase(r *rota.Rota, c Case) []Failure {
	var out []Failure
	fail := func(line int, what, want, got string) {
		out = append(out, Failure{Pos: fmt.Sprintf("%s:%d", f.Path, line), Case: c.Name, What: what, Want: want, Got: got})
	}
	at, err := rota.ParseTime(c.At, r.Location)
	if err != nil {
		fail(c.atLine, "at", "a time", err.Error())
		return out
	}
	if c.Policy != "" || c.HasSteps || c.HasFallback {
		p, i, err := r.Match(c.Labels)
		switch {
		case err != nil:
			fail(c.Line, "policy", orAny(c.Policy), err.Error())
			return out
		case c.Policy != "" && p.ID != c.Policy:
			fail(c.policyLine, "policy", c.Policy, fmt.Sprintf("%s (routes[%d], %s:%d)", p.ID, i, r.Source, r.Routes[i].Line))
			return out // the step expectations were written for the other policy
		}
		if c.HasSteps {
			if len(c.Steps) != len(p.Steps) {
				fail(c.stepsLine, "steps", fmt.Sprintf("%d steps", len(c.Steps)), fmt.Sprintf("%d steps in policy %s", len(p.Steps), p.ID))
			}
			for i, want := range c.Steps {
				if i >= len(p.Steps) {
					break
				}
				st := p.Steps[i]
				got := r.StepPages(st.Targets, st.Channels, at)
				if w, g := FormatExpect(want.People), FormatPaged(got); w != g {
					fail(want.Line, fmt.Sprintf("steps[%d]", i), w, g)
				}
			}
		}
		if c.HasFallback {
			got := r.StepPages(p.Fallback, notifiers.Channels, at)
			if w, g := FormatExpect(c.Fallback.People), FormatPaged(got); w != g {
				fail(c.fallbackLine, "fallback", w, g)
			}
		}
	}
	for _, rot := range slices.Sorted(maps.Keys(c.OnCall)) {
		want := c.OnCall[rot]
		if r.Rotations[rot] == nil {
			fail(c.onCallLine[rot], "oncall."+rot, want, fmt.Sprintf("no rotation %q", rot))
			continue
		}
		got := "nobody"
		if p := r.OnCall(rot, at); p != nil {
			got = p.ID
		}
		if got != want {
			fail(c.onCallLine[rot], "oncall."+rot, want, got)
		}
	}
	return out
}

func orAny(s string) string {
	if s == "" {
		return "a matching route"
	}
	return s
}

// FormatExpect renders person → channels canonically: people sorted, each
// with their channels in the order notifiers.Channels lists them.
func FormatExpect(m map[string][]string) string {
	if len(m) == 0 {
		return "nobody"
	}
	var parts []string
	for _, id := range slices.Sorted(maps.Keys(m)) {
		var chans []string
		for _, c := range notifiers.Channels {
			if slices.Contains(m[id], string(c)) {
				chans = append(chans, string(c))
			}
		}
		parts = append(parts, id+": ["+strings.Join(chans, ", ")+"]")
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// FormatPaged renders what a step pages the same way as FormatExpect.
func FormatPaged(ps []rota.Paged) string {
	m := map[string][]string{}
	for _, p := range ps {
		for _, c := range p.Channels {
			m[p.Person] = append(m[p.Person], string(c))
		}
	}
	return FormatExpect(m)
}
