package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a process has to exit after SIGTERM before it is
// killed.
const stopGrace = 10 * time.Second

// process is a program the benchmark runs, its output in <dir>/<name>.log.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// start runs bin with args. The process dies with the benchmark
// (Pdeathsig), so a crash leaves nothing behind.
func start(dir, name, bin string, args []string, env ...string) (*process, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// pid is the process's id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// running fails when the process has exited, naming its log.
func (p *process) running() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v); see %s", p.name, p.err, p.log)
	default:
		return nil
	}
}

// stop sends SIGTERM to the process group, and SIGKILL after stopGrace.
func (p *process) stop() {
	_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
}

// waitFor polls ok until it holds, the process (if any) exits, or timeout.
func waitFor(ctx context.Context, what string, timeout time.Duration, p *process, ok func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if p != nil {
			if err := p.running(); err != nil {
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

// freeAddr returns an address of 127.0.0.1 with a port that was free a
// moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// httpOK fails unless url answers 200.
func httpOK(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

// procSample is one reading of a process's memory and CPU time.
type procSample struct {
	at  time.Time
	rss int64 // VmRSS, bytes
	hwm int64 // VmHWM (peak RSS so far), bytes
	cpu float64
}

// procSampler reads /proc/<pid>/status and /proc/<pid>/stat every second.
type procSampler struct {
	pid  int
	tick float64 // clock ticks per second

	mu      sync.Mutex
	samples []procSample
}

// sampleProc starts sampling pid every second until ctx ends.
func sampleProc(ctx context.Context, pid int) *procSampler {
	s := &procSampler{pid: pid, tick: clockTicks()}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			if v, err := s.read(); err == nil {
				s.mu.Lock()
				s.samples = append(s.samples, v)
				s.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// now reads the process at once (and keeps the sample).
func (s *procSampler) now() procSample {
	v, err := s.read()
	if err != nil {
		return s.last()
	}
	s.mu.Lock()
	s.samples = append(s.samples, v)
	s.mu.Unlock()
	return v
}

func (s *procSampler) last() procSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) == 0 {
		return procSample{}
	}
	return s.samples[len(s.samples)-1]
}

// peak is the largest VmRSS sampled in [from, to].
func (s *procSampler) peak(from, to time.Time) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var peak int64
	for _, v := range s.samples {
		if !v.at.Before(from) && !v.at.After(to) && v.rss > peak {
			peak = v.rss
		}
	}
	return peak
}

func (s *procSampler) read() (procSample, error) {
	v := procSample{at: time.Now()}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		return v, err
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		kb, _ := strconv.ParseInt(fields[0], 10, 64)
		if key == "VmRSS" {
			v.rss = kb << 10
		} else {
			v.hwm = kb << 10
		}
	}
	f.Close()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.pid))
	if err != nil {
		return v, err
	}
	// The command name may hold spaces; the fields after it do not.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return v, errors.New("unreadable /proc stat")
	}
	fields := strings.Fields(string(stat[i+1:]))
	// utime and stime are fields 14 and 15 of stat(5); fields[0] is field 3.
	if len(fields) < 13 {
		return v, errors.New("short /proc stat")
	}
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	v.cpu = (utime + stime) / s.tick
	return v, nil
}

// clockTicks is the kernel's USER_HZ, the unit of utime and stime.
func clockTicks() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil && n > 0 {
			return n
		}
	}
	return 100
}

// othersRunning lists the processes of the e2e stack, the demo and other
// benchmarks, which must not run at the same time as this one.
func othersRunning() []string {
	out, _ := exec.Command("pgrep", "-af", `stack.test|test/demo|bench/reaction|go-build.*bench`).Output()
	var found []string
	self := os.Getpid()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pid, _, _ := strings.Cut(line, " ")
		if n, err := strconv.Atoi(pid); line == "" || err != nil || n == self || n == os.Getppid() {
			continue
		}
		found = append(found, line)
	}
	return found
}

// cpuByProcess reads the CPU seconds (utime+stime) of this program and of
// each of its child processes (the control plane, kwok, Prometheus, the
// manager...), summed by command name.
func cpuByProcess(tick float64) map[string]float64 {
	out := map[string]float64{}
	self := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		lp, rp := strings.IndexByte(string(stat), '('), strings.LastIndexByte(string(stat), ')')
		if lp < 0 || rp < lp {
			continue
		}
		name := string(stat[lp+1 : rp])
		fields := strings.Fields(string(stat[rp+1:]))
		if len(fields) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		switch {
		case pid == self:
			name = "bench"
		case ppid != self:
			continue
		}
		utime, _ := strconv.ParseFloat(fields[11], 64)
		stime, _ := strconv.ParseFloat(fields[12], 64)
		out[name] += (utime + stime) / tick
	}
	return out
}

// machineCPU reads the busy and total CPU seconds of the whole machine
// from /proc/stat.
func machineCPU(tick float64) (busy, total float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	for i, f := range fields[1:] {
		v, _ := strconv.ParseFloat(f, 64)
		total += v
		// idle and iowait are the 4th and 5th values.
		if i != 3 && i != 4 {
			busy += v
		}
	}
	return busy / tick, total / tick
}
