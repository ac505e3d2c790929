package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/cli-runtime/pkg/printers"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers/plan"
)

// maxEvents is how many of a Rollout's Events the status view shows.
const maxEvents = 8

// statusView is the text of `status`: where the Rollout's release stands,
// its plan, checks, hooks and revert, and its last Events. nil events (not
// an empty list) leaves the Events out: they could not be read.
func statusView(ro *backstopv1.Rollout, events []eventsv1.Event, now time.Time) string {
	var b strings.Builder
	writeSummary(&b, ro, now)
	writePlan(&b, ro)
	writeChecks(&b, ro, now)
	writeHooks(&b, ro, now)
	writeRevert(&b, ro, now)
	if events != nil {
		writeEvents(&b, events, now)
	}
	return b.String()
}

func writeSummary(w io.Writer, ro *backstopv1.Rollout, now time.Time) {
	st := &ro.Status
	tw := printers.GetNewTabWriter(w)
	fmt.Fprintf(tw, "Rollout:\t%s/%s\n", ro.Namespace, ro.Name)
	fmt.Fprintf(tw, "Phase:\t%s\n", phaseName(st.Phase))
	if c := readyCondition(ro); c != nil && c.Message != "" {
		fmt.Fprintf(tw, "Message:\t%s\n", oneLine(c.Message))
	}
	fmt.Fprintf(tw, "Strategy:\t%s\n", strategyName(ro))
	if releasing(st.Phase) && stepCount(ro) > 0 {
		fmt.Fprintf(tw, "Step:\t%d/%d %s, started %s\n", currentStep(ro), stepCount(ro), stepNames(ro)[currentStep(ro)-1], ago(now, st.StepStartTime))
	}
	fmt.Fprintf(tw, "Traffic:\tprimary %d%%, canary %d%%\n", 100-st.CanaryWeight, st.CanaryWeight)
	fmt.Fprintf(tw, "Stable:\t%s\n", revisionWithSource(st.StableRevision, st.StableSourceRevision))
	if st.CanaryRevision != "" {
		fmt.Fprintf(tw, "Canary:\t%s\n", revisionWithSource(st.CanaryRevision, st.CanarySourceRevision))
	}
	if st.PreviousStableRevision != "" {
		fmt.Fprintf(tw, "Baking:\ta matching alert restores %s\n", revisionWithSource(st.PreviousStableRevision, st.PreviousStableSourceRevision))
	}
	if st.ReleaseStartTime != nil {
		fmt.Fprintf(tw, "Release:\tstarted %s\n", ago(now, st.ReleaseStartTime))
	}
	var spec []string
	if ro.Spec.Paused {
		spec = append(spec, "paused")
	}
	if ro.Spec.SkipAnalysis {
		spec = append(spec, "skipAnalysis")
	}
	if len(spec) > 0 {
		fmt.Fprintf(tw, "Spec:\t%s\n", strings.Join(spec, ", "))
	}
	tw.Flush()
}

func revisionWithSource(rev, source string) string {
	out := dash(rev)
	if source != "" {
		out += ", source " + short(source, 12)
	}
	return out
}

// stepNames are the descriptions of the steps of the Rollout's release.
func stepNames(ro *backstopv1.Rollout) []string {
	if ro.Spec.Strategy.BlueGreen != nil {
		return describeStages(&ro.Spec)
	}
	steps := plan.Steps(ro.Spec.Strategy.Canary)
	names := make([]string, len(steps))
	for i, s := range steps {
		names[i] = describeStep(s)
	}
	return names
}

// writePlan lists every step, marking those passed (✓), the running one
// (→) and the one a rollback stopped (✗).
func writePlan(w io.Writer, ro *backstopv1.Rollout) {
	names := stepNames(ro)
	if len(names) == 0 {
		return
	}
	st := &ro.Status
	title := "Steps:"
	if ro.Spec.Strategy.BlueGreen != nil {
		title = "Stages:"
	}
	fmt.Fprintf(w, "\n%s\n", title)
	current := int(st.CurrentStep)
	for i, name := range names {
		mark := " "
		switch {
		case st.Phase == backstopv1.PhasePromoting:
			mark = "✓"
		case releasing(st.Phase) && i < current, rolledBack(st.Phase) && current < len(names) && i < current:
			mark = "✓"
		case releasing(st.Phase) && i == current:
			mark = "→"
		case rolledBack(st.Phase) && i == current:
			mark = "✗"
		}
		fmt.Fprintf(w, "  %s %2d  %s\n", mark, i+1, name)
	}
}

func rolledBack(p backstopv1.RolloutPhase) bool {
	return p == backstopv1.PhaseRollingBack || p == backstopv1.PhaseRolledBack
}

// writeChecks shows each check's last value against its bound. FAILURES
// is the failed evaluations against the number that fails the release
// (failureLimit + 1).
func writeChecks(w io.Writer, ro *backstopv1.Rollout, now time.Time) {
	a := ro.Status.Analysis
	if a == nil || len(a.Checks) == 0 {
		return
	}
	limits := map[string]int32{}
	if ro.Spec.Analysis != nil {
		for _, c := range ro.Spec.Analysis.Checks {
			limits[c.Name] = c.FailureLimit + 1
		}
	}
	title := "Checks:"
	if a.Revision != "" {
		title = fmt.Sprintf("Checks (revision %s):", a.Revision)
	}
	fmt.Fprintf(w, "\n%s\n", title)
	tw := printers.GetNewTabWriter(w)
	fmt.Fprintln(tw, "  NAME\tVERDICT\tVALUE\tBOUND\tFAILURES\tEVALUATED\tMESSAGE")
	for _, c := range a.Checks {
		verdict := dash(string(c.Verdict))
		if c.Verdict == backstopv1.VerdictInconclusive && c.Inconclusive > 1 {
			verdict += fmt.Sprintf(" (%d in a row)", c.Inconclusive)
		}
		failures := fmt.Sprint(c.Failures)
		if limit, ok := limits[c.Name]; ok {
			failures += fmt.Sprintf("/%d", limit)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, verdict, dash(c.Value), dash(c.Bound), failures,
			ago(now, c.LastEvaluationTime), dash(oneLine(c.Message)))
	}
	tw.Flush()
}

func writeHooks(w io.Writer, ro *backstopv1.Rollout, now time.Time) {
	hooks := ro.Status.Hooks
	if len(hooks) == 0 {
		return
	}
	fmt.Fprintf(w, "\nHooks:\n")
	tw := printers.GetNewTabWriter(w)
	fmt.Fprintln(tw, "  NAME\tTYPE\tSTEP\tRESULT\tATTEMPTS\tWHEN\tMESSAGE")
	for _, h := range hooks {
		step := "-"
		if h.Step > 0 {
			step = fmt.Sprint(h.Step)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%s\t%s\n", h.Name, h.Type, step, h.Result, h.Attempts, ago(now, h.Time), dash(oneLine(h.Message)))
	}
	tw.Flush()
}

func writeRevert(w io.Writer, ro *backstopv1.Rollout, now time.Time) {
	rv := ro.Status.Revert
	if rv == nil {
		return
	}
	fmt.Fprintf(w, "\nRevert:\n")
	tw := printers.GetNewTabWriter(w)
	field := func(name, value string) {
		if value != "" {
			fmt.Fprintf(tw, "  %s:\t%s\n", name, value)
		}
	}
	field("State", dash(string(rv.State)))
	field("Release", rv.Release)
	field("Repository", rv.Repository)
	field("Branch", rv.Branch)
	field("Commit", rv.Commit)
	for i, c := range rv.Reverted {
		name := "Reverted"
		if i > 0 {
			name = ""
		}
		line := short(c.Commit, 12)
		if c.Reason != "" {
			line += "  " + oneLine(c.Reason)
		}
		if name == "" {
			fmt.Fprintf(tw, "  \t%s\n", line)
		} else {
			field(name, line)
		}
	}
	if len(rv.ConflictingFiles) > 0 {
		field("Conflicts", strings.Join(rv.ConflictingFiles, ", "))
	}
	field("Message", oneLine(rv.Message))
	if rv.Attempts > 0 {
		field("Attempts", fmt.Sprintf("%d, last %s", rv.Attempts, ago(now, rv.LastAttemptTime)))
	}
	tw.Flush()
}

// writeEvents shows the last maxEvents Events, oldest first.
func writeEvents(w io.Writer, events []eventsv1.Event, now time.Time) {
	total := len(events)
	events = lastEvents(events, maxEvents)
	switch {
	case total == 0:
		fmt.Fprintf(w, "\nEvents:  <none>\n")
		return
	case total > len(events):
		fmt.Fprintf(w, "\nEvents (the last %d of %d):\n", len(events), total)
	default:
		fmt.Fprintf(w, "\nEvents:\n")
	}
	tw := printers.GetNewTabWriter(w)
	fmt.Fprintln(tw, "  AGE\tTYPE\tREASON\tMESSAGE")
	for i := range events {
		e := &events[i]
		when := age(now, eventTime(e))
		if n := eventCount(e); n > 1 {
			when += fmt.Sprintf(" (x%d)", n)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", when, e.Type, e.Reason, oneLine(e.Note))
	}
	tw.Flush()
}

// lastEvents sorts events by time and keeps the last n, oldest first.
func lastEvents(events []eventsv1.Event, n int) []eventsv1.Event {
	sorted := append([]eventsv1.Event(nil), events...)
	sort.SliceStable(sorted, func(i, j int) bool {
		ti, tj := eventTime(&sorted[i]), eventTime(&sorted[j])
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		return sorted[i].Name < sorted[j].Name
	})
	if len(sorted) > n {
		sorted = sorted[len(sorted)-n:]
	}
	return sorted
}

// eventTime is when an Event last happened: the last of its series, or
// its own time (or, for an Event written through the core API, its last
// timestamp).
func eventTime(e *eventsv1.Event) time.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.DeprecatedLastTimestamp.IsZero():
		return e.DeprecatedLastTimestamp.Time
	}
	return e.CreationTimestamp.Time
}

func eventCount(e *eventsv1.Event) int32 {
	if e.Series != nil {
		return e.Series.Count
	}
	return e.DeprecatedCount
}
