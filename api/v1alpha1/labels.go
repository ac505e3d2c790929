package v1alpha1

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Labels Backstop puts on the objects it makes for a Rollout (generated
// routes, the primary's and canary's Services). The manager caches only
// the Services that carry LabelManagedBy=ManagedBy.
const (
	// LabelManagedBy is app.kubernetes.io/managed-by, set to ManagedBy.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedBy is the value of LabelManagedBy.
	ManagedBy = "backstop"
	// LabelRollout names the Rollout an object belongs to, as
	// RolloutLabelValue writes it.
	LabelRollout = "backstop.dev/rollout"
)

// RolloutLabelValue returns the name of a Rollout as a label value: the
// name, or for a name longer than a label value may be, its start and a
// hash of the whole.
func RolloutLabelValue(name string) string {
	if len(name) <= 63 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return strings.TrimRight(name[:52], "-.") + "-" + hex.EncodeToString(sum[:])[:10]
}
