package fluxsource

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// defaultBranch is the branch of a GitRepository without a ref, as in Flux.
const defaultBranch = "master"

// gitRepositorySpec is the part of a GitRepository's spec the Controller
// reads, with the fields it does not support kept to refuse them.
type gitRepositorySpec struct {
	URL       string `json:"url"`
	SecretRef *struct {
		Name string `json:"name"`
	} `json:"secretRef,omitempty"`
	Ref *struct {
		Branch string `json:"branch,omitempty"`
		Tag    string `json:"tag,omitempty"`
		SemVer string `json:"semver,omitempty"`
		Name   string `json:"name,omitempty"`
		Commit string `json:"commit,omitempty"`
	} `json:"ref,omitempty"`
	TimeoutString string  `json:"timeout,omitempty"`
	Ignore        *string `json:"ignore,omitempty"`
	Suspend       bool    `json:"suspend,omitempty"`

	// Not supported.
	Provider          string         `json:"provider,omitempty"`
	ProxySecretRef    map[string]any `json:"proxySecretRef,omitempty"`
	Verify            map[string]any `json:"verify,omitempty"`
	Include           []any          `json:"include,omitempty"`
	RecurseSubmodules bool           `json:"recurseSubmodules,omitempty"`
	SparseCheckout    []string       `json:"sparseCheckout,omitempty"`

	// Branch is ref.branch or defaultBranch.
	Branch string `json:"-"`
	// Timeout is spec.timeout or defaultTimeout.
	Timeout time.Duration `json:"-"`
}

// parseSpec reads the spec of obj, failing on what the Controller does not
// support.
func parseSpec(obj *unstructured.Unstructured) (gitRepositorySpec, error) {
	var s gitRepositorySpec
	raw, _, err := unstructured.NestedMap(obj.Object, "spec")
	if err != nil {
		return s, fmt.Errorf("invalid spec: %w", err)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &s); err != nil {
		return s, fmt.Errorf("invalid spec: %w", err)
	}
	var unsupported []string
	if r := s.Ref; r != nil {
		for field, v := range map[string]string{"ref.tag": r.Tag, "ref.semver": r.SemVer, "ref.name": r.Name, "ref.commit": r.Commit} {
			if v != "" {
				unsupported = append(unsupported, field)
			}
		}
	}
	if s.Provider != "" && s.Provider != "generic" {
		unsupported = append(unsupported, "provider")
	}
	for field, set := range map[string]bool{
		"proxySecretRef":    s.ProxySecretRef != nil,
		"verify":            s.Verify != nil,
		"include":           len(s.Include) > 0,
		"recurseSubmodules": s.RecurseSubmodules,
		"sparseCheckout":    len(s.SparseCheckout) > 0,
	} {
		if set {
			unsupported = append(unsupported, field)
		}
	}
	if len(unsupported) > 0 {
		slices.Sort(unsupported)
		return s, fmt.Errorf("the test stand-in for source-controller does not support spec.%s", strings.Join(unsupported, ", spec."))
	}
	u, err := url.Parse(s.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return s, fmt.Errorf("the test stand-in for source-controller supports http and https URLs only, not %q", redact(s.URL, s.URL))
	}
	s.Branch = defaultBranch
	if s.Ref != nil && s.Ref.Branch != "" {
		s.Branch = s.Ref.Branch
	}
	s.Timeout = defaultTimeout
	if s.TimeoutString != "" {
		if s.Timeout, err = time.ParseDuration(s.TimeoutString); err != nil || s.Timeout <= 0 {
			return s, fmt.Errorf("invalid spec.timeout %q", s.TimeoutString)
		}
	}
	return s, nil
}

// secretError is a failure to read the credentials Secret.
type secretError struct{ err error }

func (e *secretError) Error() string { return e.err.Error() }
func (e *secretError) Unwrap() error { return e.err }

// auth returns the credentials of spec.secretRef: basic auth from the
// Secret's username and password, or a bearer token from bearerToken; nil
// without a secretRef.
func (c *Controller) auth(ctx context.Context, namespace string, spec gitRepositorySpec) (transport.AuthMethod, error) {
	if spec.SecretRef == nil {
		return nil, nil
	}
	key := client.ObjectKey{Namespace: namespace, Name: spec.SecretRef.Name}
	var s corev1.Secret
	if err := c.Client.Get(ctx, key, &s); err != nil {
		// As source-controller words it.
		return nil, &secretError{fmt.Errorf("failed to get secret '%s': %w", key, err)}
	}
	switch {
	case len(s.Data["username"]) > 0 || len(s.Data["password"]) > 0:
		return &githttp.BasicAuth{Username: string(s.Data["username"]), Password: string(s.Data["password"])}, nil
	case len(s.Data["bearerToken"]) > 0:
		return &githttp.TokenAuth{Token: string(s.Data["bearerToken"])}, nil
	}
	return nil, nil
}

// redact returns msg without the credentials that raw, a URL, may hold.
func redact(msg, raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return msg
	}
	r := *u
	r.User = nil
	msg = strings.ReplaceAll(msg, raw, r.String())
	if p, ok := u.User.Password(); ok && p != "" {
		msg = strings.ReplaceAll(msg, p, "***")
	}
	return msg
}

// equal reports whether two optional strings are the same.
func equal(a, b *string) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
