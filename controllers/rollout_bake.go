package controllers

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers/plan"
	"backstop.dev/backstop/controllers/workload"
)

// The bake time after a promotion (spec.analysis.alerts.bakeTime): the
// primary's template is kept as a ControllerRevision before a promotion
// copies over it (the copies of ConfigMaps and Secrets it reads are kept
// while a kept template names them), and restored if a matching alert
// fires before the bake time has passed (plan.ActRestorePrevious). ControllerRevisions are read
// through APIReader, so the manager does not cache every ControllerRevision
// of the cluster (StatefulSets and DaemonSets keep theirs there too).

// +kubebuilder:rbac:groups=apps,resources=controllerrevisions,verbs=get;list;watch;create;delete

// savePrevious keeps the template the primary runs, the stable revision,
// before a promotion copies the candidate over it, so that restorePrevious
// can bring it back during the bake time. It does nothing without a bake
// time or a primary. Saving is idempotent; the saved templates of ro beyond
// the newest few are pruned, and a failed prune does not hold the promotion.
func (r *RolloutReconciler) savePrevious(ctx context.Context, ro *backstopv1.Rollout, primary *appsv1.Deployment) error {
	if primary == nil || plan.CommonConfig(&ro.Spec).BakeTime == 0 {
		return nil
	}
	c := r.revisionClient()
	revision := workload.Revision(primary)
	if err := workload.SaveRevision(ctx, c, ro, primary.Spec.Template); err != nil {
		return fmt.Errorf("keeping the template of revision %s: %w", revision, err)
	}
	logger := log.FromContext(ctx)
	if stable := ro.Status.StableRevision; stable != "" && stable != revision {
		// The primary was changed by someone else: what it runs is kept,
		// but a restore asks for the stable revision and will not find it.
		logger.Info("Kept the primary's template, which is not the stable revision", "revision", revision, "stableRevision", stable)
	}
	copies, err := workload.RevisionCopies(ctx, c, ro)
	if err != nil {
		logger.Error(err, "Failed to list the copies the kept templates read")
	}
	if err := workload.PruneRevisions(ctx, c, ro, revision); err != nil {
		logger.Error(err, "Failed to prune the kept templates")
	}
	// The copies of ConfigMaps and Secrets that only the pruned templates
	// read go with them.
	if err := r.pruneCopies(ctx, ro, copies, workload.PrimaryConfigsOf(primary.Spec.Template)); err != nil {
		logger.Error(err, "Failed to delete the copies of the pruned templates")
	}
	return nil
}

// restorePrevious performs plan.ActRestorePrevious: it makes the primary run
// the kept template of revision again, at the primary's current size,
// reading the copies of ConfigMaps and Secrets it read then, which were
// kept with it. It writes nothing when the primary already runs it.
func (r *RolloutReconciler) restorePrevious(ctx context.Context, ro *backstopv1.Rollout, target *appsv1.Deployment, revision string) error {
	tmpl, pc, err := workload.RevisionTemplate(ctx, r.revisionReader(), ro, revision)
	if err != nil {
		return fmt.Errorf("restoring revision %s: %w", revision, err)
	}
	names := workload.NamesFor(ro)
	replicas := int32(1)
	var primary appsv1.Deployment
	var before workload.PrimaryConfigs // the configs the primary reads now
	err = r.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: names.Primary}, &primary)
	switch {
	case err == nil:
		replicas = ptrValue(primary.Spec.Replicas, 1)
		before = workload.PrimaryConfigsOf(primary.Spec.Template)
	case apierrors.IsNotFound(err):
		replicas = ptrValue(target.Spec.Replicas, 1)
	default:
		return err
	}
	if replicas == 0 {
		replicas = 1
	}
	if err := workload.VerifyCopies(ctx, r.revisionReader(), ro, pc); err != nil {
		return fmt.Errorf("restoring revision %s: %w", revision, err)
	}
	if _, _, err := workload.EnsurePrimary(ctx, r.Client, ro, target, tmpl, replicas, pc); err != nil {
		return fmt.Errorf("restoring revision %s: %w", revision, err)
	}
	if err := r.pruneCopies(ctx, ro, before.CopyRefs(), pc); err != nil {
		return fmt.Errorf("restoring revision %s: %w", revision, err)
	}
	return nil
}

// baking says whether ro is in the bake time after a promotion: phase
// Succeeded with status.previousStableRevision kept, and the bake time not
// yet over. The analyzer is asked about alerts then, as during a release.
func baking(ro *backstopv1.Rollout, now time.Time) bool {
	st := ro.Status
	if st.Phase != backstopv1.PhaseSucceeded || st.PreviousStableRevision == "" || st.StepStartTime == nil {
		return false
	}
	return now.Before(st.StepStartTime.Add(plan.CommonConfig(&ro.Spec).BakeTime))
}

// revisionReader reads ControllerRevisions without the cache.
func (r *RolloutReconciler) revisionReader() client.Reader {
	if r.APIReader == nil {
		return r.Client
	}
	return r.APIReader
}

// revisionClient writes with the reconciler's client and reads without the
// cache (see revisionReader).
func (r *RolloutReconciler) revisionClient() client.Client {
	return uncachedReads{Client: r.Client, reader: r.revisionReader()}
}

// uncachedReads is a client whose reads go to reader.
type uncachedReads struct {
	client.Client
	reader client.Reader
}

func (u uncachedReads) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	return u.reader.Get(ctx, key, obj, opts...)
}

func (u uncachedReads) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	return u.reader.List(ctx, list, opts...)
}
