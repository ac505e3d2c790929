package notify

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// ClusterDefaultName is the name the cluster default target goes by in
// logs.
const ClusterDefaultName = "cluster-default"

// Keys of the cluster default's Secret (--notification-secret).
const (
	// KeyType holds Webhook, Slack or Teams; Webhook when absent.
	KeyType = "type"
	// KeyAddress holds the URL.
	KeyAddress = "address"
	// KeyPhases holds comma-separated phases; every phase change but
	// Initializing when absent.
	KeyPhases = "phases"
)

// Target is a receiver of a Rollout's phase changes.
type Target struct {
	// Name of the target in the Rollout, or ClusterDefaultName.
	Name string
	// Type is the message's shape. The cluster default's is read from its
	// Secret when the message is sent.
	Type backstopv1.NotificationType
	// Phases selects the phase changes posted (see Selects). The cluster
	// default's are read from its Secret when the message is sent.
	Phases []backstopv1.RolloutPhase
	// Secret and Key hold the URL.
	Secret types.NamespacedName
	Key    string
	// ClusterDefault says Type and Phases come from the Secret's keys
	// type and phases, and the URL from its key address.
	ClusterDefault bool
}

// typeLabel is the target's type as the metrics show it.
func (t Target) typeLabel() string {
	if t.Type == "" {
		return unknownType
	}
	return string(t.Type)
}

// Targets lists the targets of a Rollout: those of
// spec.notifications.targets, then the cluster default (nil for none)
// unless spec.notifications.skipClusterDefault.
func Targets(ro *backstopv1.Rollout, clusterDefault *types.NamespacedName) []Target {
	var ts []Target
	spec := ro.Spec.Notifications
	if spec != nil {
		for _, t := range spec.Targets {
			typ := t.Type
			if typ == "" {
				typ = backstopv1.NotifyWebhook
			}
			ts = append(ts, Target{
				Name: t.Name, Type: typ, Phases: t.Phases,
				Secret: types.NamespacedName{Namespace: ro.Namespace, Name: t.URLSecretRef.Name},
				Key:    t.URLSecretRef.Key,
			})
		}
	}
	if clusterDefault != nil && (spec == nil || !spec.SkipClusterDefault) {
		ts = append(ts, Target{Name: ClusterDefaultName, Secret: *clusterDefault, Key: KeyAddress, ClusterDefault: true})
	}
	return ts
}

// Endpoint is where and how a message is posted, as known when it is sent.
type Endpoint struct {
	Type   backstopv1.NotificationType
	URL    string
	Phases []backstopv1.RolloutPhase
}

// Resolver finds a target's endpoint when its message is sent. Its errors
// must not contain the URL; those marked Permanent are not retried.
type Resolver func(ctx context.Context, t Target) (Endpoint, error)

// SecretResolver reads targets' Secrets with reader, which should not
// cache: the manager neither caches nor watches Secrets, and a Secret
// created or fixed later is used by the next message.
func SecretResolver(reader client.Reader) Resolver {
	return func(ctx context.Context, t Target) (Endpoint, error) {
		var s corev1.Secret
		err := reader.Get(ctx, t.Secret, &s)
		switch {
		case apierrors.IsNotFound(err):
			return Endpoint{}, Permanent(fmt.Errorf("secret %q was not found in namespace %q", t.Secret.Name, t.Secret.Namespace))
		case apierrors.IsForbidden(err):
			return Endpoint{}, Permanent(fmt.Errorf("the manager may not read Secret %q in namespace %q", t.Secret.Name, t.Secret.Namespace))
		case err != nil:
			return Endpoint{}, fmt.Errorf("reading Secret %q in namespace %q: %w", t.Secret.Name, t.Secret.Namespace, err)
		}
		return EndpointFromSecret(t, s.Data)
	}
}

// EndpointFromSecret is t's endpoint as the data of its Secret gives it.
// Errors name the Secret and key, never the value.
func EndpointFromSecret(t Target, data map[string][]byte) (Endpoint, error) {
	where := fmt.Sprintf("Secret %q in namespace %q", t.Secret.Name, t.Secret.Namespace)
	raw := strings.TrimSpace(string(data[t.Key]))
	if raw == "" {
		return Endpoint{}, Permanent(fmt.Errorf("%s has no key %q", where, t.Key))
	}
	if u, err := url.Parse(raw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Endpoint{}, Permanent(fmt.Errorf("key %q of %s is not an http or https URL", t.Key, where))
	}
	ep := Endpoint{Type: t.Type, URL: raw, Phases: t.Phases}
	if !t.ClusterDefault {
		return ep, nil
	}
	ep.Type = backstopv1.NotificationType(strings.TrimSpace(string(data[KeyType])))
	switch ep.Type {
	case "":
		ep.Type = backstopv1.NotifyWebhook
	case backstopv1.NotifyWebhook, backstopv1.NotifySlack, backstopv1.NotifyTeams:
	default:
		return Endpoint{}, Permanent(fmt.Errorf("key %q of %s must be Webhook, Slack or Teams, not %q", KeyType, where, ep.Type))
	}
	ep.Phases = nil
	for _, p := range strings.Split(string(data[KeyPhases]), ",") {
		phase := backstopv1.RolloutPhase(strings.TrimSpace(p))
		if phase == "" {
			continue
		}
		if !knownPhase(phase) {
			return Endpoint{}, Permanent(fmt.Errorf("key %q of %s names an unknown phase %q", KeyPhases, where, phase))
		}
		ep.Phases = append(ep.Phases, phase)
	}
	return ep, nil
}

func knownPhase(p backstopv1.RolloutPhase) bool {
	switch p {
	case backstopv1.PhaseInitializing, backstopv1.PhaseIdle, backstopv1.PhaseProgressing, backstopv1.PhasePaused,
		backstopv1.PhasePromoting, backstopv1.PhaseSucceeded, backstopv1.PhaseRollingBack, backstopv1.PhaseRolledBack:
		return true
	}
	return false
}

// permanentError is a failure that trying again cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that trying again cannot fix.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent says err was marked Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}
