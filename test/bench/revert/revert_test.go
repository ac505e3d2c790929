// Package revert_test measures a Git revert in large repositories: synthetic
// histories of 1,000, 10,000 and 50,000 commits over 20,000 files, each
// served by a real git smart-HTTP server (test/gittest). For each size it
// times package revert's clone + revert + push against the git CLI doing
// the same (git clone --single-branch, git revert, git push), then a second
// revert on the cached clone against git pull, git revert and git push in
// the CLI's clone, and prints the times, their ratios and the peak memory:
//
//	make bench-revert
//
// One size alone:
//
//	go test ./test/bench/revert -run '^$' -bench 'Revert/commits=10000$' -benchtime=1x
//
// The tree stays at 20,000 files at every size, so the history is the only
// thing that grows; the largest size is the repository of the revert issue.
//
// Peak memory: each git command's is the largest resident set of its
// processes (rusage), and the sum over its processes running at once,
// sampled from /proc every 10 ms. Each Backstop revert runs in a child
// process (this test binary started again) that does that revert alone, so
// its peak resident set (VmHWM) belongs to that revert; its peak Go heap is
// sampled every 20 ms.
//
// After the sizes, one line "BENCH {json}" holds every figure (the shape is
// revertBench); hack/benchplot draws it. The targets: at most 1.5 times the
// git CLI, and under a second with the cached clone. Figures, not
// assertions: a shared machine makes timed assertions flaky.
package revert_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/go-git/go-git/v5/plumbing/object"

	"backstop.dev/backstop/revert"
	"backstop.dev/backstop/test/gittest"
)

// sizes are the histories measured, in commits.
var sizes = []int{1_000, 10_000, 50_000}

const (
	treeFiles = 20_000
	manifest  = "apps/app/deployment.yaml"
	// childEnv, when set, makes the test binary a child that runs the
	// revert the variable describes (a childRequest) and exits.
	childEnv = "BACKSTOP_BENCH_REVERT_CHILD"
)

// revertBench is the BENCH line: {"kind":"revert","sizes":[...]}.
type revertBench struct {
	Kind  string       `json:"kind"`
	Sizes []sizeResult `json:"sizes"`
}

// sizeResult is every figure of one repository size.
type sizeResult struct {
	Commits      int     `json:"commits"`
	Files        int     `json:"files"`
	BuildSeconds float64 `json:"buildSeconds"`
	// Git is the git CLI; Backstop is package revert.
	Git      side `json:"git"`
	Backstop side `json:"backstop"`
	// Ratio is Backstop's time over the git CLI's.
	Ratio pair `json:"ratio"`
	// StartRSSMiB is the child process's resident set before its revert.
	StartRSSMiB float64 `json:"startRSSMiB"`
	// CacheMiB is the cached clone's size on disk.
	CacheMiB float64 `json:"cacheMiB"`
}

// side is one tool's figures: with an empty cache (a fresh clone) and with
// the clone of the first revert.
type side struct {
	Cold   run `json:"cold"`
	Cached run `json:"cached"`
}

// run is one revert's figures.
type run struct {
	Seconds float64 `json:"seconds"`
	// PeakRSSMiB is the largest resident set of one process.
	PeakRSSMiB float64 `json:"peakRSSMiB"`
	// AllRSSMiB is the git CLI's largest sum over its processes at once.
	AllRSSMiB float64 `json:"allRSSMiB,omitempty"`
	// HeapMiB is Backstop's largest Go heap in use.
	HeapMiB float64 `json:"heapMiB,omitempty"`
}

// pair is a figure of the cold and the cached revert.
type pair struct {
	Cold   float64 `json:"cold"`
	Cached float64 `json:"cached"`
}

func TestMain(m *testing.M) {
	if req := os.Getenv(childEnv); req != "" {
		os.Exit(child(req))
	}
	os.Exit(m.Run())
}

func BenchmarkRevert(b *testing.B) {
	var results []sizeResult
	for _, n := range sizes {
		b.Run(fmt.Sprintf("commits=%d", n), func(b *testing.B) {
			res := measure(b, n, treeFiles)
			results = append(results, res)
			printSize(os.Stdout, res)
			b.ReportMetric(res.Git.Cold.Seconds, "git-s")
			b.ReportMetric(res.Backstop.Cold.Seconds, "backstop-s")
			b.ReportMetric(res.Ratio.Cold, "ratio")
			b.ReportMetric(res.Backstop.Cached.Seconds, "cached-s")
			b.ReportMetric(res.Backstop.Cold.PeakRSSMiB, "rss-MiB")
		})
	}
	if len(results) == 0 {
		return
	}
	printSummary(os.Stdout, results)
	line, err := json.Marshal(revertBench{Kind: "revert", Sizes: results})
	if err != nil {
		b.Fatal(err)
	}
	fmt.Printf("BENCH %s\n", line)
}

// The benchmark's machinery works, on a repository small enough for every
// test run: each revert lands and every figure is there.
func TestMeasureSmallRepository(t *testing.T) {
	res := measure(t, 30, 40)
	for name, v := range map[string]float64{
		"git CLI time": res.Git.Cold.Seconds, "git CLI RSS": res.Git.Cold.PeakRSSMiB, "git CLI processes' RSS": res.Git.Cold.AllRSSMiB,
		"git CLI cached time": res.Git.Cached.Seconds, "backstop time": res.Backstop.Cold.Seconds,
		"backstop heap": res.Backstop.Cold.HeapMiB, "backstop cached time": res.Backstop.Cached.Seconds,
		"backstop cached RSS": res.Backstop.Cached.PeakRSSMiB, "cold ratio": res.Ratio.Cold,
	} {
		if v <= 0 {
			t.Errorf("%s is %v", name, v)
		}
	}
	if res.Backstop.Cold.PeakRSSMiB <= res.StartRSSMiB || res.Git.Cold.AllRSSMiB < res.Git.Cold.PeakRSSMiB {
		t.Errorf("memory figures out of order: %+v", res)
	}
	var out strings.Builder
	printSize(&out, res)
	printSummary(&out, []sizeResult{res})
	row := slices.ContainsFunc(strings.Split(out.String(), "\n"), func(l string) bool {
		f := strings.Fields(l)
		return len(f) == 12 && f[0] == "30"
	})
	if !row || !strings.Contains(out.String(), "backstop on the cached clone") {
		t.Errorf("the tables:\n%s", out.String())
	}
}

// measure builds a repository of commits commits over files files and
// times the four reverts in it.
func measure(b testing.TB, commits, files int) sizeResult {
	srv := gittest.NewServer(b, gittest.Options{})
	g := &gitRunner{home: b.TempDir()}
	start := time.Now()
	srv.CreateRepo(b, "gogit", "main")
	bad := synthesize(b, g, srv.Dir("gogit"), commits, files)
	g.must(b, srv.Dir("gogit"), "repack", "-adq")
	srv.CreateRepo(b, "cli", "main")
	if out, err := exec.Command("cp", "-a", srv.Dir("gogit")+"/.", srv.Dir("cli")).CombinedOutput(); err != nil {
		b.Fatalf("copying the repository: %v\n%s", err, out)
	}
	res := sizeResult{Commits: commits, Files: files, BuildSeconds: time.Since(start).Seconds()}

	// The git CLI: clone, revert, push.
	work := filepath.Join(b.TempDir(), "cli")
	res.Git.Cold = g.timed(b, [][]string{
		{"clone", "-q", "--single-branch", "--branch", "main", srv.URL("cli"), work},
		{"-C", work, "revert", "--no-edit", bad},
		{"-C", work, "push", "-q", "origin", "main"},
	})

	// Package revert, with an empty cache.
	cacheDir := b.TempDir()
	cold := revertInChild(b, childRequest{URL: srv.URL("gogit"), SHA: bad, CacheDir: cacheDir, Release: "first"})
	res.Backstop.Cold = cold.run()
	res.StartRSSMiB = mib(cold.StartRSSKiB << 10)

	// A second bad commit lands; the cached clones fetch only it.
	image := "registry.example/shop/app:v3"
	again := commitOnBare(b, g, srv.Dir("cli"), image)
	res.Git.Cached = g.timed(b, [][]string{
		{"-C", work, "pull", "-q", "--ff-only", "origin", "main"},
		{"-C", work, "revert", "--no-edit", again},
		{"-C", work, "push", "-q", "origin", "main"},
	})
	again = commitOnBare(b, g, srv.Dir("gogit"), image)
	cached := revertInChild(b, childRequest{URL: srv.URL("gogit"), SHA: again, CacheDir: cacheDir, Release: "second"})
	res.Backstop.Cached = cached.run()
	res.CacheMiB = mib(cached.CacheBytes)

	res.Ratio = pair{
		Cold:   round(res.Backstop.Cold.Seconds/res.Git.Cold.Seconds, 100),
		Cached: round(res.Backstop.Cached.Seconds/res.Git.Cached.Seconds, 100),
	}
	res.BuildSeconds = round(res.BuildSeconds, 10)
	return res
}

// childRequest is the revert a child process makes.
type childRequest struct {
	URL, SHA, CacheDir, Release string
}

// childResult is what a child process measured.
type childResult struct {
	Seconds     float64 `json:"seconds"`
	PeakRSSKiB  int64   `json:"peakRSSKiB"`
	StartRSSKiB int64   `json:"startRSSKiB"`
	HeapBytes   uint64  `json:"heapBytes"`
	CacheBytes  int64   `json:"cacheBytes"`
}

func (c childResult) run() run {
	return run{Seconds: round(c.Seconds, 1000), PeakRSSMiB: mib(c.PeakRSSKiB << 10), HeapMiB: mib(int64(c.HeapBytes))}
}

// revertInChild starts this test binary again as a child that makes the
// revert req alone, and returns what it measured.
func revertInChild(b testing.TB, req childRequest) childResult {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	spec, err := json.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("the %s revert: %v\n%s", req.Release, err, stderr.String())
	}
	var res childResult
	if err := json.Unmarshal(out, &res); err != nil {
		b.Fatalf("the %s revert printed %q: %v", req.Release, out, err)
	}
	return res
}

// child makes the revert spec describes and prints a childResult as JSON.
func child(spec string) int {
	var req childRequest
	if err := json.Unmarshal([]byte(spec), &req); err != nil {
		fmt.Fprintf(os.Stderr, "reading the request: %v\n", err)
		return 2
	}
	var res childResult
	res.StartRSSKiB = procStatus("VmRSS")
	cache := &revert.Cache{Dir: req.CacheDir}
	r := &revert.Reverter{Cache: cache}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	peak := watchHeap()
	start := time.Now()
	out, err := r.Revert(ctx, revert.Request{
		URL: req.URL, Branch: "main", Commits: []string{req.SHA},
		Release: "bench/app@" + req.Release, Rollout: "bench/app", Reason: "benchmark",
		Author: object.Signature{Name: "Backstop", Email: "backstop@example.com"},
	})
	res.Seconds = time.Since(start).Seconds()
	res.HeapBytes = peak()
	res.PeakRSSKiB = procStatus("VmHWM")
	if err == nil && (out.Already || len(out.Conflict) > 0) {
		err = fmt.Errorf("unexpected result %+v", out)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "revert: %v\n", err)
		return 1
	}
	res.CacheBytes = cache.Size()
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}

// procStatus is a field of /proc/self/status in KiB, or 0.
func procStatus(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// synthesize fills the bare repository dir with the history through git
// fast-import: a first commit of files files and the app's manifest, then
// commits-2 commits changing one file each, a minute apart, and last the
// commit moving the app to a bad image, whose SHA it returns.
func synthesize(b testing.TB, g *gitRunner, dir string, commits, files int) string {
	b.Helper()
	cmd := g.cmd(dir, "fast-import", "--quiet")
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(in, 1<<20)
	when := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	commit := func(mark int, msg string, changes func()) {
		fmt.Fprintf(w, "commit refs/heads/main\nmark :%d\ncommitter Person <person@example.com> %d +0000\ndata %d\n%s\n", mark, when, len(msg), msg)
		if mark > 1 {
			fmt.Fprintf(w, "from :%d\n", mark-1)
		}
		changes()
		fmt.Fprintln(w)
		when += 60
	}
	inline := func(path, content string) {
		fmt.Fprintf(w, "M 100644 inline %s\ndata %d\n%s\n", path, len(content), content)
	}
	commit(1, "Add everything", func() {
		for i := range files {
			inline(filePath(i), fileContent(i, 0))
		}
		inline(manifest, deployment("registry.example/shop/app:v1"))
	})
	for n := 2; n < commits; n++ {
		commit(n, fmt.Sprintf("Change file %d", n%files), func() { inline(filePath(n%files), fileContent(n%files, n)) })
	}
	commit(commits, "Deploy app v2", func() { inline(manifest, deployment("registry.example/shop/app:v2")) })
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		b.Fatalf("git fast-import: %v", err)
	}
	return g.must(b, dir, "rev-parse", "main")
}

// commitOnBare commits a change of the app's image onto main in the bare
// repository dir, as a person's push would, and returns its SHA.
func commitOnBare(b testing.TB, g *gitRunner, dir, image string) string {
	b.Helper()
	cmd := g.cmd(dir, "fast-import", "--quiet")
	msg := "Deploy " + image
	cmd.Stdin = io.MultiReader(
		strings.NewReader(fmt.Sprintf("commit refs/heads/main\ncommitter Person <person@example.com> %d +0000\ndata %d\n%s\nfrom refs/heads/main^0\n",
			time.Now().Unix(), len(msg), msg)),
		strings.NewReader(fmt.Sprintf("M 100644 inline %s\ndata %d\n%s\n\n", manifest, len(deployment(image)), deployment(image))))
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("git fast-import: %v\n%s", err, out)
	}
	return g.must(b, dir, "rev-parse", "main")
}

func filePath(i int) string { return fmt.Sprintf("services/s%03d/config-%05d.yaml", i/100, i) }

func fileContent(i, version int) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-%05d\ndata:\n  version: \"%d\"\n  owner: team-%d\n  note: a line of text that makes the file look like a real one\n", i, version, i%17)
}

func deployment(image string) string {
	return "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\nspec:\n  template:\n    spec:\n      containers:\n      - name: app\n        image: " + image + "\n"
}

// gitRunner runs the git CLI hermetically, as gittest.Git does, with its
// own home.
type gitRunner struct {
	home string
}

// cmd is git args in dir ("" for the current directory).
func (g *gitRunner) cmd(dir string, args ...string) *exec.Cmd {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + g.home, "PATH=" + os.Getenv("PATH"), "LC_ALL=C", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Person", "GIT_AUTHOR_EMAIL=person@example.com", "GIT_COMMITTER_NAME=Person", "GIT_COMMITTER_EMAIL=person@example.com",
		"GIT_TERMINAL_PROMPT=0"}
	return cmd
}

// must runs git and returns its standard output, trimmed.
func (g *gitRunner) must(b testing.TB, dir string, args ...string) string {
	b.Helper()
	out, err := g.cmd(dir, args...).Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			b.Fatalf("git %v: %v\n%s", args, err, exit.Stderr)
		}
		b.Fatalf("git %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

// timed runs the git commands one after the other and returns their total
// time and their peak memory: the largest resident set of one git process,
// from rusage (which covers the processes git waited for), and the largest
// sum over the processes of one command at once, sampled from /proc.
func (g *gitRunner) timed(b testing.TB, cmds [][]string) run {
	b.Helper()
	var total time.Duration
	var peak, all int64
	for _, args := range cmds {
		cmd := g.cmd("", args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		before := pids()
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatalf("git %v: %v", args, err)
		}
		stop := sampleTree(cmd.Process.Pid, before)
		err := cmd.Wait()
		total += time.Since(start)
		all = max(all, stop())
		if err != nil {
			b.Fatalf("git %v: %v\n%s", args, err, out.String())
		}
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			peak = max(peak, ru.Maxrss)
		}
	}
	return run{Seconds: round(total.Seconds(), 1000), PeakRSSMiB: mib(peak << 10), AllRSSMiB: mib(max(all, peak) << 10)}
}

// pids are the processes running now.
func pids() map[int]bool {
	entries, _ := os.ReadDir("/proc")
	out := make(map[int]bool, len(entries))
	for _, e := range entries {
		if p, err := strconv.Atoi(e.Name()); err == nil {
			out[p] = true
		}
	}
	return out
}

// sampleTree samples, every 10 ms, the resident set of pid and its
// descendants summed, until the returned function is called; that returns
// the largest sum in KiB. The processes in before, running before pid
// started, are not read.
func sampleTree(pid int, before map[int]bool) func() int64 {
	var peak atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			peak.Store(max(peak.Load(), treeRSS(pid, before)))
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return func() int64 {
		close(stop)
		<-done
		return peak.Load()
	}
}

// treeRSS is the resident set of pid and its descendants in KiB, from
// /proc/*/stat of the processes not in before.
func treeRSS(pid int, before map[int]bool) int64 {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	parent := map[int]int{}
	rss := map[int]int64{}
	page := int64(os.Getpagesize()) >> 10
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil || before[p] {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The fields after the command, which is in parentheses: state,
		// ppid, ... rss is the 22nd of them.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 22 {
			continue
		}
		parent[p], _ = strconv.Atoi(f[1])
		pages, _ := strconv.ParseInt(f[21], 10, 64)
		rss[p] = pages * page
	}
	var sum int64
	for p, r := range rss {
		for q := p; q != 0; q = parent[q] {
			if q == pid {
				sum += r
				break
			}
		}
	}
	return sum
}

// watchHeap samples the Go heap until the returned function is called,
// which returns the largest sample.
func watchHeap() func() uint64 {
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() uint64 {
		close(stop)
		wg.Wait()
		return peak.Load()
	}
}

// printSize prints the table of one size.
func printSize(w io.Writer, r sizeResult) {
	fmt.Fprintf(w, "\nrevert in %d commits × %d files (repository built in %.1fs)\n", r.Commits, r.Files, r.BuildSeconds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-30s\ttime\tpeak RSS\tall processes\tpeak heap\tratio\t\n", "")
	row := func(name string, x run, ratio string) {
		all, heap := "", ""
		if x.AllRSSMiB > 0 {
			all = fmt.Sprintf("%.0f MiB", x.AllRSSMiB)
		}
		if x.HeapMiB > 0 {
			heap = fmt.Sprintf("%.0f MiB", x.HeapMiB)
		}
		fmt.Fprintf(tw, "%-30s\t%.3fs\t%.0f MiB\t%s\t%s\t%s\t\n", name, x.Seconds, x.PeakRSSMiB, all, heap, ratio)
	}
	row("git CLI: clone, revert, push", r.Git.Cold, "")
	row("backstop: clone, revert, push", r.Backstop.Cold, fmt.Sprintf("%.2f×", r.Ratio.Cold))
	row("git CLI: pull, revert, push", r.Git.Cached, "")
	row("backstop on the cached clone", r.Backstop.Cached, fmt.Sprintf("%.2f×", r.Ratio.Cached))
	_ = tw.Flush()
	fmt.Fprintf(w, "  backstop's child process held %.0f MiB before its revert; the cached clone takes %.0f MiB on disk\n",
		r.StartRSSMiB, r.CacheMiB)
}

// printSummary prints the main figures of every size.
func printSummary(w io.Writer, rs []sizeResult) {
	fmt.Fprintf(w, "\nrevert, all sizes (targets: cold at most 1.5× the git CLI, cached under 1s)\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "commits\tgit CLI\tgit RSS\tbackstop\tbackstop RSS\tbackstop heap\tratio\tcached\tgit cached\t\n")
	for _, r := range rs {
		fmt.Fprintf(tw, "%d\t%.2fs\t%.0f MiB\t%.2fs\t%.0f MiB\t%.0f MiB\t%.2f×\t%.3fs\t%.3fs\t\n", r.Commits,
			r.Git.Cold.Seconds, r.Git.Cold.PeakRSSMiB, r.Backstop.Cold.Seconds, r.Backstop.Cold.PeakRSSMiB,
			r.Backstop.Cold.HeapMiB, r.Ratio.Cold, r.Backstop.Cached.Seconds, r.Git.Cached.Seconds)
	}
	_ = tw.Flush()
}

// mib is bytes in MiB, to a tenth.
func mib(bytes int64) float64 { return round(float64(bytes)/(1<<20), 10) }

func round(x, by float64) float64 { return float64(int64(x*by+0.5)) / by }
