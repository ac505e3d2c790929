package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers/workload"
	"backstop.dev/backstop/router"
)

// HandBackFinalizer holds a deleted Rollout until its workload is handed
// back: the target Deployment runs the primary's template at the primary's
// size and is ready, every route sends all its traffic to the Service
// <service>-canary (which selects the target's pods), and that Service and
// the generated routes no longer belong to the Rollout, so the garbage
// collector leaves them when it takes the primary, the Service
// <service>-primary, the HorizontalPodAutoscaler twins and the kept
// ControllerRevisions. The reconciler adds it to every Rollout it acts on.
//
// Removing it by hand lets a Rollout go at once, without the hand-back:
// the target then keeps the replicas it has (zero between releases).
const HandBackFinalizer = "backstop.dev/handback"

// handBackPoll is how often a hand-back that waits for the target looks
// again without being woken: the target's changes wake it, but the pods
// that say why it is not ready are not watched.
const handBackPoll = 15 * time.Second

// handBackAction is one step of the hand-back.
type handBackAction string

// The steps of the hand-back, in the order they come.
const (
	// handBackTrafficToPrimary sends every route's traffic to the primary,
	// before the target's template changes under the canary's share.
	handBackTrafficToPrimary handBackAction = "TrafficToPrimary"
	// handBackRestoreTemplate writes the primary's template into the target.
	handBackRestoreTemplate handBackAction = "RestoreTemplate"
	// handBackScaleUp raises the target to the primary's replicas.
	handBackScaleUp handBackAction = "ScaleUp"
	// handBackWait waits for the target to be ready.
	handBackWait handBackAction = "WaitForTarget"
	// handBackRestoreService recreates the Service <service>-canary.
	handBackRestoreService handBackAction = "RestoreService"
	// handBackTrafficToTarget sends every route's traffic to the target.
	handBackTrafficToTarget handBackAction = "TrafficToTarget"
	// handBackOrphan removes the Rollout's owner reference from what must
	// outlive it.
	handBackOrphan handBackAction = "Orphan"
	// handBackLetGo removes the finalizer.
	handBackLetGo handBackAction = "LetGo"
)

// handBackWorld is what the hand-back decides on, read afresh from the
// cluster before each step, so that a manager stopped at any point goes on
// correctly from what it finds.
type handBackWorld struct {
	// Skip, when set, says why there is nothing to hand back: the target
	// is gone or going, the namespace is being deleted, the primary was
	// never made (or is another Rollout's), or Kubernetes deletes what the
	// Rollout owns before it (foreground deletion). SkipWarning says the
	// workload was taken away rather than never there.
	Skip        string
	SkipWarning bool
	// SameTemplate says the target runs the primary's template.
	SameTemplate bool
	// TargetReplicas is the target's spec.replicas; WantReplicas the
	// primary's, and at least 1.
	TargetReplicas, WantReplicas int32
	// TargetReady says the target has rolled out completely; NotReady
	// says what is missing when it has not.
	TargetReady bool
	NotReady    string
	// OnPrimary says no route sends the target any traffic; read only
	// when the templates differ.
	OnPrimary bool
	// CanaryService says the Service <service>-canary exists.
	CanaryService bool
	// OnTarget says every route sends all its traffic to the target; read
	// only once the target is ready.
	OnTarget bool
	// Owned names the objects still owned by the Rollout that must outlive
	// it; read only once the traffic is on the target.
	Owned []string
}

// planHandBack decides the next step of the hand-back. Traffic never
// moves to pods that are not ready: the target's share goes to the primary
// before its template changes, and all traffic goes to it only once it
// runs the primary's template at the primary's size and is ready.
func planHandBack(w handBackWorld) handBackAction {
	switch {
	case w.Skip != "":
		return handBackLetGo
	case !w.SameTemplate && !w.OnPrimary:
		return handBackTrafficToPrimary
	case !w.SameTemplate:
		return handBackRestoreTemplate
	case w.TargetReplicas < w.WantReplicas:
		return handBackScaleUp
	case !w.TargetReady:
		return handBackWait
	case !w.CanaryService:
		return handBackRestoreService
	case !w.OnTarget:
		return handBackTrafficToTarget
	case len(w.Owned) > 0:
		return handBackOrphan
	}
	return handBackLetGo
}

// handBackState is a handBackWorld with the objects it was read from.
type handBackState struct {
	world           handBackWorld
	names           workload.Names
	target, primary *appsv1.Deployment
	// routes is the Rollout with, in spec.routes, only the routes still to
	// hand back: the existing routes, and the generated routes that exist
	// and that the Rollout controls. A generated route never made is not
	// made now.
	routes *backstopv1.Rollout
	// owned are the objects of world.Owned.
	owned []client.Object
	// skipped says which routes cannot be handed back, and why.
	skipped []string
}

// addFinalizer puts HandBackFinalizer on ro, guarded by the
// resourceVersion ro was read at; ro gets the server's answer.
func (r *RolloutReconciler) addFinalizer(ctx context.Context, ro *backstopv1.Rollout) error {
	if controllerutil.ContainsFinalizer(ro, HandBackFinalizer) {
		return nil
	}
	orig := ro.DeepCopy()
	controllerutil.AddFinalizer(ro, HandBackFinalizer)
	if err := r.Patch(ctx, ro, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		*ro = *orig
		return fmt.Errorf("adding the finalizer %s: %w", HandBackFinalizer, err)
	}
	// Copies from before this write would lack the finalizer.
	r.written.record(ro)
	return nil
}

// handBack takes one step of the hand-back of a deleted Rollout, reports
// it in ro's status and Events, and says when to look again. letGo says
// the finalizer was removed: the Rollout is gone or going, and its status
// is not written.
func (r *RolloutReconciler) handBack(ctx context.Context, ro *backstopv1.Rollout) (_ ctrl.Result, letGo bool, _ error) {
	if !controllerutil.ContainsFinalizer(ro, HandBackFinalizer) {
		return ctrl.Result{}, false, nil
	}
	logger := log.FromContext(ctx)
	ro.Status.ObservedGeneration = ro.Generation
	c := r.freshClient()
	st, err := r.observeHandBack(ctx, c, ro)
	if err != nil {
		return ctrl.Result{}, false, r.handBackFailed(ctx, ro, fmt.Errorf("reading what to hand back: %w", err))
	}
	a := planHandBack(st.world)
	if a == handBackLetGo && st.world.Skip == "" {
		// The target runs on its own from now on: a pause Backstop put on
		// its ScaledObjects between releases would hold it at zero.
		if err := r.pauseCanaryScalers(ctx, ro, false); err != nil {
			return ctrl.Result{}, false, r.handBackFailed(ctx, ro, fmt.Errorf("resuming the target's ScaledObjects: %w", err))
		}
	}
	if a == handBackLetGo {
		if err := r.removeFinalizer(ctx, ro); apierrors.IsConflict(err) {
			// Decided on a copy older than the Rollout: decide again.
			return ctrl.Result{RequeueAfter: staleRetry, Priority: new(priorityDue)}, false, nil
		} else if err != nil {
			return ctrl.Result{}, false, r.handBackFailed(ctx, ro, err)
		}
		switch {
		case st.world.SkipWarning:
			logger.Info("Let the deleted Rollout go without handing back", "why", st.world.Skip)
			r.eventf(ctx, ro, "Warning", backstopv1.ReasonHandBackSkipped, "HandBack", "Nothing to hand back: %s", st.world.Skip)
		case st.world.Skip != "":
			logger.Info("Let the deleted Rollout go with nothing to hand back", "why", st.world.Skip)
			r.eventf(ctx, ro, "Normal", backstopv1.ReasonHandedBack, "HandBack", "Nothing to hand back: %s", st.world.Skip)
		default:
			logger.Info("Handed the workload back", "deployment", st.names.Target)
			r.eventf(ctx, ro, "Normal", backstopv1.ReasonHandedBack, "HandBack",
				"Deployment %s serves all traffic through Service %s with the primary's template; the Service and the generated routes are left in place",
				st.names.Target, st.names.CanaryService)
		}
		return ctrl.Result{}, true, nil
	}

	r.reportHandingBack(ctx, ro, st, a)
	if err := r.performHandBack(ctx, c, ro, st, a); err != nil {
		return ctrl.Result{}, false, r.handBackFailed(ctx, ro, fmt.Errorf("%s: %w", a, err))
	}
	if (a == handBackTrafficToPrimary || a == handBackTrafficToTarget) && len(st.skipped) > 0 {
		r.eventf(ctx, ro, "Warning", backstopv1.ReasonHandBackSkipped, "HandBack",
			"Handed back without: %s", strings.Join(st.skipped, "; "))
	}
	if a == handBackWait {
		return ctrl.Result{RequeueAfter: handBackPoll}, false, nil
	}
	logger.Info("Took a step of the hand-back", "step", a, "deployment", st.names.Target)
	return ctrl.Result{RequeueAfter: time.Millisecond, Priority: new(priorityDue)}, false, nil
}

// observeHandBack reads what the hand-back decides on.
func (r *RolloutReconciler) observeHandBack(ctx context.Context, c client.Client, ro *backstopv1.Rollout) (*handBackState, error) {
	names := workload.NamesFor(ro)
	st := &handBackState{names: names}
	w := &st.world

	if controllerutil.ContainsFinalizer(ro, metav1.FinalizerDeleteDependents) {
		w.Skip = fmt.Sprintf("the Rollout was deleted with foreground propagation, so Kubernetes deletes the primary, the Services and the "+
			"generated routes before it and Deployment %s keeps the replicas it has; delete Rollouts with background propagation "+
			"(kubectl's default; Argo CD: PrunePropagationPolicy=background) to have the workload handed back", names.Target)
		w.SkipWarning = true
		return st, nil
	}
	// A manager whose RBAC predates the hand-back may not read namespaces:
	// it hands back, as it would in a namespace that stays.
	var ns corev1.Namespace
	if err := c.Get(ctx, types.NamespacedName{Name: ro.Namespace}, &ns); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err) {
		return nil, err
	} else if err == nil && !ns.DeletionTimestamp.IsZero() {
		w.Skip = fmt.Sprintf("namespace %s is being deleted", ro.Namespace)
		return st, nil
	}
	target := &appsv1.Deployment{}
	switch err := c.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: names.Target}, target); {
	case apierrors.IsNotFound(err):
		w.Skip = fmt.Sprintf("Deployment %s does not exist", names.Target)
		return st, nil
	case err != nil:
		return nil, err
	case !target.DeletionTimestamp.IsZero():
		w.Skip = fmt.Sprintf("Deployment %s is being deleted", names.Target)
		return st, nil
	}
	primary := &appsv1.Deployment{}
	switch err := c.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: names.Primary}, primary); {
	case apierrors.IsNotFound(err) && ro.Status.StableRevision != "":
		w.Skip = fmt.Sprintf("the primary Deployment %s was deleted before the hand-back, so Deployment %s keeps the replicas it has",
			names.Primary, names.Target)
		w.SkipWarning = true
		return st, nil
	case apierrors.IsNotFound(err):
		w.Skip = fmt.Sprintf("the primary Deployment %s was never made, so Deployment %s still runs as it did", names.Primary, names.Target)
		return st, nil
	case err != nil:
		return nil, err
	case !workload.ControlledBy(ro, primary):
		w.Skip = fmt.Sprintf("Deployment %s is not this Rollout's (another Rollout keeps Deployment %s)", names.Primary, names.Target)
		return st, nil
	}
	st.target, st.primary = target, primary

	// Templates, not revisions: the ConfigMaps and Secrets the target
	// reads are Git's, which the hand-back cannot take back, and the
	// primary's copies of them go with the Rollout.
	w.SameTemplate = workload.TemplateHash(target.Spec.Template) == workload.TemplateHash(primary.Spec.Template)
	w.TargetReplicas = ptrValue(target.Spec.Replicas, 1)
	w.WantReplicas = max(ptrValue(primary.Spec.Replicas, 1), 1)
	if w.TargetReplicas == 0 {
		w.NotReady = "it runs no replicas"
	} else {
		w.TargetReady, w.NotReady = workload.Ready(target)
	}
	if !w.TargetReady && w.SameTemplate && w.TargetReplicas >= w.WantReplicas && r.APIReader != nil {
		if why, err := workload.PodTrouble(ctx, r.APIReader, target); err != nil {
			log.FromContext(ctx).Error(err, "Could not read why the target's pods are not ready")
		} else if why != "" {
			w.NotReady += "; " + why
		}
	}

	routes, err := r.handBackRoutes(ctx, c, ro, st)
	if err != nil {
		return nil, err
	}
	st.routes = routes
	rt := &router.Router{Client: c, FieldOwner: ControllerName, Stored: &r.routesStored}
	b := handBackBackends(ro)
	if !w.SameTemplate {
		w.OnPrimary, err = r.routesCarry(ctx, rt, st, b, router.Split{CanaryWeight: 0})
		return st, err
	}
	if w.TargetReplicas < w.WantReplicas || !w.TargetReady {
		return st, nil
	}
	canary := &corev1.Service{}
	switch err := c.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: names.CanaryService}, canary); {
	case apierrors.IsNotFound(err):
		return st, nil
	case err != nil:
		return nil, err
	}
	w.CanaryService = true
	if w.OnTarget, err = r.routesCarry(ctx, rt, st, b, router.Split{CanaryWeight: 100}); err != nil || !w.OnTarget {
		return st, err
	}
	if workload.ControlledBy(ro, canary) {
		st.owned = append(st.owned, canary)
		w.Owned = append(w.Owned, "Service/"+canary.Name)
	}
	for _, route := range st.routes.Spec.Routes {
		if route.Existing {
			continue
		}
		obj, err := getRoute(ctx, c, ro.Namespace, route)
		if err != nil {
			return nil, err
		}
		st.owned = append(st.owned, obj)
		w.Owned = append(w.Owned, string(routeKindOf(route))+"/"+route.Name)
	}
	return st, nil
}

// handBackRoutes returns ro with only the routes still to hand back (see
// handBackState.routes), and notes in st.skipped the existing routes that
// do not exist.
func (r *RolloutReconciler) handBackRoutes(ctx context.Context, c client.Client, ro *backstopv1.Rollout, st *handBackState) (*backstopv1.Rollout, error) {
	out := ro.DeepCopy()
	out.Spec.Routes = nil
	for _, route := range ro.Spec.Routes {
		obj, err := getRoute(ctx, c, ro.Namespace, route)
		switch {
		case apierrors.IsNotFound(err) || meta.IsNoMatchError(err):
			if route.Existing {
				st.skipped = append(st.skipped, fmt.Sprintf("%s %s does not exist", routeKindOf(route), route.Name))
			}
			continue
		case err != nil:
			return nil, err
		case !route.Existing && !workload.ControlledBy(ro, obj):
			// Handed back already, or never this Rollout's.
			continue
		}
		out.Spec.Routes = append(out.Spec.Routes, route)
	}
	return out, nil
}

// routesCarry says whether every route still to hand back carries s. A
// route that cannot carry it whatever is done (it names neither Service,
// the spec is invalid) is dropped from st.routes and noted in st.skipped,
// so the hand-back goes on without it; an error of the API server is
// returned, to be tried again.
func (r *RolloutReconciler) routesCarry(ctx context.Context, rt *router.Router, st *handBackState, b router.Backends, s router.Split) (bool, error) {
	all := true
	kept := st.routes.Spec.Routes[:0:0]
	for _, route := range st.routes.Spec.Routes {
		one := st.routes.DeepCopy()
		one.Spec.Routes = []backstopv1.Route{route}
		ok, err := rt.Carries(ctx, one, b, s)
		if err != nil && !permanent(err) {
			return false, err
		}
		if err != nil {
			st.skipped = append(st.skipped, fmt.Sprintf("%s %s: %v", routeKindOf(route), route.Name, err))
			continue
		}
		kept = append(kept, route)
		all = all && ok
	}
	st.routes.Spec.Routes = kept
	return all, nil
}

// permanent says whether an error of the router is one that trying again
// does not fix: anything but an answer of the API server, or a NotFound.
func permanent(err error) bool {
	var status apierrors.APIStatus
	return !errors.As(err, &status) || apierrors.IsNotFound(err)
}

// performHandBack carries out one step of the hand-back. Every step is
// idempotent.
func (r *RolloutReconciler) performHandBack(ctx context.Context, c client.Client, ro *backstopv1.Rollout, st *handBackState, a handBackAction) error {
	rt := &router.Router{Client: c, FieldOwner: ControllerName, Stored: &r.routesStored}
	switch a {
	case handBackTrafficToPrimary:
		_, err := rt.Apply(ctx, st.routes, handBackBackends(ro), router.Split{CanaryWeight: 0})
		return err
	case handBackRestoreTemplate:
		_, err := workload.RestoreTemplate(ctx, c, st.target, st.primary)
		return err
	case handBackScaleUp:
		// KEDA holds a target whose ScaledObject Backstop paused between
		// releases at zero: resume it first.
		if err := r.pauseCanaryScalers(ctx, ro, false); err != nil {
			return fmt.Errorf("resuming the target's ScaledObjects: %w", err)
		}
		_, err := workload.ScaleUp(ctx, c, client.ObjectKeyFromObject(st.target), st.world.WantReplicas)
		return err
	case handBackRestoreService:
		_, err := workload.EnsureServices(ctx, c, nil, ro, st.target)
		return err
	case handBackTrafficToTarget:
		_, err := rt.Apply(ctx, st.routes, handBackBackends(ro), router.Split{CanaryWeight: 100})
		return err
	case handBackOrphan:
		var errs []error
		for _, obj := range st.owned {
			if _, err := workload.Disown(ctx, c, ro, obj); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	return nil
}

// removeFinalizer takes HandBackFinalizer off ro, guarded by the
// resourceVersion ro was read at, so a Rollout changed since is looked at
// again first. A Rollout already gone is not an error.
func (r *RolloutReconciler) removeFinalizer(ctx context.Context, ro *backstopv1.Rollout) error {
	patched := ro.DeepCopy()
	controllerutil.RemoveFinalizer(patched, HandBackFinalizer)
	err := r.Patch(ctx, patched, client.MergeFromWithOptions(ro, client.MergeFromWithOptimisticLock{}))
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("removing the finalizer %s: %w", HandBackFinalizer, err)
	}
	return nil
}

// reportHandingBack says where the hand-back stands: Ready=False and
// Reconciling=True with reason HandingBack, and an Event when it starts.
func (r *RolloutReconciler) reportHandingBack(ctx context.Context, ro *backstopv1.Rollout, st *handBackState, a handBackAction) {
	n := st.names
	var what string
	switch a {
	case handBackTrafficToPrimary:
		what = "moving all traffic to the primary before the target gets the primary's template back"
	case handBackRestoreTemplate:
		what = fmt.Sprintf("writing the primary's template (revision %s) into it", workload.Revision(st.primary))
	case handBackScaleUp:
		what = fmt.Sprintf("scaling it to %d replicas, the primary's", st.world.WantReplicas)
	case handBackWait:
		what = fmt.Sprintf("waiting for it to be ready (%s) before traffic moves to it. "+
			"To let the Rollout go without waiting, remove its finalizer %s", st.world.NotReady, HandBackFinalizer)
	case handBackRestoreService:
		what = fmt.Sprintf("recreating Service %s, which selects its pods", n.CanaryService)
	case handBackTrafficToTarget:
		what = fmt.Sprintf("moving all traffic to Service %s, which selects its pods", n.CanaryService)
	case handBackOrphan:
		what = fmt.Sprintf("leaving %s in place for when the Rollout is gone", strings.Join(st.world.Owned, ", "))
	}
	message := fmt.Sprintf("The Rollout was deleted; handing Deployment %s back: %s", n.Target, what)
	old := meta.FindStatusCondition(ro.Status.Conditions, backstopv1.ReadyCondition)
	// A step that failed (handBackFailed) does not start the hand-back
	// again.
	starts := old == nil || (old.Reason != backstopv1.ReasonHandingBack &&
		!(old.Reason == backstopv1.ReasonActionFailed && strings.HasPrefix(old.Message, handBackFailedPrefix)))
	meta.RemoveStatusCondition(&ro.Status.Conditions, backstopv1.StalledCondition)
	setCondition(ro, backstopv1.ReconcilingCondition, metav1.ConditionTrue, backstopv1.ReasonHandingBack, message)
	setCondition(ro, backstopv1.ReadyCondition, metav1.ConditionFalse, backstopv1.ReasonHandingBack, message)
	if starts {
		log.FromContext(ctx).Info("Started handing the workload back", "deployment", n.Target)
		r.eventf(ctx, ro, "Normal", backstopv1.ReasonHandingBack, "HandBack",
			"The Rollout was deleted: handing Deployment %s back, with the primary's template and %d replicas, before the Rollout goes",
			n.Target, st.world.WantReplicas)
	}
}

// handBackFailed reports a failed step of the hand-back as a failed action
// (see actionFailed) and returns err, to be tried again with backoff.
func (r *RolloutReconciler) handBackFailed(ctx context.Context, ro *backstopv1.Rollout, err error) error {
	return r.actionFailed(ctx, ro, fmt.Errorf("%s%w", handBackFailedPrefix, err))
}

// handBackFailedPrefix starts the message of a failed step of the
// hand-back.
const handBackFailedPrefix = "handing the workload back: "

// handBackBackends are the Services the routes split between.
func handBackBackends(ro *backstopv1.Rollout) router.Backends {
	names := workload.NamesFor(ro)
	return router.Backends{Primary: names.PrimaryService, Canary: names.CanaryService, Port: ro.Spec.Service.Port}
}

// getRoute reads a route of the Rollout by its kind.
func getRoute(ctx context.Context, c client.Reader, namespace string, route backstopv1.Route) (client.Object, error) {
	var obj client.Object = &gwapiv1.HTTPRoute{}
	if routeKindOf(route) == backstopv1.GRPCRouteKind {
		obj = &gwapiv1.GRPCRoute{}
	}
	return obj, c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: route.Name}, obj)
}

func routeKindOf(route backstopv1.Route) backstopv1.RouteKind {
	if route.Kind == "" {
		return backstopv1.HTTPRouteKind
	}
	return route.Kind
}

// freshClient is the reconciler's client with its reads going to the API
// server rather than the cache: each step of a hand-back decides on what
// the one before it wrote, and a deletion is rare enough for the reads.
func (r *RolloutReconciler) freshClient() client.Client {
	if r.APIReader == nil {
		return r.Client
	}
	return uncachedReads{Client: r.Client, reader: r.APIReader}
}
