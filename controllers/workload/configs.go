package workload

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// Config tracking: the ConfigMaps and Secrets a target's pod template reads
// are part of its release. The target's revision combines the TemplateHash
// of its template with a digest of the contents of those it reads
// (CombineRevision), so a change to one starts a release like a change to
// the template. The primary never reads them: it reads copies that belong
// to the Rollout (CopyName), written only when a revision is promoted, and
// its template records which refs were renamed to copies
// (ConfigCopiesAnnotation, undone by TemplateHash) and the digest of what
// the copies hold (ConfigDigestAnnotation), so that Revision(primary) needs
// nothing but the primary and a promotion that changes only config data
// still rolls the primary's pods.

const (
	// ConfigCopiesAnnotation on the primary's pod template lists the refs
	// renamed to the primary's copies, comma separated and sorted, each as
	// Kind/name=copy, so TemplateHash can undo the rename.
	ConfigCopiesAnnotation = AnnotationPrefix + "config-copies"

	// ConfigDigestAnnotation on the primary's pod template records the
	// digest of the contents of the ConfigMaps and Secrets it reads through
	// copies (Tracked.Digest). Part of Revision; a change rolls the pods.
	ConfigDigestAnnotation = AnnotationPrefix + "config-digest"

	// ConfigRefsAnnotation on a ControllerRevision lists the tracked refs
	// of the template it holds, comma separated, each as Kind/name.
	ConfigRefsAnnotation = AnnotationPrefix + "config-refs"

	// ConfigSourceAnnotation on a copy names the ConfigMap or Secret it
	// copies.
	ConfigSourceAnnotation = AnnotationPrefix + "config-source"

	// ConfigKeyAnnotation on a copy of a Secret holds the key its part of
	// the digest is computed with (the UID of the Secret it was copied
	// from; see SecretPart). It is as protected as the Secret's data.
	ConfigKeyAnnotation = AnnotationPrefix + "config-key"

	// PreviousInfix names the copies that keep the data the primary ran
	// before a promotion, for the bake time: <target>-previous-<name>.
	PreviousInfix = "-previous-"
)

// ConfigKind is the kind of a config a pod template reads.
type ConfigKind string

const (
	// KindConfigMap is a ConfigMap.
	KindConfigMap ConfigKind = "ConfigMap"
	// KindSecret is a Secret.
	KindSecret ConfigKind = "Secret"
)

// ConfigRef names a ConfigMap or Secret in the namespace of the template
// that reads it.
type ConfigRef struct {
	// Kind is ConfigMap or Secret.
	Kind ConfigKind
	// Name of the object.
	Name string
}

// String is Kind/Name.
func (r ConfigRef) String() string { return string(r.Kind) + "/" + r.Name }

// ConfigRefs lists the ConfigMaps and Secrets tmpl reads, sorted (ConfigMaps
// first, then by name) and without duplicates: those of its volumes
// (configMap, secret, and the configMap and secret sources of projected
// volumes) and those of its init and regular containers' environment (env
// valueFrom configMapKeyRef and secretKeyRef, envFrom). imagePullSecrets are
// not listed: the kubelet reads them, not the application, and a copy
// would change nothing the canary could show. Optional refs are listed like
// the others; whether the object exists is for the reader to find out.
func ConfigRefs(tmpl corev1.PodTemplateSpec) []ConfigRef {
	seen := map[ConfigRef]bool{}
	spec := tmpl.Spec.DeepCopy()
	visitConfigRefs(spec, func(kind ConfigKind, name *string) {
		if *name != "" {
			seen[ConfigRef{Kind: kind, Name: *name}] = true
		}
	})
	out := make([]ConfigRef, 0, len(seen))
	for ref := range seen {
		out = append(out, ref)
	}
	sortRefs(out)
	return out
}

func sortRefs(refs []ConfigRef) {
	sort.Slice(refs, func(i, j int) bool {
		if refs[i].Kind != refs[j].Kind {
			return refs[i].Kind < refs[j].Kind
		}
		return refs[i].Name < refs[j].Name
	})
}

// visitConfigRefs calls visit with a pointer to the name of every
// ConfigMap and Secret ref of spec (see ConfigRefs), so it may rename them.
func visitConfigRefs(spec *corev1.PodSpec, visit func(kind ConfigKind, name *string)) {
	for i := range spec.Volumes {
		v := &spec.Volumes[i].VolumeSource
		if v.ConfigMap != nil {
			visit(KindConfigMap, &v.ConfigMap.Name)
		}
		if v.Secret != nil {
			visit(KindSecret, &v.Secret.SecretName)
		}
		if v.Projected != nil {
			for j := range v.Projected.Sources {
				s := &v.Projected.Sources[j]
				if s.ConfigMap != nil {
					visit(KindConfigMap, &s.ConfigMap.Name)
				}
				if s.Secret != nil {
					visit(KindSecret, &s.Secret.Name)
				}
			}
		}
	}
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range cs {
			c := &cs[i]
			for j := range c.Env {
				if from := c.Env[j].ValueFrom; from != nil {
					if from.ConfigMapKeyRef != nil {
						visit(KindConfigMap, &from.ConfigMapKeyRef.Name)
					}
					if from.SecretKeyRef != nil {
						visit(KindSecret, &from.SecretKeyRef.Name)
					}
				}
			}
			for j := range c.EnvFrom {
				e := &c.EnvFrom[j]
				if e.ConfigMapRef != nil {
					visit(KindConfigMap, &e.ConfigMapRef.Name)
				}
				if e.SecretRef != nil {
					visit(KindSecret, &e.SecretRef.Name)
				}
			}
		}
	}
}

// CopyName is the name of the primary's copy of the config named name:
// <target>-primary-<name>. Copies belong to one Rollout, so two Rollouts
// whose targets read the same ConfigMap promote it each at their own pace.
func CopyName(n Names, name string) string {
	return fitName(n.Primary+"-"+name, "", validation.DNS1123SubdomainMaxLength)
}

// PreviousCopyName is the name of the copy that keeps, for the bake time,
// the data the primary read from the copy of the config named name before
// the last promotion: <target>-previous-<name>.
func PreviousCopyName(n Names, name string) string {
	return fitName(n.Target+PreviousInfix+name, "", validation.DNS1123SubdomainMaxLength)
}

// TrackedConfig is a ConfigMap or Secret whose contents are part of a
// release, with the digest of its contents.
type TrackedConfig struct {
	ConfigRef
	// Part is the digest of the object's contents: ConfigMapPart or
	// SecretPart.
	Part string
}

// Tracked are the configs a template reads that are part of its release,
// sorted as ConfigRefs sorts them.
type Tracked []TrackedConfig

// Digest is the digest of the contents of every tracked config: empty when
// none is tracked, so that the revision of a template that reads none is
// its TemplateHash, as before config tracking.
func (t Tracked) Digest() string {
	if len(t) == 0 {
		return ""
	}
	h := sha256.New()
	for _, c := range t {
		fmt.Fprintf(h, "%s=%s\n", c.ConfigRef, c.Part)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Refs are the refs of t.
func (t Tracked) Refs() []ConfigRef {
	out := make([]ConfigRef, 0, len(t))
	for _, c := range t {
		out = append(out, c.ConfigRef)
	}
	return out
}

// HasSecret says whether t tracks a Secret.
func (t Tracked) HasSecret() bool {
	for _, c := range t {
		if c.Kind == KindSecret {
			return true
		}
	}
	return false
}

// Primary is what the primary records of t.
func (t Tracked) Primary() PrimaryConfigs {
	return PrimaryConfigs{Refs: t.Refs(), Digest: t.Digest()}
}

// PrimaryConfigs are the tracked configs a primary reads through copies,
// and the digest of their contents; the zero value for none.
type PrimaryConfigs struct {
	// Refs name the tracked configs, sorted.
	Refs []ConfigRef
	// Digest is Tracked.Digest of their contents.
	Digest string
}

// CombineRevision is the revision of a template whose TemplateHash is
// templateHash and whose tracked configs have configDigest: templateHash
// itself when nothing is tracked, otherwise a hash of both of the same
// length.
func CombineRevision(templateHash, configDigest string) string {
	if configDigest == "" {
		return templateHash
	}
	sum := sha256.Sum256([]byte(templateHash + "+" + configDigest))
	return hex.EncodeToString(sum[:5])
}

// ConfigMapPart is the digest of a ConfigMap's data and binaryData.
// ConfigMaps hold no secrets, so a plain hash will do.
func ConfigMapPart(cm *corev1.ConfigMap) string {
	sum := sha256.Sum256(contents(cm.Data, cm.BinaryData))
	return hex.EncodeToString(sum[:16])
}

// SecretPart is the digest of a Secret's data, an HMAC-SHA256 keyed with
// key: the UID of the Secret the data comes from.
//
// Revisions are written where people without access to Secrets read them
// (status, Events, annotations, the Git commit message of a revert), and a
// plain hash of a Secret holding a short password or a PIN would give its
// value away to anyone who hashes the likely values. The key is what makes
// that impossible: a Secret's UID is random (122 bits) and readable only
// by those who may read the Secret itself (get, list and watch of Secrets
// return the data with it). A Secret deleted and created again with the
// same data gets a new UID and so a new revision: its release is one that
// changes nothing, at worst. The copies of a Secret carry the key in
// ConfigKeyAnnotation, so their digest can be checked.
func SecretPart(s *corev1.Secret, key string) string {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write(contents(nil, s.Data))
	return hex.EncodeToString(mac.Sum(nil)[:16])
}

// contents is a canonical form of a config's data: JSON, whose object
// keys encoding/json sorts.
func contents(data map[string]string, binary map[string][]byte) []byte {
	b, err := json.Marshal(struct {
		Data   map[string]string `json:"data,omitempty"`
		Binary map[string][]byte `json:"binary,omitempty"`
	}{data, binary})
	if err != nil {
		// Maps of strings and bytes always marshal; this is unreachable.
		panic(fmt.Sprintf("marshalling config data: %v", err))
	}
	return b
}

// Tracks says whether a ConfigMap or Secret with these annotations and
// Secret type (empty for a ConfigMap) is part of a release: it is unless
// ConfigTrackingAnnotation opts it out, or it is a service account token,
// which Kubernetes mints and a copy could not hold.
func Tracks(annotations map[string]string, secretType corev1.SecretType) bool {
	if annotations[backstopv1.ConfigTrackingAnnotation] == backstopv1.ConfigTrackingDisabled {
		return false
	}
	return secretType != corev1.SecretTypeServiceAccountToken
}

// renameToCopies rewrites the refs of tmpl to the configs of pc to the
// primary's copies and records the rename and the digest in tmpl's
// annotations.
func renameToCopies(tmpl *corev1.PodTemplateSpec, n Names, pc PrimaryConfigs) {
	if len(pc.Refs) == 0 {
		return
	}
	copies := map[ConfigRef]string{}
	pairs := make([]string, 0, len(pc.Refs))
	for _, ref := range pc.Refs {
		cp := CopyName(n, ref.Name)
		copies[ref] = cp
		pairs = append(pairs, ref.String()+"="+cp)
	}
	sort.Strings(pairs)
	visitConfigRefs(&tmpl.Spec, func(kind ConfigKind, name *string) {
		if cp, ok := copies[ConfigRef{Kind: kind, Name: *name}]; ok {
			*name = cp
		}
	})
	if tmpl.Annotations == nil {
		tmpl.Annotations = map[string]string{}
	}
	tmpl.Annotations[ConfigCopiesAnnotation] = strings.Join(pairs, ",")
	tmpl.Annotations[ConfigDigestAnnotation] = pc.Digest
}

// undoCopies renames the refs of tmpl to the primary's copies back to the
// configs they copy, as ConfigCopiesAnnotation lists them. A copy's name
// cannot be the name of a config the target reads: the copy would then be
// that config, and Backstop refuses to write over an object it does not own.
func undoCopies(tmpl *corev1.PodTemplateSpec) {
	list := tmpl.Annotations[ConfigCopiesAnnotation]
	if list == "" {
		return
	}
	back := map[ConfigRef]string{}
	for _, pair := range strings.Split(list, ",") {
		ref, cp, ok := strings.Cut(pair, "=")
		kind, name, ok2 := strings.Cut(ref, "/")
		if !ok || !ok2 {
			continue
		}
		back[ConfigRef{Kind: ConfigKind(kind), Name: cp}] = name
	}
	visitConfigRefs(&tmpl.Spec, func(kind ConfigKind, name *string) {
		if orig, ok := back[ConfigRef{Kind: kind, Name: *name}]; ok {
			*name = orig
		}
	})
}

// formatRefs and parseRefs write and read a list of refs as
// ConfigRefsAnnotation holds it.
func formatRefs(refs []ConfigRef) string {
	s := make([]string, 0, len(refs))
	for _, r := range refs {
		s = append(s, r.String())
	}
	return strings.Join(s, ",")
}

func parseRefs(s string) []ConfigRef {
	if s == "" {
		return nil
	}
	var out []ConfigRef
	for _, item := range strings.Split(s, ",") {
		if kind, name, ok := strings.Cut(item, "/"); ok {
			out = append(out, ConfigRef{Kind: ConfigKind(kind), Name: name})
		}
	}
	sortRefs(out)
	return out
}

// PrimaryConfigsOf returns what a primary's pod template records of the
// configs it reads through copies.
func PrimaryConfigsOf(tmpl corev1.PodTemplateSpec) PrimaryConfigs {
	pc := PrimaryConfigs{Digest: tmpl.Annotations[ConfigDigestAnnotation]}
	if list := tmpl.Annotations[ConfigCopiesAnnotation]; list != "" {
		for _, pair := range strings.Split(list, ",") {
			ref, _, _ := strings.Cut(pair, "=")
			if kind, name, ok := strings.Cut(ref, "/"); ok {
				pc.Refs = append(pc.Refs, ConfigRef{Kind: ConfigKind(kind), Name: name})
			}
		}
	}
	sortRefs(pc.Refs)
	return pc
}
