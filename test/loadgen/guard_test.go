package loadgen

import (
	"net/netip"
	"strings"
	"testing"
)

// TestDialGuard checks the last line of defence: whatever the URL or a
// resolver said, a connection goes only to loopback or the allowed range.
func TestDialGuard(t *testing.T) {
	t.Parallel()
	allow := netip.MustParsePrefix("10.200.0.0/16")
	tests := []struct {
		address string
		allow   netip.Prefix
		ok      bool
	}{
		{address: "127.0.0.1:80", ok: true},
		{address: "127.255.255.254:8080", ok: true},
		{address: "[::ffff:127.0.0.1]:80", ok: true},
		{address: "10.200.3.4:8080", allow: allow, ok: true},
		{address: "10.200.3.4:8080"},
		{address: "10.201.0.1:8080", allow: allow},
		{address: "[::1]:80"},
		{address: "192.0.2.1:443", allow: allow},
		{address: "0.0.0.0:80"},
		{address: "not-an-address"},
	}
	for _, tt := range tests {
		t.Run(tt.address, func(t *testing.T) {
			t.Parallel()
			err := dialGuard(tt.allow)("tcp", tt.address, nil)
			if tt.ok && err != nil {
				t.Errorf("refused %s: %v", tt.address, err)
			}
			if !tt.ok && (err == nil || !strings.Contains(err.Error(), "refusing to dial")) {
				t.Errorf("dialGuard(%s) = %v, want a refusal", tt.address, err)
			}
		})
	}
}
