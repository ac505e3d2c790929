package rig

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// What the fault tests look at besides the records of New: a Rollout as
// it stands, waits on it, its Events and the manager's log.

// Rollout is an app's Rollout as the API server holds it.
func (r *Rig) Rollout(ctx context.Context, app string) (*backstopv1.Rollout, error) {
	var ro backstopv1.Rollout
	if err := r.Env.Client.Get(ctx, r.Key(app), &ro); err != nil {
		return nil, err
	}
	return &ro, nil
}

// WaitForRollout polls an app's Rollout every 100ms until ok holds for it,
// and returns it then. Its error names what was awaited and the Rollout's
// state when ctx ends first.
func (r *Rig) WaitForRollout(ctx context.Context, app, what string, ok func(*backstopv1.Rollout) bool) (*backstopv1.Rollout, error) {
	var ro *backstopv1.Rollout
	err := poll(ctx, func() (bool, error) {
		got, err := r.Rollout(ctx, app)
		if err != nil {
			return false, nil // a transient error; the deadline decides
		}
		ro = got
		return ok(ro), nil
	})
	if err != nil {
		state := "not read"
		if ro != nil {
			state = Describe(ro)
		}
		return ro, fmt.Errorf("waiting for %s of %s: %w; status %s", what, app, err, state)
	}
	return ro, nil
}

// WaitForRouteState polls an app's route writes until the write at index
// i or after it is state, and returns its index and when the rig saw it
// (within the 100ms of a poll).
func (r *Rig) WaitForRouteState(ctx context.Context, app string, from int, state string) (int, time.Time, error) {
	at := -1
	err := poll(ctx, func() (bool, error) {
		states := r.RouteWrites(app)
		for i := from; i < len(states); i++ {
			if states[i] == state {
				at = i
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return at, time.Time{}, fmt.Errorf("waiting for the route of %s to be written %s: %w; writes %v", app, state, err, r.RouteWrites(app))
	}
	return at, time.Now(), nil
}

// Events are the events.k8s.io Events regarding an app's Rollout, oldest
// first (by their time, or creation for the ones without).
func (r *Rig) Events(ctx context.Context, app string) ([]eventsv1.Event, error) {
	var list eventsv1.EventList
	if err := r.Env.Client.List(ctx, &list, client.InNamespace(r.Namespace)); err != nil {
		return nil, err
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == backstopv1.RolloutKind && e.Regarding.Name == app {
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return EventTime(out[i]).Before(EventTime(out[j])) })
	return out, nil
}

// EventTime is when an Event was first recorded.
func EventTime(e eventsv1.Event) time.Time {
	if !e.EventTime.IsZero() {
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

// ManagerLog is what the manager logged so far, across its restarts.
func (r *Rig) ManagerLog() (string, error) {
	b, err := os.ReadFile(filepath.Join(r.Dir, "backstop.log"))
	return string(b), err
}
