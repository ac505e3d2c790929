package ha_test

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/testenv"
)

// TestLeaderFailover runs two replicas of the manager with leader election
// and kills the leader (SIGKILL, as a node failure would) in the middle of a
// canary release. It proves that the standby does nothing while the other
// leads (no successful write to the API server, no reconcile, no series of
// the Rollout), that it takes the Lease once the lease duration has run out
// (the bound is generous: the time is printed, not judged), and that the
// release then completes, finished by the former standby, with every route
// weight written once.
func TestLeaderFailover(t *testing.T) {
	ns := env.Namespace(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env.RunDeploymentController(ctx, ns)
	env.RunGateway(ctx, ns)
	dir := t.TempDir()
	const leaseName = "backstop-leader.backstop.dev"

	replicas := []*testenv.Manager{
		env.StartManager(t, dir, "replica-0", electionArgs(ns)...),
		env.StartManager(t, dir, "replica-1", electionArgs(ns)...),
	}
	// The leader is the replica whose identity the Lease holds: the one
	// whose leader_election_master_status says so.
	var leader, standby *testenv.Manager
	var holder string
	waitFor(t, "a leader", testenv.Timeout, func() bool {
		holder = ptr.Deref(lease(t, ns, leaseName).Spec.HolderIdentity, "")
		leader, standby = nil, nil
		for i, m := range replicas {
			if scrape(t, m).leads(leaseName) {
				leader, standby = m, replicas[1-i]
			}
		}
		return holder != "" && leader != nil
	})
	if scrape(t, standby).leads(leaseName) {
		t.Fatal("both replicas say they lead")
	}
	t.Logf("the Lease %s is held by %s (%s)", leaseName, holder, leader.Log())

	newGateway(t, ns)
	a := newApp(t, ns, "app", nil)
	writes := env.WatchRouteWrites(t, ns, "app")
	a.waitPhase(t, backstopv1.PhaseIdle, releaseTimeout)
	a.release(t)
	a.waitPause(t, 40)

	// Until now the standby only watched.
	sm := scrape(t, standby)
	if n := sm.writes(); n != 0 {
		t.Errorf("the standby made %v writes to the API server before it led; want none", n)
	}
	if n, _ := sm.value("controller_runtime_reconcile_total", map[string]string{"controller": "rollout"}); n != 0 {
		t.Errorf("the standby reconciled %v times before it led; want none", n)
	}
	if p := sm.phaseOf(ns, "app"); p != "" {
		t.Errorf("the standby reports the Rollout %s before it led; want no series", p)
	}
	leaderWrites := scrape(t, leader).writes()
	transitions := ptr.Deref(lease(t, ns, leaseName).Spec.LeaseTransitions, 0)

	killed := time.Now()
	leader.Kill()
	var takeover time.Duration
	waitFor(t, "the standby to take the Lease", leaseDuration+retryPeriod+testenv.Timeout, func() bool {
		h := ptr.Deref(lease(t, ns, leaseName).Spec.HolderIdentity, "")
		takeover = time.Since(killed)
		return h != "" && h != holder
	})
	if !scrape(t, standby).leads(leaseName) {
		t.Fatal("the Lease changed hands, but not to the standby")
	}
	if got := ptr.Deref(lease(t, ns, leaseName).Spec.LeaseTransitions, 0); got != transitions+1 {
		t.Errorf("lease transitions %d; want %d", got, transitions+1)
	}
	t.Logf("the leader (%v writes) was killed at canary weight 40; the standby took the Lease %s later (lease duration %s, retry period %s)",
		leaderWrites, takeover.Round(10*time.Millisecond), leaseDuration, retryPeriod)

	a.waitPhase(t, backstopv1.PhaseSucceeded, releaseTimeout)
	a.checkWrites(t, writes)
	if p := scrape(t, standby).phaseOf(ns, "app"); p != string(backstopv1.PhaseSucceeded) {
		t.Errorf("the former standby reports the Rollout %q; want Succeeded, the release it finished", p)
	}
	var primary appsv1.Deployment
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app-primary"}, &primary); err != nil {
		t.Fatal(err)
	}
	if img := primary.Spec.Template.Spec.Containers[0].Image; img != "app:v2" {
		t.Errorf("primary runs %s; want app:v2", img)
	}
	t.Logf("the release completed %s after the kill", time.Since(killed).Round(10*time.Millisecond))
}
