package rota

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Position locates a problem: the file, a 1-based line and column (0 when
// unknown) and the path of the field, e.g. policies.default.steps[1].notify.
type Position struct {
	File   string
	Line   int
	Column int
	Path   string
}

// String formats p as file:line:col: path, leaving out what is unknown.
func (p Position) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
		if p.Column > 0 {
			fmt.Fprintf(&b, ":%d", p.Column)
		}
	}
	if p.Path != "" {
		b.WriteString(": ")
		b.WriteString(p.Path)
	}
	return b.String()
}

// Error is one problem that makes a rota invalid.
type Error struct {
	Position
	Msg string
}

// Error formats e as file:line:col: path: message.
func (e *Error) Error() string { return e.Position.String() + ": " + e.Msg }

// Warning is a problem that does not stop the rota from loading but deserves
// a look: a coverage gap, a missing contact detail, an override with no effect.
type Warning struct {
	Position
	Msg string
}

// String formats w as file:line:col: path: message.
func (w Warning) String() string { return w.Position.String() + ": " + w.Msg }

// Errors is every problem found in one rota file, in file order.
type Errors struct {
	List []*Error
}

// Error lists every problem, one per line.
func (e *Errors) Error() string {
	lines := make([]string, len(e.List))
	for i, x := range e.List {
		lines[i] = x.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap gives errors.Is and errors.As access to each problem.
func (e *Errors) Unwrap() []error {
	out := make([]error, len(e.List))
	for i, x := range e.List {
		out[i] = x
	}
	return out
}

// Strings returns each problem formatted as by Error.
func (e *Errors) Strings() []string {
	out := make([]string, len(e.List))
	for i, x := range e.List {
		out[i] = x.Error()
	}
	return out
}

// ErrorStrings turns any error from Parse or Load into one line per problem.
func ErrorStrings(err error) []string {
	if err == nil {
		return nil
	}
	var es *Errors
	if errors.As(err, &es) {
		return es.Strings()
	}
	return []string{err.Error()}
}

func comparePos(a, b Position) int {
	return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column), cmp.Compare(a.Path, b.Path))
}

func sortErrors(list []*Error) {
	slices.SortStableFunc(list, func(a, b *Error) int {
		return cmp.Or(comparePos(a.Position, b.Position), cmp.Compare(a.Msg, b.Msg))
	})
}

func sortWarnings(list []Warning) {
	slices.SortStableFunc(list, func(a, b Warning) int {
		return cmp.Or(comparePos(a.Position, b.Position), cmp.Compare(a.Msg, b.Msg))
	})
}
