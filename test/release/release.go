// Package release deploys the demo app (test/app) on the local stack
// (test/stack) the way a team would with Flux, through the stack's fleet
// repository, and plays releases of it: `make demo` (test/demo) and the
// reaction benchmark (test/bench/reaction) share it.
//
// The app lives in the fleet repository's folder Path, which the Flux
// Kustomization named Name applies into the namespace Namespace. Its
// Rollout releases it as a canary behind the Gateway for Host, judged by
// two checks on the canary's pods: the share of 5xx answers and the p99
// latency.
package release

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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

// The demo app's names.
const (
	// Namespace is where Flux applies the app.
	Namespace = "demo"
	// Name is that of the Deployment, the Rollout and the Flux
	// Kustomization.
	Name = "demo"
	// Host is the hostname the app's route serves.
	Host = "demo.local"
	// Path is the app's folder in the fleet repository.
	Path = "apps/demo"
)

// The checks of the Rollout: the canary's error ratio and its p99 latency
// over the last 10 seconds (the primary's pods carry the label app with
// -primary, so app="{{.Canary}}" selects the canary's alone).
const (
	ErrorRateQuery = `sum(rate(http_requests_total{namespace="{{.Namespace}}",app="{{.Canary}}",code=~"5.."}[10s])) / sum(rate(http_requests_total{namespace="{{.Namespace}}",app="{{.Canary}}"}[10s]))`
	LatencyQuery   = `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{namespace="{{.Namespace}}",app="{{.Canary}}"}[10s])))`
)

// Deployment is the app's Deployment at version as the fleet repository
// holds it: without replicas, which Backstop manages (a GitOps tool
// applying a replica count would undo its scaling).
func Deployment(version string) *appsv1.Deployment {
	d := stack.Deployment(Namespace, Name, version, 0)
	d.Spec.Replicas = nil
	return d
}

// Version is the version d runs, from its image's tag.
func Version(d *appsv1.Deployment) string {
	return strings.TrimPrefix(d.Spec.Template.Spec.Containers[0].Image, stack.DemoImage+":")
}

// SetVersion makes d run version.
func SetVersion(d *appsv1.Deployment, version string) {
	d.Spec.Template.Spec.Containers[0].Image = stack.DemoImage + ":" + version
}

// Rollout is the app's Rollout: a canary at 20% then 50%, each step
// followed by 15 seconds of analysis, the checks evaluated every 2
// seconds, and a rollback reverted in Git by a push.
func Rollout() *backstopv1.Rollout {
	gwNS := gwapiv1.Namespace(stack.GatewayNamespace)
	maxErrors, maxLatency := backstopv1.Decimal("0.05"), backstopv1.Decimal("0.1")
	window := func(d time.Duration) *backstopv1.AnalysisStep {
		return &backstopv1.AnalysisStep{Window: metav1.Duration{Duration: d}}
	}
	return &backstopv1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: Name}, Spec: backstopv1.RolloutSpec{
		TargetRef: backstopv1.TargetReference{Name: Name},
		Service:   backstopv1.ServiceSpec{Port: 80, TargetPort: ptr.To(intstr.FromInt(stack.AppPort))},
		Routes: []backstopv1.Route{{Name: Name, Hostnames: []gwapiv1.Hostname{Host},
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
				{Name: "error-rate", CheckSpec: backstopv1.CheckSpec{Query: ErrorRateQuery, Max: &maxErrors}},
				{Name: "p99-latency", CheckSpec: backstopv1.CheckSpec{Query: LatencyQuery, Max: &maxLatency}},
			},
		},
		Revert: &backstopv1.RevertSpec{Mode: backstopv1.RevertPush,
			Author: &backstopv1.GitAuthor{Name: "Backstop", Email: "backstop@backstop.dev"}},
	}}
}

// Manifests are the fleet repository's files for d and ro (when not nil).
func Manifests(d *appsv1.Deployment, ro *backstopv1.Rollout) (map[string]string, error) {
	files := map[string]string{}
	d = d.DeepCopy()
	d.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("Deployment"))
	objs := map[string]client.Object{Path + "/deployment.yaml": d}
	if ro != nil {
		ro = ro.DeepCopy()
		ro.SetGroupVersionKind(backstopv1.GroupVersion.WithKind("Rollout"))
		objs[Path+"/rollout.yaml"] = ro
		files[Path+"/kustomization.yaml"] = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- deployment.yaml\n- rollout.yaml\n"
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

// Deploy makes the namespace (unless it exists), commits d and ro to the fleet repository,
// makes the Flux Kustomization that applies them, and waits for the
// Rollout to be Idle.
func Deploy(ctx context.Context, s *stack.Stack, d *appsv1.Deployment, ro *backstopv1.Rollout) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}
	if err := s.Env.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	files, err := Manifests(d, ro)
	if err != nil {
		return err
	}
	if _, err := s.Fleet.Commit(files, "Deploy the demo app "+Version(d)); err != nil {
		return err
	}
	if err := s.Kustomization(ctx, Name, "./"+Path, Namespace); err != nil {
		return err
	}
	_, err = WaitPhase(ctx, s.Env.Client, ro, 2*time.Minute, nil, backstopv1.PhaseIdle)
	return err
}

// Commit commits d to the fleet repository with message, pushes it and
// returns the commit.
func Commit(s *stack.Stack, d *appsv1.Deployment, message string) (string, error) {
	files, err := Manifests(d, nil)
	if err != nil {
		return "", err
	}
	return s.Fleet.Commit(files, message)
}

// Traffic is a load generator sending rate requests per second through
// traefik to Host, for at most duration (0: until its context ends).
func Traffic(s *stack.Stack, rate float64, duration time.Duration) (*loadgen.Generator, error) {
	return loadgen.New(loadgen.Config{URL: "http://" + s.Gateway + "/", Host: Host, Rate: rate, Duration: duration})
}

// WaitFor polls ro until ok holds.
func WaitFor(ctx context.Context, c client.Client, ro *backstopv1.Rollout, timeout time.Duration, ok func(*backstopv1.Rollout) bool) (*backstopv1.Rollout, error) {
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

// WaitPhase polls ro until its phase is one of phases, calling each (if
// set) with every look.
func WaitPhase(ctx context.Context, c client.Client, ro *backstopv1.Rollout, timeout time.Duration,
	each func(*backstopv1.Rollout), phases ...backstopv1.RolloutPhase) (*backstopv1.Rollout, error) {
	return WaitFor(ctx, c, ro, timeout, func(cur *backstopv1.Rollout) bool {
		if each != nil {
			each(cur)
		}
		return slices.Contains(phases, cur.Status.Phase)
	})
}

// Revert is what followed a rollback in Git and Flux.
type Revert struct {
	// Commit is Backstop's revert commit.
	Commit string
	// Pushed is when the push of Commit moved the branch on the git
	// server (stack.Fleet.HeadAt), or when it was first seen there.
	Pushed time.Time
	// Applied is when Flux was seen to have applied Commit.
	Applied time.Time
	// Idle is when the Rollout was seen Idle again.
	Idle time.Time
}

// revertPoll is how often FollowRevert looks at the repository and Flux.
const revertPoll = 20 * time.Millisecond

// FollowRevert waits for Backstop's revert on the fleet repository (the
// branch's head moving past bad), for Flux to apply it, and for the Rollout
// to be Idle again, checks that status.revert names that commit, and
// brings the working clone up to it. say, if set, gets a line at each of
// these.
func FollowRevert(ctx context.Context, s *stack.Stack, ro *backstopv1.Rollout, bad string, say func(string, ...any)) (Revert, error) {
	if say == nil {
		say = func(string, ...any) {}
	}
	var r Revert
	end := time.Now().Add(2 * time.Minute)
	for {
		head, at, err := s.Fleet.HeadAt()
		if err != nil {
			return r, err
		}
		if head != bad {
			r.Commit, r.Pushed = head, at
			if at.IsZero() {
				r.Pushed = time.Now()
			}
			break
		}
		if time.Now().After(end) {
			return r, errors.New("no revert on the fleet repository after 2m")
		}
		if err := sleep(ctx, revertPoll); err != nil {
			return r, err
		}
	}
	say("Backstop pushed revert %.10s to the fleet repository", r.Commit)
	for !strings.HasSuffix(s.AppliedRevision(ctx, Name), r.Commit) {
		if time.Now().After(end) {
			return r, fmt.Errorf("flux has not applied the revert %.10s after 2m (applied: %s)", r.Commit, s.AppliedRevision(ctx, Name))
		}
		if err := sleep(ctx, revertPoll); err != nil {
			return r, err
		}
	}
	r.Applied = time.Now()
	say("Flux applied the revert")
	got, err := WaitFor(ctx, s.Env.Client, ro, 2*time.Minute, func(cur *backstopv1.Rollout) bool {
		st := cur.Status.Revert
		return cur.Status.Phase == backstopv1.PhaseIdle && st != nil && st.State != backstopv1.RevertPending
	})
	if err != nil {
		return r, err
	}
	r.Idle = time.Now()
	if st := got.Status.Revert; st.State != backstopv1.RevertPushed || st.Commit != r.Commit {
		return r, fmt.Errorf("status.revert is %s with commit %.10s; want Pushed with %.10s: %s", st.State, st.Commit, r.Commit, st.Message)
	}
	say("the Rollout is Idle again and its status names the revert: the cluster, Git and Flux agree")
	return r, s.Fleet.Push()
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
