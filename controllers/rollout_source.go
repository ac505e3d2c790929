package controllers

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers/plan"
	"backstop.dev/backstop/revert/source"
)

// The Git source revisions of a release, read from the GitOps tool that
// applied the target (revert/source): the stable one when the Rollout is
// initialised and at each promotion, the candidate's when a release starts.
// They bound the commits a revert undoes. The Flux and Argo CD objects are
// read without the cache, so the manager starts no informers for kinds a
// cluster may not have.

// +kubebuilder:rbac:groups=kustomize.toolkit.fluxcd.io,resources=kustomizations,verbs=get
// +kubebuilder:rbac:groups=source.toolkit.fluxcd.io,resources=gitrepositories,verbs=get
// +kubebuilder:rbac:groups=argoproj.io,resources=applications,verbs=get

// recordSourceRevisions updates the source revisions in ro's status for the
// decision from → to. While the candidate's revision still reads as the
// stable one (a tool that records it only after the apply) it is read again
// at each look, until it differs. When the target is back at the stable
// version after a rollback, what the tool applied then (the revert, or a
// fix) is the new stable revision: a later revert starts there, and never
// undoes an earlier release's commits or its revert again.
func (r *RolloutReconciler) recordSourceRevisions(ctx context.Context, ro *backstopv1.Rollout, target *appsv1.Deployment, from, to plan.State) {
	st := &ro.Status
	switch {
	case from.Phase == backstopv1.PhaseSucceeded && to.Phase == backstopv1.PhaseRollingBack && from.Previous != "":
		// An alert in the bake time restores the previous stable version:
		// the promoted one's commits are what the revert undoes.
		st.StableSourceRevision, st.CanarySourceRevision = st.PreviousStableSourceRevision, st.StableSourceRevision
	case from.Phase == backstopv1.PhaseInitializing && to.Phase == backstopv1.PhaseIdle:
		st.StableSourceRevision = r.sourceRevision(ctx, ro, target)
	case from.Phase == backstopv1.PhaseRolledBack && to.Phase == backstopv1.PhaseIdle:
		if rev := r.sourceRevision(ctx, ro, target); rev != "" {
			st.StableSourceRevision = rev
		}
	case newRelease(from, to):
		st.CanarySourceRevision = r.sourceRevision(ctx, ro, target)
	case releasing(to.Phase) && (st.CanarySourceRevision == "" || st.CanarySourceRevision == st.StableSourceRevision):
		st.CanarySourceRevision = r.sourceRevision(ctx, ro, target)
	case to.Phase == backstopv1.PhaseSucceeded && from.Phase != backstopv1.PhaseSucceeded:
		st.PreviousStableSourceRevision = st.StableSourceRevision
		st.StableSourceRevision = st.CanarySourceRevision
	}
	if to.Previous == "" {
		st.PreviousStableSourceRevision = ""
	}
}

// sourceRevision is the revision the GitOps tool last applied the target
// from; empty when no tool says (a missing object is logged, not an error:
// the revision only narrows a revert).
func (r *RolloutReconciler) sourceRevision(ctx context.Context, ro *backstopv1.Rollout, target *appsv1.Deployment) string {
	reader := r.APIReader
	if reader == nil {
		reader = r.Client
	}
	s, err := source.Discover(ctx, reader, ro, target, r.Source)
	if err != nil {
		log.FromContext(ctx).V(1).Info("Found no source revision", "reason", err.Error())
		return ""
	}
	return s.Revision
}
