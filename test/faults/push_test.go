package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"backstop.dev/backstop/test/rig"
)

// racers is how many apps release faulty versions at once in
// TestRevertsRaceToOneBranch.
const racers = 10

// TestRevertsRaceToOneBranch proves that reverts pushed to the same
// branch at the same time are all kept. Ten apps whose manifests live in
// one repository release a faulty version at once, so their ten reverts
// are due together; while they run, a person pushes an unrelated commit
// to the branch. The server's pre-receive hook makes every push take a
// quarter of a second, so pushes overlap, and holds the reverts after the
// first until the person's commit has landed, so it lands in between and
// the held reverts, built on the head it moved, are refused and must try
// again. Every revert lands exactly once (one commit with each
// release's trailer), the person's commit is kept, and each app's
// manifest on the branch is back at v1. The cases differ in the manager's
// clone cache: with it (the default) one manager's reverts of a
// repository take turns on its clone, and only the person's push races
// them; without it (--git-cache-size=0) each revert has a clone of its
// own and the ten push against each other. It prints the pushes the
// server saw, the reverts, how many of them had to try again, and the
// time for all to land.
func TestRevertsRaceToOneBranch(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"clone cache", nil},
		{"no clone cache", []string{"--git-cache-size=0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			r := rig.New(t, env, rig.Options{Apps: racers, ManagerArgs: tc.args})
			r.StartManager(t)
			release := holdReverts(t, r)

			pushesBefore := r.Git.Pushes()
			start := time.Now()
			errs := make([]error, len(r.Apps))
			var wg sync.WaitGroup
			for i, app := range r.Apps {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rel, err := r.Release(ctx, app, "v2", rig.Faulty)
					if err == nil {
						err = r.WaitForEnd(ctx, rel)
					}
					errs[i] = err
				}()
			}

			// A person pushes once the first revert is on the branch.
			person, err := commitBetweenReverts(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			if err := release(); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			took := time.Since(start)
			for _, err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			if t.Failed() {
				logReverts(t, r)
				return
			}

			retried := 0
			for _, app := range r.Apps {
				expectOneRevert(t, r, app, "v1")
				expectRolledBack(t, r, app)
				ro, err := r.Rollout(ctx, app)
				if err != nil {
					t.Fatal(err)
				}
				if ro.Status.Revert != nil && ro.Status.Revert.Attempts > 1 {
					retried++
				}
			}
			if _, err := r.Git.Git(r.Git.Dir(rig.Repo), "merge-base", "--is-ancestor", person, rig.Branch); err != nil {
				t.Errorf("the person's commit %s is not on the branch: %v", person, err)
			}
			if m, err := r.Git.Git(r.Git.Dir(rig.Repo), "show", rig.Branch+":README.md"); err != nil || !strings.Contains(m, "on call") {
				t.Errorf("the person's change to README.md is gone (%v): %q", err, m)
			}
			log, err := r.ManagerLog()
			if err != nil {
				t.Fatal(err)
			}
			later, err := r.Git.Git(r.Git.Dir(rig.Repo), "rev-list", "--count", "--grep=^Backstop-Release: ", person+".."+rig.Branch)
			if err != nil {
				t.Fatal(err)
			}
			if later == "0" || later == fmt.Sprint(racers) {
				t.Errorf("%s reverts landed after the person's commit; want it in between", later)
			}
			// The people pushed the ten releases' commits and the one in
			// between; the rest are the manager's, refused ones included.
			failedTries := 0
			for _, l := range strings.Split(log, "\n") {
				var entry struct{ Msg, Release, Message string }
				if json.Unmarshal([]byte(l), &entry) == nil && entry.Msg == "Failed to revert; trying again" {
					failedTries++
					t.Logf("a try of %s failed: %s", entry.Release, entry.Message)
				}
			}
			t.Logf("%d reverts landed in %s, one each (%s of them after the person's commit, which was kept); the server saw %d pushes, refused ones included, besides the people's %d; %d reverts needed more than one try; %d tries failed",
				racers, seconds(took), later, r.Git.Pushes()-pushesBefore-racers-1, racers+1, retried, failedTries)
		})
	}
}

// serverHook is the repository's pre-receive hook in
// TestRevertsRaceToOneBranch. Every push takes a quarter of a second, as
// on a host that runs checks on pushes, so pushes overlap. Once a revert
// (a commit with a Backstop-Release trailer) is on the branch, and while
// the file "hold" exists, the pushes of later reverts wait in the hook,
// built on a head that the person's commit then moves: their ref update
// is refused, and they must fetch, build and push again.
const serverHook = `#!/bin/sh
sleep 0.25
while read old new ref; do
	if git log -1 --format=%B "$new" 2>/dev/null | grep -q '^Backstop-Release: ' &&
		git log --format=%B "$old" 2>/dev/null | grep -q '^Backstop-Release: '; then
		i=0
		while [ -e hold ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
	fi
done
`

// holdReverts installs serverHook and the file "hold", and returns the
// function that removes it.
func holdReverts(t *testing.T, r *rig.Rig) (release func() error) {
	dir := r.Git.Dir(rig.Repo)
	if err := os.WriteFile(filepath.Join(dir, "hooks", "pre-receive"), []byte(serverHook), 0o755); err != nil {
		t.Fatal(err)
	}
	hold := filepath.Join(dir, "hold")
	if err := os.WriteFile(hold, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	release = func() error { return os.RemoveAll(hold) }
	t.Cleanup(func() { _ = release() })
	return release
}

// commitBetweenReverts waits until at least one app's revert is on the
// branch, then pushes a person's commit that changes no app (the server
// holds the other reverts meanwhile), and returns it.
func commitBetweenReverts(ctx context.Context, r *rig.Rig) (string, error) {
	for {
		for _, app := range r.Apps {
			if reverts, err := r.RevertCommits(app); err != nil {
				return "", err
			} else if len(reverts) > 0 {
				return r.Commit(ctx, "Name who is on call", map[string]string{
					"README.md": "The fleet: one folder per app.\nThe team on call: payments.\n",
				})
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no revert landed: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// expectRolledBack fails the test unless an app's release was rolled back
// without a promotion: its route written at 20%, perhaps at 60% (ten
// releases at once may take the second step before the check fails), and
// back on the primary, each once.
func expectRolledBack(t *testing.T, r *rig.Rig, app string) {
	t.Helper()
	got := r.RouteWrites(app)
	if !slices.Equal(got, states(app, 0, 20, 0)) && !slices.Equal(got, states(app, 0, 20, 60, 0)) {
		t.Errorf("route writes of %s\n  %s\nwant 0, 20, (60,) 0", app, strings.Join(got, "\n  "))
	}
	expectPromotions(t, r, app, "v1")
}

// logReverts prints what the manager logged of its reverts, and its
// errors, for a test that failed.
func logReverts(t *testing.T, r *rig.Rig) {
	log, err := r.ManagerLog()
	if err != nil {
		t.Log(err)
		return
	}
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "evert") || strings.Contains(l, `"error"`) {
			t.Log(l)
		}
	}
}
