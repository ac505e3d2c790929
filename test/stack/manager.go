package stack

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"backstop.dev/backstop/test/proc"
	"backstop.dev/backstop/test/testenv"
)

// manager builds and starts the Backstop manager against the stack, with
// its checks going to the stack's Prometheus and its metrics at s.Metrics.
func (s *Stack) manager(ctx context.Context) error {
	binary := filepath.Join(s.Dir, "backstop")
	build := exec.Command("go", "build", "-o", binary, "./cmd/backstop")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building the manager: %v\n%s", err, out)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	probes := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if port, err = freePort(); err != nil {
		return err
	}
	s.Metrics = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	p, err := proc.Start(s.Dir, "backstop", binary, append([]string{
		"--leader-elect=false",
		"--metrics-bind-address=" + s.Metrics,
		"--health-probe-bind-address=" + probes,
		"--prometheus-address=" + s.Prometheus,
		"--git-cache-dir=" + filepath.Join(s.Dir, "git-cache"),
	}, s.opts.ManagerArgs...), "KUBECONFIG="+s.Env.Kubeconfig)
	if err != nil {
		return err
	}
	s.procs = append(s.procs, p)
	return proc.WaitFor(ctx, "the manager to be ready", time.Minute, p, func() error {
		if err := proc.HTTPOK("http://" + probes + "/readyz"); err != nil {
			return err
		}
		return proc.HTTPOK("http://" + s.Metrics + "/metrics")
	})
}
