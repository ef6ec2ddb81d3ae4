package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/klaxon-oncall/klaxon/internal/testtools"
)

// The phone the web tests hold: an iPhone 12-sized viewport.
const viewW, viewH = 390, 844

// chromium finds Debian's chromium. In CI (CI set) a missing browser fails
// the test, since .ci/run installs it; elsewhere the test is skipped.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed: .ci/run installs it (apt-get install -y chromium); the web interface's browser tests cannot run")
	}
	t.Skip("chromium is not installed (apt-get install -y chromium); set CI=1 to make this a failure")
	return ""
}

// browser starts headless Chromium at a phone's viewport for the test.
func browser(t *testing.T) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("runs klaxon serve and a browser")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)), chromedp.NoSandbox, chromedp.WindowSize(viewW, viewH),
		chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(viewW, viewH)); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// fitsAt360 fails the test if the page scrolls sideways on a 360 px wide
// phone (the narrowest the interface is made for), then restores the viewport.
func fitsAt360(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	run(t, ctx, "narrow the phone", chromedp.EmulateViewport(360, 740))
	w := get(t, ctx, "page width", chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
	run(t, ctx, "restore the phone", chromedp.EmulateViewport(viewW, viewH))
	if w > 360 {
		t.Errorf("%s is %dpx wide on a 360px phone: it scrolls sideways", page, w)
	}
}

// colorScheme makes the page see prefers-color-scheme: scheme ("dark", "light").
func colorScheme(scheme string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}})
		return err
	})
}

// run runs browser steps with a deadline.
func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
}

// get runs one browser action with a deadline and returns its value.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
	return v
}

// screenshot saves the whole page as name.png in the test's artifact
// directory; with KLAXON_UPDATE_SCREENSHOTS=1 also as docs/images/web-name.png,
// where docs/web.md shows it.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png := get(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(t.ArtifactDir(), name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("KLAXON_UPDATE_SCREENSHOTS") != "" {
		if err := os.WriteFile(filepath.Join(testtools.Root(), "docs", "images", "web-"+name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
