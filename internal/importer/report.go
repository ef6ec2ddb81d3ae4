package importer

import (
	"fmt"
	"io"
	"strings"
)

// Report is what an import could not say in rota.yaml as the source does.
type Report struct {
	// Findings in the order found.
	Findings []Finding
	// Overrides counts the rota overrides written to follow the source.
	Overrides int
	// DefaultPolicy is the policy of the default route.
	DefaultPolicy string

	policyIDs map[string]string // policy key → rota id
}

// Write prints the report for a terminal or a pull request.
func (r *Report) Write(w io.Writer, source string) {
	if len(r.Findings) == 0 {
		fmt.Fprintf(w, "Report: everything imported from %s is expressed in rota.yaml as the source has it.\n", source)
	} else {
		fmt.Fprintf(w, "Report: %d %s from %s that rota.yaml does not say as the source does:\n", len(r.Findings), plural(len(r.Findings), "thing", "things"), source)
		for i, f := range r.Findings {
			fmt.Fprintf(w, "\n%d. %s\n   %s: %s\n   rota.yaml: %s\n   difference: %s\n", i+1, f.Where, source, f.Source, f.Nearest, f.Difference)
		}
	}
	if r.Overrides > 0 {
		fmt.Fprintf(w, "\n%d %s written to follow the source's overrides and layers.\n", r.Overrides, plural(r.Overrides, "override", "overrides"))
	}
}

// String is the report as Write prints it.
func (r *Report) String() string {
	var b strings.Builder
	r.Write(&b, "the source")
	return b.String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
