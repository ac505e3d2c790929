//go:build e2e

package stack_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"backstop.dev/backstop/test/stack"
)

var s *stack.Stack

func TestMain(m *testing.M) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "backstop-stack-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s, err = stack.Start(ctx, stack.Options{Dir: dir, GitOps: true, Log: func(f string, a ...any) { fmt.Printf("stack: "+f+"\n", a...) }})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	s.Stop()
	if code == 0 {
		os.RemoveAll(dir)
	} else {
		fmt.Fprintln(os.Stderr, "stack: the logs of every part are in", dir)
	}
	os.Exit(code)
}

// TestDeploymentServesAtItsPodIPs: a Deployment of the demo app becomes
// pods that answer at their IPs, and its Service's EndpointSlice lists
// them ready.
func TestDeploymentServesAtItsPodIPs(t *testing.T) {
	ns := namespace(t, "serve")
	ips := deploy(t, ns, "demo", "v1", 2)
	for _, ip := range ips {
		if version := get(fmt.Sprintf("http://%s:%d/", ip, stack.AppPort), ""); version != "v1" {
			t.Errorf("pod %s answered with version %q; want v1", ip, version)
		}
	}
}

// TestRouteWeightsReachTraefik: traefik serves an HTTPRoute's weights, and
// a change of them within a second.
func TestRouteWeightsReachTraefik(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "weights")
	deploy(t, ns, "demo-v1", "v1", 1)
	deploy(t, ns, "demo-v2", "v2", 1)
	port := gwapiv1.PortNumber(80)
	backend := func(name string, weight int32) gwapiv1.HTTPBackendRef {
		return gwapiv1.HTTPBackendRef{BackendRef: gwapiv1.BackendRef{Weight: ptr.To(weight),
			BackendObjectReference: gwapiv1.BackendObjectReference{Name: gwapiv1.ObjectName(name), Port: &port}}}
	}
	gwNS := gwapiv1.Namespace(stack.GatewayNamespace)
	route := &gwapiv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "demo"}, Spec: gwapiv1.HTTPRouteSpec{
		CommonRouteSpec: gwapiv1.CommonRouteSpec{ParentRefs: []gwapiv1.ParentReference{{Namespace: &gwNS, Name: stack.GatewayName}}},
		Hostnames:       []gwapiv1.Hostname{"weights.demo"},
		Rules:           []gwapiv1.HTTPRouteRule{{BackendRefs: []gwapiv1.HTTPBackendRef{backend("demo-v1", 100), backend("demo-v2", 0)}}},
	}}
	if err := s.Env.Client.Create(ctx, route); err != nil {
		t.Fatal(err)
	}
	url := "http://" + s.Gateway + "/"
	waitForVersions(t, url, "weights.demo", map[string]bool{"v1": true})

	for _, w := range []struct {
		v1, v2 int32
		want   map[string]bool
	}{
		{50, 50, map[string]bool{"v1": true, "v2": true}},
		{0, 100, map[string]bool{"v2": true}},
	} {
		// traefik writes the route's status: patch the spec alone.
		before := route.DeepCopy()
		route.Spec.Rules[0].BackendRefs = []gwapiv1.HTTPBackendRef{backend("demo-v1", w.v1), backend("demo-v2", w.v2)}
		if err := s.Env.Client.Patch(ctx, route, client.MergeFrom(before)); err != nil {
			t.Fatal(err)
		}
		took := waitForVersions(t, url, "weights.demo", w.want)
		t.Logf("weights %d/%d served by traefik %s after the update", w.v1, w.v2, took.Round(time.Millisecond))
	}
}

// waitForVersions sends requests until the last 20 were answered by exactly
// the versions in want, and says how long that took.
func waitForVersions(t *testing.T, url, host string, want map[string]bool) time.Duration {
	t.Helper()
	start := time.Now()
	var last []string
	for time.Since(start) < 30*time.Second {
		last = append(last, get(url, host))
		if len(last) > 20 {
			last = last[1:]
		}
		seen := map[string]bool{}
		for _, v := range last {
			seen[v] = true
		}
		if len(last) == 20 && len(seen) == len(want) && !seen[""] {
			ok := true
			for v := range want {
				ok = ok && seen[v]
			}
			if ok {
				return time.Since(start)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the last answers through the gateway came from %v; want only %v (logs in %s)", last, want, s.Dir)
	return 0
}

func namespace(t *testing.T, name string) string {
	t.Helper()
	if _, err := s.Kube.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

// deploy makes a Deployment and a Service (port 80) of the demo app at
// version, and returns its pods' IPs once the EndpointSlices list them
// ready and each answers.
func deploy(t *testing.T, ns, name, version string, replicas int32) []string {
	t.Helper()
	ctx := context.Background()
	labels := map[string]string{"app": name}
	d := stack.Deployment(ns, name, version, replicas)
	if _, err := s.Kube.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{
		Selector: labels, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt(stack.AppPort)}}}}
	if _, err := s.Kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var ips []string
	for end := time.Now().Add(90 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if ips = readyEndpoints(t, ns, name); len(ips) == int(replicas) {
			break
		}
	}
	if len(ips) != int(replicas) {
		t.Fatalf("the Service %s's EndpointSlices list %v ready; want %d pods (logs in %s)", name, ips, replicas, s.Dir)
	}
	for _, ip := range ips {
		url := fmt.Sprintf("http://%s:%d/", ip, stack.AppPort)
		for end := time.Now().Add(30 * time.Second); get(url, "") == "" && time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		}
	}
	return ips
}

func readyEndpoints(t *testing.T, ns, svc string) []string {
	t.Helper()
	list, err := s.Kube.DiscoveryV1().EndpointSlices(ns).List(context.Background(),
		metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, sl := range list.Items {
		for _, e := range sl.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				ips = append(ips, e.Addresses...)
			}
		}
	}
	return ips
}

// get returns the version that answered at url, with Host host when not
// empty, or "".
func get(url, host string) string {
	c := &http.Client{Timeout: 2 * time.Second}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return ""
	}
	if host != "" {
		req.Host = host
	}
	resp, err := c.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.Header.Get("X-App-Version")
}
