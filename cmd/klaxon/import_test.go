package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	fakepagerduty "github.com/klaxon-oncall/klaxon/internal/fakes/pagerduty"
	"github.com/klaxon-oncall/klaxon/internal/importer"
)

func importTestEnv() importEnv {
	return importEnv{
		now:       func() time.Time { return fakepagerduty.ExampleNow },
		transport: &importer.RetryTransport{Sleep: func(context.Context, time.Duration) error { return nil }},
	}
}

func importExampleFake(t *testing.T) *fakepagerduty.Server {
	t.Helper()
	fake := fakepagerduty.New(t)
	fake.SetClock(func() time.Time { return fakepagerduty.ExampleNow })
	fake.AddExampleAccount()
	t.Setenv("PAGERDUTY_TOKEN", fake.APIToken())
	return fake
}

func runImportT(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = runImport(context.Background(), args, &out, &errb, importTestEnv())
	return code, out.String(), errb.String()
}

func runRotaT(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runRota(args, &out, &errb, rotaEnv{now: func() time.Time { return fakepagerduty.ExampleNow }})
	return code, out.String(), errb.String()
}

func TestImportDryRunPrintsTheRotaAndTheReport(t *testing.T) {
	fake := importExampleFake(t)
	code, out, errs := runImportT(t, "pagerduty", "--url", fake.URL())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"timezone: Europe/Berlin", "rotations:", "# Report: ", `layer "Office hours"`, "round robin"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q", want)
		}
	}
	// The dry run's output is itself a rota that checks.
	path := filepath.Join(t.TempDir(), "rota.yaml")
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runRotaT(t, "check", path); code != 0 {
		t.Fatalf("rota check of the dry run: exit %d: %s", code, errs)
	}
	for _, c := range fake.RESTCalls() {
		if c.Method != "GET" {
			t.Errorf("the import changed something at PagerDuty: %s %s", c.Method, c.Path)
		}
	}
}

// --write writes files that pass klaxon rota check and klaxon rota test;
// --verify agrees with PagerDuty except the hours the report lists.
func TestImportWriteVerifyCheckAndTest(t *testing.T) {
	fake := importExampleFake(t)
	dir := t.TempDir()
	code, out, errs := runImportT(t, "pagerduty", "--url", fake.URL(), "--write", "--verify", "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d:\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(out, "explained by the report") || strings.Contains(out, "FAILED") {
		t.Fatalf("verify output:\n%s", out)
	}
	if code, _, errs := runRotaT(t, "check", filepath.Join(dir, "rota.yaml")); code != 0 {
		t.Fatalf("rota check: exit %d: %s", code, errs)
	}
	code, tout, _ := runRotaT(t, "test", filepath.Join(dir, "rota_test.yaml"))
	if code != 0 || !strings.Contains(tout, "0 failed") {
		t.Fatalf("rota test: exit %d:\n%s", code, tout)
	}
	// A second --write does not replace the files unless told to.
	if code, _, errs := runImportT(t, "pagerduty", "--url", fake.URL(), "--write", "--out", dir); code != 1 || !strings.Contains(errs, "--force") {
		t.Fatalf("second write: exit %d: %s", code, errs)
	}
}

// klaxon rota diff between two imports shows what changed at the source.
func TestRotaDiffBetweenTwoImports(t *testing.T) {
	fake := importExampleFake(t)
	a, b := t.TempDir(), t.TempDir()
	if code, _, errs := runImportT(t, "pagerduty", "--url", fake.URL(), "--write", "--out", a); code != 0 {
		t.Fatal(errs)
	}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	fake.AddSchedule(fakepagerduty.Schedule{ID: "PSCHDB1", Name: "Database", TimeZone: "Europe/Berlin",
		Layers: []fakepagerduty.Layer{{ID: "PLAYER3", Name: "Daily", Start: time.Date(2026, 10, 1, 8, 0, 0, 0, berlin),
			RotationVirtualStart: time.Date(2026, 10, 1, 8, 0, 0, 0, berlin), TurnLength: 24 * time.Hour, Users: []string{"PDAN004", "PANN001", "PCAT003"}}},
		Overrides: []fakepagerduty.ScheduleOverride{{ID: "POVR9", User: "PBEN002", Start: time.Date(2026, 10, 28, 8, 0, 0, 0, berlin), End: time.Date(2026, 10, 29, 8, 0, 0, 0, berlin)}},
	})
	if code, _, errs := runImportT(t, "pagerduty", "--url", fake.URL(), "--write", "--out", b); code != 0 {
		t.Fatal(errs)
	}
	code, out, errs := runRotaT(t, "diff", filepath.Join(a, "rota.yaml"), filepath.Join(b, "rota.yaml"), "--from", "2026-10-20")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "1 span change hands") || !strings.Contains(out, "database") || !strings.Contains(out, "Ben Best (ben)") {
		t.Fatalf("diff:\n%s", out)
	}
}

// The token comes from the environment or a file, and never shows in output.
func TestImportSecrets(t *testing.T) {
	fake := importExampleFake(t)
	t.Run("no flag takes it", func(t *testing.T) {
		if code, _, _ := runImportT(t, "pagerduty", "--token", "x"); code != 2 {
			t.Fatalf("exit %d, want 2 (usage)", code)
		}
	})
	t.Run("from a file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(f, []byte(fake.APIToken()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Unsetenv("PAGERDUTY_TOKEN")
		t.Setenv("PAGERDUTY_TOKEN_FILE", f)
		if code, _, errs := runImportT(t, "pagerduty", "--url", fake.URL()); code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
	})
	t.Run("a wrong token is not echoed", func(t *testing.T) {
		const wrong = "wrong-token-0123456789"
		t.Setenv("PAGERDUTY_TOKEN", wrong)
		code, out, errs := runImportT(t, "pagerduty", "--url", fake.URL(), "--verify")
		if code != 1 || !strings.Contains(errs, "401") {
			t.Fatalf("exit %d: %s", code, errs)
		}
		if strings.Contains(out+errs, wrong) || strings.Contains(out+errs, fake.APIToken()) {
			t.Fatalf("the token shows in the output:\n%s%s", out, errs)
		}
	})
	t.Run("dry run and write contradict", func(t *testing.T) {
		if code, _, errs := runImportT(t, "pagerduty", "--dry-run", "--write"); code != 2 || !strings.Contains(errs, "contradict") {
			t.Fatalf("exit %d: %s", code, errs)
		}
	})
	t.Run("none set", func(t *testing.T) {
		os.Unsetenv("PAGERDUTY_TOKEN")
		code, _, errs := runImportT(t, "pagerduty", "--url", fake.URL())
		if code != 1 || !strings.Contains(errs, "set PAGERDUTY_TOKEN") {
			t.Fatalf("exit %d: %s", code, errs)
		}
	})
}

func TestImportUsageErrors(t *testing.T) {
	t.Setenv("OPSGENIE_API_KEY", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"victorops"}, `unknown source "victorops"`},
		{[]string{"goalert"}, "give --url"},
		{[]string{"grafana-oncall"}, "give --url"},
		{[]string{"opsgenie", "--url", "https://opsgenie.internal.example"}, "plain http"},
		{[]string{"pagerduty", "--weeks", "0"}, "--weeks must be from 1 to 52"},
		{[]string{"pagerduty", "--via", "email"}, `"email" is not a channel`},
		{[]string{"pagerduty", "--route-label", "not a label"}, "is not a label name"},
		{[]string{"pagerduty", "--timezone", "Mars/Olympus"}, "unknown time zone"},
	} {
		code, _, errs := runImportT(t, c.args...)
		if code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, errs, c.want)
		}
	}
}
