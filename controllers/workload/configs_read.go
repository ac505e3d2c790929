package workload

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ConfigReader finds which of the ConfigMaps and Secrets a template reads
// are tracked, and the digests of their contents, reading as little as it
// can: the metadata of ConfigMaps from Cached (the manager's metadata-only
// cache, which a watch keeps current), the metadata of Secrets from Uncached
// (Secrets are never cached or watched), and the contents of either from
// Uncached only when an object's resourceVersion differs from the one it
// last digested. It keeps digests, never contents. It is safe for
// concurrent use.
type ConfigReader struct {
	// Cached reads the metadata of ConfigMaps; nil reads it with Uncached.
	Cached client.Reader
	// Uncached reads the metadata of Secrets and the contents of both.
	Uncached client.Reader

	mu   sync.Mutex
	memo map[types.UID]digested
}

// digested is what ConfigReader keeps of an object it read whole.
type digested struct {
	resourceVersion string
	part            string
	untracked       bool
}

// maxDigested bounds what a ConfigReader keeps; past it, it forgets all
// and digests afresh.
const maxDigested = 50000

// Read returns the tracked configs among refs, in namespace ns, with their
// digests. An object that does not exist is not tracked while it is
// missing (a pod that needs it does not start, whichever side reads it),
// nor is one that Tracks turns down.
func (r *ConfigReader) Read(ctx context.Context, ns string, refs []ConfigRef) (Tracked, error) {
	var out Tracked
	for _, ref := range refs {
		m := &metav1.PartialObjectMetadata{}
		m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind(string(ref.Kind)))
		reader := r.Uncached
		if ref.Kind == KindConfigMap && r.Cached != nil {
			reader = r.Cached
		}
		key := types.NamespacedName{Namespace: ns, Name: ref.Name}
		if err := reader.Get(ctx, key, m); apierrors.IsNotFound(err) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("reading %s %s/%s: %w", ref.Kind, ns, ref.Name, err)
		}
		if !Tracks(m.Annotations, "") {
			continue
		}
		if d, ok := r.recall(m.UID, m.ResourceVersion); ok {
			if !d.untracked {
				out = append(out, TrackedConfig{ConfigRef: ref, Part: d.part})
			}
			continue
		}
		obj, found, err := readConfig(ctx, r.Uncached, ns, ref)
		if err != nil {
			return nil, err
		}
		if !found {
			continue
		}
		part, tracked := sourcePart(obj)
		r.remember(obj.GetUID(), digested{resourceVersion: obj.GetResourceVersion(), part: part, untracked: !tracked})
		if tracked {
			out = append(out, TrackedConfig{ConfigRef: ref, Part: part})
		}
	}
	return out, nil
}

func (r *ConfigReader) recall(uid types.UID, rv string) (digested, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.memo[uid]
	return d, ok && d.resourceVersion == rv
}

func (r *ConfigReader) remember(uid types.UID, d digested) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.memo == nil || len(r.memo) >= maxDigested {
		r.memo = map[types.UID]digested{}
	}
	r.memo[uid] = d
}

// ReadSources reads whole, with c (which should not be a cache), the
// tracked configs among refs in namespace ns, for a promotion: it returns
// them, ConfigMaps and Secrets, with their digests.
func ReadSources(ctx context.Context, c client.Reader, ns string, refs []ConfigRef) ([]client.Object, Tracked, error) {
	var objs []client.Object
	var tracked Tracked
	for _, ref := range refs {
		obj, found, err := readConfig(ctx, c, ns, ref)
		if err != nil {
			return nil, nil, err
		}
		if !found {
			continue
		}
		part, ok := sourcePart(obj)
		if !ok {
			continue
		}
		objs = append(objs, obj)
		tracked = append(tracked, TrackedConfig{ConfigRef: ref, Part: part})
	}
	return objs, tracked, nil
}

// readConfig reads the ConfigMap or Secret ref names in ns.
func readConfig(ctx context.Context, c client.Reader, ns string, ref ConfigRef) (client.Object, bool, error) {
	obj := newConfig(ref.Kind)
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, obj); apierrors.IsNotFound(err) {
		return nil, false, nil
	} else if err != nil {
		return nil, false, fmt.Errorf("reading %s %s/%s: %w", ref.Kind, ns, ref.Name, err)
	}
	return obj, true, nil
}

func newConfig(kind ConfigKind) client.Object {
	if kind == KindSecret {
		return &corev1.Secret{}
	}
	return &corev1.ConfigMap{}
}

// sourcePart is the digest of a config the target reads, and whether it
// is tracked at all. A Secret's part is keyed with its UID (see SecretPart).
func sourcePart(obj client.Object) (string, bool) {
	switch o := obj.(type) {
	case *corev1.Secret:
		if !Tracks(o.Annotations, o.Type) {
			return "", false
		}
		return SecretPart(o, string(o.UID)), true
	case *corev1.ConfigMap:
		if !Tracks(o.Annotations, "") {
			return "", false
		}
		return ConfigMapPart(o), true
	}
	return "", false
}
