package stack

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"backstop.dev/backstop/test/proc"
)

// prometheusConfig scrapes every pod's port AppPort each second, with the
// labels the demo's checks select on: namespace, pod and app (the pod's
// label app, which the primary's pods carry with the suffix -primary).
//
// The targets come from a file the stack keeps (podTargets), not from
// kubernetes_sd_configs: Debian's Prometheus is built without the
// Kubernetes service discovery.
const prometheusConfig = `global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
- job_name: pods
  file_sd_configs:
  - files: [%q]
    refresh_interval: 1s
`

// prometheus starts Prometheus (the Debian package's binary) scraping the
// pods.
func (s *Stack) prometheus(ctx context.Context) error {
	binary, err := exec.LookPath("prometheus")
	if err != nil {
		return fmt.Errorf("Prometheus is not installed (apt-get install prometheus): %w", err)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	targets := filepath.Join(s.Dir, "pods.json")
	if err := os.WriteFile(targets, []byte("[]"), 0o644); err != nil {
		return err
	}
	go podTargets(s.podsCtx, s.Kube, targets)
	config := filepath.Join(s.Dir, "prometheus.yml")
	content := fmt.Sprintf(prometheusConfig, targets)
	if err := os.WriteFile(config, []byte(content), 0o644); err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	p, err := proc.Start(s.Dir, "prometheus", binary, []string{
		"--config.file=" + config,
		"--storage.tsdb.path=" + filepath.Join(s.Dir, "prometheus-data"),
		"--web.listen-address=" + addr,
		"--storage.tsdb.retention.time=1d",
	})
	if err != nil {
		return err
	}
	s.procs = append(s.procs, p)
	s.Prometheus = "http://" + addr
	return proc.WaitFor(ctx, "Prometheus to be ready", time.Minute, p, func() error {
		return proc.HTTPOK(s.Prometheus + "/-/ready")
	})
}

// podTargets keeps file, a Prometheus file_sd list, in step with the ready
// pods that have a container port AppPort, until ctx ends.
func podTargets(ctx context.Context, kube kubernetes.Interface, file string) {
	factory := informers.NewSharedInformerFactory(kube, 0)
	pods := factory.Core().V1().Pods()
	changed := make(chan struct{}, 1)
	notify := func(any) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	_, _ = pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: notify, DeleteFunc: notify, UpdateFunc: func(_, o any) { notify(o) }})
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
		list, err := pods.Lister().List(labels.Everything())
		if err != nil {
			continue
		}
		type group struct {
			Targets []string          `json:"targets"`
			Labels  map[string]string `json:"labels"`
		}
		groups := []group{}
		for _, p := range list {
			if p.Status.PodIP == "" || p.DeletionTimestamp != nil || !podReady(p) || !hasPort(p, AppPort) {
				continue
			}
			groups = append(groups, group{
				Targets: []string{net.JoinHostPort(p.Status.PodIP, strconv.Itoa(AppPort))},
				Labels:  map[string]string{"namespace": p.Namespace, "pod": p.Name, "app": p.Labels["app"]},
			})
		}
		sort.Slice(groups, func(i, j int) bool { return groups[i].Targets[0] < groups[j].Targets[0] })
		data, _ := json.Marshal(groups)
		// Write and rename, so Prometheus never reads half a file.
		tmp := file + ".tmp"
		if os.WriteFile(tmp, data, 0o644) == nil {
			_ = os.Rename(tmp, file)
		}
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func hasPort(p *corev1.Pod, port int32) bool {
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.ContainerPort == port {
				return true
			}
		}
	}
	return false
}
