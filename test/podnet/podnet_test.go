package podnet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	neturl "net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"backstop.dev/backstop/test/testenv"
)

// env is the control plane of the Runner tests; nil when podnet cannot work
// here, and every test that needs namespaces skips.
var env *testenv.Env

// The test binary doubles as the processes the tests run in sandboxes: with
// PODNET_HELPER set it plays that part instead of running the tests.
func TestMain(m *testing.M) {
	if mode := os.Getenv("PODNET_HELPER"); mode != "" {
		os.Exit(helper(mode))
	}
	if Available() != nil {
		os.Exit(m.Run())
	}
	testenv.Main(m, &env)
}

// helper is the main of the test binary run as a helper process:
//
//	serve   an HTTP server on PODNET_LISTEN that answers "<PODNET_NAME> <PODNET_LISTEN>",
//	        and exits with status 3 after answering /exit
//	get     a GET of PODNET_URL that succeeds when it answers 200
//	signal  a program that takes network PODNET_NAME with PODNET_PREFIX up,
//	        serves on its address .2, prints "ready <server pid>" and waits for
//	        a signal, with CleanupOnSignal
func helper(mode string) int {
	switch mode {
	case "serve":
		listen, name := os.Getenv("PODNET_LISTEN"), os.Getenv("PODNET_NAME")
		mux := http.NewServeMux()
		mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, "%s %s", name, listen)
		})
		mux.HandleFunc("/exit", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintln(w, "exiting")
			go func() {
				time.Sleep(50 * time.Millisecond)
				os.Exit(3)
			}()
		})
		err := http.ListenAndServe(listen, mux)
		fmt.Fprintln(os.Stderr, "serve:", err)
		return 1
	case "get":
		code, body, err := get(os.Getenv("PODNET_URL"))
		if err != nil || code != http.StatusOK {
			fmt.Fprintln(os.Stderr, "get:", code, body, err)
			return 1
		}
		return 0
	case "signal":
		n := &Network{Name: os.Getenv("PODNET_NAME"), Prefix: netip.MustParsePrefix(os.Getenv("PODNET_PREFIX"))}
		if err := n.Up(); err != nil {
			fmt.Fprintln(os.Stderr, "signal:", err)
			return 1
		}
		CleanupOnSignal(n)
		ip := addr(n, 2)
		sb, err := n.Attach(ip, "a")
		if err != nil {
			fmt.Fprintln(os.Stderr, "signal:", err)
			return 1
		}
		p, err := sb.Start(context.Background(), helperCmd("serve", "PODNET_LISTEN="+ip.String()+":8080"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "signal:", err)
			return 1
		}
		fmt.Printf("ready %d\n", p.Pid())
		select {}
	}
	fmt.Fprintln(os.Stderr, "unknown helper", mode)
	return 2
}

// helperCmd runs the test binary as the helper mode, with env added to the
// environment.
func helperCmd(mode string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), append([]string{"PODNET_HELPER=" + mode}, env...)...)
	cmd.Stderr = os.Stderr
	return cmd
}

// client does not keep connections alive: servers come and go.
var httpClient = &http.Client{
	Timeout:   2 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// get GETs url, from the host only when a test bridge or lo routes its
// address: tests send nothing off this machine, as a pod IP without its
// bridge would go to the default gateway. (Inside a sandbox the host, which
// does not forward, is as far as anything goes.)
func get(url string) (int, string, error) {
	if os.Getenv("PODNET_HELPER") == "" {
		if err := mustStayHere(url); err != nil {
			return 0, "", err
		}
	}
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

var testBridge = regexp.MustCompile(`^t[a-z0-9]{3}br0$`)

func mustStayHere(rawURL string) error {
	u, err := neturl.Parse(rawURL)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(u.Hostname())
	if err != nil {
		return fmt.Errorf("%s: the tests GET IP addresses only", rawURL)
	}
	if ip.IsLoopback() {
		return nil
	}
	out, err := ipCmd("-j", "route", "get", ip.String())
	if err != nil {
		return err
	}
	var routes []struct {
		Dev string `json:"dev"`
	}
	if err := unmarshal(out, &routes); err != nil {
		return err
	}
	if len(routes) == 0 || (routes[0].Dev != "lo" && !testBridge.MatchString(routes[0].Dev)) {
		return fmt.Errorf("refusing to GET %s: it routes off this machine (%s)", rawURL, strings.TrimSpace(out))
	}
	return nil
}

// requireNet skips the test where network namespaces cannot be made.
func requireNet(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("skipping: %v (run the tests as root with iproute2 installed)", err)
	}
}

var (
	subnetsMu sync.Mutex
	subnets   = map[int]bool{}
)

// pickNetwork returns a network with a name of its own ("t" and three random
// characters) and a free /24 of 10.231.0.0/16, and takes it down when the
// test ends, checking nothing is left.
func pickNetwork(t *testing.T) *Network {
	t.Helper()
	requireNet(t)
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789"
	name := "t"
	for range 3 {
		name += string(chars[rand.IntN(len(chars))])
	}
	subnetsMu.Lock()
	defer subnetsMu.Unlock()
	for range 100 {
		x := rand.IntN(256)
		if subnets[x] {
			continue
		}
		n := &Network{Name: name, Prefix: netip.MustParsePrefix(fmt.Sprintf("10.231.%d.0/24", x))}
		if n.checkOverlap() != nil {
			continue
		}
		subnets[x] = true
		t.Cleanup(func() {
			if err := n.Down(); err != nil {
				t.Errorf("taking network %s down: %v", n.Name, err)
			}
			mustHaveNothing(t, n)
		})
		return n
	}
	t.Fatal("no free /24 in 10.231.0.0/16")
	return nil
}

// newNetwork is a pickNetwork that is up.
func newNetwork(t *testing.T) *Network {
	t.Helper()
	n := pickNetwork(t)
	if err := n.Up(); err != nil {
		t.Fatal(err)
	}
	return n
}

// addr is the address at offset i of the network's prefix.
func addr(n *Network, i int) netip.Addr {
	a := n.Prefix.Masked().Addr()
	for range i {
		a = a.Next()
	}
	return a
}

func attach(t *testing.T, n *Network, ip netip.Addr, id string) *Sandbox {
	t.Helper()
	sb, err := n.Attach(ip, id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Errorf("closing sandbox %s: %v", sb.Name, err)
		}
	})
	return sb
}

// serve runs the serve helper in the sandbox on port 8080 of its IP.
func serve(t *testing.T, sb *Sandbox, name string) *Process {
	t.Helper()
	p, err := sb.Start(t.Context(), helperCmd("serve", "PODNET_LISTEN="+sb.IP.String()+":8080", "PODNET_NAME="+name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// mustServe waits until url answers 200 with a body that contains want.
func mustServe(t *testing.T, url, want string) {
	t.Helper()
	var last string
	deadline := time.Now().Add(testenv.Timeout)
	for time.Now().Before(deadline) {
		code, body, err := get(url)
		if err == nil && code == http.StatusOK && strings.Contains(body, want) {
			return
		}
		last = fmt.Sprintf("%d %q %v", code, body, err)
		time.Sleep(testenv.Poll)
	}
	t.Fatalf("GET %s: want 200 with %q, last got %s", url, want, last)
}

// runIn runs a helper in the sandbox and fails the test unless it succeeds.
func runIn(t *testing.T, sb *Sandbox, mode string, env ...string) {
	t.Helper()
	p, err := sb.Start(t.Context(), helperCmd(mode, env...))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
		if err := p.Err(); err != nil {
			t.Fatalf("%s %v in %s: %v", mode, env, sb.Name, err)
		}
	case <-time.After(testenv.Timeout):
		t.Fatalf("%s %v in %s: still running after %s", mode, env, sb.Name, testenv.Timeout)
	}
}

func mustExit(t *testing.T, p *Process, what string) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(testenv.Timeout):
		t.Fatalf("%s: process %d still running after %s", what, p.Pid(), testenv.Timeout)
	}
}

func resources(t *testing.T, n *Network) []string {
	t.Helper()
	r, err := n.Resources()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustHaveNothing(t *testing.T, n *Network) {
	t.Helper()
	if r := resources(t, n); len(r) > 0 {
		t.Errorf("network %s left %v behind", n.Name, r)
	}
}

func ipOrFail(t *testing.T, args ...string) string {
	t.Helper()
	out, err := ipCmd(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSandboxesServeTheHostAndEachOther(t *testing.T) {
	t.Parallel()
	n := newNetwork(t)
	a := attach(t, n, addr(n, 2), "a")
	b := attach(t, n, addr(n, 3), "b")
	pa, pb := serve(t, a, "a"), serve(t, b, "b")

	mustServe(t, "http://"+a.IP.String()+":8080/", "a "+a.IP.String())
	mustServe(t, "http://"+b.IP.String()+":8080/", "b "+b.IP.String())

	// A pod reaches another pod, and the host on the bridge address.
	host, err := net.Listen("tcp", n.Gateway().String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "host") })}
	go srv.Serve(host) //nolint:errcheck
	t.Cleanup(func() { srv.Close() })
	runIn(t, a, "get", "PODNET_URL=http://"+b.IP.String()+":8080/")
	runIn(t, b, "get", "PODNET_URL=http://"+host.Addr().String()+"/")

	want := []string{"link/" + n.Bridge(), "link/" + a.Name, "link/" + b.Name, "netns/" + a.Name, "netns/" + b.Name}
	got := resources(t, n)
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("resources of network %s: got %v, want %v", n.Name, got, want)
	}

	if err := n.Down(); err != nil {
		t.Fatal(err)
	}
	mustExit(t, pa, "after Down")
	mustExit(t, pb, "after Down")
	mustHaveNothing(t, n)
	// No GET now: without the bridge, the pod IPs route to the default
	// gateway, off this machine.
}

func TestUpRemovesWhatACrashedRunLeft(t *testing.T) {
	t.Parallel()
	n := pickNetwork(t)
	stale := n.Name + "-old"
	ipOrFail(t, "link", "add", "name", n.Bridge(), "type", "bridge")
	ipOrFail(t, "netns", "add", stale)
	ipOrFail(t, "link", "add", stale, "type", "veth", "peer", "name", "eth0", "netns", stale)
	ipOrFail(t, "link", "add", n.Name+"-x1", "type", "veth", "peer", "name", n.Name+"-x2")
	// An orphan from the crashed run, still holding its namespace.
	path, _ := ipPath()
	orphan := exec.Command(path, "netns", "exec", stale, "sleep", "600")
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- orphan.Wait() }()
	t.Cleanup(func() { _ = orphan.Process.Kill() })
	if got := resources(t, n); len(got) != 5 {
		t.Fatalf("leftovers of network %s: got %v, want 5", n.Name, got)
	}

	if err := n.Up(); err != nil {
		t.Fatal(err)
	}
	if got, want := resources(t, n), []string{"link/" + n.Bridge()}; !slices.Equal(got, want) {
		t.Errorf("after Up, network %s: got %v, want %v", n.Name, got, want)
	}
	select {
	case <-exited:
	case <-time.After(testenv.Timeout):
		t.Errorf("the orphan in %s survived Up", stale)
	}

	sb := attach(t, n, addr(n, 9), "new")
	serve(t, sb, "new")
	mustServe(t, "http://"+sb.IP.String()+":8080/", "new")

	// Down alone removes a stale namespace too.
	ipOrFail(t, "netns", "add", stale)
	if err := n.Down(); err != nil {
		t.Fatal(err)
	}
	mustHaveNothing(t, n)
}

func TestAttachReplacesTheSandboxOfTheSameID(t *testing.T) {
	t.Parallel()
	n := newNetwork(t)
	ip := addr(n, 4)
	old := attach(t, n, ip, "x")
	pOld := serve(t, old, "old")
	mustServe(t, "http://"+ip.String()+":8080/", "old")

	sb := attach(t, n, ip, "x")
	mustExit(t, pOld, "the process of the replaced sandbox")
	serve(t, sb, "new")
	mustServe(t, "http://"+ip.String()+":8080/", "new")

	// Closing the replaced sandbox leaves its successor alone.
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	mustServe(t, "http://"+ip.String()+":8080/", "new")

	if err := sb.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sb.Close(); err != nil {
		t.Errorf("closing twice: %v", err)
	}
	if _, err := sb.Start(t.Context(), helperCmd("serve")); err == nil {
		t.Error("a closed sandbox started a process")
	}
	if got, want := resources(t, n), []string{"link/" + n.Bridge()}; !slices.Equal(got, want) {
		t.Errorf("after Close, network %s: got %v, want %v", n.Name, got, want)
	}
}

func TestStopKillsTheProcessGroup(t *testing.T) {
	t.Parallel()
	n := newNetwork(t)
	sb := attach(t, n, addr(n, 2), "g")
	// A shell that ignores SIGTERM, as its child in the same group does.
	cmd := exec.Command("sh", "-c", `trap "" TERM; sleep 600 & echo $!; wait`)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p, err := sb.Start(t.Context(), cmd)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("shell said %q", line)
	}
	start := time.Now()
	p.Stop()
	if took := time.Since(start); took < StopGrace {
		t.Errorf("Stop took %s; the shell ignores SIGTERM, so want SIGKILL after %s", took, StopGrace)
	}
	mustExit(t, p, "after Stop")
	// SIGKILL takes effect when the child next runs.
	testenv.Eventually(t, "the shell's child killed", func() bool { return !alive(child) })
}

// startSignalHelper runs the signal helper for network n and returns it
// with the pid of the server it runs in a sandbox, once that answers.
func startSignalHelper(t *testing.T, n *Network) (*exec.Cmd, int) {
	t.Helper()
	cmd := helperCmd("signal", "PODNET_NAME="+n.Name, "PODNET_PREFIX="+n.Prefix.String())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the helper's ready line: %v", err)
	}
	server, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(line), "ready "))
	if err != nil {
		t.Fatalf("helper said %q", line)
	}
	mustServe(t, "http://"+addr(n, 2).String()+":8080/", addr(n, 2).String())
	if got := resources(t, n); len(got) != 3 {
		t.Fatalf("network %s while the helper runs: got %v, want bridge, netns and veth", n.Name, got)
	}
	return cmd, server
}

func TestCleanupOnSignal(t *testing.T) {
	t.Parallel()
	n := pickNetwork(t)
	cmd, server := startSignalHelper(t, n)

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || !exit.Sys().(syscall.WaitStatus).Signaled() || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGINT {
		t.Errorf("helper exited with %v, want death by SIGINT", err)
	}
	mustHaveNothing(t, n)
	if alive(server) {
		t.Errorf("the helper's server, process %d, survived", server)
	}
}

func TestSandboxedProcessesDieWithTheProgram(t *testing.T) {
	t.Parallel()
	n := pickNetwork(t)
	cmd, server := startSignalHelper(t, n)

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	testenv.Eventually(t, "the server killed by its parent's death", func() bool { return !alive(server) })
	// Namespaces and links stay, for the next Up or Down to remove.
	if got := resources(t, n); len(got) != 3 {
		t.Errorf("network %s after SIGKILL: got %v, want bridge, netns and veth", n.Name, got)
	}
	if err := n.Down(); err != nil {
		t.Fatal(err)
	}
	mustHaveNothing(t, n)
}

// alive says whether process pid exists and is not a zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestSandboxNamesFitLinkNames(t *testing.T) {
	for _, tc := range []struct {
		net, id, want string
	}{
		{"bs", "7", "bs-7"},
		{"bs", "Web_1", "bs-web-1"},
		{"bs", "twelve-chars", "bs-twelve-chars"},
		{"bs", "thirteen-char", ""}, // hashed, see below
		{"abcdefgh", "123456", "abcdefgh-123456"},
		{"abcdefgh", "1234567", ""},
		{"bs", "0b0c9a8e-3f4d-4a5b-9c6d-7e8f9a0b1c2d", ""},
	} {
		n := &Network{Name: tc.net, Prefix: netip.MustParsePrefix("10.244.0.0/24")}
		got, err := n.sandboxName(tc.id)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) > maxLinkName || !strings.HasPrefix(got, tc.net+"-") {
			t.Errorf("sandbox name of %q in %s: %q is not %s-… of at most %d bytes", tc.id, tc.net, got, tc.net, maxLinkName)
		}
		if tc.want != "" && got != tc.want {
			t.Errorf("sandbox name of %q in %s: got %q, want %q", tc.id, tc.net, got, tc.want)
		}
		if again, _ := n.sandboxName(tc.id); again != got {
			t.Errorf("sandbox name of %q changed: %q then %q", tc.id, got, again)
		}
	}
	a, _ := (&Network{Name: "bs"}).sandboxName("pod-aaaaaaaaaaaaaaaa-1")
	b, _ := (&Network{Name: "bs"}).sandboxName("pod-aaaaaaaaaaaaaaaa-2")
	if a == b {
		t.Errorf("two long ids share the sandbox name %q", a)
	}
}

func TestNetworkRejectsWhatCannotWork(t *testing.T) {
	for _, n := range []Network{
		{Name: "", Prefix: netip.MustParsePrefix("10.244.0.0/24")},
		{Name: "b-s", Prefix: netip.MustParsePrefix("10.244.0.0/24")},
		{Name: "toolongname", Prefix: netip.MustParsePrefix("10.244.0.0/24")},
		{Name: "1bs", Prefix: netip.MustParsePrefix("10.244.0.0/24")},
		{Name: "bs", Prefix: netip.MustParsePrefix("fd00::/64")},
		{Name: "bs", Prefix: netip.MustParsePrefix("10.244.0.0/31")},
		{Name: "bs"},
	} {
		if err := n.validate(); err == nil {
			t.Errorf("network %q %s: valid, want an error", n.Name, n.Prefix)
		}
	}
	n := &Network{Name: "bs", Prefix: netip.MustParsePrefix("10.244.0.0/24")}
	for _, ip := range []string{"10.244.0.0", "10.244.0.1", "10.244.0.255", "10.245.0.7", "fd00::7"} {
		if err := n.checkPodIP(netip.MustParseAddr(ip)); err == nil {
			t.Errorf("pod IP %s in %s: accepted, want an error", ip, n.Prefix)
		}
	}
	if err := n.checkPodIP(netip.MustParseAddr("10.244.0.2")); err != nil {
		t.Error(err)
	}
}
