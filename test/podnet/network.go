// Package podnet gives the pods of the end-to-end stack real addresses: each
// pod that must serve traffic runs as a process inside its own Linux network
// namespace, holding the pod IP that kwok assigned, on a bridge in the root
// namespace. Kubernetes refuses loopback endpoint addresses, so this is how
// Traefik and Prometheus, running in the root namespace, reach "pods".
//
// It drives the ip(8) command of iproute2 and needs root.
//
//	n := &podnet.Network{Prefix: netip.MustParsePrefix("10.244.0.0/24"), Name: "bs"}
//	if err := n.Up(); err != nil { ... }       // bridge bsbr0 with 10.244.0.1/24
//	defer n.Down()                              // every bs-* namespace and link, and bsbr0
//	stop := podnet.CleanupOnSignal(n)           // the same on SIGINT and SIGTERM
//	defer stop()
//
//	sb, err := n.Attach(netip.MustParseAddr("10.244.0.7"), "7") // netns bs-7
//	p, err := sb.Start(ctx, exec.Command("/path/to/server", "--listen", "10.244.0.7:8080"))
//	...
//	sb.Close()
//
// A Runner does the Attach and Start for every pod that the API server binds
// to a node, and the Close when the pod goes away.
//
// # Names
//
// Everything a Network makes is named after Network.Name, which is what
// lets Down find what an earlier, crashed run left behind:
//
//	<name>br0     the bridge, in the root namespace, holding the prefix's first address
//	<name>-<id>   a sandbox's network namespace, and the host end of its veth pair
//	eth0          the pod end of the pair, inside the namespace
//
// Linux link names have at most 15 bytes, so Name has at most 8 lowercase
// letters and digits, and an id longer than what remains is shortened with a
// hash. Name holds no "-", so one network's names never start with another's
// "<name>-".
//
// # Addresses
//
// The host reaches the pods directly on the bridge, and pods reach each other
// through it, so neither needs net.ipv4.ip_forward. The bridge and every pod
// end get MAC addresses derived from their IPv4 addresses (0a:58:<ip>, as the
// CNI bridge plugin does): a bridge otherwise takes the lowest MAC of its
// ports, and a sandbox recreated with a new random MAC, so neighbour caches on
// either side would point at addresses that no longer exist for seconds.
package podnet

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// maxLinkName is the longest name a Linux network interface can have
// (IFNAMSIZ is 16, with the terminating NUL).
const maxLinkName = 15

// podLink is the name of a sandbox's interface inside its namespace.
const podLink = "eth0"

// Network is a bridge in the root network namespace with a sandbox for each
// pod IP attached to it.
type Network struct {
	// Prefix is the IPv4 pod CIDR, for example 10.244.0.0/24. Its first
	// address belongs to the bridge and is every pod's default gateway.
	Prefix netip.Prefix
	// Name starts the name of every namespace and link the network makes: 1
	// to 8 lowercase letters and digits, starting with a letter.
	Name string
}

var validName = regexp.MustCompile(`^[a-z][a-z0-9]{0,7}$`)

func (n *Network) validate() error {
	if !validName.MatchString(n.Name) {
		return fmt.Errorf("podnet: network name %q is not 1 to 8 lowercase letters and digits starting with a letter", n.Name)
	}
	if !n.Prefix.IsValid() || !n.Prefix.Addr().Is4() {
		return fmt.Errorf("podnet: network %s: prefix %s is not an IPv4 prefix", n.Name, n.Prefix)
	}
	if b := n.Prefix.Bits(); b < 8 || b > 30 {
		return fmt.Errorf("podnet: network %s: prefix %s must be /8 to /30", n.Name, n.Prefix)
	}
	return nil
}

// Bridge is the name of the network's bridge.
func (n *Network) Bridge() string { return n.Name + "br0" }

// Gateway is the bridge's address: the first address of the prefix.
func (n *Network) Gateway() netip.Addr { return n.Prefix.Masked().Addr().Next() }

// offset is the position of ip in the prefix: 7 for 10.244.0.7 in
// 10.244.0.0/24.
func (n *Network) offset(ip netip.Addr) uint32 {
	a, b := ip.As4(), n.Prefix.Masked().Addr().As4()
	return binary.BigEndian.Uint32(a[:]) - binary.BigEndian.Uint32(b[:])
}

// checkPodIP says whether ip can be a pod's address: inside the prefix, and
// neither the network, the gateway nor the broadcast address.
func (n *Network) checkPodIP(ip netip.Addr) error {
	if !ip.Is4() || !n.Prefix.Contains(ip) {
		return fmt.Errorf("podnet: %s is not an IPv4 address in %s", ip, n.Prefix)
	}
	last := uint32(1)<<(32-n.Prefix.Bits()) - 1
	switch n.offset(ip) {
	case 0, 1, last:
		return fmt.Errorf("podnet: %s is the network, gateway or broadcast address of %s", ip, n.Prefix)
	}
	return nil
}

// sandboxName is the name of the namespace and of the host link of the
// sandbox id: "<name>-<id>", with id reduced to lowercase letters, digits
// and "-", and shortened with a hash of the original when too long.
func (n *Network) sandboxName(id string) (string, error) {
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r - 'A' + 'a'
		}
		return '-'
	}, id)
	if clean == "" {
		return "", fmt.Errorf("podnet: empty sandbox id")
	}
	room := maxLinkName - len(n.Name) - 1
	if len(clean) > room {
		h := fnv.New32a()
		h.Write([]byte(id))
		sum := strconv.FormatUint(uint64(h.Sum32()), 36)
		if len(sum) > room-1 {
			sum = sum[:room-1]
		}
		clean = clean[:room-len(sum)-1] + "-" + sum
	}
	return n.Name + "-" + clean, nil
}

// mac is the MAC address of the interface holding ip: 0a:58 (locally
// administered, unicast) followed by the four bytes of ip.
func mac(ip netip.Addr) string {
	a := ip.As4()
	return fmt.Sprintf("0a:58:%02x:%02x:%02x:%02x", a[0], a[1], a[2], a[3])
}

// Up creates the bridge with the prefix's first address, after removing
// whatever the network's name left behind (see Down). It fails when another
// interface already routes an overlapping prefix.
func (n *Network) Up() error {
	if err := n.validate(); err != nil {
		return err
	}
	if err := n.Down(); err != nil {
		return err
	}
	if err := n.checkOverlap(); err != nil {
		return err
	}
	br := n.Bridge()
	steps := [][]string{
		{"link", "add", "name", br, "address", mac(n.Gateway()), "type", "bridge"},
		{"addr", "add", netip.PrefixFrom(n.Gateway(), n.Prefix.Bits()).String(), "dev", br},
		{"link", "set", br, "up"},
	}
	for _, s := range steps {
		if _, err := ipCmd(s...); err != nil {
			_ = n.Down()
			return fmt.Errorf("podnet: creating bridge %s: %w", br, err)
		}
	}
	return nil
}

// checkOverlap fails when a route of the main table on a link other than
// the bridge overlaps the prefix: the pods would not be reachable, or
// something else would not be.
func (n *Network) checkOverlap() error {
	out, err := ipCmd("-j", "-4", "route", "show")
	if err != nil {
		return err
	}
	var routes []struct {
		Dst string `json:"dst"`
		Dev string `json:"dev"`
	}
	if err := unmarshal(out, &routes); err != nil {
		return fmt.Errorf("podnet: reading routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == "default" || r.Dev == n.Bridge() {
			continue
		}
		p, err := netip.ParsePrefix(r.Dst)
		if err != nil {
			a, err := netip.ParseAddr(r.Dst)
			if err != nil {
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Overlaps(n.Prefix) {
			return fmt.Errorf("podnet: network %s: prefix %s overlaps route %s on %s", n.Name, n.Prefix, r.Dst, r.Dev)
		}
	}
	return nil
}

// Down removes everything named after the network, whether this process or
// an earlier one made it: it kills the processes in each "<name>-*" network
// namespace, deletes the namespaces, the "<name>-*" links and the bridge.
// Down on a network that is not up does nothing.
func (n *Network) Down() error {
	if err := n.validate(); err != nil {
		return err
	}
	var errs []error
	nss, err := n.namespaces()
	errs = append(errs, err)
	for _, ns := range nss {
		errs = append(errs, removeSandbox(ns))
	}
	links, err := n.links()
	errs = append(errs, err)
	for _, l := range links {
		errs = append(errs, deleteLink(l))
	}
	return errors.Join(errs...)
}

// Resources lists what exists with the network's names, as "netns/<name>" and
// "link/<name>": nothing after Down.
func (n *Network) Resources() ([]string, error) {
	if err := n.validate(); err != nil {
		return nil, err
	}
	nss, err := n.namespaces()
	if err != nil {
		return nil, err
	}
	links, err := n.links()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ns := range nss {
		out = append(out, "netns/"+ns)
	}
	for _, l := range links {
		out = append(out, "link/"+l)
	}
	return out, nil
}

// namespaces lists the network namespaces named "<name>-*".
func (n *Network) namespaces() ([]string, error) {
	out, err := ipCmd("netns", "list")
	if err != nil {
		return nil, err
	}
	var nss []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], n.Name+"-") {
			nss = append(nss, f[0])
		}
	}
	return nss, nil
}

// links lists the links of the root namespace named "<name>-*", and the
// bridge.
func (n *Network) links() ([]string, error) {
	out, err := ipCmd("-j", "link", "show")
	if err != nil {
		return nil, err
	}
	var links []struct {
		Name string `json:"ifname"`
	}
	if err := unmarshal(out, &links); err != nil {
		return nil, fmt.Errorf("podnet: reading links: %w", err)
	}
	var names []string
	for _, l := range links {
		if strings.HasPrefix(l.Name, n.Name+"-") || l.Name == n.Bridge() {
			names = append(names, l.Name)
		}
	}
	return names, nil
}

// Attach creates the sandbox of podIP: network namespace "<name>-<id>" with
// a veth pair whose host end "<name>-<id>" is on the bridge and whose other
// end, eth0, holds podIP, with lo up and a default route via the bridge. An
// existing sandbox with the same id is removed first, with its processes.
// The network must be up.
//
// Two sandboxes must not share an IP; a Runner uses ids derived from the IP
// so that they cannot.
func (n *Network) Attach(podIP netip.Addr, id string) (*Sandbox, error) {
	if err := n.validate(); err != nil {
		return nil, err
	}
	if err := n.checkPodIP(podIP); err != nil {
		return nil, err
	}
	name, err := n.sandboxName(id)
	if err != nil {
		return nil, err
	}
	if _, err := ipCmd("link", "show", "dev", n.Bridge()); err != nil {
		return nil, fmt.Errorf("podnet: bridge %s is missing; call Up first: %w", n.Bridge(), err)
	}
	if err := removeSandbox(name); err != nil {
		return nil, err
	}
	addr := netip.PrefixFrom(podIP, n.Prefix.Bits()).String()
	steps := [][]string{
		{"netns", "add", name},
		{"link", "add", name, "type", "veth", "peer", "name", podLink, "netns", name},
		{"link", "set", name, "master", n.Bridge(), "up"},
		{"-n", name, "link", "set", "lo", "up"},
		{"-n", name, "link", "set", podLink, "address", mac(podIP)},
		{"-n", name, "addr", "add", addr, "dev", podLink},
		{"-n", name, "link", "set", podLink, "up"},
		{"-n", name, "route", "add", "default", "via", n.Gateway().String()},
	}
	for _, s := range steps {
		if _, err := ipCmd(s...); err != nil {
			_ = removeSandbox(name)
			return nil, fmt.Errorf("podnet: creating sandbox %s for %s: %w", name, podIP, err)
		}
	}
	ino, err := namespaceInode(name)
	if err != nil {
		_ = removeSandbox(name)
		return nil, fmt.Errorf("podnet: creating sandbox %s for %s: %w", name, podIP, err)
	}
	// The host may hold a failed or stale entry from before the sandbox.
	_, _ = ipCmd("neigh", "flush", "to", podIP.String(), "dev", n.Bridge())
	return &Sandbox{Name: name, IP: podIP, ino: ino, procs: map[*Process]struct{}{}}, nil
}

// netnsDir is where ip netns keeps the namespaces it names.
const netnsDir = "/var/run/netns"

// namespaceInode identifies the network namespace called name: its inode
// number, which no other live namespace has. It is 0 when the namespace does
// not exist.
func namespaceInode(name string) (uint64, error) {
	fi, err := os.Stat(filepath.Join(netnsDir, name))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return fi.Sys().(*syscall.Stat_t).Ino, nil
}

// removeSandbox kills the processes in namespace name and deletes it and
// the host link of the same name, which takes the pod end with it. It does
// nothing for what does not exist.
func removeSandbox(name string) error {
	errs := []error{killNamespace(name), deleteLink(name)}
	if _, err := ipCmd("netns", "del", name); err != nil && !notFound(err) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// killNamespace kills every process in network namespace name with SIGKILL
// and waits until none is left, for at most five seconds.
func killNamespace(name string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := ipCmd("netns", "pids", name)
		if err != nil {
			if notFound(err) {
				return nil
			}
			return err
		}
		pids := strings.Fields(out)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("podnet: processes %v in network namespace %s survived SIGKILL", pids, name)
		}
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil && pid > 1 && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func deleteLink(name string) error {
	if _, err := ipCmd("link", "del", "dev", name); err != nil && !notFound(err) {
		return err
	}
	return nil
}

// notFound says whether an ip command failed because its object does not
// exist.
func notFound(err error) bool {
	s := err.Error()
	return strings.Contains(s, "Cannot find device") ||
		strings.Contains(s, "does not exist") ||
		strings.Contains(s, "No such file or directory")
}

// ipPath is the ip(8) binary: from PATH, or /usr/sbin and /sbin, which are
// not on every PATH.
var ipPath = sync.OnceValues(func() (string, error) {
	if p, err := exec.LookPath("ip"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("podnet: the ip command of iproute2 is not installed")
})

// Available says why podnet cannot work here, or nil when it can: it needs
// root and the ip command.
func Available() error {
	if _, err := ipPath(); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("podnet: network namespaces need root")
	}
	return nil
}

// ipCmd runs ip with args and returns its standard output; the error carries
// the command and its standard error.
func ipCmd(args ...string) (string, error) {
	path, err := ipPath()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// unmarshal decodes the JSON output of ip -j, which is empty rather than
// "[]" when some versions have nothing to list.
func unmarshal(out string, v any) error {
	if strings.TrimSpace(out) == "" {
		return nil
	}
	return json.Unmarshal([]byte(out), v)
}
