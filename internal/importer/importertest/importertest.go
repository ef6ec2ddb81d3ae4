// Package importertest holds what every importer's tests check the same way:
// golden files of what an import writes, and an import verified against the
// source's own answers with the rota_test.yaml it writes passing.
package importertest

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/importer"
	"github.com/klaxon-oncall/klaxon/internal/rotatests"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// Golden compares got with testdata/NAME.golden (go test -update rewrites it).
func Golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n--- got\n%s", path, got)
	}
}

// CheckImport holds an import to its golden files: the rota.yaml and the
// report (named for source) it writes; --verify against src over 28 days
// from now, which must find no hour the report does not explain (answers
// names what src was asked, for the failure); the mismatches it lists; and
// the rota_test.yaml it writes, which must pass against the written rota.
func CheckImport(t *testing.T, res *importer.Result, src importer.Source, now time.Time, source, answers string) {
	t.Helper()
	Golden(t, "rota.yaml", res.YAML)
	var rep bytes.Buffer
	res.Report.Write(&rep, source)
	Golden(t, "report.txt", rep.Bytes())
	bad, samples, err := res.VerifyWith(context.Background(), src, now, 28*24)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	res.WriteMismatches(&b, bad)
	if n := importer.Unreported(bad); n > 0 {
		t.Fatalf("--verify: %d hours disagree with %s:\n%s\n%s", n, answers, b.String(), res.YAML)
	}
	Golden(t, "verify.txt", []byte(b.String()))
	tests := res.TestsYAML(samples, "rota.yaml", "as "+source+" answered")
	Golden(t, "rota_test.yaml", tests)
	tf, err := rotatests.Parse("rota_test.yaml", tests)
	if err != nil {
		t.Fatal(err)
	}
	if fails := tf.Run(res.Rota); len(fails) > 0 {
		t.Fatalf("the written rota_test.yaml fails against the written rota: %v", fails)
	}
}
