package main

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// sample is benchmark output as go test prints it: BENCH lines of the three
// kinds among other lines, a revert run twice, reaction intervals in every
// shape, scale sizes as a list, one per line and as "results", and a kind
// that is not drawn.
const sample = `goos: linux
BenchmarkRevert/commits=1000-2    1    5188137108 ns/op
BENCH {"kind":"revert","sizes":[{"commits":1000,"files":20000,"git":{"cold":{"seconds":2.797,"peakRSSMiB":17.4,"allRSSMiB":24.9},"cached":{"seconds":0.198,"peakRSSMiB":16.7,"allRSSMiB":28.6}},"backstop":{"cold":{"seconds":0.552,"peakRSSMiB":46.3,"heapMiB":29.6},"cached":{"seconds":0.147,"peakRSSMiB":27.5,"heapMiB":12.8}}},{"commits":10000,"files":20000,"git":{"cold":{"seconds":6.206,"peakRSSMiB":38.1,"allRSSMiB":38.1},"cached":{"seconds":0.229,"peakRSSMiB":30.5,"allRSSMiB":45.9}},"backstop":{"cold":{"seconds":1.941,"peakRSSMiB":223.7,"heapMiB":192.9},"cached":{"seconds":0.242,"peakRSSMiB":56.2,"heapMiB":45}}},{"commits":50000,"files":20000,"git":{"cold":{"seconds":9.703,"peakRSSMiB":61.9,"allRSSMiB":61.9},"cached":{"seconds":0.296,"peakRSSMiB":54.2,"allRSSMiB":62.3}},"backstop":{"cold":{"seconds":8.3,"peakRSSMiB":353.5,"heapMiB":327.7},"cached":{"seconds":0.59,"peakRSSMiB":140.1,"heapMiB":127.9}}}]}
BENCH {"kind":"revert","sizes":[{"commits":1000,"files":20000,"git":{"cold":{"seconds":1.129,"peakRSSMiB":17.5,"allRSSMiB":24.9},"cached":{"seconds":0.204,"peakRSSMiB":16.5,"allRSSMiB":28.2}},"backstop":{"cold":{"seconds":0.608,"peakRSSMiB":49.2,"heapMiB":32.4},"cached":{"seconds":0.13,"peakRSSMiB":27.4,"heapMiB":13.5}}}]}
BenchmarkReaction-2    BENCH {"kind":"reaction","rounds":[{"detect":2100,"trafficToStable":40,"revertPushed":9100},{"detect":1900,"trafficToStable":55,"revertPushed":8700},{"detect":2500,"trafficToStable":38,"revertPushed":9900}]}
BENCH {"kind":"reaction","intervalsMs":{"detect":[2000,2200],"revertPushed":[9300,9000]}}
BENCH {"kind":"scale","sizes":[{"rollouts":10,"rssPeakMiB":60,"cpuSeconds":3,"stepLagP50Ms":20,"stepLagP99Ms":90,"apiRequestsPerSecond":4,"promQueriesPerSecond":1},{"rollouts":100,"rssPeakMiB":85,"cpuSeconds":20,"stepLagP50Ms":35,"stepLagP99Ms":240,"apiRequestsPerSecond":30,"promQueriesPerSecond":9}]}
BENCH {"kind":"scale","rollouts":1000,"rssPeakMiB":210,"cpuSeconds":150,"stepLagP50Ms":80,"stepLagP99Ms":900,"apiRequestsPerSecond":260,"promQueriesPerSecond":85}
BENCH {"bench":"reaction","rounds":2,"intervals":{"decision":{"p50":1500}},"perRound":[{"round":1,"msFromOnset":{"checkFailed":1200,"decision":1500,"eventSeen":1510,"fluxApplied":15000,"idle":21000,"revertPushed":9000,"routeWritten":1550}},{"round":2,"msFromOnset":{"checkFailed":1100,"decision":1400,"eventSeen":1420,"fluxApplied":14000,"idle":20500,"revertPushed":8800,"routeWritten":1450}}]}
BENCH {"bench":"scale","workloads":"kwok","results":[{"size":2000,"rssPeakMiB":300,"stepLagP50Seconds":0.12,"stepLagP99Seconds":1.5,"setup":{"cpuSeconds":40}},{"size":5000,"error":"timed out"}]}
BENCH {"kind":"soak","hours":1}
PASS
`

func TestRunDrawsEveryKind(t *testing.T) {
	dir := t.TempDir()
	var log bytes.Buffer
	written, err := run(dir, nil, strings.NewReader(sample), &log)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, name := range []string{"reaction.png", "revert-memory.png", "revert-time.png", "scale-memory.png", "scale-step-lag.png"} {
		want = append(want, filepath.Join(dir, name))
	}
	if !slices.Equal(written, want) {
		t.Errorf("written %q, want %q", written, want)
	}
	for _, path := range want {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if b := img.Bounds(); b.Dx() != widthPx || b.Dy() != heightPx {
			t.Errorf("%s is %d×%d pixels, want %d×%d", path, b.Dx(), b.Dy(), widthPx, heightPx)
		}
	}
	if !strings.Contains(log.String(), `skipped 1 line(s) of kind "soak"`) {
		t.Errorf("log %q does not tell of the skipped line", log.String())
	}
}

func TestReadKeepsFiguresAndOrder(t *testing.T) {
	var res results
	if err := res.read("sample", strings.NewReader(sample)); err != nil {
		t.Fatal(err)
	}
	if len(res.revert) != 4 || res.revert[2].Commits != 50000 || res.revert[2].Backstop.Cold.PeakRSSMiB != 353.5 || res.revert[1].Git.Cached.AllRSSMiB != 45.9 {
		t.Errorf("revert sizes: %+v", res.revert)
	}
	// The moments of "perRound" follow, ordered by their medians.
	if want := []string{"detect", "trafficToStable", "revertPushed", "checkFailed", "decision", "eventSeen", "routeWritten", "fluxApplied", "idle"}; !slices.Equal(res.reaction.names, want) {
		t.Errorf("reaction names %q, want %q", res.reaction.names, want)
	}
	if got, want := res.reaction.values["detect"], []float64{2100, 1900, 2500, 2000, 2200}; !slices.Equal(got, want) {
		t.Errorf("detect %v, want %v", got, want)
	}
	if got, want := res.reaction.values["revertPushed"], []float64{9100, 8700, 9900, 9300, 9000, 9000, 8800}; !slices.Equal(got, want) {
		t.Errorf("revertPushed %v, want %v", got, want)
	}
	if len(res.scale) != 4 || res.scale[2].Rollouts != 1000 || res.scale[2].StepLagP99Ms != 900 || res.scale[0].PromQueriesPerSecond != 1 {
		t.Errorf("scale sizes: %+v", res.scale)
	}
	if s := res.scale[3]; s.Rollouts != 2000 || s.StepLagP50Ms != 120 || s.StepLagP99Ms != 1500 || s.RSSPeakMiB != 300 {
		t.Errorf("a scale size from \"results\": %+v", s)
	}
}

func TestRunDrawsOnlyWhatHasFigures(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(t.TempDir(), "bench.out")
	lines := `BENCH {"kind":"scale","sizes":[{"rollouts":50,"rssPeakMiB":70}]}
BENCH {"kind":"scale","rollouts":500,"rssPeakMiB":95}
`
	if err := os.WriteFile(in, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	written, err := run(dir, []string{in}, strings.NewReader(sample), &log)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Join(dir, "scale-memory.png")}; !slices.Equal(written, want) {
		t.Errorf("written %q, want %q", written, want)
	}
	for _, note := range []string{"no revert figures", "no reaction figures", "nothing to draw in scale-step-lag.png"} {
		if !strings.Contains(log.String(), note) {
			t.Errorf("log %q does not say %q", log.String(), note)
		}
	}
}

func TestRunRefusesBadInput(t *testing.T) {
	for name, in := range map[string]string{
		"no BENCH line":   "PASS\n",
		"broken JSON":     "BENCH {\"kind\":\"revert\",\n",
		"no kind":         `BENCH {"sizes":[]}` + "\n",
		"a wrong shape":   `BENCH {"kind":"scale","sizes":{"rollouts":1}}` + "\n",
		"a bad interval":  `BENCH {"kind":"reaction","intervalsMs":{"detect":"slow"}}` + "\n",
		"only other kind": `BENCH {"kind":"soak"}` + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := run(dir, nil, strings.NewReader(in), &bytes.Buffer{}); err == nil {
				t.Error("no error")
			}
			if entries, _ := os.ReadDir(dir); len(entries) > 0 {
				t.Errorf("wrote %d file(s)", len(entries))
			}
		})
	}
}

func TestLinearTicks(t *testing.T) {
	for hi, want := range map[float64]string{
		520:  "0 100 200 300 400 500 600",
		0.7:  "0 0.2 0.4 0.6 0.8",
		0.35: "0 0.1 0.2 0.3 0.4",
		90:   "0 20 40 60 80 100",
		12:   "0 2 4 6 8 10 12",
		13:   "0 2.5 5 7.5 10 12.5 15",
	} {
		var labels []string
		for _, tk := range linearTicks(hi) {
			labels = append(labels, tk.Label)
		}
		if got := strings.Join(labels, " "); got != want {
			t.Errorf("linearTicks(%v): %q, want %q", hi, got, want)
		}
	}
}
