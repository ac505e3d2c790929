package rig_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"backstop.dev/backstop/test/rig"
	"backstop.dev/backstop/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

// TestAHealthyAndAFaultyRelease plays one release of each kind on the rig
// and checks what it records: the healthy one written at every weight and
// promoted once, the faulty one back on the primary after 20% and reverted
// by one commit, and no credential anywhere.
func TestAHealthyAndAFaultyRelease(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*testenv.Timeout)
	defer cancel()
	r := rig.New(t, env, rig.Options{Apps: 1})
	r.StartManager(t)
	app := r.Apps[0]

	good, err := r.Release(ctx, app, "v2", rig.Healthy)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WaitForEnd(ctx, good); err != nil {
		t.Fatal(err)
	}
	bad, err := r.Release(ctx, app, "v3", rig.Faulty)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WaitForEnd(ctx, bad); err != nil {
		t.Fatal(err)
	}

	states := func(weights ...int) []string {
		var s []string
		for _, w := range weights {
			s = append(s, rig.RouteState(app, w))
		}
		return s
	}
	if got, want := r.RouteWrites(app), states(0, 20, 60, 0, 20, 0); !slices.Equal(got, want) {
		t.Errorf("route writes\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if got, want := r.Promotions(app), []string{rig.Image(app, "v1"), rig.Image(app, "v2")}; !slices.Equal(got, want) {
		t.Errorf("the primary ran %v; want %v", got, want)
	}
	reverts, err := r.RevertCommits(app)
	if err != nil {
		t.Fatal(err)
	}
	if len(reverts) != 1 {
		t.Errorf("revert commits %v; want one", reverts)
	}
	if m, err := r.ManifestOnBranch(app); err != nil || m != rig.Manifest(app, rig.Image(app, "v2")) {
		t.Errorf("the manifest on the branch after the revert (%v):\n%s", err, m)
	}
	leaks, searched, err := r.Leaks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(leaks) > 0 {
		t.Errorf("credentials showed: %v", leaks)
	}
	if r.Notifications() == 0 {
		t.Error("the webhook was never called: its Secret was not used, so the leak search proves nothing for it")
	}
	t.Logf("route writes %d, promotions %d, revert commits %d, notifications %d; %d KiB searched for %d credentials, none found",
		len(r.RouteWrites(app)), len(r.Promotions(app))-1, len(reverts), r.Notifications(), searched>>10, len(rig.Secrets))
}
