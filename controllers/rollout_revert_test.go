package controllers_test

import (
	"context"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers"
	"backstop.dev/backstop/test/gittest"
	"backstop.dev/backstop/test/testenv"
)

// manifest is the target's Deployment as the repository holds it.
func manifest(image string) string {
	return "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\nspec:\n  template:\n    spec:\n      containers:\n      - name: app\n        image: " + image + "\n"
}

// TestRollbackRevertsInGit: a release of a target that Flux applies from a
// real git server is aborted; once traffic is back on the primary, the
// commit that released it is reverted on the branch Flux follows, status
// says which commit, and a revert run again (as after a restart) finds it
// rather than pushing a second one.
func TestRollbackRevertsInGit(t *testing.T) {
	ns := releaseEnv(t)
	ctx := context.Background()

	srv := gittest.NewServer(t, gittest.Options{Username: "flux", Password: "fl0x-pass"})
	srv.CreateRepo(t, "fleet", "main")
	work := srv.Clone(t, "fleet")
	work.Write(t, "apps/app/deployment.yaml", manifest("app:v1"))
	good := work.Commit(t, "Deploy app v1")
	work.Write(t, "apps/app/deployment.yaml", manifest("app:v2"))
	bad := work.Commit(t, "Deploy app v2")
	work.Push(t)

	mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fleet-auth"},
		Data: map[string][]byte{"username": []byte("flux"), "password": []byte("fl0x-pass")}})
	flux := fluxSource(t, ns, srv.URL("fleet"), "./apps/app", "fleet-auth")
	flux.applied(good)

	ro := fluxRevertedRollout(t, ns)

	flux.applied(bad)
	setImage(t, ns, "app:v2")
	waitForPhase(t, ro, backstopv1.PhasePaused, 1)
	setGate(t, ro, "abort")
	waitForPhase(t, ro, backstopv1.PhaseRolledBack, -1)

	var rolled backstopv1.Rollout
	testenv.Eventually(t, "the revert is pushed", func() bool {
		return env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &rolled) == nil &&
			rolled.Status.Revert != nil && rolled.Status.Revert.State != backstopv1.RevertPending
	})
	st := rolled.Status.Revert
	if st.State != backstopv1.RevertPushed || st.Branch != "main" || len(st.Reverted) != 1 || st.Reverted[0].Commit != bad || st.Commit == "" {
		t.Fatalf("status.revert: %+v; want Pushed to main, reverting %s", st, bad)
	}
	if h := rolled.Status.History; len(h) == 0 || h[0].Outcome != backstopv1.OutcomeRolledBack || h[0].Reason != "Aborted" || h[0].RevertCommit != st.Commit {
		t.Errorf("status.history = %+v; want the aborted release first, with revert commit %s", h, st.Commit)
	}
	if strings.Contains(st.Repository, "fl0x-pass") || strings.Contains(st.Message, "fl0x-pass") {
		t.Errorf("status.revert shows the password: %+v", st)
	}
	head := gittest.Git(t, srv.Dir("fleet"), "log", "-1", "--format=%H%n%s%n%an", "main")
	if want := st.Commit + "\nRevert \"Deploy app v2\"\nBackstop Test"; head != want {
		t.Errorf("head of main:\n%s\nwant:\n%s", head, want)
	}
	if got := gittest.Git(t, srv.Dir("fleet"), "show", "main:apps/app/deployment.yaml") + "\n"; got != manifest("app:v1") {
		t.Errorf("the manifest after the revert:\n%s", got)
	}
	waitForEvent(t, ctx, ro, "Normal", "Reverted")
	testenv.Eventually(t, "condition Reverted is True", func() bool {
		return env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &rolled) == nil &&
			meta.IsStatusConditionTrue(rolled.Status.Conditions, backstopv1.RevertedCondition)
	})

	// A manager restarted before it recorded the result starts the revert
	// again: it finds its commit and pushes nothing.
	pushes := srv.Pushes()
	again := rolled.DeepCopy()
	again.Status.Revert = &backstopv1.RevertStatus{State: backstopv1.RevertPending, Release: st.Release}
	restarted := &controllers.GitReverter{Reader: env.Client}
	testenv.Eventually(t, "the restarted revert finishes", func() bool {
		if err := restarted.Revert(ctx, again); err != nil {
			t.Fatal(err)
		}
		return again.Status.Revert.State != backstopv1.RevertPending
	})
	if got := again.Status.Revert; got.State != backstopv1.RevertPushed || got.Commit != st.Commit || !strings.Contains(got.Message, "already on branch main") {
		t.Errorf("the restarted revert: %+v; want the same commit, already pushed", got)
	}
	if srv.Pushes() != pushes {
		t.Errorf("the restarted revert pushed %d times; want none", srv.Pushes()-pushes)
	}
}

// TestRepeatedRollbacksRevertOnlyTheirOwnRelease: two failed releases in a
// row through Flux, which records the revision it attempts before the apply
// and the one it applied after. Each revert undoes its own release's commit
// and nothing of the one before (neither its commit nor its revert), and
// lands on the branch.
func TestRepeatedRollbacksRevertOnlyTheirOwnRelease(t *testing.T) {
	ns := releaseEnv(t)
	srv := gittest.NewServer(t, gittest.Options{Username: "flux", Password: "fl0x-pass"})
	srv.CreateRepo(t, "fleet", "main")
	work := srv.Clone(t, "fleet")
	work.Write(t, "apps/app/deployment.yaml", manifest("app:v1"))
	good := work.Commit(t, "Deploy app v1")
	work.Push(t)
	mustCreate(t, authSecret(ns, "flux", "fl0x-pass"))
	flux := fluxSource(t, ns, srv.URL("fleet"), "./apps/app", "fleet-auth")
	flux.applied(good)

	ro := fluxRevertedRollout(t, ns)

	stable := good
	for round, image := range []string{"app:v2", "app:v3"} {
		work.Pull(t)
		work.Write(t, "apps/app/deployment.yaml", manifest(image))
		bad := work.Commit(t, "Deploy "+image)
		work.Push(t)

		// Flux attempts the commit, applies it, and has not yet recorded
		// it as applied when the release starts.
		flux.attempting(bad)
		setImage(t, ns, image)
		paused := waitForPhase(t, ro, backstopv1.PhasePaused, 1)
		if st := paused.Status; st.StableSourceRevision != stable || st.CanarySourceRevision != bad {
			t.Fatalf("round %d: source revisions stable %s, canary %s; want %s, %s",
				round+1, st.StableSourceRevision, st.CanarySourceRevision, stable, bad)
		}
		flux.applied(bad)
		setGate(t, ro, "abort")
		waitForPhase(t, ro, backstopv1.PhaseRolledBack, -1)
		rolled := waitForRevert(t, ro, notPending)
		st := rolled.Status.Revert
		if st.State != backstopv1.RevertPushed || st.Branch != "main" || len(st.Reverted) != 1 || st.Reverted[0].Commit != bad {
			t.Fatalf("round %d: status.revert: %+v; want Pushed to main, reverting only %s", round+1, st, bad)
		}
		if got := gittest.Git(t, srv.Dir("fleet"), "show", "main:apps/app/deployment.yaml") + "\n"; got != manifest("app:v1") {
			t.Fatalf("round %d: the manifest after the revert:\n%s", round+1, got)
		}

		// Flux applies the revert: the target is back at the stable
		// version, whose source revision is now the revert.
		flux.attempting(st.Commit)
		setImage(t, ns, "app:v1")
		idle := waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
		if idle.Status.StableSourceRevision != st.Commit {
			t.Fatalf("round %d: stableSourceRevision after the revert was applied: %s; want the revert %s",
				round+1, idle.Status.StableSourceRevision, st.Commit)
		}
		flux.applied(st.Commit)
		stable = st.Commit
	}
	if n := strings.Count(gittest.Git(t, srv.Dir("fleet"), "log", "--format=%s", "main"), "Revert "); n != 2 {
		t.Errorf("main has %d reverts; want 2", n)
	}
}

// TestRollbackRevertsWithoutRevisions: the Rollout names its repository and
// no GitOps tool records source revisions, so the revert looks for the
// commit in the history of the path, by the image the failed version runs,
// and says in status which commit it took and why.
func TestRollbackRevertsWithoutRevisions(t *testing.T) {
	ns := releaseEnv(t)
	srv := gittest.NewServer(t, gittest.Options{Username: "ci", Password: "c1-pass-word"})
	work, bad := fleet(t, srv)
	work.Write(t, "apps/other/deployment.yaml", manifest("other:v7"))
	work.Commit(t, "Deploy other v7")
	work.Push(t)
	mustCreate(t, authSecret(ns, "ci", "c1-pass-word"))

	rolled := rolledBackFrom(t, ns, srv, &controllers.GitReverter{Reader: env.Client, Backoff: 100 * time.Millisecond}, notPending)

	st := rolled.Status.Revert
	want := backstopv1.RevertedCommit{Commit: bad, Reason: `apps/app/deployment.yaml: "image: app:v2"`}
	if st.State != backstopv1.RevertPushed || len(st.Reverted) != 1 || st.Reverted[0] != want {
		t.Fatalf("status.revert: %+v; want Pushed, reverting %+v", st, want)
	}
	if got := gittest.Git(t, srv.Dir("fleet"), "show", "main:apps/app/deployment.yaml") + "\n"; got != manifest("app:v1") {
		t.Errorf("the manifest after the revert:\n%s", got)
	}
	if got := gittest.Git(t, srv.Dir("fleet"), "show", "main:apps/other/deployment.yaml") + "\n"; got != manifest("other:v7") {
		t.Errorf("the other app's manifest changed:\n%s", got)
	}
}

// TestFailedRevertIsTriedAgain: a revert refused for wrong credentials is
// Failed, with the condition Reverted False and an Event; once the Secret
// is fixed, the revert is tried again on its own and pushed.
func TestFailedRevertIsTriedAgain(t *testing.T) {
	ns := releaseEnv(t)
	ctx := context.Background()
	failedBefore, pushedBefore := revertCounter(t, "Failed"), revertCounter(t, "Pushed")
	srv := gittest.NewServer(t, gittest.Options{Username: "ci", Password: "right-pass-word"})
	_, bad := fleet(t, srv)
	auth := authSecret(ns, "ci", "wrong-pass-word")
	mustCreate(t, auth)

	rolled := rolledBackFrom(t, ns, srv, &controllers.GitReverter{Reader: env.Client, Attempts: 1},
		func(s backstopv1.RevertState) bool { return s == backstopv1.RevertFailed })

	c := meta.FindStatusCondition(rolled.Status.Conditions, backstopv1.RevertedCondition)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != "Failed" {
		t.Errorf("condition Reverted = %+v, want False, Failed", c)
	}
	if strings.Contains(rolled.Status.Revert.Message, "wrong-pass-word") {
		t.Errorf("status.revert shows the password: %s", rolled.Status.Revert.Message)
	}
	waitForEvent(t, ctx, rolled, "Warning", "RevertFailed")

	auth.Data["password"] = []byte("right-pass-word")
	if err := env.Client.Update(ctx, auth); err != nil {
		t.Fatal(err)
	}
	rolled = waitForRevert(t, rolled, func(s backstopv1.RevertState) bool { return s == backstopv1.RevertPushed })
	if st := rolled.Status.Revert; len(st.Reverted) != 1 || st.Reverted[0].Commit != bad {
		t.Errorf("status.revert: %+v; want %s reverted", st, bad)
	}
	if !meta.IsStatusConditionTrue(rolled.Status.Conditions, backstopv1.RevertedCondition) {
		t.Errorf("condition Reverted is not True: %+v", meta.FindStatusCondition(rolled.Status.Conditions, backstopv1.RevertedCondition))
	}
	if failed, pushed := revertCounter(t, "Failed")-failedBefore, revertCounter(t, "Pushed")-pushedBefore; failed < 1 || pushed < 1 {
		t.Errorf("backstop_reverts_total rose by %v Failed and %v Pushed; want at least 1 each", failed, pushed)
	}
}

// revertCounter reads backstop_reverts_total for a state.
func revertCounter(t *testing.T, state string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, f := range families {
		if f.GetName() != "backstop_reverts_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "state" && l.GetValue() == state {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// fluxRevertedRollout creates a Rollout of ns's target, 50% then a pause,
// whose rollbacks are reverted for real in the source Flux applied the
// target from, and waits until it is Idle.
func fluxRevertedRollout(t *testing.T, ns string) *backstopv1.Rollout {
	t.Helper()
	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](50)},
		{Pause: &backstopv1.PauseStep{}},
	}}})
	ro.Spec.Analysis = &backstopv1.AnalysisSpec{Interval: &metav1.Duration{Duration: time.Second}}
	ro.Spec.Revert = &backstopv1.RevertSpec{Author: &backstopv1.GitAuthor{Name: "Backstop Test", Email: "backstop@example.com"}}
	reverts.revertForReal(ro, &controllers.GitReverter{Reader: env.Client, Backoff: 100 * time.Millisecond})
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	return ro
}

// fleet is a repository on a real git server, as a team keeps it: app v1
// deployed, then the commit moving it to v2, which it returns.
func fleet(t *testing.T, srv *gittest.Server) (work *gittest.Work, bad string) {
	t.Helper()
	srv.CreateRepo(t, "fleet", "main")
	work = srv.Clone(t, "fleet")
	work.Write(t, "apps/app/deployment.yaml", manifest("app:v1"))
	work.Commit(t, "Deploy app v1")
	work.Write(t, "apps/app/deployment.yaml", manifest("app:v2"))
	bad = work.Commit(t, "Deploy app v2")
	work.Push(t)
	return work, bad
}

// rolledBackFrom creates a Rollout whose revert goes to apps/app of srv's
// fleet with the credentials of Secret fleet-auth, made by g; releases v2
// and aborts it; and waits for the revert to leave Pending, in the state
// done accepts. It returns the Rollout as it is then.
func rolledBackFrom(t *testing.T, ns string, srv *gittest.Server, g *controllers.GitReverter, done func(backstopv1.RevertState) bool) *backstopv1.Rollout {
	t.Helper()
	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](50)},
		{Pause: &backstopv1.PauseStep{}},
	}}})
	ro.Spec.Revert = &backstopv1.RevertSpec{Source: &backstopv1.GitSource{
		URL: srv.URL("fleet"), Branch: "main", Path: "apps/app",
		SecretRef: &backstopv1.LocalObjectReference{Name: "fleet-auth"}}}
	reverts.revertForReal(ro, g)
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	setImage(t, ns, "app:v2")
	waitForPhase(t, ro, backstopv1.PhasePaused, 1)
	setGate(t, ro, "abort")
	waitForPhase(t, ro, backstopv1.PhaseRolledBack, -1)
	return waitForRevert(t, ro, done)
}

// waitForRevert waits for ro's revert to reach a state done accepts.
func waitForRevert(t *testing.T, ro *backstopv1.Rollout, done func(backstopv1.RevertState) bool) *backstopv1.Rollout {
	t.Helper()
	var got backstopv1.Rollout
	testenv.Eventually(t, "the revert ends", func() bool {
		return env.Client.Get(context.Background(), client.ObjectKeyFromObject(ro), &got) == nil &&
			got.Status.Revert != nil && done(got.Status.Revert.State)
	})
	return &got
}

func notPending(s backstopv1.RevertState) bool { return s != backstopv1.RevertPending }

func authSecret(ns, user, password string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fleet-auth"},
		Data: map[string][]byte{"username": []byte(user), "password": []byte(password)}}
}

// TestRevertEndsAfterTheTargetReturned: the GitOps tool may put the stable
// version back on the target (the Rollout becomes Idle) before the revert
// has ended, here because the git server is down for a while: the revert's
// result is still recorded when it ends.
func TestRevertEndsAfterTheTargetReturned(t *testing.T) {
	ns := releaseEnv(t)
	srv := gittest.NewServer(t, gittest.Options{Username: "ci", Password: "c1-pass-word"})
	_, bad := fleet(t, srv)
	mustCreate(t, authSecret(ns, "ci", "c1-pass-word"))
	srv.Stop()

	pending := func(s backstopv1.RevertState) bool { return s == backstopv1.RevertPending }
	rolled := rolledBackFrom(t, ns, srv, &controllers.GitReverter{Reader: env.Client, Attempts: 50, Backoff: 200 * time.Millisecond}, pending)
	setImage(t, ns, "app:v1")
	waitForPhase(t, rolled, backstopv1.PhaseIdle, -1)
	srv.Start(t)

	got := waitForRevert(t, rolled, func(s backstopv1.RevertState) bool { return s == backstopv1.RevertPushed })
	if st := got.Status.Revert; len(st.Reverted) != 1 || st.Reverted[0].Commit != bad {
		t.Errorf("status.revert: %+v; want %s reverted", st, bad)
	}
	if !meta.IsStatusConditionTrue(got.Status.Conditions, backstopv1.RevertedCondition) {
		t.Errorf("condition Reverted: %+v; want True", meta.FindStatusCondition(got.Status.Conditions, backstopv1.RevertedCondition))
	}
}

// TestRevertShowsItsFailedTries: while the git server is down, the revert
// stays Pending and is tried again, and status.revert says so: which try
// failed, why (without the password), and when the next one is; the
// condition Reverted (Unknown) carries the same message. Once the server
// is back, the next try pushes the revert.
func TestRevertShowsItsFailedTries(t *testing.T) {
	ns := releaseEnv(t)
	srv := gittest.NewServer(t, gittest.Options{Username: "ci", Password: "c1-pass-word"})
	_, bad := fleet(t, srv)
	mustCreate(t, authSecret(ns, "ci", "c1-pass-word"))
	srv.Stop()

	pending := func(s backstopv1.RevertState) bool { return s == backstopv1.RevertPending }
	rolled := rolledBackFrom(t, ns, srv, &controllers.GitReverter{Reader: env.Client, Attempts: 50, Backoff: 500 * time.Millisecond}, pending)
	var got *backstopv1.Rollout
	testenv.Eventually(t, "status.revert to show a failed try", func() bool {
		got = get(t, rolled)
		st := got.Status.Revert
		return st != nil && st.State == backstopv1.RevertPending && st.Attempts >= 1 && strings.HasPrefix(st.Message, "Try ")
	})
	st := got.Status.Revert
	if !regexp.MustCompile(`^Try \d+ of 50 failed: .*connection refused.*; trying again in \S+$`).MatchString(st.Message) || st.LastAttemptTime == nil {
		t.Errorf("status.revert while the server is down: %+v; want the failed try, its reason and the next", st)
	}
	if strings.Contains(st.Message, "c1-pass-word") {
		t.Errorf("status.revert shows the password: %s", st.Message)
	}
	c := meta.FindStatusCondition(got.Status.Conditions, backstopv1.RevertedCondition)
	if c == nil || c.Status != metav1.ConditionUnknown || c.Message != st.Message {
		t.Errorf("condition Reverted = %+v; want Unknown with the message of status.revert", c)
	}

	srv.Start(t)
	done := waitForRevert(t, rolled, func(s backstopv1.RevertState) bool { return s == backstopv1.RevertPushed })
	if st := done.Status.Revert; len(st.Reverted) != 1 || st.Reverted[0].Commit != bad || st.Attempts < 2 {
		t.Errorf("status.revert: %+v; want %s reverted after more than one try", st, bad)
	}
}

// TestRevertTryThatHangsIsStopped: a Git server that accepts connections
// but does not answer (a frozen process, a half-open network path) would
// hold a try forever, and the revert would stay Pending, never tried
// again. Each try is bounded (TryTimeout): the hung one fails, status
// says so, and the next try, once the server answers, pushes the revert.
func TestRevertTryThatHangsIsStopped(t *testing.T) {
	ns := releaseEnv(t)
	srv := gittest.NewServer(t, gittest.Options{Username: "ci", Password: "c1-pass-word"})
	_, bad := fleet(t, srv)
	mustCreate(t, authSecret(ns, "ci", "c1-pass-word"))
	hang := &hangingProxy{to: strings.TrimPrefix(strings.TrimSuffix(srv.URL("fleet"), "/fleet.git"), "http://")}
	hang.hang.Store(true)
	addr := hang.start(t)

	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](50)},
		{Pause: &backstopv1.PauseStep{}},
	}}})
	ro.Spec.Revert = &backstopv1.RevertSpec{Source: &backstopv1.GitSource{
		URL: "http://" + addr + "/fleet.git", Branch: "main", Path: "apps/app",
		SecretRef: &backstopv1.LocalObjectReference{Name: "fleet-auth"}}}
	reverts.revertForReal(ro, &controllers.GitReverter{Reader: env.Client, Attempts: 50,
		Backoff: 200 * time.Millisecond, TryTimeout: time.Second})
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	setImage(t, ns, "app:v2")
	waitForPhase(t, ro, backstopv1.PhasePaused, 1)
	setGate(t, ro, "abort")
	waitForPhase(t, ro, backstopv1.PhaseRolledBack, -1)

	var got *backstopv1.Rollout
	testenv.Eventually(t, "status.revert to show a try that took too long", func() bool {
		got = get(t, ro)
		st := got.Status.Revert
		return st != nil && st.State == backstopv1.RevertPending && strings.Contains(st.Message, "the try took longer than 1s")
	})
	if n := hang.held.Load(); n == 0 {
		t.Errorf("the proxy held no connection: the try did not hang, so the test proves nothing")
	}
	hang.hang.Store(false)
	done := waitForRevert(t, ro, func(s backstopv1.RevertState) bool { return s == backstopv1.RevertPushed })
	if st := done.Status.Revert; len(st.Reverted) != 1 || st.Reverted[0].Commit != bad {
		t.Errorf("status.revert: %+v; want %s reverted", st, bad)
	}
}

// hangingProxy forwards TCP connections to a server, or, while hang is
// set, accepts them and never answers.
type hangingProxy struct {
	to   string
	hang atomic.Bool
	held atomic.Int64
}

func (p *hangingProxy) start(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var open []net.Conn
	keep := func(c net.Conn) {
		mu.Lock()
		defer mu.Unlock()
		open = append(open, c)
	}
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range open {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			keep(c)
			if p.hang.Load() {
				p.held.Add(1)
				continue // held open, never answered, closed at cleanup
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", p.to)
				if err != nil {
					return
				}
				keep(up)
				defer up.Close()
				go func() { _, _ = io.Copy(up, c); up.Close() }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	return l.Addr().String()
}
