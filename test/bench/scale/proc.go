package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

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
