package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers/plan"
	"backstop.dev/backstop/router"
)

// TestSplitSessionAffinity: the router gets the session affinity of a
// canary only while the canary has weight in a recorded release, with the
// spec's cookie (or the defaults) and the release's id as the value.
func TestSplitSessionAffinity(t *testing.T) {
	start := metav1.NewTime(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	rollout := func(a *backstopv1.SessionAffinity, canary string) *backstopv1.Rollout {
		ro := &backstopv1.Rollout{ObjectMeta: metav1.ObjectMeta{UID: "uid-1"}}
		ro.Spec.Strategy.Canary = &backstopv1.CanaryStrategy{SessionAffinity: a}
		ro.Status.CanaryRevision, ro.Status.ReleaseStartTime = canary, &start
		return ro
	}
	id := router.ReleaseID("uid-1", "c1", start.Time)
	for _, tc := range []struct {
		name   string
		ro     *backstopv1.Rollout
		weight int32
		want   *router.Affinity
	}{
		{"defaults", rollout(&backstopv1.SessionAffinity{}, "c1"), 20,
			&router.Affinity{CookieName: backstopv1.DefaultSessionCookieName, Value: id, MaxAge: backstopv1.DefaultSessionMaxAge}},
		{"the spec's cookie", rollout(&backstopv1.SessionAffinity{CookieName: "shop-canary", MaxAge: &metav1.Duration{Duration: time.Hour}}, "c1"), 100,
			&router.Affinity{CookieName: "shop-canary", Value: id, MaxAge: time.Hour}},
		{"no weight", rollout(&backstopv1.SessionAffinity{}, "c1"), 0, nil},
		{"no release recorded", rollout(&backstopv1.SessionAffinity{}, ""), 20, nil},
		{"not asked for", rollout(nil, "c1"), 20, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := (&RolloutReconciler{}).split(tc.ro, plan.Traffic{Weight: tc.weight}).Affinity
			switch {
			case tc.want == nil && got != nil:
				t.Errorf("affinity %+v; want none", *got)
			case tc.want != nil && (got == nil || *got != *tc.want):
				t.Errorf("affinity %+v; want %+v", got, *tc.want)
			}
		})
	}
}
