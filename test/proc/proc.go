// Package proc runs the programs of the local stack and the benchmarks as
// child processes: each with its output in a log file, in its own process
// group, and killed with the program that started it (Pdeathsig), so a
// crashed demo or benchmark leaves nothing behind.
package proc

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// stopGrace is how long a process has to exit after SIGTERM before it is
// killed.
const stopGrace = 10 * time.Second

// Process is a running program, its output in <dir>/<name>.log.
type Process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// Start runs bin with args, its standard output and error going to
// <dir>/<name>.log, with env added to this program's environment.
//
// Each process gets its own TMPDIR, <dir>/<name>.tmp: programs may clean
// their temporary directory as they start (kustomize-controller removes every
// /tmp/kustomization-* it finds), and with a shared /tmp one test's program
// would delete the files another test's program is working on.
func Start(dir, name, bin string, args []string, env ...string) (*Process, error) {
	tmp := filepath.Join(dir, name+".tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(append(os.Environ(), "TMPDIR="+tmp), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// Log is the path of the process's log file.
func (p *Process) Log() string { return p.log }

// Pid is the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Running fails when the process has exited, naming its log.
func (p *Process) Running() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v); see %s", p.name, p.err, p.log)
	default:
		return nil
	}
}

// Stop sends SIGTERM to the process group, and SIGKILL after stopGrace. A
// nil Process is already stopped.
func (p *Process) Stop() {
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Kill sends SIGKILL to the process group, as the kernel's OOM killer or a
// node failure would end it, and waits until the process is gone. A nil
// Process is already gone.
func (p *Process) Kill() {
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// WaitFor polls ok until it holds, the process (if any) exits, or timeout.
func WaitFor(ctx context.Context, what string, timeout time.Duration, p *Process, ok func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if p != nil {
			if err := p.Running(); err != nil {
				return err
			}
		}
		if last = ok(); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %v)", what, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// HTTPOK fails unless url answers 200 within 2 seconds.
func HTTPOK(url string) error {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return nil
}

// FreeAddr returns an address of 127.0.0.1 with a port that was free a
// moment ago, for a program to listen on.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
