package controllers

import (
	"context"
	"sync"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// The Events of a reconcile wait for its status write. A decision made on a
// stale copy of a Rollout conflicts when its status is written and is made
// again on the fresh one; had its Events gone out at once, people would see
// a release start, fail or roll back two or three times. Metrics and
// notifications wait for the write the same way.

// pendingEvents holds the Events of one reconcile.
type pendingEvents struct {
	mu     sync.Mutex
	record []func()
}

type pendingEventsKey struct{}

// withPendingEvents returns a context whose Events (recorded with eventf)
// wait, and the function that sends them; Events not sent are dropped.
func withPendingEvents(ctx context.Context) (context.Context, func()) {
	p := &pendingEvents{}
	send := func() {
		p.mu.Lock()
		record := p.record
		p.record = nil
		p.mu.Unlock()
		for _, f := range record {
			f()
		}
	}
	return context.WithValue(ctx, pendingEventsKey{}, p), send
}

// eventf records an Event on ro: once the reconcile's status is written
// when ctx comes from withPendingEvents, at once otherwise.
func (r *RolloutReconciler) eventf(ctx context.Context, ro *backstopv1.Rollout, eventType, reason, action, note string, args ...any) {
	record := func() { r.Recorder.Eventf(ro, nil, eventType, reason, action, note, args...) }
	p, ok := ctx.Value(pendingEventsKey{}).(*pendingEvents)
	if !ok {
		record()
		return
	}
	p.mu.Lock()
	p.record = append(p.record, record)
	p.mu.Unlock()
}
