package controllers

import (
	"context"

	"k8s.io/apimachinery/pkg/types"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// HandBackStep takes one step of the hand-back of the deleted Rollout key
// as a reconcile does (read the cluster, decide, act) without writing the
// Rollout's status, and returns the step it took, for the tests of package
// controllers_test that stop a hand-back between two steps.
func (r *RolloutReconciler) HandBackStep(ctx context.Context, key types.NamespacedName) (string, error) {
	ro := &backstopv1.Rollout{}
	if err := r.Get(ctx, key, ro); err != nil {
		return "", err
	}
	c := r.freshClient()
	st, err := r.observeHandBack(ctx, c, ro)
	if err != nil {
		return "", err
	}
	a := planHandBack(st.world)
	if a == handBackLetGo {
		return string(a), r.removeFinalizer(ctx, ro)
	}
	return string(a), r.performHandBack(ctx, c, ro, st, a)
}
