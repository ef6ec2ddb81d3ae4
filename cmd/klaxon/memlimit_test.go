package main

import (
	"io"
	"os"
	"testing"
)

// setenv sets or (for "") unsets a variable for the rest of the test.
func setenv(t *testing.T, k, v string) {
	t.Setenv(k, v) // restores the old value afterwards
	if v == "" {
		os.Unsetenv(k)
	}
}

func TestParseBytes(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"80MiB", 80 << 20, true},
		{"1GiB", 1 << 30, true},
		{"512KiB", 512 << 10, true},
		{"1048576", 1 << 20, true},
		{"4096B", 4096, true},
		{"0", 0, true},
		{"", 0, false},
		{"80MB", 0, false},
		{"-1MiB", 0, false},
		{"lots", 0, false},
		{"99999999999GiB", 0, false},
	} {
		got, err := parseBytes(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestServeMemoryLimit(t *testing.T) {
	setenv(t, "GOMEMLIMIT", "")
	for _, c := range []struct {
		args []string
		env  string
		want int64
		ok   bool
	}{
		{nil, "", 80 << 20, true},
		{[]string{"--memory-limit", "256MiB"}, "", 256 << 20, true},
		{[]string{"--memory-limit", "0"}, "", 0, true},
		{nil, "128MiB", 128 << 20, true},
		{[]string{"--memory-limit", "1MiB"}, "", 0, false},
		{[]string{"--memory-limit", "big"}, "", 0, false},
	} {
		setenv(t, "KLAXON_MEMORY_LIMIT", c.env)
		cfg, err := parseServe(append([]string{"--insecure-no-auth"}, c.args...), io.Discard)
		if (err == nil) != c.ok {
			t.Errorf("%v (env %q): err %v, want ok %v", c.args, c.env, err, c.ok)
			continue
		}
		if err == nil && cfg.memoryLimit != c.want {
			t.Errorf("%v (env %q): limit %d, want %d", c.args, c.env, cfg.memoryLimit, c.want)
		}
	}
	setenv(t, "GOMEMLIMIT", "200MiB")
	setenv(t, "KLAXON_MEMORY_LIMIT", "")
	cfg, err := parseServe([]string{"--insecure-no-auth"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.memoryLimit != 0 {
		t.Errorf("with GOMEMLIMIT set Klaxon must leave the runtime's limit alone, not set %d", cfg.memoryLimit)
	}
}
