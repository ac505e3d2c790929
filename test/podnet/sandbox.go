package podnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// StopGrace is how long Stop waits after SIGTERM before it sends SIGKILL.
const StopGrace = 3 * time.Second

// Sandbox is the network namespace of one pod IP, made by Network.Attach.
type Sandbox struct {
	// Name is the name of the network namespace, and of the host end of the
	// veth pair.
	Name string
	// IP is the pod IP, held by eth0 inside the namespace.
	IP netip.Addr

	// ino identifies the namespace, which a later Attach with the same id
	// replaces.
	ino uint64

	mu     sync.Mutex
	procs  map[*Process]struct{}
	closed bool
}

// Start runs cmd inside the sandbox's network namespace, through
// `ip netns exec`, in a process group of its own that Stop kills as a whole.
// cmd is built as usual (exec.Command, with Env, Dir, Stdout and so on) and
// must not have been started; Start rewrites its Path and Args. The process
// is stopped when ctx is done, and dies with SIGKILL if this program dies
// first.
func (s *Sandbox) Start(ctx context.Context, cmd *exec.Cmd) (*Process, error) {
	if cmd.Err != nil {
		return nil, cmd.Err
	}
	if cmd.Process != nil {
		return nil, errors.New("podnet: command already started")
	}
	ip, err := ipPath()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("podnet: sandbox %s is closed", s.Name)
	}
	args := cmd.Args
	if len(args) == 0 {
		args = []string{cmd.Path}
	}
	cmd.Args = append([]string{ip, "netns", "exec", s.Name, cmd.Path}, args[1:]...)
	cmd.Path = ip
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if cmd.WaitDelay == 0 {
		// Children that keep the output pipes open must not make Wait hang.
		cmd.WaitDelay = time.Second
	}
	if err := startOnLockedThread(cmd); err != nil {
		return nil, fmt.Errorf("podnet: starting %s in %s: %w", args[0], s.Name, err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	s.procs[p] = struct{}{}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
		s.mu.Lock()
		delete(s.procs, p)
		s.mu.Unlock()
	}()
	go func() {
		select {
		case <-ctx.Done():
			p.Stop()
		case <-p.done:
		}
	}()
	return p, nil
}

// Stop stops every process started in the sandbox and waits for them.
func (s *Sandbox) Stop() {
	s.mu.Lock()
	procs := make([]*Process, 0, len(s.procs))
	for p := range s.procs {
		procs = append(procs, p)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(p.Stop)
	}
	wg.Wait()
}

// Close stops the sandbox's processes, kills whatever else runs in its
// namespace, and removes the namespace and the veth pair. Closing twice is
// fine; a closed sandbox starts nothing. Closing a sandbox that a later
// Attach with the same id replaced leaves the new one alone.
func (s *Sandbox) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.Stop()
	ino, err := namespaceInode(s.Name)
	if err != nil {
		return err
	}
	if ino != 0 && ino != s.ino {
		return nil
	}
	return removeSandbox(s.Name)
}

// Process is a command running in a sandbox.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Pid is the process id, which is also its process group id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is what exec.Cmd.Wait returned, once Done is closed.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Stop sends SIGTERM to the process group, SIGKILL after StopGrace, and
// waits until the process has exited. What is left of the group then gets
// SIGKILL too.
func (p *Process) Stop() {
	pgid := p.cmd.Process.Pid
	select {
	case <-p.done:
	default:
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(StopGrace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// spawn runs functions on one OS thread that never exits. Pdeathsig fires
// when the thread that forked a child exits, not the process, and Go may end
// threads; forking from this thread makes it fire only when the program
// dies.
var spawn = sync.OnceValue(func() chan<- func() {
	ch := make(chan func())
	go func() {
		runtime.LockOSThread() // and never unlock: the thread lives as long as the program
		for f := range ch {
			f()
		}
	}()
	return ch
})

func startOnLockedThread(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	spawn() <- func() { errc <- cmd.Start() }
	return <-errc
}
