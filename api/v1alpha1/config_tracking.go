package v1alpha1

// ConfigTrackingAnnotation on a ConfigMap or Secret, set to
// ConfigTrackingDisabled, leaves it out of the releases of the Deployments
// that read it: their primaries read it directly, shared with the canary,
// and a change to it starts no release. Without it, a ConfigMap or Secret
// that a target's pod template mounts or reads through its environment is
// part of the release (see docs/spec/v1alpha1/rollout.md, "ConfigMaps and
// Secrets").
const ConfigTrackingAnnotation = "backstop.dev/config-tracking"

// ConfigTrackingDisabled is the value of ConfigTrackingAnnotation that opts a
// ConfigMap or Secret out.
const ConfigTrackingDisabled = "disabled"
