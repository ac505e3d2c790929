package testenv

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// RouteWrites records, from a watch, every spec an HTTPRoute goes through
// (one entry per generation, so the gateway's status writes do not count),
// to show the weights at each step of a release and count the writes.
type RouteWrites struct {
	mu     sync.Mutex
	states []string
	times  []time.Time
}

// WatchRouteWrites starts recording the HTTPRoute ns/name until the test ends.
func (e *Env) WatchRouteWrites(t testing.TB, ns, name string) *RouteWrites {
	t.Helper()
	wc, err := client.NewWithWatch(e.Config, client.Options{Scheme: e.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w, err := wc.Watch(ctx, &gwapiv1.HTTPRouteList{}, client.InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	rw := &RouteWrites{}
	go func() {
		defer w.Stop()
		var gen int64
		for ev := range w.ResultChan() {
			route, ok := ev.Object.(*gwapiv1.HTTPRoute)
			if !ok || route.Name != name || (ev.Type != watch.Added && ev.Type != watch.Modified) || route.Generation == gen {
				continue
			}
			gen = route.Generation
			rw.mu.Lock()
			rw.states = append(rw.states, DescribeRoute(route))
			rw.times = append(rw.times, time.Now())
			rw.mu.Unlock()
		}
	}()
	return rw
}

// States returns the specs recorded so far, oldest first.
func (rw *RouteWrites) States() []string {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	return append([]string(nil), rw.states...)
}

// Times returns when the watch saw each state of States.
func (rw *RouteWrites) Times() []time.Time {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	return append([]time.Time(nil), rw.times...)
}

// DescribeRoute writes a route's backends as "name=weight", rules separated
// by " | ".
func DescribeRoute(route *gwapiv1.HTTPRoute) string {
	var rules []string
	for _, rule := range route.Spec.Rules {
		var refs []string
		for _, ref := range rule.BackendRefs {
			refs = append(refs, fmt.Sprintf("%s=%d", ref.Name, ptr.Deref(ref.Weight, 1)))
		}
		rules = append(rules, strings.Join(refs, ","))
	}
	return strings.Join(rules, " | ")
}
