package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers"
	"backstop.dev/backstop/test/release"
	"backstop.dev/backstop/test/stack"
)

// The kinds the timeline watches.
var (
	rolloutsGVR       = backstopv1.GroupVersion.WithResource("rollouts")
	httpRoutesGVR     = gwapiv1.SchemeGroupVersion.WithResource("httproutes")
	eventsGVR         = eventsv1.SchemeGroupVersion.WithResource("events")
	kustomizationsGVR = schema.GroupVersionResource{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Resource: "kustomizations"}
)

// rolloutSeen is one version of the Rollout's status.
type rolloutSeen struct {
	at    time.Time
	phase backstopv1.RolloutPhase
	// revertAttempt is status.revert.lastAttemptTime (to the second).
	revertAttempt time.Time
}

// routeSeen is one version of the HTTPRoute's spec.
type routeSeen struct {
	at time.Time
	// weight is the canary backendRef's weight; -1 when it has none.
	weight int32
	// written is the manager's managedFields time (to the second).
	written time.Time
}

// eventSeen is one Event of the Rollout.
type eventSeen struct {
	at        time.Time
	eventTime time.Time // set by the manager, to the microsecond
	kind      string
	reason    string
	note      string
}

// appliedSeen is one lastAppliedRevision of the Kustomization.
type appliedSeen struct {
	at       time.Time
	revision string
}

// timeline records, from informers, when the bench saw each change of the
// Rollout, its HTTPRoute, its Events and the Flux Kustomization. The time
// of an observation is when the informer handed it over: an upper bound
// on the write, by the watch's delay (a fraction of a millisecond on
// loopback, more when the machine is busy).
type timeline struct {
	canary string // the canary Service

	mu       sync.Mutex
	changed  chan struct{} // closed at each observation
	rollouts []rolloutSeen
	routes   []routeSeen
	events   []eventSeen
	applied  []appliedSeen
}

// watchTimeline starts the informers; they run until ctx ends.
func watchTimeline(ctx context.Context, cfg *rest.Config, ro *backstopv1.Rollout) (*timeline, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	t := &timeline{canary: canaryService(ro), changed: make(chan struct{})}
	app := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, release.Namespace, nil)
	flux := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, stack.FluxNamespace, nil)
	for _, w := range []struct {
		f    dynamicinformer.DynamicSharedInformerFactory
		gvr  schema.GroupVersionResource
		seen func(time.Time, *unstructured.Unstructured)
	}{
		{app, rolloutsGVR, t.rollout},
		{app, httpRoutesGVR, t.route},
		{app, eventsGVR, t.event},
		{flux, kustomizationsGVR, t.kustomization},
	} {
		handle := func(obj any) {
			at := time.Now()
			if u, ok := obj.(*unstructured.Unstructured); ok {
				w.seen(at, u)
			}
		}
		_, err := w.f.ForResource(w.gvr).Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    handle,
			UpdateFunc: func(_, obj any) { handle(obj) },
		})
		if err != nil {
			return nil, err
		}
	}
	for _, f := range []dynamicinformer.DynamicSharedInformerFactory{app, flux} {
		f.Start(ctx.Done())
		for gvr, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				return nil, fmt.Errorf("the informer of %s did not sync", gvr.Resource)
			}
		}
	}
	return t, nil
}

// canaryService is the Service the canary's backendRef names.
func canaryService(ro *backstopv1.Rollout) string {
	svc := ro.Spec.Service.Name
	if svc == "" {
		svc = ro.Spec.TargetRef.Name
	}
	return svc + "-canary"
}

// add records an observation and wakes the waiters.
func (t *timeline) add(record func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	record()
	close(t.changed)
	t.changed = make(chan struct{})
}

func (t *timeline) rollout(at time.Time, u *unstructured.Unstructured) {
	var ro backstopv1.Rollout
	if u.GetName() != release.Name || runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &ro) != nil {
		return
	}
	seen := rolloutSeen{at: at, phase: ro.Status.Phase}
	if st := ro.Status.Revert; st != nil && st.LastAttemptTime != nil {
		seen.revertAttempt = st.LastAttemptTime.Time
	}
	t.add(func() { t.rollouts = append(t.rollouts, seen) })
}

func (t *timeline) route(at time.Time, u *unstructured.Unstructured) {
	var route gwapiv1.HTTPRoute
	if u.GetName() != release.Name || runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &route) != nil {
		return
	}
	seen := routeSeen{at: at, weight: -1}
	for _, rule := range route.Spec.Rules {
		for _, ref := range rule.BackendRefs {
			if string(ref.Name) == t.canary && ref.Weight != nil {
				seen.weight = *ref.Weight
			}
		}
	}
	for _, mf := range route.ManagedFields {
		if mf.Manager == controllers.ControllerName && mf.Subresource == "" && mf.Time != nil && mf.Time.After(seen.written) {
			seen.written = mf.Time.Time
		}
	}
	t.add(func() {
		// The gateway's status writes leave the spec as it was.
		if n := len(t.routes); n > 0 && t.routes[n-1].weight == seen.weight && t.routes[n-1].written.Equal(seen.written) {
			return
		}
		t.routes = append(t.routes, seen)
	})
}

func (t *timeline) event(at time.Time, u *unstructured.Unstructured) {
	var ev eventsv1.Event
	if runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &ev) != nil ||
		ev.Regarding.Kind != "Rollout" || ev.Regarding.Name != release.Name {
		return
	}
	seen := eventSeen{at: at, eventTime: ev.EventTime.Time, kind: ev.Type, reason: ev.Reason, note: ev.Note}
	if ev.Series != nil {
		// An Event repeated within minutes is counted on the first one.
		seen.eventTime = ev.Series.LastObservedTime.Time
	}
	t.add(func() { t.events = append(t.events, seen) })
}

func (t *timeline) kustomization(at time.Time, u *unstructured.Unstructured) {
	if u.GetName() != release.Name {
		return
	}
	rev, _, _ := unstructured.NestedString(u.Object, "status", "lastAppliedRevision")
	t.add(func() {
		if n := len(t.applied); n > 0 && t.applied[n-1].revision == rev {
			return
		}
		t.applied = append(t.applied, appliedSeen{at: at, revision: rev})
	})
}

// wait waits until ok, called under the timeline's lock, holds.
func (t *timeline) wait(ctx context.Context, timeout time.Duration, what string, ok func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		t.mu.Lock()
		done, changed := ok(), t.changed
		t.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-changed:
		}
	}
}

// firstPhase is the first observation since since whose phase is one of
// phases.
func (t *timeline) firstPhase(since time.Time, phases ...backstopv1.RolloutPhase) (rolloutSeen, bool) {
	for _, r := range t.rollouts {
		if !r.at.Before(since) && slices.Contains(phases, r.phase) {
			return r, true
		}
	}
	return rolloutSeen{}, false
}

// routeToZero is the first version of the route since since that gives
// the canary weight 0 after one that gave it some.
func (t *timeline) routeToZero(since time.Time) (routeSeen, bool) {
	sent := false
	for _, r := range t.routes {
		if r.at.Before(since) {
			continue
		}
		if r.weight > 0 {
			sent = true
		} else if sent && r.weight == 0 {
			return r, true
		}
	}
	return routeSeen{}, false
}

// rollbackReasons are the reasons of the Events of a transition to
// RollingBack (controllers/plan).
var rollbackReasons = []string{"AnalysisFailed", "AnalysisInconclusive", "HookFailed", "Aborted", "ProgressDeadlineExceeded", "ReleaseWithdrawn"}

// rollbackEvent is the first Event of a transition to RollingBack
// recorded since since. (A reconcile whose status write conflicts decides
// again and records the Event again: the first is the decision.)
func (t *timeline) rollbackEvent(since time.Time) (eventSeen, bool) {
	var first eventSeen
	for _, e := range t.events {
		if !e.eventTime.Before(since) && slices.Contains(rollbackReasons, e.reason) && (first.at.IsZero() || e.eventTime.Before(first.eventTime)) {
			first = e
		}
	}
	return first, !first.at.IsZero()
}

// appliedAt is when the Kustomization was first seen to have applied
// revision commit.
func (t *timeline) appliedAt(commit string) (time.Time, bool) {
	for _, a := range t.applied {
		if len(a.revision) >= len(commit) && a.revision[len(a.revision)-len(commit):] == commit {
			return a.at, true
		}
	}
	return time.Time{}, false
}

// eventsBetween are the Events recorded from from to to, by eventTime.
func (t *timeline) eventsBetween(from, to time.Time) []eventSeen {
	var out []eventSeen
	for _, e := range t.events {
		if !e.eventTime.Before(from) && !e.eventTime.After(to) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b eventSeen) int { return a.eventTime.Compare(b.eventTime) })
	return out
}
