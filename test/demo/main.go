// Command demo plays two releases on the local stack (test/stack), as
// `make demo` runs it: v1 → v2, a healthy version that is promoted, and
// v2 → v3, a version that fails 30% of its requests and is slower, which is
// rolled back. Steady traffic flows through traefik all along. It prints a live
// line per step and ends with a summary of each release, measured at the
// load generator.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/loadgen"
	"backstop.dev/backstop/test/stack"
)

const (
	namespace = "demo"
	host      = "demo.local"
	// rate is the load generator's requests per second.
	rate = 50
)

// The checks of the demo's Rollout: the canary's error ratio and its p99
// latency over the last 10 seconds (the primary's pods carry the label app
// with -primary, so app="{{.Canary}}" selects the canary's alone).
const (
	errorRate = `sum(rate(http_requests_total{namespace="{{.Namespace}}",app="{{.Canary}}",code=~"5.."}[10s])) / sum(rate(http_requests_total{namespace="{{.Namespace}}",app="{{.Canary}}"}[10s]))`
	latency   = `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{namespace="{{.Namespace}}",app="{{.Canary}}"}[10s])))`
)

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
	reverted        time.Time // Backstop's revert commit was seen on the remote
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

	c := s.Env.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		return err
	}
	d, ro := deployment(), rollout()
	files, err := manifests(d, ro)
	if err != nil {
		return err
	}
	if _, err := s.Fleet.Commit(files, "Deploy the demo app v1"); err != nil {
		return err
	}
	if err := s.Kustomization(ctx, "demo", "./apps/demo", namespace); err != nil {
		return err
	}
	say("v1 and its Rollout committed to the fleet repository; waiting for Flux to apply them and Backstop to take over")
	if _, err := waitPhase(ctx, c, ro, 2*time.Minute, nil, backstopv1.PhaseIdle); err != nil {
		return err
	}

	gen, err := loadgen.New(loadgen.Config{URL: "http://" + s.Gateway + "/", Host: host, Rate: rate, Duration: 30 * time.Minute})
	if err != nil {
		return err
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	go gen.Run(loadCtx)
	say("sending %d requests per second through traefik to %s", rate, host)
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
	from := strings.TrimPrefix(d.Spec.Template.Spec.Containers[0].Image, stack.DemoImage+":")
	d.Spec.Template.Spec.Containers[0].Image = stack.DemoImage + ":" + version
	files, err := manifests(d, nil)
	if err != nil {
		return nil, err
	}
	r := &release{from: from, to: version, changed: time.Now()}
	if r.commit, err = s.Fleet.Commit(files, "Deploy the demo app "+version); err != nil {
		return nil, err
	}
	say("releasing %s → %s: commit %.10s pushed to the fleet repository", from, version, r.commit)
	// Wait for the release to start, then for its end.
	if _, err := waitPhase(ctx, c, ro, time.Minute, nil, backstopv1.PhaseProgressing, backstopv1.PhasePaused, backstopv1.PhaseRolledBack); err != nil {
		return nil, err
	}
	last := ""
	got, err := waitPhase(ctx, c, ro, 5*time.Minute, func(cur *backstopv1.Rollout) {
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
		if err := followRevert(ctx, s, ro, r, say); err != nil {
			return nil, err
		}
		d.Spec.Template.Spec.Containers[0].Image = stack.DemoImage + ":" + from
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

// waitPhase polls ro until its phase is one of phases, calling each (if
// set) with every look.
func waitPhase(ctx context.Context, c client.Client, ro *backstopv1.Rollout, timeout time.Duration,
	each func(*backstopv1.Rollout), phases ...backstopv1.RolloutPhase) (*backstopv1.Rollout, error) {
	return waitFor(ctx, c, ro, timeout, func(cur *backstopv1.Rollout) bool {
		if each != nil {
			each(cur)
		}
		return slices.Contains(phases, cur.Status.Phase)
	})
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

// deployment is the demo app's Deployment as the fleet repository holds it:
// without replicas, which Backstop manages (a GitOps tool applying a
// replica count would undo its scaling).
func deployment() *appsv1.Deployment {
	d := stack.Deployment(namespace, "demo", "v1", 0)
	d.Spec.Replicas = nil
	return d
}

// manifests are the fleet repository's files for d and ro (when not nil).
func manifests(d *appsv1.Deployment, ro *backstopv1.Rollout) (map[string]string, error) {
	files := map[string]string{}
	d.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("Deployment"))
	objs := map[string]client.Object{"apps/demo/deployment.yaml": d}
	if ro != nil {
		ro.SetGroupVersionKind(backstopv1.GroupVersion.WithKind("Rollout"))
		objs["apps/demo/rollout.yaml"] = ro
		files["apps/demo/kustomization.yaml"] = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- deployment.yaml\n- rollout.yaml\n"
	}
	for path, obj := range objs {
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			return nil, err
		}
		delete(u, "status")
		unstructured.RemoveNestedField(u, "metadata", "creationTimestamp")
		unstructured.RemoveNestedField(u, "metadata", "namespace")
		unstructured.RemoveNestedField(u, "spec", "template", "metadata", "creationTimestamp")
		b, err := yaml.Marshal(u)
		if err != nil {
			return nil, err
		}
		files[path] = string(b)
	}
	return files, nil
}

// followRevert waits for Backstop's revert on the remote (the branch's head
// moving past the bad commit), for Flux to apply it, and for the Rollout to
// be Idle again, and checks that status.revert names that commit.
func followRevert(ctx context.Context, s *stack.Stack, ro *backstopv1.Rollout, r *release, say func(string, ...any)) error {
	end := time.Now().Add(2 * time.Minute)
	for {
		head, err := s.Fleet.Head()
		if err != nil {
			return err
		}
		if head != r.commit {
			r.reverted, r.revert = time.Now(), head
			break
		}
		if time.Now().After(end) {
			return errors.New("no revert on the fleet repository after 2m")
		}
		time.Sleep(50 * time.Millisecond)
	}
	say("Backstop pushed revert %.10s to the fleet repository", r.revert)
	for !strings.HasSuffix(s.AppliedRevision(ctx, "demo"), r.revert) {
		if time.Now().After(end) {
			return fmt.Errorf("flux has not applied the revert %.10s after 2m (applied: %s)", r.revert, s.AppliedRevision(ctx, "demo"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.applied = time.Now()
	say("Flux applied the revert")
	got, err := waitFor(ctx, s.Env.Client, ro, 2*time.Minute, func(cur *backstopv1.Rollout) bool {
		st := cur.Status.Revert
		return cur.Status.Phase == backstopv1.PhaseIdle && st != nil && st.State != backstopv1.RevertPending
	})
	if err != nil {
		return err
	}
	r.idle = time.Now()
	if st := got.Status.Revert; st.State != backstopv1.RevertPushed || st.Commit != r.revert {
		return fmt.Errorf("status.revert is %s with commit %.10s; want Pushed with %.10s: %s", st.State, st.Commit, r.revert, st.Message)
	}
	say("the Rollout is Idle again and its status names the revert: the cluster, Git and Flux agree")
	return s.Fleet.Push() // bring the working clone up to the revert
}

// waitFor polls ro until ok holds.
func waitFor(ctx context.Context, c client.Client, ro *backstopv1.Rollout, timeout time.Duration, ok func(*backstopv1.Rollout) bool) (*backstopv1.Rollout, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var cur backstopv1.Rollout
	for {
		if err := c.Get(ctx, client.ObjectKeyFromObject(ro), &cur); err == nil && ok(&cur) {
			return &cur, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the Rollout (phase %s): %w", cur.Status.Phase, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func rollout() *backstopv1.Rollout {
	gwNS := gwapiv1.Namespace(stack.GatewayNamespace)
	maxErrors, maxLatency := backstopv1.Decimal("0.05"), backstopv1.Decimal("0.1")
	window := func(d time.Duration) *backstopv1.AnalysisStep {
		return &backstopv1.AnalysisStep{Window: metav1.Duration{Duration: d}}
	}
	return &backstopv1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "demo"}, Spec: backstopv1.RolloutSpec{
		TargetRef: backstopv1.TargetReference{Name: "demo"},
		Service:   backstopv1.ServiceSpec{Port: 80, TargetPort: ptr.To(intstr.FromInt(stack.AppPort))},
		Routes: []backstopv1.Route{{Name: "demo", Hostnames: []gwapiv1.Hostname{host},
			ParentRefs: []gwapiv1.ParentReference{{Namespace: &gwNS, Name: stack.GatewayName}}}},
		Strategy: backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
			{SetWeight: ptr.To[int32](20)},
			{Analysis: window(15 * time.Second)},
			{SetWeight: ptr.To[int32](50)},
			{Analysis: window(15 * time.Second)},
		}}},
		Analysis: &backstopv1.AnalysisSpec{
			Interval: &metav1.Duration{Duration: 2 * time.Second},
			Checks: []backstopv1.Check{
				{Name: "error-rate", CheckSpec: backstopv1.CheckSpec{Query: errorRate, Max: &maxErrors}},
				{Name: "p99-latency", CheckSpec: backstopv1.CheckSpec{Query: latency, Max: &maxLatency}},
			},
		},
		Revert: &backstopv1.RevertSpec{Mode: backstopv1.RevertPush,
			Author: &backstopv1.GitAuthor{Name: "Backstop", Email: "backstop@backstop.dev"}},
	}}
}
