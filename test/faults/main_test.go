// Package faults plays releases on the rig (test/rig) while one of the
// parts Backstop depends on fails: Prometheus stops, the git server stops,
// the API server answers with conflicts, the gateway rejects a route, and
// ten reverts race to the same branch. Each test states what a user can
// count on in that case and prints the figures it measured.
package faults

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	eventsv1 "k8s.io/api/events/v1"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"backstop.dev/backstop/test/rig"
	"backstop.dev/backstop/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	// The rig's clients log nothing worth reading; the manager logs to
	// its own file (rig.Dir).
	ctrllog.SetLogger(logr.Discard())
	testenv.Main(m, &env)
}

// deadline bounds each test: several releases, restarts of the parts, and
// the waits of a loaded 2-core machine.
const deadline = 4 * testenv.Timeout

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	t.Cleanup(cancel)
	return ctx
}

// states are an app's route states with the canary at each weight.
func states(app string, weights ...int) []string {
	var s []string
	for _, w := range weights {
		s = append(s, rig.RouteState(app, w))
	}
	return s
}

// expectRoutes fails the test unless an app's route went through exactly
// the states of weights.
func expectRoutes(t *testing.T, r *rig.Rig, app string, weights ...int) {
	t.Helper()
	if got, want := r.RouteWrites(app), states(app, weights...); !slices.Equal(got, want) {
		t.Errorf("route writes of %s\n  %s\nwant\n  %s", app, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// expectPromotions fails the test unless an app's primary ran exactly
// these versions, in order.
func expectPromotions(t *testing.T, r *rig.Rig, app string, versions ...string) {
	t.Helper()
	var want []string
	for _, v := range versions {
		want = append(want, rig.Image(app, v))
	}
	if got := r.Promotions(app); !slices.Equal(got, want) {
		t.Errorf("the primary of %s ran %v; want %v", app, got, want)
	}
}

// expectOneRevert fails the test unless the branch holds one revert
// commit of the app and its manifest is back at version.
func expectOneRevert(t *testing.T, r *rig.Rig, app, version string) []string {
	t.Helper()
	reverts, err := r.RevertCommits(app)
	if err != nil {
		t.Fatal(err)
	}
	if len(reverts) != 1 {
		t.Errorf("revert commits of %s on the branch: %v; want exactly one", app, reverts)
	}
	if m, err := r.ManifestOnBranch(app); err != nil || m != rig.Manifest(app, rig.Image(app, version)) {
		t.Errorf("the manifest of %s on the branch (%v):\n%s\nwant it at %s", app, err, m, version)
	}
	return reverts
}

// event waits for the first Event of an app's Rollout with reason (the
// manager sends its Events after its status write, and the recorder
// batches them), and returns it, or an error listing the reasons there
// are when ctx ends first.
func event(ctx context.Context, r *rig.Rig, app, reason string) (eventsv1.Event, error) {
	var reasons []string
	for {
		events, err := r.Events(ctx, app)
		if err != nil {
			return eventsv1.Event{}, err
		}
		reasons = reasons[:0]
		for _, e := range events {
			if e.Reason == reason {
				return e, nil
			}
			reasons = append(reasons, e.Reason)
		}
		select {
		case <-ctx.Done():
			return eventsv1.Event{}, fmt.Errorf("no %s Event for %s; have %v", reason, app, reasons)
		case <-time.After(testenv.Poll):
		}
	}
}

// countEvents counts an app's Rollout's Events with reason, a series as
// its count.
func countEvents(ctx context.Context, t *testing.T, r *rig.Rig, app, reason string) int {
	t.Helper()
	events, err := r.Events(ctx, app)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range events {
		if e.Reason == reason {
			n++
			if e.Series != nil {
				n += int(e.Series.Count) - 1
			}
		}
	}
	return n
}

// inARow is the length of the inconclusive streak an AnalysisInconclusive
// message gives: "... (3 evaluations in a row)".
func inARow(message string) (int, error) {
	m := regexp.MustCompile(`\((\d+) evaluations in a row\)`).FindStringSubmatch(message)
	if m == nil {
		return 0, fmt.Errorf("no streak length in %q", message)
	}
	return strconv.Atoi(m[1])
}

// seconds formats a duration for the figures.
func seconds(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }
