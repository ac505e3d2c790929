package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"backstop.dev/backstop/test/proc"
	"backstop.dev/backstop/test/promtest"
	"backstop.dev/backstop/test/testenv"
)

// The constant series every check queries, and its value: far under the
// checks' bound, so every release passes.
const (
	sloSeries = "bench_slo_error_ratio"
	sloValue  = 0.001
)

// cluster is everything one size of the benchmark runs on.
type cluster struct {
	env  *testenv.Env
	kube kubernetes.Interface
	dir  string
	// nodes are the kwok nodes pods are placed on; none with the
	// Deployment stand-in.
	nodes []string
	// prometheus is the URL of the Prometheus the checks query.
	prometheus string
	// manager is the Backstop manager's process, and metrics and pprof its
	// endpoints (pprof empty when the binary has none).
	manager *proc.Process
	metrics string
	pprof   string
}

// startCluster starts the control plane, the workload controllers, the
// gateway stand-in and Prometheus. The cleanups of p stop them.
func startCluster(p *testenv.Program, cfg config, dir string) *cluster {
	ctx := p.Context()
	// Every Rollout has two Services: envtest's /24 of Service addresses
	// runs out at 127 Rollouts.
	env, err := testenv.StartWith(testenv.Options{APIServerArgs: map[string]string{"service-cluster-ip-range": "10.96.0.0/16"}})
	if err != nil {
		p.Fatalf("starting the control plane: %v", err)
	}
	p.Cleanup(env.Stop)
	c := &cluster{env: env, dir: dir}
	if c.kube, err = kubernetes.NewForConfig(env.Config); err != nil {
		p.Fatal(err)
	}

	switch cfg.workloads {
	case workloadsKwok:
		c.startControllerManager(p)
		c.startKwok(p, cfg.nodes)
	case workloadsStandIn:
		if err := env.RunDeploymentControllerWatch(ctx); err != nil {
			p.Fatalf("starting the Deployment stand-in: %v", err)
		}
	}
	if err := env.RunGatewayWatch(ctx); err != nil {
		p.Fatalf("starting the gateway stand-in: %v", err)
	}

	target := promtest.NewTarget(p)
	gauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: sloSeries, Help: "A constant error ratio for the benchmark's checks."})
	target.Registry.MustRegister(gauge)
	gauge.Set(sloValue)
	prom := promtest.Start(p, promtest.Config{Targets: []string{target.Addr()}})
	prom.WaitForScrape(p, sloSeries)
	c.prometheus = prom.URL()
	return c
}

// startControllerManager runs kube-controller-manager's Deployment and
// ReplicaSet controllers, without client-side rate limits, so Deployments
// get ReplicaSets and pods as in a cluster.
func (c *cluster) startControllerManager(p *testenv.Program) {
	cmd, err := proc.Start(c.dir, "kube-controller-manager", bin("kube-controller-manager"), []string{
		"--kubeconfig=" + c.env.Kubeconfig,
		"--controllers=deployment,replicaset",
		"--leader-elect=false",
		"--secure-port=0",
		"--concurrent-deployment-syncs=10",
		"--concurrent-replicaset-syncs=10",
		"--kube-api-qps=5000",
		"--kube-api-burst=10000",
		"--v=1",
	})
	if err != nil {
		p.Fatal(err)
	}
	p.Cleanup(cmd.Stop)
	if err := cmd.Running(); err != nil {
		p.Fatal(err)
	}
}

// kwokStageFiles are the stages kwok plays, from its module: nodes that
// become Ready and renew their leases; pods that become Ready at once
// (status only: no process runs), and go when deleted.
var kwokStageFiles = []string{
	"node/fast/node-initialize.yaml",
	"node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
	"pod/fast/pod-ready.yaml",
	"pod/fast/pod-complete.yaml",
	"pod/fast/pod-delete.yaml",
}

// kwokOptions raises kwok's parallelism for thousands of pods.
const kwokOptions = `apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  podPlayStageParallelism: 16
  nodePlayStageParallelism: 4
  nodeLeaseParallelism: 4
`

// kwokNodeAnnotation marks the nodes kwok manages.
const kwokNodeAnnotation = "kwok.x-k8s.io/node"

// startKwok runs kwok for n fake nodes and creates them.
func (c *cluster) startKwok(p *testenv.Program, n int) {
	ctx := p.Context()
	list := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/kwok")
	list.Dir = filepath.Join(testenv.RepoRoot(), "hack", "tools", "kwok")
	out, err := list.Output()
	if err != nil {
		p.Fatalf("locating the kwok module: %v", err)
	}
	stages := filepath.Join(strings.TrimSpace(string(out)), "kustomize", "stage")
	config := []byte(kwokOptions)
	for _, f := range kwokStageFiles {
		b, err := os.ReadFile(filepath.Join(stages, f))
		if err != nil {
			p.Fatal(err)
		}
		config = append(append(config, "---\n"...), b...)
	}
	path := filepath.Join(c.dir, "kwok.yaml")
	if err := os.WriteFile(path, config, 0o644); err != nil {
		p.Fatal(err)
	}
	cmd, err := proc.Start(c.dir, "kwok", bin("kwok"), []string{
		"--kubeconfig=" + c.env.Kubeconfig,
		"--config=" + path,
		"--manage-nodes-with-annotation-selector=" + kwokNodeAnnotation + "=fake",
		"--cidr=10.0.0.0/12",
	})
	if err != nil {
		p.Fatal(err)
	}
	p.Cleanup(cmd.Stop)
	for i := range n {
		name := fmt.Sprintf("kwok-node-%03d", i)
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
			Labels:      map[string]string{"kubernetes.io/hostname": name, "type": "kwok"},
			Annotations: map[string]string{kwokNodeAnnotation: "fake"}}}
		if _, err := c.kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			p.Fatal(err)
		}
		c.nodes = append(c.nodes, name)
	}
	err = proc.WaitFor(ctx, "the kwok nodes to be Ready", 2*time.Minute, cmd, func() error {
		list, err := c.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		ready := 0
		for _, node := range list.Items {
			for _, cond := range node.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		if ready < n {
			return fmt.Errorf("%d of %d Ready", ready, n)
		}
		return nil
	})
	if err != nil {
		p.Fatal(err)
	}
}

// bin is the path of a binary the Makefile builds into bin/.
func bin(name string) string { return filepath.Join(testenv.RepoRoot(), "bin", name) }

// managerBinary is the manager at path, or the one built from this
// repository when path is empty.
func managerBinary(path string) (string, error) {
	if path != "" {
		return path, nil
	}
	return testenv.ManagerBinary()
}

// hasFlag says whether the manager binary knows a flag, from its usage.
func hasFlag(binary, flag string) bool {
	out, _ := exec.Command(binary, "-h").CombinedOutput()
	return strings.Contains(string(out), "-"+flag+" ")
}

// startManager runs the Backstop manager against the cluster with its
// checks going to the cluster's Prometheus.
func (c *cluster) startManager(p *testenv.Program, binary string, reconciles int, memLimit string) {
	var err error
	probes, err := proc.FreeAddr()
	if err != nil {
		p.Fatal(err)
	}
	if c.metrics, err = proc.FreeAddr(); err != nil {
		p.Fatal(err)
	}
	args := []string{
		"--leader-elect=false",
		"--metrics-bind-address=" + c.metrics,
		"--health-probe-bind-address=" + probes,
		"--prometheus-address=" + c.prometheus,
		"--git-cache-dir=" + filepath.Join(c.dir, "git-cache"),
		fmt.Sprintf("--max-concurrent-reconciles=%d", reconciles),
	}
	if hasFlag(binary, "pprof-bind-address") {
		if c.pprof, err = proc.FreeAddr(); err != nil {
			p.Fatal(err)
		}
		args = append(args, "--pprof-bind-address="+c.pprof)
	}
	env := []string{"KUBECONFIG=" + c.env.Kubeconfig}
	if memLimit != "" {
		env = append(env, "GOMEMLIMIT="+memLimit)
	}
	cmd, err := proc.Start(c.dir, "backstop", binary, args, env...)
	if err != nil {
		p.Fatal(err)
	}
	p.Cleanup(cmd.Stop)
	c.manager = cmd
	err = proc.WaitFor(p.Context(), "the manager to be ready", time.Minute, cmd, func() error {
		return errors.Join(proc.HTTPOK("http://"+probes+"/readyz"), proc.HTTPOK("http://"+c.metrics+"/metrics"))
	})
	if err != nil {
		p.Fatal(err)
	}
}
