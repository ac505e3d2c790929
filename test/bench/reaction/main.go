// Command reaction measures how fast Backstop reacts to a faulty release
// on the local stack (test/stack) with Flux, as `make bench-reaction` runs
// it. It deploys the demo app at v2 through the fleet repository
// (test/release), sends steady traffic through traefik, and then, round
// after round, commits the faulty v3 (30% 5xx, +200ms on every answer),
// waits for the rollback, Backstop's revert in Git, Flux applying it and
// the Rollout Idle again. Each round's v3 carries the round's number in a
// pod template annotation, so each is a new revision.
//
// Per round it takes these times, all from this machine's clock:
//
//   - breach onset: the first request answered by v3, as sent by the load
//     generator (every v3 answer is slow);
//   - visible in Prometheus: the first moment a check evaluated then
//     would have failed, asked of Prometheus afterwards (query_range at a
//     50ms step, with the queries the manager sent);
//   - check failed: when the first answer of a check past its bound was
//     handed back to the manager, recorded by a proxy in front of
//     Prometheus that the Rollout's checks go through;
//   - decision: the eventTime of the Event of the transition to
//     RollingBack, set by the manager to the microsecond (the manager
//     records it after the route write, in the same reconcile);
//   - HTTPRoute written: when the route giving the canary weight 0 came
//     in on a watch (an upper bound; managedFields only has seconds);
//   - traefik at 0%: the last request the canary answered, as sent by the
//     load generator;
//   - revert pushed: the modification time of the fleet repository's
//     branch ref when the revert moved it;
//   - Flux applied: when the Kustomization's lastAppliedRevision turning
//     to the revert came in on a watch.
//
// It prints a line per round, then a table of the intervals (p50, p99,
// min, max), the bound the configuration sets (Prometheus' scrape interval
// + the checks' interval + traefik's throttle), and one line starting with
// "BENCH " holding every figure as JSON. Measurements, not assertions.
//
// By default Backstop discovers the revert's source from Flux, as in the
// demo, and reverts the commits between the revisions Flux applied (see
// -revert-from), so every round also checks that each revert undoes only
// its own round's commit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers/plan"
	"backstop.dev/backstop/test/release"
	"backstop.dev/backstop/test/stack"
)

func main() {
	rounds := flag.Int("rounds", 20, "faulty releases to measure")
	rate := flag.Float64("rate", 100, "requests per second sent through traefik")
	dir := flag.String("dir", "", "folder for the stack's logs, kept afterwards (default: a temporary folder, removed)")
	revertFrom := flag.String("revert-from", revertFromFlux,
		`how Backstop finds the commit to revert: "rollout" by the failed image, the repository named in spec.revert.source; "flux" between the revisions Flux applied, as the demo does (see revertFromFlux)`)
	audit := flag.Bool("audit", false, "write kube-apiserver's audit log of the writes in the app's namespace to audit.log in -dir, with the server's times of each request")
	pprof := flag.String("pprof", "", "address for the manager's Go profiles (/debug/pprof/), such as 127.0.0.1:6060")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := stack.Options{GitOps: true, Dir: *dir}
	var err error
	if *audit {
		if *dir == "" {
			err = errors.New("-audit needs -dir")
		} else {
			opts.APIServerArgs, err = auditArgs(*dir)
		}
	}
	if *pprof != "" {
		opts.ManagerArgs = []string{"--pprof-bind-address=" + *pprof}
	}
	if err == nil {
		err = run(ctx, opts, *rounds, *rate, *revertFrom)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "reaction:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, opts stack.Options, rounds int, rate float64, revertFrom string) error {
	if rounds < 1 || !(rate > 0) {
		return errors.New("-rounds and -rate must be positive")
	}
	if revertFrom != revertFromRollout && revertFrom != revertFromFlux {
		return fmt.Errorf("-revert-from is %q or %q, not %q", revertFromRollout, revertFromFlux, revertFrom)
	}
	started := time.Now()
	say := func(format string, args ...any) {
		fmt.Printf("%6.1fs  %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, args...))
	}
	dir := opts.Dir
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	say("starting the local stack (the first run builds its binaries)")
	opts.Log = func(f string, a ...any) { say(f, a...) }
	s, err := stack.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer s.Stop()

	prom, err := startPromRecorder(s.Prometheus)
	if err != nil {
		return err
	}
	defer prom.Close()
	cfg, err := configuration(ctx, s.Prometheus)
	if err != nil {
		return err
	}
	ro := release.Rollout()
	ro.Spec.Analysis.Prometheus = &backstopv1.PrometheusSource{Address: prom.URL}
	cfg.checkInterval = ro.Spec.Analysis.Interval.Duration
	cfg.canaryWeight = plan.WeightAt(ro.Spec.Strategy.Canary.Steps, 0)
	bounds, err := checkBounds(ro)
	if err != nil {
		return err
	}

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	tl, err := watchTimeline(watchCtx, s.Env.Config, ro)
	if err != nil {
		return err
	}
	if revertFrom == revertFromRollout {
		if err := revertSource(ctx, s, ro); err != nil {
			return err
		}
	}
	d := release.Deployment("v2")
	say("committing v2 and its Rollout to the fleet repository; waiting for Flux to apply them and Backstop to take over")
	if err := release.Deploy(ctx, s, d, ro); err != nil {
		return err
	}
	gen, err := release.Traffic(s, rate, 0)
	if err != nil {
		return err
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	go gen.Run(loadCtx)
	say("sending %g requests per second through traefik to %s", rate, release.Host)
	if err := sleep(ctx, 3*time.Second); err != nil {
		return err
	}

	before, err := managerCounts(ctx, s)
	if err != nil {
		return err
	}
	var results []*round
	for i := 1; i <= rounds; i++ {
		r, err := play(ctx, s, tl, prom, bounds, gen, d, ro, i)
		if err != nil {
			logs := "run with -dir to keep the stack's logs"
			if dir != "" {
				logs = "the stack's logs: " + dir
			}
			return fmt.Errorf("round %d: %w (%s)", i, err, logs)
		}
		results = append(results, r)
		say("round %2d/%d  %s", i, rounds, r.line())
		if i < rounds {
			jitter := time.Duration(rand.Int64N(int64(settleJitter)))
			if err := sleep(ctx, time.Until(r.lastCanary.Add(settleAfterCanary+jitter))); err != nil {
				return err
			}
		}
	}
	stopLoad()
	after, err := managerCounts(ctx, s)
	if err != nil {
		return err
	}
	for k := range after {
		after[k] -= before[k]
	}
	report(os.Stdout, cfg, bounds, rate, results, gen.Totals(), after)
	return nil
}

// auditPolicy logs the metadata, with the server's times, of every write
// in the app's namespace.
var auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  namespaces: [` + release.Namespace + `]
  verbs: [create, update, patch, delete]
- level: None
`

// auditArgs writes the audit policy into dir and returns the
// kube-apiserver flags of -audit. The log is written in batches, so that
// it adds no time to the requests.
func auditArgs(dir string) (map[string]string, error) {
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o644); err != nil {
		return nil, err
	}
	return map[string]string{
		"audit-policy-file":        policy,
		"audit-log-path":           filepath.Join(dir, "audit.log"),
		"audit-log-format":         "json",
		"audit-log-mode":           "batch",
		"audit-log-batch-max-wait": "1s",
	}, nil
}

// The values of -revert-from.
const (
	// revertFromRollout names the fleet repository in the Rollout's
	// spec.revert.source, at http://localhost:PORT rather than the
	// http://127.0.0.1:PORT Flux reads it from. Backstop then takes no
	// revisions from Flux (it does when both addresses are the same
	// repository's) and finds the commit to revert by the failed image.
	revertFromRollout = "rollout"
	// revertFromFlux leaves the source to Backstop's discovery, as in the
	// demo: the commits to revert are those between the stable and the
	// canary revisions Flux applied.
	revertFromFlux = "flux"
)

// gitSecret holds the git server's credentials for spec.revert.source.
const gitSecret = "fleet-git"

// revertSource points ro's revert at the fleet repository, with its
// credentials in the Secret gitSecret (see revertFromRollout).
func revertSource(ctx context.Context, s *stack.Stack, ro *backstopv1.Rollout) error {
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: release.Namespace}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: release.Namespace, Name: gitSecret},
			Data: map[string][]byte{"username": []byte(stack.GitUser), "password": []byte(s.Fleet.Password)}},
	} {
		if err := s.Env.Client.Create(ctx, obj); err != nil {
			return err
		}
	}
	url := s.Fleet.Server.URL(stack.FleetRepo)
	local := strings.Replace(url, "://127.0.0.1:", "://localhost:", 1)
	if local == url {
		return fmt.Errorf("the fleet repository's address %s is not on 127.0.0.1", url)
	}
	ro.Spec.Revert.Source = &backstopv1.GitSource{URL: local, Branch: stack.FleetBranch, Path: release.Path,
		SecretRef: &backstopv1.LocalObjectReference{Name: gitSecret}}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
