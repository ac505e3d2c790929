//go:build chaos

// Package chaos_test kills the manager at random moments while it runs many
// releases, and proves that none of it shows in the outcome: `make chaos`.
//
// It is kept out of `make test` by the build tag chaos: it runs for several
// minutes. CHAOS_SEED replays a run (the seed is printed).
package chaos_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/rig"
	"backstop.dev/backstop/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

const (
	apps            = 10
	releasesPerApp  = 10
	faultyShare     = 0.3
	runLimit        = 15 * time.Minute
	releaseLimit    = 4 * time.Minute
	pauseStep       = 4 * time.Second
	shortLifetime   = time.Second     // a fifth of the lifetimes are shorter
	longLifetime    = 6 * time.Second // the others between shortLifetime and this
	shortLifeChance = 0.2
)

// outcome is how a release ended, as the test planned it.
type outcome struct {
	rel      rig.Release
	duration time.Duration
	err      error
}

// TestReleasesSurviveSIGKILL runs 100 releases, ten apps with ten releases
// each, about a third of them faulty, while the manager process is killed
// with SIGKILL at random moments (after lifetimes from a fraction of a
// second to six seconds) and started again at once. It proves:
//
//   - every release ends as planned: a healthy one promoted, a faulty one
//     rolled back with its revert pushed;
//   - no route write repeats: each app's route goes through exactly the
//     states its releases call for, 20% then 60% then back for a healthy
//     one, 20% (and 60% at most) then back for a faulty one;
//   - no promotion repeats: each app's primary ran exactly the images of its
//     healthy releases, in order;
//   - no revert repeats: one revert commit per faulty release, on the
//     branch, and each app's manifest there is its last healthy version;
//   - each release is recorded once in status.history, with its outcome;
//   - nothing is left half-done: every Rollout Idle, its route wholly on
//     the primary, its target scaled to zero, no revert pending;
//   - no credential shows in the manager's log, the Events, the Rollouts or
//     the repository (issue #9, part 6).
func TestReleasesSurviveSIGKILL(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("CHAOS_SEED: %v", err)
		}
	}
	t.Logf("seed %d (CHAOS_SEED=%d replays the plan; the kills' timing is never exact)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	// Longer pauses than the rig's, so most faulty releases fail at 20%.
	pause := &backstopv1.PauseStep{Duration: &metav1.Duration{Duration: pauseStep}}
	r := rig.New(t, env, rig.Options{Apps: apps, Rollout: func(ro *backstopv1.Rollout) {
		ro.Spec.Strategy.Canary.Steps = []backstopv1.CanaryStep{
			{SetWeight: ptr.To[int32](20)}, {Pause: pause}, {SetWeight: ptr.To[int32](60)}, {Pause: pause},
		}
	}})
	r.StartManager(t)

	// The plan: which releases are faulty.
	plan := make([][]bool, apps)
	faulty := 0
	for a := range plan {
		for range releasesPerApp {
			f := rng.Float64() < faultyShare
			plan[a] = append(plan[a], f)
			if f {
				faulty++
			}
		}
	}
	t.Logf("plan: %d releases, %d healthy and %d faulty, on %d apps", apps*releasesPerApp, apps*releasesPerApp-faulty, faulty, apps)

	ctx, cancel := context.WithTimeout(context.Background(), runLimit)
	defer cancel()
	start := time.Now()
	results := make([][]outcome, apps)
	var wg sync.WaitGroup
	for a, app := range r.Apps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, f := range plan[a] {
				if ctx.Err() != nil {
					return
				}
				o := outcome{}
				began := time.Now()
				rctx, rcancel := context.WithTimeout(ctx, releaseLimit)
				o.rel, o.err = r.Release(rctx, app, fmt.Sprintf("v%d", i+2), f)
				if o.err == nil {
					o.err = r.WaitForEnd(rctx, o.rel)
				}
				rcancel()
				o.duration = time.Since(began)
				results[a] = append(results[a], o)
				if o.err != nil {
					return // the rest of this app's plan would start from an unknown state
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	// The killer: the test's own goroutine, since it starts managers.
	var lifetimes []time.Duration
	var kills []time.Time
	for running := true; running; {
		life := shortLifetime + time.Duration(rng.Int64N(int64(longLifetime-shortLifetime)))
		if rng.Float64() < shortLifeChance {
			life = time.Duration(rng.Int64N(int64(shortLifetime)))
		}
		select {
		case <-done:
			running = false
		case <-time.After(life):
			r.Manager.Kill()
			lifetimes = append(lifetimes, life)
			kills = append(kills, time.Now())
			r.StartManager(t)
		}
	}
	elapsed := time.Since(start)

	var durations []time.Duration
	failures := 0
	for a, app := range r.Apps {
		for i, o := range results[a] {
			durations = append(durations, o.duration)
			if o.err != nil {
				failures++
				t.Errorf("%s release %d: %v", app, i+1, o.err)
			}
		}
		if len(results[a]) != releasesPerApp && ctx.Err() != nil {
			t.Errorf("%s: %d of %d releases ended within %s", app, len(results[a]), releasesPerApp, runLimit)
		}
	}
	if failures > 0 {
		t.Log("manager log: " + r.Manager.Log())
		t.FailNow()
	}

	routeWrites, promotions, reverts := 0, 0, 0
	for a, app := range r.Apps {
		n, ok := checkRoute(t, app, r.RouteWrites(app), results[a])
		routeWrites += n
		if !ok {
			explain(t, r, app, results[a], kills)
		}
		promotions += checkPromotions(t, app, r.Promotions(app), results[a])
		reverts += checkReverts(t, r, app, results[a])
		checkHistory(t, r, app, results[a])
		checkAtRest(t, r, app, results[a])
	}

	leaks, searched, err := r.Leaks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leaks {
		t.Errorf("a credential shows: %s", l)
	}
	log, err := os.ReadFile(r.Manager.Log())
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), "panic"); n > 0 {
		t.Errorf("the manager's log mentions panic %d times", n)
	}

	sort.Slice(durations, func(i, j int) bool { return durations[i] < durations[j] })
	sort.Slice(lifetimes, func(i, j int) bool { return lifetimes[i] < lifetimes[j] })
	t.Logf("%d releases (%d healthy, %d faulty) in %s, with %d SIGKILLs of the manager (lifetime min %s, median %s, max %s)",
		apps*releasesPerApp, apps*releasesPerApp-faulty, faulty, elapsed.Round(time.Second), len(lifetimes),
		at(lifetimes, 0).Round(time.Millisecond), at(lifetimes, 0.5).Round(time.Millisecond), at(lifetimes, 1).Round(time.Millisecond))
	t.Logf("release duration p50 %s, p90 %s, max %s", at(durations, 0.5).Round(100*time.Millisecond),
		at(durations, 0.9).Round(100*time.Millisecond), at(durations, 1).Round(100*time.Millisecond))
	t.Logf("route writes %d (each once), promotions %d (= healthy releases), revert commits %d (= faulty releases), git pushes received %d",
		routeWrites, promotions, reverts, r.Git.Pushes())
	t.Logf("credentials searched for: %d, in %d KiB of logs, Events, Rollouts and Git history: none found; notifications sent %d",
		len(rig.Secrets), searched>>10, r.Notifications())
	fmt.Printf("CHAOS releases=%d faulty=%d kills=%d seconds=%.0f route_writes=%d promotions=%d reverts=%d leaks=%d\n",
		apps*releasesPerApp, faulty, len(lifetimes), elapsed.Seconds(), routeWrites, promotions, reverts, len(leaks))
}

// at is the q-quantile of sorted ds.
func at(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[int(q*float64(len(ds)-1))]
}

// checkRoute proves the app's route went through exactly the states its
// releases call for, each written once, and returns how many it wrote.
func checkRoute(t *testing.T, app string, states []string, results []outcome) (int, bool) {
	t.Helper()
	weight := func(w int) string { return rig.RouteState(app, w) }
	if len(states) == 0 || states[0] != weight(0) {
		t.Errorf("%s: the route's first state is not all on the primary: %v", app, states)
		return 0, false
	}
	rest := states[1:]
	for i, o := range results {
		want := [][]string{{weight(20), weight(60), weight(0)}}
		if o.rel.Faulty {
			// The failing check may come after the pause at 20%.
			want = [][]string{{weight(20), weight(0)}, {weight(20), weight(60), weight(0)}}
		}
		matched := false
		for _, w := range want {
			if len(rest) >= len(w) && slices.Equal(rest[:len(w)], w) {
				rest, matched = rest[len(w):], true
				break
			}
		}
		if !matched {
			t.Errorf("%s release %d (faulty %v): the route went\n  %s\nwant it to start with one of %v", app, i+1, o.rel.Faulty,
				strings.Join(rest, "\n  "), want)
			return len(states), false
		}
	}
	if len(rest) > 0 {
		t.Errorf("%s: the route was written after the last release: %v", app, rest)
		return len(states), false
	}
	return len(states), true
}

// explain logs what happened to an app: the releases, its Events and the
// kills, in time order.
func explain(t *testing.T, r *rig.Rig, app string, results []outcome, kills []time.Time) {
	t.Helper()
	var lines []string
	for i, o := range results {
		lines = append(lines, fmt.Sprintf("release %d %s faulty=%v took %s", i+1, o.rel.Version, o.rel.Faulty, o.duration.Round(time.Millisecond)))
	}
	events, err := r.Events(context.Background(), app)
	if err != nil {
		t.Fatal(err)
	}
	type line struct {
		at   time.Time
		text string
	}
	var timeline []line
	for _, e := range events {
		timeline = append(timeline, line{rig.EventTime(e), e.Reason + ": " + e.Note})
	}
	for _, k := range kills {
		timeline = append(timeline, line{k, "--- SIGKILL"})
	}
	states, times := r.RouteWrites(app), r.RouteWriteTimes(app)
	for i := range min(len(states), len(times)) {
		timeline = append(timeline, line{times[i], "route " + states[i]})
	}
	sort.SliceStable(timeline, func(i, j int) bool { return timeline[i].at.Before(timeline[j].at) })
	for _, l := range timeline {
		lines = append(lines, l.at.Format("15:04:05.000")+" "+l.text)
	}
	t.Logf("%s:\n  %s", app, strings.Join(lines, "\n  "))
}

// checkPromotions proves the primary ran exactly the healthy releases'
// images, in order, and returns how many promotions there were.
func checkPromotions(t *testing.T, app string, images []string, results []outcome) int {
	t.Helper()
	want := []string{rig.Image(app, "v1")}
	for _, o := range results {
		if !o.rel.Faulty {
			want = append(want, o.rel.Image())
		}
	}
	if !slices.Equal(images, want) {
		t.Errorf("%s: the primary ran\n  %v\nwant\n  %v", app, images, want)
	}
	return len(images) - 1
}

// checkReverts proves there is one revert commit per faulty release, each
// for a different release, and that the manifest on the branch is that of
// the last healthy release; it returns how many revert commits there are.
func checkReverts(t *testing.T, r *rig.Rig, app string, results []outcome) int {
	t.Helper()
	commits, err := r.RevertCommits(app)
	if err != nil {
		t.Fatal(err)
	}
	faulty := 0
	stable := rig.Image(app, "v1")
	for _, o := range results {
		if o.rel.Faulty {
			faulty++
		} else {
			stable = o.rel.Image()
		}
	}
	releases := map[string]bool{}
	for _, c := range commits {
		_, release, _ := strings.Cut(c, " ")
		if releases[release] {
			t.Errorf("%s: two revert commits for the release %s: %v", app, release, commits)
		}
		releases[release] = true
	}
	if len(commits) != faulty {
		t.Errorf("%s: %d revert commits for %d faulty releases: %v", app, len(commits), faulty, commits)
	}
	if m, err := r.ManifestOnBranch(app); err != nil || m != rig.Manifest(app, stable) {
		t.Errorf("%s: the manifest on the branch (%v) is\n%s\nwant the image %s", app, err, m, stable)
	}
	return len(commits)
}

// checkHistory proves status.history holds each release once, newest
// first, with its outcome.
func checkHistory(t *testing.T, r *rig.Rig, app string, results []outcome) {
	t.Helper()
	var ro backstopv1.Rollout
	if err := env.Client.Get(context.Background(), r.Key(app), &ro); err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, h := range ro.Status.History {
		got = append(got, string(h.Outcome))
	}
	for i := len(results) - 1; i >= 0 && len(want) < len(ro.Status.History); i-- {
		w := backstopv1.OutcomePromoted
		if results[i].rel.Faulty {
			w = backstopv1.OutcomeRolledBack
		}
		want = append(want, string(w))
	}
	if len(got) != min(len(results), backstopv1.HistoryLimit) || !slices.Equal(got, want) {
		t.Errorf("%s: status.history outcomes %v; want %v", app, got, want)
	}
	seen := map[string]bool{}
	for _, h := range ro.Status.History {
		if seen[h.ToRevision] {
			t.Errorf("%s: status.history records the release of %s twice", app, h.ToRevision)
		}
		seen[h.ToRevision] = true
	}
}

// checkAtRest proves nothing is left half-done.
func checkAtRest(t *testing.T, r *rig.Rig, app string, results []outcome) {
	t.Helper()
	ctx := context.Background()
	var ro backstopv1.Rollout
	if err := env.Client.Get(ctx, r.Key(app), &ro); err != nil {
		t.Fatal(err)
	}
	if ro.Status.Phase != backstopv1.PhaseIdle && ro.Status.Phase != backstopv1.PhaseSucceeded {
		t.Errorf("%s: phase %s at the end", app, ro.Status.Phase)
	}
	if st := ro.Status.Revert; st != nil && st.State == backstopv1.RevertPending {
		t.Errorf("%s: a revert is still pending: %s", app, st.Message)
	}
	if states := r.RouteWrites(app); len(states) == 0 || states[len(states)-1] != rig.RouteState(app, 0) {
		t.Errorf("%s: the route ends at %v, not wholly on the primary", app, states[len(states)-1:])
	}
	var target appsv1.Deployment
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: app}, &target); err != nil {
		t.Fatal(err)
	}
	if n := ptr.Deref(target.Spec.Replicas, 1); n != 0 {
		t.Errorf("%s: the target keeps %d replicas after the last release", app, n)
	}
}
