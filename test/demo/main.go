// Command demo plays two releases on the local stack (test/stack), as
// `make demo` runs it: v1 → v2, a healthy version that is promoted, and
// v2 → v3, a version that fails 30% of its requests and is slower, which is
// rolled back. Steady traffic flows through traefik all along. It prints a live
// line per step and ends with a summary of each release, measured at the
// load generator.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/loadgen"
	rel "backstop.dev/backstop/test/release"
	"backstop.dev/backstop/test/stack"
)

// rate is the load generator's requests per second.
const rate = 50

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// release is what the summary says about one release.
type release struct {
	from, to        string
	outcome         backstopv1.RolloutPhase
	changed         time.Time // the commit changing the image was pushed
	commit          string    // that commit
	reverted        time.Time // Backstop's revert moved the branch on the remote
	revert          string    // that commit
	applied         time.Time // Flux applied the revert
	idle            time.Time // the Rollout was Idle again
	firstCanary     time.Time // the first request the new version answered
	decided         time.Time // the Rollout was seen Succeeded or RolledBack
	lastBad         time.Time // the last 5xx or new-version answer, for a rollback
	check, value    string
	requests, fails int
}

func run(ctx context.Context) error {
	started := time.Now()
	say := func(format string, args ...any) {
		fmt.Printf("%6.1fs  %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, args...))
	}
	say("starting the local stack (the first run builds its binaries)")
	s, err := stack.Start(ctx, stack.Options{GitOps: true, Log: func(f string, a ...any) { say(f, a...) }})
	if err != nil {
		return err
	}
	defer s.Stop()

	d, ro := rel.Deployment("v1"), rel.Rollout()
	say("committing v1 and its Rollout to the fleet repository; waiting for Flux to apply them and Backstop to take over")
	if err := rel.Deploy(ctx, s, d, ro); err != nil {
		return err
	}

	gen, err := rel.Traffic(s, rate, 30*time.Minute)
	if err != nil {
		return err
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	go gen.Run(loadCtx)
	say("sending %d requests per second through traefik to %s", rate, rel.Host)
	time.Sleep(3 * time.Second)

	var releases []*release
	for _, to := range []string{"v2", "v3"} {
		r, err := play(ctx, s, d, ro, gen, to, say)
		if err != nil {
			return err
		}
		releases = append(releases, r)
		time.Sleep(3 * time.Second)
	}
	stopLoad()
	summary(releases, gen)
	return nil
}

// play releases version by changing the Deployment's image, follows the
// Rollout to its outcome with a live line, and measures the release.
func play(ctx context.Context, s *stack.Stack, d *appsv1.Deployment, ro *backstopv1.Rollout, gen *loadgen.Generator,
	version string, say func(string, ...any)) (*release, error) {
	c := s.Env.Client
	from := rel.Version(d)
	rel.SetVersion(d, version)
	r := &release{from: from, to: version, changed: time.Now()}
	var err error
	if r.commit, err = rel.Commit(s, d, "Deploy the demo app "+version); err != nil {
		return nil, err
	}
	say("releasing %s → %s: commit %.10s pushed to the fleet repository", from, version, r.commit)
	// Wait for the release to start, then for its end.
	if _, err := rel.WaitPhase(ctx, c, ro, time.Minute, nil, backstopv1.PhaseProgressing, backstopv1.PhasePaused, backstopv1.PhaseRolledBack); err != nil {
		return nil, err
	}
	last := ""
	got, err := rel.WaitPhase(ctx, c, ro, 5*time.Minute, func(cur *backstopv1.Rollout) {
		line := progress(cur, gen, r.changed)
		if line != last {
			say("  %s", line)
			last = line
		}
	}, backstopv1.PhaseSucceeded, backstopv1.PhaseRolledBack, backstopv1.PhaseIdle)
	if err != nil {
		return nil, err
	}
	r.decided, r.outcome = time.Now(), got.Status.Phase
	if got.Status.Phase == backstopv1.PhaseIdle {
		r.outcome = backstopv1.PhaseSucceeded
	}
	if a := got.Status.Analysis; a != nil {
		for _, ch := range a.Checks {
			if ch.Verdict == backstopv1.VerdictFail {
				r.check, r.value = ch.Name, ch.Value+" (bound "+ch.Bound+")"
			}
		}
	}
	say("%s → %s: %s", from, version, r.outcome)
	if r.outcome == backstopv1.PhaseRolledBack {
		rv, err := rel.FollowRevert(ctx, s, ro, r.commit, say)
		if err != nil {
			return nil, err
		}
		r.reverted, r.revert, r.applied, r.idle = rv.Pushed, rv.Commit, rv.Applied, rv.Idle
		rel.SetVersion(d, from)
	}
	time.Sleep(5 * time.Second) // traffic settles, for the summary
	if t, ok := gen.FirstSeen(version); ok {
		r.firstCanary = t
	}
	if r.outcome == backstopv1.PhaseRolledBack {
		for _, res := range gen.Results() {
			if res.Sent.After(r.changed) && (res.Version == version || res.Status >= 500) && res.Sent.After(r.lastBad) {
				r.lastBad = res.Sent
			}
		}
	}
	window := gen.Between(r.changed, time.Now())
	r.requests, r.fails = window.Requests, window.Errors5xx
	return r, nil
}

// progress is the live line of a release: phase, step, weight, the checks'
// last values, and the versions that answered in the last second.
func progress(ro *backstopv1.Rollout, gen *loadgen.Generator, since time.Time) string {
	st := ro.Status
	var b strings.Builder
	fmt.Fprintf(&b, "%-11s step %d  weight %3d%%", st.Phase, st.CurrentStep+1, st.CanaryWeight)
	if a := st.Analysis; a != nil {
		for _, ch := range a.Checks {
			if ch.Value != "" {
				fmt.Fprintf(&b, "  %s %s", ch.Name, ch.Value)
			}
		}
	}
	now := time.Now().Truncate(time.Second)
	last := gen.Between(now.Add(-time.Second), now)
	if last.Requests > 0 {
		fmt.Fprintf(&b, "  |")
		for _, v := range []string{"v1", "v2", "v3"} {
			if n := last.ByVersion[v]; n > 0 {
				fmt.Fprintf(&b, " %s %3.0f%%", v, 100*float64(n)/float64(last.Requests))
			}
		}
		if last.Errors5xx > 0 {
			fmt.Fprintf(&b, "  5xx %d/s", last.Errors5xx)
		}
	}
	return b.String()
}

func summary(releases []*release, gen *loadgen.Generator) {
	line := func(label, format string, args ...any) {
		fmt.Printf("    %-34s %s\n", label, fmt.Sprintf(format, args...))
	}
	fmt.Println()
	fmt.Println("Summary (times from the push of the change; traffic measured at the load generator)")
	for _, r := range releases {
		fmt.Printf("  %s → %s  %s\n", r.from, r.to, r.outcome)
		if !r.firstCanary.IsZero() {
			line("first request answered by "+r.to, "%5.1fs", r.firstCanary.Sub(r.changed).Seconds())
		}
		line("decision", "%5.1fs (%.1fs after the first canary request)", r.decided.Sub(r.changed).Seconds(), r.decided.Sub(r.firstCanary).Seconds())
		if r.outcome == backstopv1.PhaseRolledBack {
			line("failed check", "%s = %s", r.check, r.value)
			line("traffic back on "+r.from, "%5.1fs (last %s or 5xx answer %.2fs after the decision)",
				r.lastBad.Sub(r.changed).Seconds(), r.to, r.lastBad.Sub(r.decided).Seconds())
			line("revert pushed", "%5.1fs (commit %.10s)", r.reverted.Sub(r.changed).Seconds(), r.revert)
			line("revert applied by Flux", "%5.1fs", r.applied.Sub(r.changed).Seconds())
			line("Rollout idle on "+r.from, "%5.1fs", r.idle.Sub(r.changed).Seconds())
		}
		line("requests during the release", "%d, of which 5xx %d", r.requests, r.fails)
	}
	t := gen.Totals()
	fmt.Printf("  load: %d requests, %d 5xx, %d failed to connect\n", t.Requests, t.Errors5xx, t.Failures)
}
