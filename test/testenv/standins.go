package testenv

// Stand-ins for the controllers a real cluster runs and envtest does not: the
// Deployment controller of kube-controller-manager and a Gateway API
// implementation. Each polls its namespace and writes status through the
// status subresource, as the real controllers do, so code under test sees the
// same fields it would see in a cluster.

import (
	"context"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
)

const (
	// NeverReadyAnnotation on a Deployment's pod template, set to "true",
	// makes RunDeploymentController report its replicas as never ready.
	NeverReadyAnnotation = "test.backstop.dev/never-ready"
	// RejectAnnotation on an HTTPRoute or GRPCRoute makes RunGateway reject
	// it: Accepted=False, reason NotAllowedByListeners, with the
	// annotation's value as the message.
	RejectAnnotation = "test.backstop.dev/reject"
	// GatewayControllerName is the controllerName RunGateway writes in
	// route status.
	GatewayControllerName gwapiv1.GatewayController = "backstop.dev/test-gateway"

	// standInPoll is how often the stand-ins look at their namespace.
	standInPoll = 50 * time.Millisecond
	// maxConditionMessage is the CRD's maxLength for a condition message.
	maxConditionMessage = 32768
)

// pollUntilDone calls round at once and then every standInPoll until ctx
// ends.
func pollUntilDone(ctx context.Context, round func(context.Context)) {
	t := time.NewTicker(standInPoll)
	defer t.Stop()
	for {
		if ctx.Err() != nil {
			return
		}
		round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RunDeploymentController acts as kube-controller-manager's Deployment
// controller for the Deployments in namespace ns until ctx ends. It returns
// at once and works in the background.
//
// Whenever a Deployment's metadata.generation differs from
// status.observedGeneration, or spec.replicas (1 when unset) from
// status.replicas, it writes status through the status subresource:
// observedGeneration = generation and replicas = updatedReplicas =
// readyReplicas = availableReplicas = spec.replicas, with Available=True
// (MinimumReplicasAvailable) and Progressing=True (NewReplicaSetAvailable).
//
// A Deployment whose pod template has the annotation NeverReadyAnnotation:
// "true" instead gets readyReplicas = availableReplicas = 0, unavailableReplicas
// = spec.replicas, Available=False (MinimumReplicasUnavailable) and
// Progressing=True (ReplicaSetUpdated), as while its pods never become ready.
//
// A status that already matches generation and replicas is left alone, so a
// test may overwrite it (for example to make a Deployment unavailable) and
// keep what it wrote until the next spec change. Failed writes (conflicts)
// are retried on the next round; it never fails the test.
func (e *Env) RunDeploymentController(ctx context.Context, ns string) {
	go pollUntilDone(ctx, func(ctx context.Context) {
		var list appsv1.DeploymentList
		if err := e.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return
		}
		for i := range list.Items {
			d := &list.Items[i]
			if !d.DeletionTimestamp.IsZero() {
				continue
			}
			want := int32(1)
			if d.Spec.Replicas != nil {
				want = *d.Spec.Replicas
			}
			if d.Status.ObservedGeneration == d.Generation && d.Status.Replicas == want {
				continue
			}
			setDeploymentStatus(d, want, d.Spec.Template.Annotations[NeverReadyAnnotation] == "true")
			_ = e.Client.Status().Update(ctx, d)
		}
	})
}

// setDeploymentStatus writes into d the status the Deployment controller
// reports once a rollout of replicas pods has finished (ready) or once its
// pods are created but never become ready.
func setDeploymentStatus(d *appsv1.Deployment, replicas int32, neverReady bool) {
	s := &d.Status
	s.ObservedGeneration = d.Generation
	s.Replicas = replicas
	s.UpdatedReplicas = replicas
	if neverReady {
		s.ReadyReplicas, s.AvailableReplicas, s.UnavailableReplicas = 0, 0, replicas
	} else {
		s.ReadyReplicas, s.AvailableReplicas, s.UnavailableReplicas = replicas, replicas, 0
	}
	rs := d.Name + "-test"
	if neverReady && replicas > 0 {
		setDeploymentCondition(s, appsv1.DeploymentAvailable, corev1.ConditionFalse,
			"MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
		setDeploymentCondition(s, appsv1.DeploymentProgressing, corev1.ConditionTrue,
			"ReplicaSetUpdated", `ReplicaSet "`+rs+`" is progressing.`)
		return
	}
	setDeploymentCondition(s, appsv1.DeploymentAvailable, corev1.ConditionTrue,
		"MinimumReplicasAvailable", "Deployment has minimum availability.")
	setDeploymentCondition(s, appsv1.DeploymentProgressing, corev1.ConditionTrue,
		"NewReplicaSetAvailable", `ReplicaSet "`+rs+`" has successfully progressed.`)
}

// setDeploymentCondition sets a condition of s, keeping its
// lastTransitionTime when its status does not change.
func setDeploymentCondition(s *appsv1.DeploymentStatus, t appsv1.DeploymentConditionType, status corev1.ConditionStatus, reason, message string) {
	now := metav1.Now()
	c := appsv1.DeploymentCondition{Type: t, Status: status, Reason: reason, Message: message, LastUpdateTime: now, LastTransitionTime: now}
	for i := range s.Conditions {
		if s.Conditions[i].Type != t {
			continue
		}
		if s.Conditions[i].Status == status {
			c.LastTransitionTime = s.Conditions[i].LastTransitionTime
		}
		s.Conditions[i] = c
		return
	}
	s.Conditions = append(s.Conditions, c)
}

// RunGateway acts as a Gateway API implementation for the HTTPRoutes and
// GRPCRoutes in namespace ns until ctx ends. It returns at once and works in
// the background.
//
// For every route whose status does not already say so for its current
// generation, it writes status.parents through the status subresource with
// one entry per spec.parentRefs entry: parentRef copied from spec,
// controllerName GatewayControllerName, and conditions Accepted=True
// (reason Accepted) and ResolvedRefs=True (reason ResolvedRefs) with
// observedGeneration = metadata.generation. A route with the annotation
// RejectAnnotation gets Accepted=False, reason NotAllowedByListeners and the
// annotation's value as message instead (ResolvedRefs stays True).
//
// Entries of other controllers in status.parents are kept; entries of
// GatewayControllerName for parentRefs no longer in spec are removed.
// Failed writes (conflicts) are retried on the next round; it never fails
// the test.
func (e *Env) RunGateway(ctx context.Context, ns string) {
	go pollUntilDone(ctx, func(ctx context.Context) {
		var https gwapiv1.HTTPRouteList
		if err := e.Client.List(ctx, &https, client.InNamespace(ns)); err == nil {
			for i := range https.Items {
				r := &https.Items[i]
				if r.DeletionTimestamp.IsZero() && setRouteStatus(r, &r.Spec.CommonRouteSpec, &r.Status.RouteStatus) {
					_ = e.Client.Status().Update(ctx, r)
				}
			}
		}
		var grpcs gwapiv1.GRPCRouteList
		if err := e.Client.List(ctx, &grpcs, client.InNamespace(ns)); err == nil {
			for i := range grpcs.Items {
				r := &grpcs.Items[i]
				if r.DeletionTimestamp.IsZero() && setRouteStatus(r, &r.Spec.CommonRouteSpec, &r.Status.RouteStatus) {
					_ = e.Client.Status().Update(ctx, r)
				}
			}
		}
	})
}

// setRouteStatus brings the route's status in line with what the test
// gateway reports for its spec and annotations, and tells whether it
// changed anything.
func setRouteStatus(obj client.Object, spec *gwapiv1.CommonRouteSpec, status *gwapiv1.RouteStatus) bool {
	gen := obj.GetGeneration()
	accepted := metav1.Condition{
		Type:               string(gwapiv1.RouteConditionAccepted),
		Status:             metav1.ConditionTrue,
		Reason:             string(gwapiv1.RouteReasonAccepted),
		Message:            "Accepted by the test gateway",
		ObservedGeneration: gen,
	}
	if msg, ok := obj.GetAnnotations()[RejectAnnotation]; ok {
		if len(msg) > maxConditionMessage {
			msg = msg[:maxConditionMessage]
		}
		accepted.Status = metav1.ConditionFalse
		accepted.Reason = string(gwapiv1.RouteReasonNotAllowedByListeners)
		accepted.Message = msg
	}
	resolved := metav1.Condition{
		Type:               string(gwapiv1.RouteConditionResolvedRefs),
		Status:             metav1.ConditionTrue,
		Reason:             string(gwapiv1.RouteReasonResolvedRefs),
		Message:            "All references resolved",
		ObservedGeneration: gen,
	}

	// Ours, by parentRef, as they stand; other controllers' entries kept.
	var others, ours []gwapiv1.RouteParentStatus
	for _, p := range status.Parents {
		if p.ControllerName == GatewayControllerName {
			ours = append(ours, p)
		} else {
			others = append(others, p)
		}
	}
	var want []gwapiv1.RouteParentStatus
	for _, ref := range spec.ParentRefs {
		entry := gwapiv1.RouteParentStatus{ParentRef: *ref.DeepCopy(), ControllerName: GatewayControllerName}
		for _, p := range ours {
			if apiequality.Semantic.DeepEqual(p.ParentRef, ref) {
				entry.Conditions = append([]metav1.Condition(nil), p.Conditions...)
				break
			}
		}
		meta.SetStatusCondition(&entry.Conditions, accepted)
		meta.SetStatusCondition(&entry.Conditions, resolved)
		want = append(want, entry)
	}
	if len(want) == 0 && len(ours) == 0 || apiequality.Semantic.DeepEqual(want, ours) {
		return false
	}
	parents := append(others, want...)
	if parents == nil {
		parents = []gwapiv1.RouteParentStatus{}
	}
	status.Parents = parents
	return true
}
