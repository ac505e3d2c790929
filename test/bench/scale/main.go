// Command scale measures the Backstop manager with many Rollouts: for each
// size N it creates N Rollouts (each with its target Deployment, a
// generated HTTPRoute and one SLO check), waits until all are Idle, then
// changes the image of N/10 targets at once and waits until those releases
// have Succeeded. It prints a table per size and one line
// "BENCH {json}" with every figure.
//
//	go run ./test/bench/scale -sizes 100,1000,10000
//
// Everything runs on this machine: etcd and kube-apiserver (test/testenv),
// kube-controller-manager's Deployment and ReplicaSet controllers, kwok
// playing fake nodes whose pods become Ready without running anything
// (-workloads standin uses testenv's Deployment stand-in instead, which
// marks Deployments ready without any pod), a gateway stand-in that
// accepts every HTTPRoute, a real Prometheus with one constant series that
// every check queries, and the manager built from this repository.
//
// What it measures, per size and phase (setup: creating the objects until
// every Rollout is Idle; release: from the image change until every
// release has Succeeded):
//
//   - the manager's RSS (VmRSS, VmHWM) and CPU time (utime+stime), from
//     /proc every second;
//   - step lag: for each step with a duration (the pauses), the time the
//     benchmark's watch saw the Rollout leave it (next step or promotion)
//     minus (status.stepStartTime + the pause). stepStartTime is stored in
//     whole seconds, and the manager counts the pause from that stored
//     value, as this does; the watch's own delay is included;
//   - API requests per second at the apiserver (apiserver_request_total,
//     every client: the manager, kube-controller-manager, kwok, the
//     stand-ins and this program), the top verb/resource pairs, and the
//     manager's own requests (rest_client_requests_total);
//   - Prometheus queries per second the manager sent, and the share of
//     asked queries answered by deduplication;
//   - with a manager that serves pprof, a CPU profile of each phase and a
//     heap profile after each settles, in -out.
//
// Figures, not assertions: a shared machine makes timed assertions flaky.
// It waits while the e2e stack, the demo or another benchmark runs.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/sets"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/testenv"
)

// How the Deployments become ready.
const (
	workloadsKwok    = "kwok"
	workloadsStandIn = "standin"
)

// config is the command line.
type config struct {
	sizes        []int
	releases     int
	workloads    string
	nodes        int
	perNamespace int
	reconciles   int
	memLimit     string
	manager      string
	pause        time.Duration
	interval     time.Duration
	settle       time.Duration
	cpuProfile   time.Duration
	timeout      time.Duration
	out          string
	top          int
	waitOthers   bool
}

func parseFlags() (config, error) {
	var c config
	sizes := flag.String("sizes", "100,1000,10000", "Comma-separated numbers of Rollouts, one run each.")
	flag.IntVar(&c.releases, "releases", 0, "Releases started at once per size; 0 for a tenth of the size.")
	flag.StringVar(&c.workloads, "workloads", workloadsKwok, "What makes Deployments ready: kwok (kube-controller-manager and kwok's fake nodes and pods) or standin (testenv's Deployment stand-in, no pods).")
	flag.IntVar(&c.nodes, "nodes", 10, "kwok nodes the pods are spread over.")
	flag.IntVar(&c.perNamespace, "per-namespace", 100, "Rollouts per namespace.")
	flag.IntVar(&c.reconciles, "max-concurrent-reconciles", 16, "The manager's --max-concurrent-reconciles.")
	flag.StringVar(&c.memLimit, "gomemlimit", "460MiB", "The manager's GOMEMLIMIT, as config/manager sets it under its 512Mi memory limit; empty for none.")
	flag.StringVar(&c.manager, "manager", "", "A manager binary to run; empty builds ./cmd/backstop.")
	flag.DurationVar(&c.pause, "pause", 30*time.Second, "Duration of each of the two pause steps.")
	flag.DurationVar(&c.interval, "interval", 10*time.Second, "The checks' spec.analysis.interval.")
	flag.DurationVar(&c.settle, "settle", 20*time.Second, "How long the manager is left alone after each phase before its RSS is read.")
	flag.DurationVar(&c.cpuProfile, "cpu-profile", 60*time.Second, "Length of the CPU profile taken at the start of each phase (with pprof).")
	flag.DurationVar(&c.timeout, "timeout", 20*time.Minute, "Bound of each phase.")
	flag.StringVar(&c.out, "out", "", "Folder for the logs and profiles; empty makes one in the temporary folder.")
	flag.IntVar(&c.top, "pprof-top", 12, "Lines of `go tool pprof -top` printed per profile; 0 for none.")
	flag.BoolVar(&c.waitOthers, "wait-others", true, "Wait while the e2e stack, the demo or another benchmark runs.")
	flag.Parse()
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return c, fmt.Errorf("-sizes: %q is not a positive number", s)
		}
		c.sizes = append(c.sizes, n)
	}
	if c.workloads != workloadsKwok && c.workloads != workloadsStandIn {
		return c, fmt.Errorf("-workloads must be %s or %s", workloadsKwok, workloadsStandIn)
	}
	if c.perNamespace < 1 || c.nodes < 1 || c.reconciles < 1 {
		return c, errors.New("-per-namespace, -nodes and -max-concurrent-reconciles must be at least 1")
	}
	return c, nil
}

// result is one size's figures.
type result struct {
	Size      int    `json:"size"`
	Releases  int    `json:"releases"`
	Workloads string `json:"workloads"`
	// GoMemLimit is the manager's GOMEMLIMIT; empty for none.
	GoMemLimit  string  `json:"gomemlimit,omitempty"`
	Pods        bool    `json:"pods"`
	IdleSeconds float64 `json:"timeToAllIdleSeconds"`
	// IdleReached is how many Rollouts were Idle at the end of the setup.
	IdleReached   int          `json:"idleReached"`
	DoneSeconds   float64      `json:"timeToAllSucceededSeconds"`
	RSSPeakMiB    float64      `json:"rssPeakMiB"`
	RSSIdleMiB    float64      `json:"rssAfterIdleSettleMiB"`
	RSSAfterMiB   float64      `json:"rssAfterReleaseSettleMiB"`
	HeapIdleMiB   float64      `json:"heapLiveAfterIdleMiB"`
	HeapAfterMiB  float64      `json:"heapLiveAfterReleaseMiB"`
	LagSamples    int          `json:"stepLagSamples"`
	LagP50Seconds float64      `json:"stepLagP50Seconds"`
	LagP99Seconds float64      `json:"stepLagP99Seconds"`
	LagMaxSeconds float64      `json:"stepLagMaxSeconds"`
	Setup         phaseFigures `json:"setup"`
	Release       phaseFigures `json:"release"`
	// ManagerWatches are the resources the manager watches (its informers)
	// once the releases have Succeeded.
	ManagerWatches []string `json:"managerWatches"`
	Profiles       []string `json:"profiles,omitempty"`
	// Disturbed lists the e2e stack, demo or benchmark processes seen
	// running during the measurement, which make its figures unreliable.
	Disturbed []string `json:"disturbed,omitempty"`
	Error     string   `json:"error,omitempty"`
}

func main() {
	cfg, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(2)
	}
	if cfg.out == "" {
		if cfg.out, err = os.MkdirTemp("", "backstop-bench-scale-"); err != nil {
			fmt.Fprintln(os.Stderr, "scale:", err)
			os.Exit(1)
		}
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
	}
	// Quiet the controller-runtime caches of the watches and stand-ins.
	ctrllog.SetLogger(logr.Discard())
	logf("logs and profiles go to %s", cfg.out)
	if cfg.workloads == workloadsStandIn {
		logf("NOTE: -workloads standin: Deployments are marked ready by testenv's stand-in; no ReplicaSet or pod exists")
	}
	// An interrupt ends the run with its cleanups: the processes of the
	// cluster are stopped rather than left behind.
	sigCtx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var results []result
	failed := false
	for _, size := range cfg.sizes {
		if sigCtx.Err() != nil {
			break
		}
		if cfg.waitOthers {
			waitForOthers(sigCtx, logf)
		}
		res := result{Size: size, Releases: cfg.releases, Workloads: cfg.workloads, Pods: cfg.workloads == workloadsKwok, GoMemLimit: cfg.memLimit}
		if res.Releases <= 0 {
			res.Releases = max(1, size/10)
		}
		res.Releases = min(res.Releases, size)
		dir := filepath.Join(cfg.out, fmt.Sprintf("size-%d", size))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "scale:", err)
			os.Exit(1)
		}
		prog := testenv.NewProgram("bench-scale")
		err := prog.Run(func(p *testenv.Program) { runSize(sigCtx, p, cfg, dir, &res, logf) })
		if err != nil {
			res.Error = err.Error()
			failed = true
			logf("size %d failed: %v", size, err)
		}
		printTable(res)
		results = append(results, res)
	}
	line, _ := json.Marshal(map[string]any{"bench": "scale", "workloads": cfg.workloads,
		"maxConcurrentReconciles": cfg.reconciles, "gomemlimit": cfg.memLimit, "pause": cfg.pause.String(), "interval": cfg.interval.String(),
		"results": results})
	fmt.Printf("BENCH %s\n", line)
	if failed {
		os.Exit(1)
	}
}

// waitForOthers waits while a process of the e2e stack, the demo or
// another benchmark runs.
func waitForOthers(ctx context.Context, logf func(string, ...any)) {
	for ctx.Err() == nil {
		others := othersRunning()
		if len(others) == 0 {
			return
		}
		logf("waiting: another benchmark or the e2e stack runs:\n  %s", strings.Join(others, "\n  "))
		sleep(ctx, 30*time.Second)
	}
}

// watchOthers looks every 10 seconds for the processes waitForOthers
// waits for, until ctx ends; the function returns those seen.
func watchOthers(ctx context.Context) func() []string {
	var (
		mu   sync.Mutex
		seen = sets.New[string]()
	)
	go func() {
		for ctx.Err() == nil {
			others := othersRunning()
			mu.Lock()
			seen.Insert(others...)
			mu.Unlock()
			sleep(ctx, 10*time.Second)
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return sets.List(seen)
	}
}

// runSize runs one size on a new cluster and fills res.
func runSize(sigCtx context.Context, p *testenv.Program, cfg config, dir string, res *result, logf func(string, ...any)) {
	ctx, cancel := context.WithCancel(sigCtx)
	p.Cleanup(cancel)
	logf("size %d: starting the control plane, the workloads (%s), the gateway stand-in and Prometheus", res.Size, cfg.workloads)
	c := startCluster(p, cfg, dir)
	binary, err := managerBinary(cfg.manager)
	if err != nil {
		p.Fatal(err)
	}
	var durations []time.Duration
	for _, s := range steps(cfg.pause) {
		var d time.Duration
		if s.Pause != nil && s.Pause.Duration != nil {
			d = s.Pause.Duration.Duration
		}
		durations = append(durations, d)
	}
	w := watchRollouts(p, c.env, durations)
	// The watches opened after this are the manager's.
	withoutManager, err := scrapeAPIServer(ctx, c.kube)
	if err != nil {
		p.Fatal(err)
	}
	c.startManager(p, binary, cfg.reconciles, cfg.memLimit)
	if c.pprof == "" {
		logf("the manager has no --pprof-bind-address: no profiles")
	}
	sampler := sampleProc(ctx, c.manager.Pid())
	disturbed := watchOthers(ctx)
	defer func() { res.Disturbed = disturbed() }()
	l := layout{size: res.Size, perNamespace: cfg.perNamespace, nodes: c.nodes}

	// Setup: create everything and wait until every Rollout is Idle.
	start, err := takeSnapshot(ctx, c, sampler)
	if err != nil {
		p.Fatal(err)
	}
	cpuDone := c.cpuProfile(ctx, cfg, dir, "setup", res.Size, logf)
	logf("size %d: creating %d Rollouts with their Deployments in %d namespaces", res.Size, res.Size, l.namespaces())
	if err := createAll(ctx, c.env.Client, l, cfg.pause, cfg.interval); err != nil {
		p.Fatal(err)
	}
	logf("size %d: created in %s; waiting until all are Idle", res.Size, time.Since(start.at).Round(time.Second))
	waitErr := w.waitUntil(ctx, "every Rollout to be Idle", cfg.timeout, c.manager,
		func() bool { return w.count(backstopv1.PhaseIdle) == res.Size }, logf)
	idle, err := takeSnapshot(ctx, c, sampler)
	if err != nil {
		p.Fatal(errors.Join(waitErr, err))
	}
	res.IdleReached = w.count(backstopv1.PhaseIdle)
	res.Setup = figures(start, idle, sampler)
	if waitErr != nil {
		// What the setup reached is still worth reporting.
		res.RSSPeakMiB = mib(idle.proc.hwm)
		c.heapProfile(ctx, cfg, dir, "setup-unfinished", res, logf)
		p.Fatal(waitErr)
	}
	res.IdleSeconds = idle.at.Sub(start.at).Seconds()
	logf("size %d: all Idle after %.0fs; settling for %s", res.Size, res.IdleSeconds, cfg.settle)
	res.addProfile(<-cpuDone)
	if sleep(ctx, cfg.settle); ctx.Err() != nil {
		p.Fatal("interrupted")
	}
	res.RSSIdleMiB = mib(sampler.now().rss)
	res.HeapIdleMiB = c.heapLive(ctx)
	c.heapProfile(ctx, cfg, dir, "idle", res, logf)

	// Release: change the image of the released targets at once and wait
	// until every release has Succeeded.
	w.takeLags()
	before, err := takeSnapshot(ctx, c, sampler)
	if err != nil {
		p.Fatal(err)
	}
	cpuDone = c.cpuProfile(ctx, cfg, dir, "release", res.Size, logf)
	logf("size %d: starting %d releases", res.Size, res.Releases)
	if err := startReleases(ctx, c.env.Client, l, res.Releases); err != nil {
		p.Fatal(err)
	}
	err = w.waitUntil(ctx, "every release to Succeed", cfg.timeout, c.manager,
		func() bool { return w.count(backstopv1.PhaseSucceeded) == res.Releases }, logf)
	if err != nil {
		p.Fatal(err)
	}
	after, err := takeSnapshot(ctx, c, sampler)
	if err != nil {
		p.Fatal(err)
	}
	res.DoneSeconds = after.at.Sub(before.at).Seconds()
	res.Release = figures(before, after, sampler)
	res.ManagerWatches = newWatches(withoutManager, after.api)
	lags := w.takeLags()
	res.LagSamples = len(lags)
	res.LagP50Seconds, res.LagP99Seconds, res.LagMaxSeconds = quantile(lags, 0.50), quantile(lags, 0.99), quantile(lags, 1)
	logf("size %d: all Succeeded after %.0fs; settling for %s", res.Size, res.DoneSeconds, cfg.settle)
	res.addProfile(<-cpuDone)
	if sleep(ctx, cfg.settle); ctx.Err() != nil {
		p.Fatal("interrupted")
	}
	final := sampler.now()
	res.RSSAfterMiB = mib(final.rss)
	res.RSSPeakMiB = mib(final.hwm)
	res.HeapAfterMiB = c.heapLive(ctx)
	c.heapProfile(ctx, cfg, dir, "release", res, logf)
}

// cpuProfile takes a CPU profile of the manager for cfg.cpuProfile in the
// background; the channel gets the profile's path once it is saved ("" for
// none).
func (c *cluster) cpuProfile(ctx context.Context, cfg config, dir, phase string, size int, logf func(string, ...any)) <-chan string {
	done := make(chan string, 1)
	if c.pprof == "" || cfg.cpuProfile <= 0 {
		done <- ""
		return done
	}
	path := filepath.Join(dir, "cpu-"+phase+".pprof")
	go func() {
		query := fmt.Sprintf("profile?seconds=%d", int(cfg.cpuProfile.Seconds()))
		if err := profile(ctx, c.pprof, query, path); err != nil {
			logf("CPU profile of the %s: %v", phase, err)
			done <- ""
			return
		}
		if cfg.top > 0 {
			logf("size %d: CPU profile of the first %s of the %s (%s):\n%s", size, cfg.cpuProfile, phase, path, pprofTop(path, "", cfg.top))
		}
		done <- path
	}()
	return done
}

// addProfile records a profile's path when there is one.
func (r *result) addProfile(path string) {
	if path != "" {
		r.Profiles = append(r.Profiles, path)
	}
}

// heapProfile saves a heap profile of the manager, after a GC.
func (c *cluster) heapProfile(ctx context.Context, cfg config, dir, phase string, res *result, logf func(string, ...any)) {
	if c.pprof == "" {
		return
	}
	path := filepath.Join(dir, "heap-"+phase+".pprof")
	if err := profile(ctx, c.pprof, "heap?gc=1", path); err != nil {
		logf("heap profile after the %s: %v", phase, err)
		return
	}
	res.addProfile(path)
	if cfg.top > 0 {
		logf("size %d: heap in use after the %s settled (%s):\n%s", res.Size, phase, path, pprofTop(path, "inuse_space", cfg.top))
	}
}

// heapLive is the manager's live heap as its last GC measured it
// (go_gc_heap_live_bytes), in MiB.
func (c *cluster) heapLive(ctx context.Context) float64 {
	m, err := scrapeManager(ctx, c.metrics)
	if err != nil {
		return 0
	}
	return m.sum("go_gc_heap_live_bytes", nil) / (1 << 20)
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// quantile is the q-quantile of ds in seconds (nearest rank); 0 for none.
func quantile(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(q*float64(len(s))+0.5) - 1
	i = min(max(i, 0), len(s)-1)
	return s[i].Seconds()
}

// printTable prints one size's figures.
func printTable(r result) {
	fmt.Printf("\nscale: %d Rollouts, %d releases at once, workloads %s", r.Size, r.Releases, r.Workloads)
	if !r.Pods {
		fmt.Printf(" (stand-in: Deployments marked ready, no pods)")
	}
	if r.GoMemLimit != "" {
		fmt.Printf(", manager GOMEMLIMIT=%s", r.GoMemLimit)
	}
	fmt.Println()
	if r.Error != "" {
		fmt.Printf("  FAILED: %s\n", firstLine(r.Error))
	}
	for _, o := range r.Disturbed {
		if len(o) > 100 {
			o = o[:100] + "…"
		}
		fmt.Printf("  DISTURBED: this ran at the same time, the figures are not reliable: %s\n", o)
	}
	row := func(name, setup, release string) { fmt.Printf("  %-34s %18s %18s\n", name, setup, release) }
	row("", "setup", "release")
	row("time to all Idle / Succeeded", secs(r.IdleSeconds), secs(r.DoneSeconds))
	if r.IdleReached < r.Size {
		row("Idle at the end of the setup", fmt.Sprintf("%d of %d", r.IdleReached, r.Size), "")
	}
	row("manager CPU seconds (cores)", fmt.Sprintf("%.1f (%.2f)", r.Setup.CPUSeconds, r.Setup.Cores), fmt.Sprintf("%.1f (%.2f)", r.Release.CPUSeconds, r.Release.Cores))
	row("manager RSS peak in phase", fmt.Sprintf("%.0f MiB", r.Setup.RSSPeakMiB), fmt.Sprintf("%.0f MiB", r.Release.RSSPeakMiB))
	row("manager RSS after settle", fmt.Sprintf("%.0f MiB", r.RSSIdleMiB), fmt.Sprintf("%.0f MiB", r.RSSAfterMiB))
	row("manager live Go heap after settle", fmt.Sprintf("%.0f MiB", r.HeapIdleMiB), fmt.Sprintf("%.0f MiB", r.HeapAfterMiB))
	row("reconciles (per second)", fmt.Sprintf("%.0f (%.1f)", r.Setup.Reconciles, r.Setup.ReconcilesPS), fmt.Sprintf("%.0f (%.1f)", r.Release.Reconciles, r.Release.ReconcilesPS))
	row("mean wait in the work queue", fmt.Sprintf("%.0f ms", r.Setup.QueueWaitMs), fmt.Sprintf("%.0f ms", r.Release.QueueWaitMs))
	row("apiserver requests/s (writes)", fmt.Sprintf("%.1f (%.1f)", r.Setup.APIRequestsPS, r.Setup.APIWritesPS), fmt.Sprintf("%.1f (%.1f)", r.Release.APIRequestsPS, r.Release.APIWritesPS))
	row("manager's own requests/s", fmt.Sprintf("%.1f", r.Setup.ManagerReqPS), fmt.Sprintf("%.1f", r.Release.ManagerReqPS))
	row("mean reconcile time", fmt.Sprintf("%.0f ms", r.Setup.ReconcileMs), fmt.Sprintf("%.0f ms", r.Release.ReconcileMs))
	row("Prometheus queries/s sent", fmt.Sprintf("%.2f", r.Setup.PromQueriesPS), fmt.Sprintf("%.2f", r.Release.PromQueriesPS))
	row("queries deduplicated (share)", fmt.Sprintf("%.0f (%.1f%%)", r.Setup.PromDeduped, 100*r.Setup.DedupRatio), fmt.Sprintf("%.0f (%.1f%%)", r.Release.PromDeduped, 100*r.Release.DedupRatio))
	row("step lag p50 / p99 / max", "", fmt.Sprintf("%.2f / %.2f / %.2fs", r.LagP50Seconds, r.LagP99Seconds, r.LagMaxSeconds))
	row("step lag samples", "", strconv.Itoa(r.LagSamples))
	fmt.Printf("  manager RSS peak (VmHWM) over the run: %.0f MiB (target ≤ 512 MiB); step lag p99 target ≤ 1s\n", r.RSSPeakMiB)
	for _, ph := range []struct {
		name string
		f    phaseFigures
	}{{"setup", r.Setup}, {"release", r.Release}} {
		fmt.Printf("  %s: top apiserver requests/s (mean time):", ph.name)
		for _, t := range ph.f.APITop {
			fmt.Printf(" %s=%.1f (%.0fms)", strings.ReplaceAll(t.Name, " ", "/"), t.PerSec, t.MeanMs)
		}
		fmt.Printf("\n  %s: CPU cores of the machine %.2f; by process:", ph.name, ph.f.MachineCores)
		for _, t := range ph.f.ProcessCores {
			fmt.Printf(" %s=%.2f", t.Name, t.PerSec)
		}
		fmt.Printf("\n  %s: the manager's requests/s by method:", ph.name)
		for _, t := range ph.f.ManagerByMethod {
			fmt.Printf(" %s=%.1f", t.Name, t.PerSec)
		}
		fmt.Println()
	}
	fmt.Printf("  the manager's watches (informers): %s\n", strings.Join(r.ManagerWatches, " "))
	if len(r.Profiles) > 0 {
		fmt.Printf("  profiles: %s\n", strings.Join(sets.List(sets.New(r.Profiles...)), " "))
	}
}

func secs(s float64) string {
	if s == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0fs", s)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
