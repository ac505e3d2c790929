package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clocktesting "k8s.io/utils/clock/testing"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/testenv"
)

// watching is a status --watch running in the background.
type watching struct {
	out, err *syncBuffer
	code     chan int
}

// startWatch runs `status NAME --watch` with its output a terminal or not.
func startWatch(t *testing.T, ns, name string, terminal bool, extra ...string) *watching {
	t.Helper()
	return startWatchWith(t, Options{IsTerminal: func(io.Writer) bool { return terminal }}, ns, name, extra...)
}

// startWatchWith runs `status NAME --watch` with o.
func startWatchWith(t *testing.T, o Options, ns, name string, extra ...string) *watching {
	t.Helper()
	w := &watching{out: &syncBuffer{}, err: &syncBuffer{}, code: make(chan int, 1)}
	o.Streams = genericiooptions.IOStreams{In: strings.NewReader(""), Out: w.out, ErrOut: w.err}
	o.Clock = clocktesting.NewFakePassiveClock(t0)
	args := append([]string{"--kubeconfig", env.Kubeconfig, "-n", ns, "status", name, "--watch"}, extra...)
	go func() { w.code <- Execute(context.Background(), o, args) }()
	return w
}

// lines waits until the watch has printed n lines and returns them.
func (w *watching) lines(t *testing.T, n int) []string {
	t.Helper()
	var got []string
	testenv.Eventually(t, fmt.Sprintf("%d lines of status --watch", n), func() bool {
		got = strings.SplitAfter(w.out.String(), "\n")
		got = got[:len(got)-1]
		return len(got) >= n
	})
	return got
}

// exit waits for the watch to end and returns its exit code.
func (w *watching) exit(t *testing.T) int {
	t.Helper()
	select {
	case code := <-w.code:
		return code
	case <-time.After(testenv.Timeout):
		t.Fatalf("status --watch did not end; it printed:\n%s", w.out.String())
		return -1
	}
}

// changeStatus changes the Rollout's status on the server.
func changeStatus(t *testing.T, ns, name string, change func(*backstopv1.RolloutStatus)) {
	t.Helper()
	ro := fetch(t, ns, name)
	change(&ro.Status)
	setStatus(t, ro, ro.Status)
}

// TestWatchPrintsALinePerChange follows a release to its end through the
// piped output: one line per change of the phase, step, weight or newest
// Event, and exit code 0 once it Succeeded.
func TestWatchPrintsALinePerChange(t *testing.T) {
	ns := env.Namespace(t)
	ro := create(t, rollout(ns, "app", canarySteps()), &backstopv1.RolloutStatus{
		Phase: backstopv1.PhaseProgressing, StableRevision: "s1", CanaryRevision: "c1",
	})
	w := startWatch(t, ns, "app", false)
	w.lines(t, 1)

	steps := []func(){
		func() {
			recordEvent(t, ro, "a", "Normal", "ReleaseStarted", "Releasing revision c1 over s1", t0.Add(time.Second), 1)
		},
		func() {
			changeStatus(t, ns, "app", func(s *backstopv1.RolloutStatus) { s.CurrentStep, s.CanaryWeight = 1, 5 })
		},
		func() {
			recordEvent(t, ro, "b", "Normal", "StepStarted", "Step 2 of 7: analysis 5m0s", t0.Add(2*time.Second), 1)
		},
		func() {
			changeStatus(t, ns, "app", func(s *backstopv1.RolloutStatus) {
				s.Phase, s.CurrentStep, s.CanaryWeight = backstopv1.PhasePaused, 4, 20
			})
		},
		func() {
			changeStatus(t, ns, "app", func(s *backstopv1.RolloutStatus) { s.Phase = backstopv1.PhasePromoting })
		},
		func() {
			changeStatus(t, ns, "app", func(s *backstopv1.RolloutStatus) {
				s.Phase, s.CanaryWeight, s.StableRevision = backstopv1.PhaseSucceeded, 0, "c1"
			})
		},
	}
	for i, step := range steps {
		step()
		w.lines(t, i+2)
	}
	if code := w.exit(t); code != 0 {
		t.Errorf("exit code %d; want 0 for Succeeded (stderr %q)", code, w.err.String())
	}
	want := []string{
		"10:00:00  Progressing   step 1/7  weight 0%\n",
		"10:00:00  Progressing   step 1/7  weight 0%  ReleaseStarted: Releasing revision c1 over s1\n",
		"10:00:00  Progressing   step 2/7  weight 5%  ReleaseStarted: Releasing revision c1 over s1\n",
		"10:00:00  Progressing   step 2/7  weight 5%  StepStarted: Step 2 of 7: analysis 5m0s\n",
		"10:00:00  Paused        step 5/7  weight 20%  StepStarted: Step 2 of 7: analysis 5m0s\n",
		"10:00:00  Promoting     step -  weight 20%  StepStarted: Step 2 of 7: analysis 5m0s\n",
		"10:00:00  Succeeded     step -  weight 0%  StepStarted: Step 2 of 7: analysis 5m0s\n",
	}
	if got := w.out.String(); got != strings.Join(want, "") {
		t.Errorf("status --watch printed\n%s\nwant\n%s", got, strings.Join(want, ""))
	}
}

// TestWatchExitCodes checks how a watch ends: at once for a Rollout that is
// not releasing, with 1 and the reason when the release is rolled back,
// and with 2 when --timeout passes first.
func TestWatchExitCodes(t *testing.T) {
	ns := env.Namespace(t)
	rolledBack := func(s *backstopv1.RolloutStatus) {
		s.Phase, s.CanaryWeight = backstopv1.PhaseRolledBack, 0
		s.History = []backstopv1.ReleaseRecord{{
			ToRevision: "c1", Outcome: backstopv1.OutcomeRolledBack, Reason: "AnalysisFailed",
			FailedCheck: "error-rate", Message: "Check error-rate failed: value 0.052, bound <= 0.01: above the maximum", EndTime: *before(0),
		}}
	}
	for _, tc := range []struct {
		name    string
		phase   backstopv1.RolloutPhase
		ready   string // the Ready condition's message
		change  func(*backstopv1.RolloutStatus)
		timeout string
		code    int
		stderr  string
	}{
		{name: "idle", phase: backstopv1.PhaseIdle, code: 0},
		{name: "succeeded", phase: backstopv1.PhaseSucceeded, code: 0},
		{name: "rolled-back-before", phase: backstopv1.PhaseRolledBack, code: 1,
			ready:  "Revision c1 was rolled back; revision s1 serves all traffic",
			stderr: `rollout "rolled-back-before" was rolled back: Revision c1 was rolled back; revision s1 serves all traffic` + "\n"},
		{name: "rolled-back", phase: backstopv1.PhaseProgressing, change: rolledBack, code: 1,
			stderr: `rollout "rolled-back" was rolled back: AnalysisFailed: Check error-rate failed: value 0.052, bound <= 0.01: above the maximum` + "\n"},
		{name: "timeout", phase: backstopv1.PhaseProgressing, timeout: "1s", code: 2,
			stderr: `timed out after 1s: rollout "timeout" is still Progressing` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &backstopv1.RolloutStatus{Phase: tc.phase, StableRevision: "s1", CanaryRevision: "c1"}
			if tc.ready != "" {
				st.Conditions = conditions(metav1.ConditionFalse, string(tc.phase), tc.ready)
			}
			create(t, rollout(ns, tc.name, canarySteps()), st)
			var extra []string
			if tc.timeout != "" {
				extra = []string{"--timeout", tc.timeout}
			}
			w := startWatch(t, ns, tc.name, false, extra...)
			w.lines(t, 1)
			if tc.change != nil {
				changeStatus(t, ns, tc.name, tc.change)
			}
			if code := w.exit(t); code != tc.code {
				t.Errorf("exit code %d; want %d", code, tc.code)
			}
			if got := w.err.String(); got != tc.stderr {
				t.Errorf("stderr %q; want %q", got, tc.stderr)
			}
		})
	}
}

// noEvents is an empty list of Events, as read from the server.
var noEvents = []eventsv1.Event{}

// TestWatchRedrawsOnATerminal checks that on a terminal every change
// clears the screen and draws the whole view again.
func TestWatchRedrawsOnATerminal(t *testing.T) {
	ns := env.Namespace(t)
	create(t, rollout(ns, "app", canarySteps()), &backstopv1.RolloutStatus{
		Phase: backstopv1.PhaseProgressing, CurrentStep: 2, CanaryWeight: 20, StableRevision: "s1", CanaryRevision: "c1",
	})
	w := startWatch(t, ns, "app", true)
	first := statusView(fetch(t, ns, "app"), noEvents, t0)
	testenv.Eventually(t, "the first view", func() bool { return w.out.String() == redraw(first) })

	changeStatus(t, ns, "app", func(s *backstopv1.RolloutStatus) {
		s.Phase, s.CanaryWeight, s.StableRevision = backstopv1.PhaseSucceeded, 0, "c1"
	})
	if code := w.exit(t); code != 0 {
		t.Errorf("exit code %d; want 0", code)
	}
	last := statusView(fetch(t, ns, "app"), noEvents, t0)
	if got, want := w.out.String(), redraw(first)+redraw(last); got != want {
		t.Errorf("the terminal got\n%q\nwant\n%q", got, want)
	}
}

// TestWatchStartsAgain has the server end every watch after a second, and
// checks that a change made after several such ends is still seen.
func TestWatchStartsAgain(t *testing.T) {
	ns := env.Namespace(t)
	create(t, rollout(ns, "app", canarySteps()), &backstopv1.RolloutStatus{Phase: backstopv1.PhaseProgressing, StableRevision: "s1", CanaryRevision: "c1"})
	w := startWatchWith(t, Options{IsTerminal: func(io.Writer) bool { return false }, watchSeconds: 1}, ns, "app")
	w.lines(t, 1)
	time.Sleep(3500 * time.Millisecond) // three watches end meanwhile
	changeStatus(t, ns, "app", func(s *backstopv1.RolloutStatus) { s.Phase, s.StableRevision = backstopv1.PhaseSucceeded, "c1" })
	if code := w.exit(t); code != 0 {
		t.Errorf("exit code %d; want 0 (stderr %q)", code, w.err.String())
	}
	want := "10:00:00  Progressing   step 1/7  weight 0%\n10:00:00  Succeeded     step -  weight 0%\n"
	if got := w.out.String(); got != want {
		t.Errorf("status --watch printed %q; want %q (one line per change, none for a watch started again)", got, want)
	}
}
