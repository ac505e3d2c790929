//go:build e2e

package stack_test

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/loadgen"
	"backstop.dev/backstop/test/stack"
)

// TestDeletingARolloutHandsTheWorkloadBack: a Rollout deleted under steady
// load through traefik hands the application back before it goes. The
// target is scaled up to the primary's replicas, the route sends everything
// to it and outlives the Rollout, and Kubernetes' garbage collector then
// deletes the primary; no request fails and every answer is v1.
func TestDeletingARolloutHandsTheWorkloadBack(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "handback")
	c := s.Env.Client
	d := stack.Deployment(ns, "demo", "v1", 2)
	if err := c.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	ro := canaryRollout(ns, "demo", "handback.demo", 10*time.Second)
	ro.Spec.Revert = &backstopv1.RevertSpec{Mode: backstopv1.RevertDisabled}
	if err := c.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	waitForPhase(t, ro, backstopv1.PhaseIdle, 90*time.Second)
	url := "http://" + s.Gateway + "/"
	waitForVersions(t, url, "handback.demo", map[string]bool{"v1": true})
	var target appsv1.Deployment
	if err := c.Get(ctx, client.ObjectKeyFromObject(d), &target); err != nil {
		t.Fatal(err)
	}
	if target.Spec.Replicas == nil || *target.Spec.Replicas != 0 {
		t.Fatalf("before the deletion the target has %v replicas; want 0 (the primary serves)", target.Spec.Replicas)
	}

	gen, err := loadgen.New(loadgen.Config{URL: url, Host: "handback.demo", Rate: 50, Duration: 3 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	go gen.Run(loadCtx)
	time.Sleep(2 * time.Second)

	deleted := time.Now()
	if err := c.Delete(ctx, ro); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the Rollout to be gone", func() bool {
		return apierrors.IsNotFound(c.Get(ctx, client.ObjectKeyFromObject(ro), &backstopv1.Rollout{}))
	})
	gone := time.Now()
	waitFor(t, "the garbage collector to delete the primary", func() bool {
		return apierrors.IsNotFound(c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "demo-primary"}, &appsv1.Deployment{}))
	})
	collected := time.Now()
	time.Sleep(3 * time.Second) // traefik has had time to drop the primary's endpoints
	stopLoad()
	end := time.Now()

	all := gen.Between(deleted.Add(-2*time.Second), end)
	t.Logf("deleted at %s; the Rollout was gone %s later and the primary %s later; %d requests: %+v, %d failed",
		deleted.Format(time.TimeOnly), gone.Sub(deleted).Round(100*time.Millisecond), collected.Sub(deleted).Round(100*time.Millisecond),
		all.Requests, all.ByStatus, all.Failures)
	if all.Requests == 0 {
		t.Fatal("the load generator sent no request")
	}
	if all.Failures > 0 || all.ByStatus[200] != all.Requests {
		t.Errorf("around the deletion the gateway answered %+v with %d requests unanswered; want every request answered 200", all.ByStatus, all.Failures)
	}
	if all.ByVersion["v1"] != all.Requests-all.Failures {
		t.Errorf("around the deletion the answers came from %+v; want only v1", all.ByVersion)
	}

	if err := c.Get(ctx, client.ObjectKeyFromObject(d), &target); err != nil {
		t.Fatal(err)
	}
	if target.Spec.Replicas == nil || *target.Spec.Replicas != 2 || target.Status.ReadyReplicas != 2 {
		t.Errorf("after the deletion the target wants %v replicas with %d ready; want 2 and 2", target.Spec.Replicas, target.Status.ReadyReplicas)
	}
	var route gwapiv1.HTTPRoute
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "demo"}, &route); err != nil {
		t.Fatalf("the route is gone with the Rollout: %v", err)
	}
	if refs := route.OwnerReferences; len(refs) > 0 {
		t.Errorf("after the deletion the route is still owned by %+v; want no owner", refs)
	}
}
