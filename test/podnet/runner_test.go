package podnet

import (
	"context"
	"net/http"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"backstop.dev/backstop/test/testenv"
)

// createPod creates a pod bound to node and gives it ip, as kwok would.
func createPod(t *testing.T, ns, name, node string, ip netip.Addr, labels map[string]string) *corev1.Pod {
	t.Helper()
	ctx := t.Context()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:   node,
			Containers: []corev1.Container{{Name: "app", Image: "backstop.dev/podnet-test"}},
		},
	}
	if err := env.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP = ip.String()
	pod.Status.PodIPs = []corev1.PodIP{{IP: ip.String()}}
	if err := env.Client.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

// hasNamespace says whether the network has the namespace of the sandbox at
// offset i of its prefix, as a Runner names it.
func hasNamespace(t *testing.T, n *Network, i int) bool {
	t.Helper()
	return slices.Contains(resources(t, n), "netns/"+n.Name+"-"+strconv.Itoa(i))
}

func url(n *Network, i int) string { return "http://" + addr(n, i).String() + ":8080/" }

// runRunner runs a Runner of a new network's node, whose pods serve their
// name on port 8080 (but those labelled podnet=skip, which get no command),
// in a namespace of the test's. stop ends it, and runs at cleanup.
func runRunner(t *testing.T, delay time.Duration) (n *Network, node, ns string, stop func()) {
	t.Helper()
	n = newNetwork(t)
	node = "node-" + n.Name
	ns = env.Namespace(t)
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	r := &Runner{
		Client:  cs,
		Node:    node,
		Network: n,
		Command: func(pod *corev1.Pod) (*exec.Cmd, error) {
			if pod.Labels["podnet"] == "skip" {
				return nil, nil
			}
			return helperCmd("serve", "PODNET_LISTEN="+pod.Status.PodIP+":8080", "PODNET_NAME="+pod.Name), nil
		},
		Log:              testr.New(t),
		TerminationDelay: delay,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	return n, node, ns, stop
}

func TestRunnerRunsThePodsOfItsNode(t *testing.T) {
	t.Parallel()
	if env == nil {
		t.Skip("skipping: needs root, iproute2 and the control plane of testenv")
	}
	n, node, ns, stop := runRunner(t, 0)

	web1 := createPod(t, ns, "web-1", node, addr(n, 5), nil)
	createPod(t, ns, "web-2", node, addr(n, 6), nil)
	createPod(t, ns, "elsewhere", "other-node", addr(n, 7), nil)
	createPod(t, ns, "skipped", node, addr(n, 8), map[string]string{"podnet": "skip"})
	createPod(t, ns, "on-gateway", node, n.Gateway(), nil)

	mustServe(t, url(n, 5), "web-1 "+addr(n, 5).String())
	mustServe(t, url(n, 6), "web-2 "+addr(n, 6).String())
	if hasNamespace(t, n, 7) || hasNamespace(t, n, 8) || hasNamespace(t, n, 1) {
		t.Errorf("a pod of another node, without a command or with the gateway's IP got a sandbox: %v", resources(t, n))
	}

	t.Run("restarts an exited process", func(t *testing.T) {
		if code, _, err := get(url(n, 5) + "exit"); err != nil || code != http.StatusOK {
			t.Fatalf("GET /exit: %d %v", code, err)
		}
		testenv.Eventually(t, "web-1 down", func() bool { _, _, err := get(url(n, 5)); return err != nil })
		mustServe(t, url(n, 5), "web-1")
	})

	t.Run("stops a terminating pod", func(t *testing.T) {
		// Bound to a node, the pod waits for a kubelet to confirm: it
		// stays with a deletionTimestamp.
		if err := env.Client.Delete(t.Context(), web1); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, "the sandbox of web-1 removed", func() bool { return !hasNamespace(t, n, 5) })
		if _, _, err := get(url(n, 5)); err == nil {
			t.Error("web-1 still answers")
		}
		mustServe(t, url(n, 6), "web-2")
	})

	t.Run("stops a deleted pod", func(t *testing.T) {
		web2 := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-2"}}
		if err := env.Client.Delete(t.Context(), web2, client.GracePeriodSeconds(0)); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, "the sandbox of web-2 removed", func() bool { return !hasNamespace(t, n, 6) })
	})

	t.Run("closes every sandbox when it stops", func(t *testing.T) {
		createPod(t, ns, "web-3", node, addr(n, 9), nil)
		mustServe(t, url(n, 9), "web-3")
		stop()
		if got, want := resources(t, n), []string{"link/" + n.Bridge()}; !slices.Equal(got, want) {
			t.Errorf("after Run returned, network %s: got %v, want %v", n.Name, got, want)
		}
	})
}

// TestRunnerDrainsATerminatingPod: with a TerminationDelay, a deleted pod
// keeps answering for that long, as behind a preStop sleep, and is then
// removed.
func TestRunnerDrainsATerminatingPod(t *testing.T) {
	t.Parallel()
	if env == nil {
		t.Skip("skipping: needs root, iproute2 and the control plane of testenv")
	}
	n, node, ns, _ := runRunner(t, 3*time.Second)

	web := createPod(t, ns, "web", node, addr(n, 5), nil)
	mustServe(t, url(n, 5), "web")
	deleted := time.Now()
	if err := env.Client.Delete(t.Context(), web, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	// The runner sees the deletion within a moment; the pod answers on.
	time.Sleep(time.Second)
	if _, _, err := get(url(n, 5)); err != nil {
		t.Errorf("the pod stopped answering %s after its deletion; want it to answer for 3s: %v", time.Since(deleted).Round(time.Millisecond), err)
	}
	testenv.Eventually(t, "the sandbox removed after the delay", func() bool { return !hasNamespace(t, n, 5) })
	if took := time.Since(deleted); took < 3*time.Second {
		t.Errorf("the sandbox was removed %s after the deletion; want 3s at least", took)
	}
}
