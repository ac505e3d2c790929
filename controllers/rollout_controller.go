// Package controllers holds the Rollout reconciler.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers/plan"
	"backstop.dev/backstop/controllers/workload"
	"backstop.dev/backstop/hooks"
	gitsource "backstop.dev/backstop/revert/source"
	"backstop.dev/backstop/router"
)

// ControllerName is the name Backstop reports Events and field ownership as.
const ControllerName = "backstop"

// Defaults are the manager-wide settings a Rollout falls back on.
type Defaults struct {
	// PrometheusAddress is used by checks whose Rollout names no Prometheus.
	PrometheusAddress string
}

// RolloutReconciler reconciles Rollouts.
type RolloutReconciler struct {
	client.Client
	// APIReader reads without the cache: Secrets are only ever read by
	// name, so the manager never caches or watches them, and the contents
	// of ConfigMaps, whose cache holds metadata only.
	APIReader client.Reader
	Recorder  recorder.EventRecorder
	Defaults  Defaults
	// Analyzer judges releases; nil uses NoAnalysis.
	Analyzer Analyzer
	// Reverter reverts rolled-back releases in Git; nil uses NoRevert.
	Reverter Reverter
	// Source configures where the GitOps tools' objects are looked for
	// (Argo CD's namespace), for the source revisions.
	Source gitsource.Options
	// Notifier posts phase changes to the targets of spec.notifications
	// and the cluster default; nil posts nothing.
	Notifier Notifier
	// RevertRetry is how long after its last attempt a Failed revert is
	// tried again, while the Rollout stays RolledBack; default
	// DefaultRevertRetry.
	RevertRetry time.Duration

	// SecretPoll is how often a Rollout whose target reads a tracked
	// Secret looks at it (Secrets are not watched); default
	// DefaultSecretPoll.
	SecretPoll time.Duration

	// Hooks makes the calls of spec.hooks; nil makes a Runner on first use.
	Hooks    *hooks.Runner
	hookOnce sync.Once

	// configs reads the ConfigMaps and Secrets targets read (see
	// configReader).
	configs     *workload.ConfigReader
	configsOnce sync.Once
	// templateHashes keeps the TemplateHash of each target revision seen,
	// to tell a release restarted for a config change alone (see
	// restartCanary).
	templateHashes templateHashes

	// gatewayKinds records which Gateway API kinds the cluster serves, found
	// when the controller is set up.
	gatewayKinds map[string]bool
	// wake carries Rollouts to look at now (see WakeReleases).
	wake chan event.GenericEvent
	// routesStored spares the router a dry run per look at a generated
	// route that already holds what it should (see router.Stored).
	routesStored router.Stored
	// written keeps reconciles off copies older than the last status write.
	written written
	// scaledObjects reads KEDA ScaledObjects from the manager's cache; nil
	// when the cluster did not serve the kind when the controller was set
	// up (see watchScalers).
	scaledObjects client.Reader
}

// retryMissingSecret is how often a Rollout that names a missing Secret is
// looked at again: Secrets are not watched (see APIReader).
const retryMissingSecret = 30 * time.Second

// +kubebuilder:rbac:groups=backstop.dev,resources=rollouts,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=backstop.dev,resources=rollouts/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=backstop.dev,resources=rollouts/finalizers,verbs=update
// +kubebuilder:rbac:groups=backstop.dev,resources=slotemplates;clusterslotemplates,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=apps,resources=deployments/scale,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=autoscaling,resources=horizontalpodautoscalers,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes;grpcroutes,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=gateways,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods,verbs=list
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get

// Reconcile validates a Rollout against the cluster and reports the result
// in its status. It never returns an error for bad input: that is reported
// as a condition and an Event, and the Rollout is looked at again when what
// it references changes.
//
// Every Rollout gets HandBackFinalizer; a deleted one hands its workload
// back to the target Deployment, one step per reconcile, before the
// finalizer is removed (see handBack).
func (r *RolloutReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	logger := log.FromContext(ctx)

	ro := &backstopv1.Rollout{}
	if err := r.Get(ctx, req.NamespacedName, ro); err != nil {
		if apierrors.IsNotFound(err) {
			forgetMetrics(req.NamespacedName)
			r.written.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if r.written.stale(ro) {
		// The cache has not yet seen the last status write; its update
		// wakes the Rollout too, and this look comes soon in case it
		// already did.
		return ctrl.Result{RequeueAfter: staleRetry, Priority: new(priorityDue)}, nil
	}
	if ro.DeletionTimestamp.IsZero() {
		if err := r.addFinalizer(ctx, ro); apierrors.IsConflict(err) {
			// The copy is older than the Rollout: look again on a fresh one.
			return ctrl.Result{RequeueAfter: staleRetry, Priority: new(priorityDue)}, nil
		} else if err != nil {
			return ctrl.Result{}, err
		}
	}
	before := ro.DeepCopy()
	gateDone := false
	var decided plan.Event // the release's decision, for metrics and notifications
	ctx, sendEvents := withPendingEvents(ctx)
	defer func() {
		if err := r.patchStatus(ctx, before, ro); apierrors.IsConflict(err) {
			// The Rollout was read from a cache that had not yet seen
			// the last status write: decide again on the fresh one.
			result, retErr = ctrl.Result{RequeueAfter: time.Millisecond, Priority: new(priorityDue)}, nil
			return
		} else if err != nil {
			retErr = errors.Join(retErr, err)
			return
		}
		// Events, metrics and notifications of a transition go out once it
		// is recorded: a decision made again after a conflict is not
		// reported twice.
		sendEvents()
		recordMetrics(before, ro, decided.Reason, time.Now())
		r.notifyPhaseChange(ctx, before, ro, decided)
		// A gate is cleared only once the state it led to is recorded, so
		// a failed status write never loses a promotion or an abort.
		if gateDone {
			retErr = errors.Join(retErr, r.clearGate(ctx, ro))
		}
	}()

	if !ro.DeletionTimestamp.IsZero() {
		// A deleted Rollout hands its workload back whatever its spec
		// says: a reference that no longer resolves is skipped, not
		// waited for.
		result, letGo, err := r.handBack(ctx, ro)
		if letGo {
			// The Rollout is gone or going: its status is not written.
			ro.Status = *before.Status.DeepCopy()
		}
		return result, err
	}

	problem, err := r.validate(ctx, ro)
	if err != nil {
		// The API server could not answer; try again with backoff and leave
		// the status as it was.
		*ro = *before.DeepCopy()
		return ctrl.Result{}, fmt.Errorf("validating the Rollout: %w", err)
	}

	if ro.Status.Phase == "" {
		ro.Status.Phase = backstopv1.PhaseInitializing
	}
	ro.Status.ObservedGeneration = ro.Generation

	if problem != nil {
		if setProblemConditions(ro, problem) {
			logger.Info("Found a problem in the Rollout", "reason", problem.Reason, "message", problem.Message)
			r.eventf(ctx, ro, "Warning", problem.Reason, "Validate", "%s", problem.Message)
		}
		if problem.Reason == backstopv1.ReasonSecretNotFound {
			return ctrl.Result{RequeueAfter: retryMissingSecret}, nil
		}
		return ctrl.Result{}, nil
	}

	if clearProblemConditions(ro) {
		logger.Info("Validated the Rollout")
		r.eventf(ctx, ro, "Normal", backstopv1.ReasonSpecValid, "Validate", "The spec is valid and every reference resolves")
	}
	result, gateDone, err = r.release(ctx, ro, &decided)
	return result, err
}

// patchStatus writes the status when it changed. The patch carries the
// resourceVersion it was decided on, so a decision made on a stale copy
// (the cache lags behind the last write) conflicts instead of taking the
// status back.
func (r *RolloutReconciler) patchStatus(ctx context.Context, before, after *backstopv1.Rollout) error {
	if equalStatus(before.Status, after.Status) {
		return nil
	}
	if err := r.Status().Patch(ctx, after, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		if apierrors.IsConflict(err) {
			return err
		}
		return fmt.Errorf("patching the Rollout's status: %w", err)
	}
	// The patch left the server's answer in after.
	r.written.record(after)
	return nil
}

// staleRetry is how soon a reconcile that found a copy older than the last
// status write looks again.
const staleRetry = 20 * time.Millisecond

// Field indexes that map a referenced object back to the Rollouts naming it.
const (
	indexTarget      = "backstop.dev/target"
	indexRoute       = "backstop.dev/route"
	indexGateway     = "backstop.dev/gateway"
	indexTemplate    = "backstop.dev/template"
	indexClusterTmpl = "backstop.dev/cluster-template"
)

// SetupWithManager registers the reconciler, its field indexes, and watches
// on everything a Rollout references, so a fixed reference clears the
// condition without waiting for a resync.
func (r *RolloutReconciler) SetupWithManager(mgr ctrl.Manager, maxConcurrentReconciles int) error {
	ctx := context.Background()
	indexer := mgr.GetFieldIndexer()
	indexes := map[string]client.IndexerFunc{
		indexTarget:      indexTargets,
		indexRoute:       indexRoutes,
		indexGateway:     indexGateways,
		indexTemplate:    indexTemplates(backstopv1.SLOTemplateKindName),
		indexClusterTmpl: indexTemplates(backstopv1.ClusterSLOTemplateKindName),
	}
	for name, fn := range indexes {
		if err := indexer.IndexField(ctx, &backstopv1.Rollout{}, name, fn); err != nil {
			return fmt.Errorf("indexing Rollouts by %s: %w", name, err)
		}
	}
	if err := indexer.IndexField(ctx, &appsv1.Deployment{}, indexConfigMaps, indexDeploymentConfigMaps); err != nil {
		return fmt.Errorf("indexing Deployments by %s: %w", indexConfigMaps, err)
	}

	b := ctrl.NewControllerManagedBy(mgr).
		// Spec changes and gate annotations; status writes are our own.
		// A deletion is seen at once: setting deletionTimestamp raises
		// metadata.generation (for custom resources too).
		For(&backstopv1.Rollout{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&appsv1.Deployment{}).
		Named("rollout").
		WithOptions(controller.Options{MaxConcurrentReconciles: maxConcurrentReconciles}).
		Watches(&appsv1.Deployment{}, r.enqueueByIndex(indexTarget, nameKey)).
		// A ConfigMap a target reads is part of its release; its metadata
		// tells it changed (see rollout_configs.go).
		WatchesMetadata(&corev1.ConfigMap{}, r.enqueueByConfigMap()).
		Watches(&backstopv1.SLOTemplate{}, r.enqueueByIndex(indexTemplate, nameKey)).
		Watches(&backstopv1.ClusterSLOTemplate{}, r.enqueueByIndex(indexClusterTmpl, clusterKey)).
		// A Rollout that appears, goes or changes its target decides
		// which Rollout keeps a shared target (see checkTarget).
		Watches(&backstopv1.Rollout{}, r.enqueueByIndex(indexTarget, targetKey), builder.WithPredicates(predicate.GenerationChangedPredicate{}))
	r.wake = make(chan event.GenericEvent, wakeBuffer)
	b = b.WatchesRawSource(source.Channel(r.wake, &handler.EnqueueRequestForObject{}))

	r.gatewayKinds = map[string]bool{}
	mapper := mgr.GetRESTMapper()
	for _, kind := range []string{"HTTPRoute", "GRPCRoute", "Gateway"} {
		_, err := mapper.RESTMapping(schema.GroupKind{Group: gwapiv1.GroupName, Kind: kind}, gwapiv1.GroupVersion.Version)
		switch {
		case err == nil:
			r.gatewayKinds[kind] = true
		case meta.IsNoMatchError(err):
			mgr.GetLogger().Info("Gateway API kind is not served; Rollouts using it will report it", "kind", kind)
			continue
		default:
			return fmt.Errorf("looking up Gateway API kind %s: %w", kind, err)
		}
	}
	if r.gatewayKinds["HTTPRoute"] {
		b = b.Watches(&gwapiv1.HTTPRoute{}, r.enqueueByIndex(indexRoute, nameKey))
	}
	if r.gatewayKinds["GRPCRoute"] {
		b = b.Watches(&gwapiv1.GRPCRoute{}, r.enqueueByIndex(indexRoute, nameKey))
	}
	if r.gatewayKinds["Gateway"] {
		// A Gateway's spec decides which routes it admits (allowedRoutes);
		// its status writes change nothing Backstop checks.
		b = b.Watches(&gwapiv1.Gateway{}, r.enqueueByIndex(indexGateway, nameKey), builder.WithPredicates(predicate.GenerationChangedPredicate{}))
	}
	b = r.watchScalers(mgr, b)
	return b.Complete(r)
}

// wakeBuffer bounds the Rollouts waiting to be woken; past it a wake-up is
// dropped, and the Rollout is still looked at within its analysis interval.
const wakeBuffer = 1024

// WakeReleases has every Rollout with a running release, or in the bake
// time after a promotion, looked at now rather than at its next analysis
// interval: the Alertmanager receiver calls it when an alert arrives, so a
// release fails within moments of the alert.
func (r *RolloutReconciler) WakeReleases(ctx context.Context) error {
	if r.wake == nil {
		return nil
	}
	var list backstopv1.RolloutList
	if err := r.List(ctx, &list); err != nil {
		return err
	}
	for i := range list.Items {
		ro := &list.Items[i]
		if !releasing(ro.Status.Phase) && !(ro.Status.Phase == backstopv1.PhaseSucceeded && ro.Status.PreviousStableRevision != "") {
			continue
		}
		select {
		case r.wake <- event.GenericEvent{Object: ro}:
		default:
		}
	}
	return nil
}

// nameKey and clusterKey turn a watched object into the value it is indexed
// under: namespace/name for namespaced objects, name for cluster-scoped ones.
func nameKey(o client.Object) string    { return o.GetNamespace() + "/" + o.GetName() }
func clusterKey(o client.Object) string { return o.GetName() }

// targetKey is the target key of a Rollout, as indexTargets has it.
func targetKey(o client.Object) string { return indexTargets(o)[0] }

// enqueueByIndex enqueues every Rollout whose index holds the watched
// object's key. Namespaced keys are looked up across namespaces, since a
// generated route may attach to a Gateway in another namespace.
func (r *RolloutReconciler) enqueueByIndex(index string, key func(client.Object) string) handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		var list backstopv1.RolloutList
		if err := r.List(ctx, &list, client.MatchingFields{index: key(o)}); err != nil {
			log.FromContext(ctx).Error(err, "Failed to list Rollouts for a watched object", "index", index)
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(list.Items))
		for i := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
		return reqs
	})
}

// equalStatus reports whether writing b over a would change nothing.
func equalStatus(a, b backstopv1.RolloutStatus) bool {
	return equality.Semantic.DeepEqual(a, b)
}
