package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers/plan"
	"backstop.dev/backstop/controllers/workload"
)

// Autoscalers of the target: a HorizontalPodAutoscaler (autoscaling/v2) or
// a KEDA ScaledObject that scales the target Deployment gets a twin that
// scales the primary, brought up to date at every reconcile once the
// primary exists, and woken by the watches below when the user's object
// changes. Between releases the canary's ScaledObjects are paused at zero
// replicas; during a release the canary's autoscaler sizes it, and Backstop
// only starts it from zero. See docs/autoscaling.md.

// +kubebuilder:rbac:groups=keda.sh,resources=scaledobjects,verbs=get;list;watch;create;update;patch;delete

// scalerRetry is how soon a Rollout whose autoscalers could not be brought
// up to date is looked at again, when nothing else is due sooner.
const scalerRetry = 30 * time.Second

// watchScalers adds the watches on autoscalers to b: a change to a
// HorizontalPodAutoscaler or ScaledObject wakes the Rollouts whose target it
// scales, and a twin wakes the Rollout that owns it. ScaledObjects are
// watched, read and paused only if the cluster serves the kind when the
// manager starts: KEDA installed later needs a restart of the manager.
func (r *RolloutReconciler) watchScalers(mgr ctrl.Manager, b *builder.Builder) *builder.Builder {
	// Spec changes, and annotations (the pause); status writes change
	// nothing Backstop mirrors.
	changed := builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))
	b = b.Watches(&autoscalingv2.HorizontalPodAutoscaler{}, r.enqueueForScaler(func(o client.Object) (string, bool) {
		return workload.UserHPATarget(o.(*autoscalingv2.HorizontalPodAutoscaler))
	}), changed)

	r.scaledObjects = nil
	gvk := workload.ScaledObjectGVK
	_, err := mgr.GetRESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
	switch {
	case meta.IsNoMatchError(err):
		mgr.GetLogger().Info("KEDA ScaledObjects are not served; they are not mirrored or paused until the manager restarts after KEDA is installed",
			"group", gvk.Group, "version", gvk.Version)
		return b
	case err != nil:
		mgr.GetLogger().Error(err, "Could not tell whether KEDA ScaledObjects are served; they are not mirrored or paused until the manager restarts",
			"group", gvk.Group, "version", gvk.Version)
		return b
	}
	r.scaledObjects = mgr.GetCache()
	so := &unstructured.Unstructured{}
	so.SetGroupVersionKind(gvk)
	return b.Watches(so, r.enqueueForScaler(func(o client.Object) (string, bool) {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			return "", false
		}
		return workload.ScaledObjectTarget(u)
	}), changed)
}

// enqueueForScaler enqueues, for an autoscaler, the Rollout that controls
// it (a twin), or the Rollouts whose target it scales (target returns the
// Deployment's name, ok false for none).
func (r *RolloutReconciler) enqueueForScaler(target func(client.Object) (string, bool)) handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		if ref := metav1.GetControllerOf(o); ref != nil && ref.Kind == "Rollout" {
			if gv, err := schema.ParseGroupVersion(ref.APIVersion); err == nil && gv.Group == backstopv1.GroupVersion.Group {
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: ref.Name}}}
			}
		}
		name, ok := target(o)
		if !ok {
			return nil
		}
		var list backstopv1.RolloutList
		if err := r.List(ctx, &list, client.MatchingFields{indexTarget: o.GetNamespace() + "/" + name}); err != nil {
			log.FromContext(ctx).Error(err, "Failed to list Rollouts for an autoscaler", "autoscaler", client.ObjectKeyFromObject(o))
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(list.Items))
		for i := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
		return reqs
	})
}

// scalers is what one reconcile found of the target's autoscalers.
type scalers struct {
	// sized says an autoscaler sizes the target: a HorizontalPodAutoscaler
	// (the user's, or KEDA's) or a ScaledObject scales it. During a release
	// it then owns the canary's replica count, and Backstop only starts the
	// canary from zero.
	sized bool
	// failed says why the autoscalers could not be brought up to date
	// (the twins, the pause); nil when they were.
	failed error
}

// syncScalers brings the primary's twins of the target's autoscalers up to
// date once the primary exists, and finds whether an autoscaler sizes the
// target. A failure is kept in the result rather than returned: the twins
// and the pause never hold a release, nor its rollback.
func (r *RolloutReconciler) syncScalers(ctx context.Context, ro *backstopv1.Rollout, primary *appsv1.Deployment) scalers {
	names := workload.NamesFor(ro)
	var sc scalers
	var errs []error
	// One list of each kind: the mirror, once there is a primary, says
	// too whether an autoscaler sizes the target.
	var (
		hpa bool
		err error
	)
	if primary != nil {
		_, hpa, err = workload.MirrorHPA(ctx, r.Client, ro, names)
	} else {
		hpa, err = workload.TargetHasHPA(ctx, r.Client, names)
	}
	if err != nil {
		errs = append(errs, err)
	}
	sc.sized = hpa
	if so := r.scaledObjects; so != nil {
		var has bool
		if primary != nil {
			_, has, err = workload.MirrorScaledObjects(ctx, r.Client, so, ro, names)
		} else {
			has, err = workload.TargetHasScaledObject(ctx, so, names)
		}
		if err != nil {
			errs = append(errs, err)
		}
		sc.sized = sc.sized || has
	}
	sc.failed = errors.Join(errs...)
	return sc
}

// scalerPause says what the canary's ScaledObjects should be around the
// decision d: paused (pause true) or running, or left as they are (decided
// false).
//
//   - Running while the canary is being scaled up and through the release
//     (Progressing, Paused): the canary's autoscaler sizes it.
//   - Paused when the canary is being scaled down (KEDA then agrees with
//     the zero), and between releases (Idle, Succeeded, RolledBack), when
//     the canary runs nothing.
//   - Left as they are while Initializing (the target may still serve the
//     application's traffic until the primary takes it over), Promoting and
//     RollingBack (the canary may carry traffic until the routes are back on
//     the primary): each of these pauses at its scale-down.
func scalerPause(d plan.Decision) (pause, decided bool) {
	switch d.Action.Kind {
	case plan.ActScaleCanaryUp:
		return false, true
	case plan.ActScaleCanaryDown:
		return true, true
	}
	switch d.Next.Phase {
	case backstopv1.PhaseProgressing, backstopv1.PhasePaused:
		return false, true
	case backstopv1.PhaseIdle, backstopv1.PhaseSucceeded, backstopv1.PhaseRolledBack:
		return true, true
	}
	return false, false
}

// scalerPauseFirst says whether the pause or resume of decision d comes
// before its action: a resume does, so that KEDA does not scale a canary
// that was just scaled up back to zero; so does the pause before a
// scale-down. Any other pause waits for the action, which may be moving the
// traffic off the canary.
func scalerPauseFirst(d plan.Decision) bool {
	pause, _ := scalerPause(d)
	return !pause || d.Action.Kind == plan.ActScaleCanaryDown
}

// pauseCanaryScalers pauses or resumes the canary's ScaledObjects; nothing
// when the cluster does not serve them.
func (r *RolloutReconciler) pauseCanaryScalers(ctx context.Context, ro *backstopv1.Rollout, pause bool) error {
	so := r.scaledObjects
	if so == nil {
		return nil
	}
	changed, err := workload.PauseScaledObjects(ctx, r.Client, so, workload.NamesFor(ro), pause)
	if changed {
		if pause {
			log.FromContext(ctx).Info("Paused the canary's ScaledObjects")
		} else {
			log.FromContext(ctx).Info("Resumed the canary's ScaledObjects")
		}
	}
	return err
}

// scalersFailed reports autoscalers that could not be brought up to date
// (a log line and a Warning Event) and says how soon to look again. Writes
// that only conflicted (decided on a copy the cache had not yet brought up
// to date) are tried again soon, without an Event: they say nothing to the
// user.
func (r *RolloutReconciler) scalersFailed(ctx context.Context, ro *backstopv1.Rollout, err error) time.Duration {
	if onlyConflicts(err) {
		log.FromContext(ctx).V(1).Info("Autoscaler writes conflicted; trying again", "error", err.Error())
		return scalerConflictRetry
	}
	log.FromContext(ctx).Error(err, "Could not bring the autoscalers up to date")
	r.eventf(ctx, ro, "Warning", ReasonScalerSyncFailed, "Release", "%s", fmt.Sprintf("The autoscalers could not be brought up to date: %v", err))
	return scalerRetry
}

// scalerConflictRetry is how soon autoscaler writes that conflicted are
// tried again.
const scalerConflictRetry = time.Second

// onlyConflicts says whether err (joined or not) holds conflicts alone.
func onlyConflicts(err error) bool {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			if !onlyConflicts(e) {
				return false
			}
		}
		return true
	}
	return apierrors.IsConflict(err)
}

// ReasonScalerSyncFailed is the reason of the Warning Event of a twin
// autoscaler, or the pause of the canary's, that could not be written.
const ReasonScalerSyncFailed = "ScalerSyncFailed"
