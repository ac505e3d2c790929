package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"backstop.dev/backstop/test/proc"
)

var (
	managerOnce sync.Once
	managerBin  string
	managerErr  error
)

// ManagerBinary builds the manager (./cmd/backstop) of this repository once
// per test binary or program, into a folder of its own under the system's
// temporary folder, and returns its path. Tests and programs that must kill
// the manager for real (SIGKILL), or run several, start this binary.
func ManagerBinary() (string, error) {
	managerOnce.Do(func() {
		dir, err := os.MkdirTemp("", "backstop-manager-")
		if err != nil {
			managerErr = err
			return
		}
		managerBin = filepath.Join(dir, "backstop")
		build := exec.Command("go", "build", "-o", managerBin, "./cmd/backstop")
		build.Dir = RepoRoot()
		if out, err := build.CombinedOutput(); err != nil {
			managerErr = fmt.Errorf("building the manager: %v\n%s", err, out)
		}
	})
	return managerBin, managerErr
}

// Manager is the manager binary running as a process against an Env.
type Manager struct {
	*proc.Process
	// Metrics is the address of its metrics endpoint (/metrics).
	Metrics string
	// Probes is the address of its /healthz and /readyz.
	Probes string
}

// StartManager starts the manager binary (ManagerBinary) against e as the
// process called name, logging to <dir>/<name>.log (appended to across
// restarts), and waits until it is ready. It listens on free loopback ports,
// keeps its Git clones in <dir>/<name>.git-cache, and gets args after those
// defaults, so an arg such as --leader-elect=true overrides the default
// --leader-elect=false. The test's cleanup stops it.
func (e *Env) StartManager(t testing.TB, dir, name string, args ...string) *Manager {
	t.Helper()
	m, err := e.RunManager(context.Background(), dir, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return m
}

// RunManager is StartManager for a program: it returns an error instead of
// failing a test, and the caller stops the manager.
func (e *Env) RunManager(ctx context.Context, dir, name string, args ...string) (*Manager, error) {
	binary, err := ManagerBinary()
	if err != nil {
		return nil, err
	}
	m := &Manager{}
	if m.Probes, err = proc.FreeAddr(); err != nil {
		return nil, err
	}
	if m.Metrics, err = proc.FreeAddr(); err != nil {
		return nil, err
	}
	all := append([]string{
		"--leader-elect=false",
		"--metrics-bind-address=" + m.Metrics,
		"--health-probe-bind-address=" + m.Probes,
		"--git-cache-dir=" + filepath.Join(dir, name+".git-cache"),
	}, args...)
	if m.Process, err = proc.Start(dir, name, binary, all, "KUBECONFIG="+e.Kubeconfig); err != nil {
		return nil, err
	}
	err = proc.WaitFor(ctx, name+" to be ready", time.Minute, m.Process, func() error {
		return errors.Join(proc.HTTPOK("http://"+m.Probes+"/readyz"), proc.HTTPOK("http://"+m.Metrics+"/metrics"))
	})
	if err != nil {
		m.Stop()
		return nil, err
	}
	return m, nil
}
