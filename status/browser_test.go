//go:build linux

package status_test

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// chromium finds Debian's chromium. Missing, it skips the test, except
// under CI=true, where scripts/test.sh has installed it and its absence is
// a failure.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (scripts/test.sh installs it: apt-get install chromium)")
	}
	t.Skip("chromium is not installed; on Debian: sudo apt-get install -y chromium")
	return ""
}

// artifactDir is where the screenshot goes: $CRABBOX_TEST_ARTIFACTS, else a
// fixed directory under the system's temp dir, so it outlives the test.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CRABBOX_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "crabbox-runner-test-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runChromium runs headless chromium on a page served on loopback. The
// flags keep it off the network: no background, component, sync or
// first-run traffic, and every host name but 127.0.0.1 fails to resolve.
func runChromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-default-apps", "--disable-extensions", "--no-default-browser-check", "--disable-dev-shm-usage",
		"--hide-scrollbars", "--mute-audio",
		"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
		"--user-data-dir=" + filepath.Join(home, "profile"),
	}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+home, "XDG_CACHE_HOME="+home)
	// Chromium starts helper processes; on timeout the whole group goes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, tail(stderr.String(), 20))
	}
	t.Logf("chromium %s took %s", args[0], time.Since(start).Round(time.Millisecond))
	return stdout.Bytes()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// The page in a real browser: it renders the leases without JavaScript,
// and a screenshot of it is written for people to look at.
func TestPageInChromium(t *testing.T) {
	bin := chromium(t)
	s := seedStore(t)
	srv := httptest.NewServer(newHandler(t, s.st, "", recentWithRecords()))
	defer srv.Close()
	url := srv.URL + "/"

	dom := string(runChromium(t, bin, "--dump-dom", url))
	for _, want := range []string{`id="lease-l-busy"`, `id="lease-l-boot"`, `id="lease-l-pend"`, `id="lease-l-failed"`,
		`id="lease-l-rel"`, `href="https://github.com/acme/vision/actions/runs/9001/job/101"`, "$37.00",
		"train &lt;script&gt;alert(\"job\")&lt;/script&gt;", "destroy failed &lt;b&gt;bold&lt;/b&gt;"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered DOM lacks %s", want)
		}
	}
	if strings.Contains(strings.ToLower(dom), "<script") || strings.Contains(dom, "<img") {
		t.Error("a hostile string became an element")
	}

	img, shot := screenshot(t, bin, url, "status-page.png", "1280,900")
	b := img.Bounds()
	if b.Dx() != 1280 || b.Dy() != 900 {
		t.Fatalf("screenshot is %dx%d, want 1280x900", b.Dx(), b.Dy())
	}
	// Not blank: a light page with dark text and some colour on it.
	colours := map[[3]uint32]bool{}
	var dark, light, n int
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
			lum := (299*(r>>8) + 587*(g>>8) + 114*(bl>>8)) / 1000
			switch {
			case lum < 100:
				dark++
			case lum > 200:
				light++
			}
			n++
		}
	}
	if len(colours) < 20 || dark < n/200 || light < n/2 {
		t.Fatalf("screenshot looks blank: %d colours, %d dark and %d light of %d pixels", len(colours), dark, light, n)
	}
	t.Logf("screenshot of the status page: %s (%d colours, %.1f%% dark pixels)", shot, len(colours), 100*float64(dark)/float64(n))
}

// The timeline in a real browser: the SVG is in the rendered DOM with the
// fixture's segments, and the screenshot shows each phase's colour where
// the timeline and bars are drawn.
func TestTimelineInChromium(t *testing.T) {
	bin := chromium(t)
	s := seedTimeline(t)
	srv := httptest.NewServer(newHandler(t, s.st, "", nil))
	defer srv.Close()
	url := srv.URL + "/"

	dom := string(runChromium(t, bin, "--dump-dom", url))
	for _, want := range []string{`id="tl-t-full"`, `id="tl-t-fail"`, `id="tl-t-busy"`, `<svg class="tl-bar"`,
		`id="bars-a100"`, `id="bars-h100"`, "boot: 2m 20s (host created → SSH reachable)"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered DOM lacks %s", want)
		}
	}
	if n := strings.Count(dom, `<g class="seg ph-`); n != 7+4+5 {
		t.Errorf("the rendered DOM has %d timeline segments, want 16", n)
	}

	img, shot := screenshot(t, bin, url, "status-timeline.png", "1280,1400")
	// style.css's phase colours (light scheme, which headless chromium
	// uses). The legend's swatch of each is 14×14 (under 196 pixels, fewer
	// where hatched): more than that is the timeline's and the bars'.
	phase := map[string][3]uint32{
		"queued": {0x99, 0x99, 0x99}, "create": {0xe6, 0x9f, 0x00}, "boot": {0x56, 0xb4, 0xe9},
		"bootstrap": {0x00, 0x9e, 0x73}, "idle": {0xf0, 0xe4, 0x42}, "job": {0x00, 0x72, 0xb2}, "release": {0xcc, 0x79, 0xa7},
	}
	count := map[string]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			px := [3]uint32{r >> 8, g >> 8, bl >> 8}
			for name, c := range phase {
				if near(px, c) {
					count[name]++
				}
			}
		}
	}
	for name := range phase {
		if count[name] <= 196 {
			t.Errorf("the screenshot shows %d pixels of %s's colour: the timeline is not drawn", count[name], name)
		}
	}
	t.Logf("screenshot of the timeline: %s (phase pixels %v)", shot, count)
}

// near: the same colour, give or take colour management's rounding.
func near(a, b [3]uint32) bool {
	for i := range a {
		d := int(a[i]) - int(b[i])
		if d < -3 || d > 3 {
			return false
		}
	}
	return true
}

// screenshot renders url in headless chromium at the window size ("W,H")
// into the artifact directory as name, and decodes it.
func screenshot(t *testing.T, bin, url, name, size string) (image.Image, string) {
	t.Helper()
	shot := filepath.Join(artifactDir(t), name)
	os.Remove(shot)
	runChromium(t, bin, "--screenshot="+shot, "--window-size="+size, url)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	return img, shot
}
