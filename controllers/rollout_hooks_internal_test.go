package controllers

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/hooks"
)

// noEvents is a recorder for tests that do not look at Events.
type noEvents struct{ recorder.EventRecorder }

func (noEvents) Eventf(runtime.Object, runtime.Object, string, string, string, string, ...any) {}

// TestHookCallSurvivesARestart: a call that status records as running,
// made by a manager that was killed before its answer, is made again by
// the next manager, once, and its answer recorded.
func TestHookCallSurvivesARestart(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { calls.Add(1) }))
	t.Cleanup(srv.Close)
	ro := &backstopv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "app"},
		Spec:       backstopv1.RolloutSpec{Hooks: []backstopv1.Hook{{Name: "warm-up", Type: backstopv1.HookPreRelease, URL: srv.URL}}},
		Status: backstopv1.RolloutStatus{Phase: backstopv1.PhaseProgressing, CanaryRevision: "bbb",
			Hooks: []backstopv1.HookStatus{{Name: "warm-up", Type: backstopv1.HookPreRelease, Revision: "bbb", Result: backstopv1.HookRunning}}},
	}
	done := make(chan string, 1)
	r := &RolloutReconciler{Recorder: noEvents{}, Hooks: &hooks.Runner{Done: func(key string) { done <- key }}}

	if running := r.collectHooks(context.Background(), ro); !running {
		t.Fatalf("collectHooks after a restart says nothing runs; want the lost call made again")
	}
	<-done
	r.collectHooks(context.Background(), ro)
	r.collectHooks(context.Background(), ro)
	if e := ro.Status.Hooks[0]; e.Result != backstopv1.HookPass || e.Attempts != 1 || e.Time == nil {
		t.Errorf("status.hooks[0] = %+v; want Pass after one attempt", e)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("the receiver got %d calls; want 1", n)
	}
}
