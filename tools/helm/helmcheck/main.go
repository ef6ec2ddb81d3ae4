// Command helmcheck is the part of the helm CLI that Klaxon's CI needs, built
// on helm's own packages (chart/loader, chartutil, engine, lint, releaseutil,
// strvals) without the rest of the CLI (Kubernetes clients, registries,
// plugins), which made helm a two-and-a-half-minute cold build:
//
//	helmcheck lint [--strict] CHART
//	helmcheck template NAME CHART [--namespace NS] [--set K=V]...
//
// Both follow helm v3's `helm lint` and `helm template` (pkg/action's Lint and
// client-only Install, and cmd/helm's output): the same linter, the same
// values coalescing and values.schema.json validation, the same template
// engine and the same manifest sorting and output. Anything else those
// commands accept (dependencies, --values, --set-file, --kube-version, hooks'
// flags, ...) is refused with an error rather than ignored.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/releaseutil"
	"helm.sh/helm/v3/pkg/strvals"
)

const usage = `usage: helmcheck lint [--strict] CHART
       helmcheck template NAME CHART [--namespace NS] [--set K=V]...`

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "lint":
		return lintCmd(args[1:], out)
	case "template":
		return templateCmd(args[1:], out)
	}
	return errors.New(usage)
}

// lintCmd is `helm lint [--strict] CHART` with no values and the default
// namespace.
func lintCmd(args []string, out io.Writer) error {
	strict := false
	var charts []string
	for _, a := range args {
		switch {
		case a == "--strict":
			strict = true
		case strings.HasPrefix(a, "-"):
			return fmt.Errorf("helmcheck lint: unsupported flag %s", a)
		default:
			charts = append(charts, a)
		}
	}
	if len(charts) != 1 {
		return errors.New(usage)
	}
	chart := charts[0]
	fmt.Fprintf(out, "==> Linting %s\n", chart)
	if _, err := os.Stat(filepath.Join(chart, "Chart.yaml")); err != nil {
		fmt.Fprintf(out, "Error unable to check Chart.yaml file in chart: %s\n\n", err)
		return errors.New("1 chart(s) linted, 1 chart(s) failed")
	}
	linter := lint.AllWithKubeVersionAndSchemaValidation(chart, map[string]any{}, "default", nil, false)
	lowest := support.ErrorSev
	if strict {
		lowest = support.WarningSev
	}
	failed := false
	for _, m := range linter.Messages {
		fmt.Fprintf(out, "%s\n", m)
		failed = failed || m.Severity >= lowest
	}
	fmt.Fprint(out, "\n")
	if failed {
		return errors.New("1 chart(s) linted, 1 chart(s) failed")
	}
	fmt.Fprintln(out, "1 chart(s) linted, 0 chart(s) failed")
	return nil
}

// templateCmd is `helm template NAME CHART` (client-only, no hooks flags):
// values from --set, coalesced with the chart's and validated against its
// schema, rendered, and the manifests printed in helm's install order.
func templateCmd(args []string, out io.Writer) error {
	namespace := "default"
	vals := map[string]any{}
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		flag, val, hasVal := strings.Cut(a, "=")
		switch flag {
		case "--namespace", "-n", "--set":
			if !hasVal {
				if i+1 >= len(args) {
					return fmt.Errorf("flag needs an argument: %s", flag)
				}
				i++
				val = args[i]
			}
			if flag == "--set" {
				if err := strvals.ParseInto(val, vals); err != nil {
					return fmt.Errorf("failed parsing --set data: %w", err)
				}
			} else {
				namespace = val
			}
		default:
			if strings.HasPrefix(a, "-") {
				return fmt.Errorf("helmcheck template: unsupported flag %s", a)
			}
			pos = append(pos, a)
		}
	}
	if len(pos) != 2 {
		return errors.New(usage)
	}
	name, chartPath := pos[0], pos[1]

	if _, err := os.Stat(chartPath); err != nil {
		return fmt.Errorf("path %q not found", chartPath)
	}
	chrt, err := loader.Load(chartPath)
	if err != nil {
		return err
	}
	switch chrt.Metadata.Type {
	case "", "application":
	default:
		return fmt.Errorf("%s charts are not installable", chrt.Metadata.Type)
	}
	if chrt.Metadata.Deprecated {
		fmt.Fprintln(os.Stderr, "WARNING: This chart is deprecated")
	}
	if len(chrt.Metadata.Dependencies) > 0 {
		return errors.New("helmcheck template: charts with dependencies are not supported (use helm)")
	}
	if err := chartutil.ProcessDependenciesWithMerge(chrt, vals); err != nil {
		return err
	}
	caps := chartutil.DefaultCapabilities.Copy()
	options := chartutil.ReleaseOptions{Name: name, Namespace: namespace, Revision: 1, IsInstall: true}
	values, err := chartutil.ToRenderValuesWithSchemaValidation(chrt, vals, options, caps, false)
	if err != nil {
		return err
	}
	// Errors from here on are rendering errors, which helm reports with a
	// hint to its --debug flag.
	const debugHint = "\n\nUse --debug flag to render out invalid YAML"
	if chrt.Metadata.KubeVersion != "" && !chartutil.IsCompatibleRange(chrt.Metadata.KubeVersion, caps.KubeVersion.String()) {
		return fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes %s"+debugHint, chrt.Metadata.KubeVersion, caps.KubeVersion.String())
	}
	files, err := engine.Engine{}.Render(chrt, values)
	if err != nil {
		return fmt.Errorf("%w"+debugHint, err)
	}
	for k := range files {
		if strings.HasSuffix(k, "NOTES.txt") {
			delete(files, k)
		}
	}
	var b bytes.Buffer
	hooks, manifests, err := releaseutil.SortManifests(files, nil, releaseutil.InstallOrder)
	if err != nil {
		return fmt.Errorf("%w"+debugHint, err)
	}
	for _, m := range manifests {
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", m.Name, m.Content)
	}
	var res bytes.Buffer
	fmt.Fprintln(&res, strings.TrimSpace(b.String()))
	for _, h := range hooks {
		fmt.Fprintf(&res, "---\n# Source: %s\n%s\n", h.Path, h.Manifest)
	}
	_, err = out.Write(res.Bytes())
	return err
}
