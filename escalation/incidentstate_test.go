package escalation

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var allIncidentEvents = []incidentEvent{incAck, incUnack, incReopen, incEscalate, incResolve, incStep}

// TestIncidentMoveTable checks every (state, event) pair of the incident
// state machine: whether the event applies, and everything it changes.
func TestIncidentMoveTable(t *testing.T) {
	at := time.Date(2026, 12, 26, 3, 0, 0, 0, time.UTC)
	now := at.Add(time.Hour)
	start := func(s State) Incident {
		inc := Incident{ID: 1, State: s, Escalation: Escalation{Policy: "p", Started: true, Round: 1, Step: 2,
			Generation: 7, Since: 3, StepAt: at, NextAt: now.Add(5 * time.Minute), Exhausted: true, Fallback: true, Repages: 2}}
		if s != Open {
			inc.AckedAt, inc.AckedBy, inc.AckedVia = at, "Alice", "matrix"
		}
		if s == Resolved {
			inc.ResolvedAt = at
		}
		return inc
	}
	unacked := func(inc *Incident) {
		inc.State, inc.AckedAt, inc.AckedBy, inc.AckedVia = Open, time.Time{}, "", ""
	}
	afresh := func(inc *Incident) {
		unacked(inc)
		inc.Escalation = Escalation{Policy: "p", Generation: 8, Since: 8}
	}
	resolved := func(inc *Incident) {
		inc.State, inc.ResolvedAt = Resolved, now
		inc.Escalation.NextAt = time.Time{}
		inc.Escalation.Generation = 8
	}
	cases := []struct {
		from State
		ev   incidentEvent
		// want changes the starting incident into the expected one; nil:
		// the event does not apply and nothing changes.
		want func(*Incident)
	}{
		{Open, incAck, func(inc *Incident) {
			inc.State, inc.AckedAt, inc.AckedBy, inc.AckedVia = Acknowledged, now, "Bob", "sms"
			inc.Escalation.Generation = 8
		}},
		{Open, incUnack, nil},
		{Open, incReopen, nil},
		{Open, incEscalate, func(*Incident) {}}, // applies; Decide moves the step
		{Open, incResolve, resolved},
		{Open, incStep, func(inc *Incident) { inc.Escalation.Generation = 8 }},

		{Acknowledged, incAck, nil},
		{Acknowledged, incUnack, afresh},
		{Acknowledged, incReopen, afresh},
		{Acknowledged, incEscalate, unacked}, // where the escalation stood
		{Acknowledged, incResolve, resolved}, // who acknowledged stays on record
		{Acknowledged, incStep, nil},

		{Resolved, incAck, nil},
		{Resolved, incUnack, nil},
		{Resolved, incReopen, nil},
		{Resolved, incEscalate, nil},
		{Resolved, incResolve, nil},
		{Resolved, incStep, nil},

		{Open, "bogus", nil},
	}
	covered := map[State]map[incidentEvent]bool{}
	for _, tc := range cases {
		if covered[tc.from] == nil {
			covered[tc.from] = map[incidentEvent]bool{}
		}
		covered[tc.from][tc.ev] = true
		inc := start(tc.from)
		ok := inc.move(tc.ev, now, "Bob", "sms")
		want := start(tc.from)
		if tc.want != nil {
			tc.want(&want)
		}
		if ok != (tc.want != nil) {
			t.Errorf("%s on %s: applies = %v, want %v", tc.ev, tc.from, ok, tc.want != nil)
		}
		if !reflect.DeepEqual(inc, want) {
			t.Errorf("%s on %s:\n got %+v\nwant %+v", tc.ev, tc.from, inc, want)
		}
	}
	for _, s := range []State{Open, Acknowledged, Resolved} {
		for _, ev := range allIncidentEvents {
			if !covered[s][ev] {
				t.Errorf("no case for %s on %s", ev, s)
			}
		}
	}
}

// TestGenerationChangesOnlyInTheStateMachine reads the package's source: a
// generation written anywhere but in move would let an answer apply as of
// the wrong page, so no other assignment may name it.
func TestGenerationChangesOnlyInTheStateMachine(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") || name == "incidentstate.go" {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		writes := func(x ast.Expr) bool {
			if sel, ok := x.(*ast.SelectorExpr); ok {
				return sel.Sel.Name == "Generation"
			}
			return false
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.IncDecStmt:
				if writes(n.X) {
					t.Errorf("%s: Generation changed outside the incident state machine", fset.Position(n.Pos()))
				}
			case *ast.AssignStmt:
				for _, x := range n.Lhs {
					if writes(x) {
						t.Errorf("%s: Generation assigned outside the incident state machine", fset.Position(n.Pos()))
					}
				}
				for _, x := range n.Rhs {
					if lit, ok := x.(*ast.CompositeLit); ok {
						if id, ok := lit.Type.(*ast.Ident); ok && id.Name == "Escalation" {
							t.Errorf("%s: an Escalation replaced outside the incident state machine", fset.Position(n.Pos()))
						}
					}
				}
			}
			return true
		})
	}
}
