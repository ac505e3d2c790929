package controllers

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// TestStaleCopies: a copy of a Rollout older than its last status write is
// stale; the written copy, newer ones, another Rollout of the same name
// (another uid), a Rollout never written and a resourceVersion that is not
// an integer are not.
func TestStaleCopies(t *testing.T) {
	rollout := func(uid, version string) *backstopv1.Rollout {
		return &backstopv1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "app",
			UID: types.UID(uid), ResourceVersion: version}}
	}
	var w written
	if w.stale(rollout("a", "5")) {
		t.Error("a Rollout never written is stale")
	}
	w.record(rollout("a", "120"))
	for _, tc := range []struct {
		name  string
		copy  *backstopv1.Rollout
		stale bool
	}{
		{"older copy", rollout("a", "119"), true},
		{"much older copy", rollout("a", "7"), true},
		{"the written copy", rollout("a", "120"), false},
		{"a newer copy", rollout("a", "1000"), false},
		{"a Rollout of the same name made again", rollout("b", "3"), false},
		{"a resourceVersion that is not an integer", rollout("a", "opaque"), false},
	} {
		if got := w.stale(tc.copy); got != tc.stale {
			t.Errorf("%s: stale = %v, want %v", tc.name, got, tc.stale)
		}
	}
	w.record(rollout("a", "not-a-number"))
	if !w.stale(rollout("a", "119")) {
		t.Error("an unreadable resourceVersion replaced the last one known")
	}
	w.forget(types.NamespacedName{Namespace: "shop", Name: "app"})
	if w.stale(rollout("a", "119")) {
		t.Error("a forgotten Rollout is still compared")
	}
}
