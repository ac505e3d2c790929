// Package source finds where a Rollout's target Deployment comes from in Git:
// the repository, branch, path and credentials to revert in, and the source
// revision the GitOps tool last applied. It reads Flux and Argo CD objects as
// unstructured objects, so Backstop imports neither project.
//
// The source comes from, in order:
//   - spec.revert.source in the Rollout;
//   - Flux: the Deployment's labels kustomize.toolkit.fluxcd.io/name and
//     kustomize.toolkit.fluxcd.io/namespace name a Kustomization, whose
//     sourceRef names a GitRepository;
//   - Argo CD: the Deployment's label argocd.argoproj.io/instance, or its
//     annotation argocd.argoproj.io/tracking-id, names an Application.
//
// ReadCredentials then reads the source's Git credentials, as the Secret keys
// revert.Auth reads: from the Secret the Rollout or the Flux GitRepository
// names, or, for Argo CD, from the repository Secrets and credential
// templates in Argo CD's namespace, with the SSH known hosts Argo CD keeps.
package source

import (
	"context"
	"errors"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// The GitOps tools a source can come from.
const (
	ToolRollout = "Rollout"
	ToolFlux    = "Flux"
	ToolArgoCD  = "ArgoCD"
)

// Labels and annotations the GitOps tools put on what they apply.
const (
	FluxNameLabel      = "kustomize.toolkit.fluxcd.io/name"
	FluxNamespaceLabel = "kustomize.toolkit.fluxcd.io/namespace"
	ArgoInstanceLabel  = "argocd.argoproj.io/instance"
	ArgoTrackingID     = "argocd.argoproj.io/tracking-id"
)

// The kinds read, by group, version and kind.
var (
	KustomizationGVK = schema.GroupVersionKind{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Kind: "Kustomization"}
	GitRepositoryGVK = schema.GroupVersionKind{Group: "source.toolkit.fluxcd.io", Version: "v1", Kind: "GitRepository"}
	ApplicationGVK   = schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "Application"}
)

// Source is where a target's manifests live in Git.
type Source struct {
	// Tool says where the source was found: Rollout, Flux or ArgoCD.
	Tool string
	// URL of the repository.
	URL string
	// Branch the GitOps tool follows; empty when it follows the remote's
	// default branch.
	Branch string
	// Path of the manifests, relative to the repository root; empty for
	// the whole repository.
	Path string
	// SecretNamespace and SecretName name the Secret with the credentials;
	// empty when there is none.
	SecretNamespace, SecretName string
	// ArgoCDNamespace is where Argo CD keeps its repository credentials
	// and SSH known hosts, and ArgoCDProject the project of the
	// Application, which scopes them; both empty unless Tool is ArgoCD.
	ArgoCDNamespace, ArgoCDProject string
	// Revision is the commit the GitOps tool last applied (a full or short
	// SHA); empty when it does not say. For Flux it is the revision the
	// Kustomization last attempted, which Flux records before it applies:
	// the one it records after the apply (lastAppliedRevision) still names
	// the previous commit when the changed Deployment is first seen.
	Revision string
	// From names the object the source was read from, for messages, such
	// as `Kustomization flux-system/apps`.
	From string
}

// ErrNotFound says no source could be found: the Rollout names none and the
// target carries no GitOps tool's labels.
var ErrNotFound = errors.New("no Git source: set spec.revert.source, or apply the target with Flux or Argo CD")

// Options of discovery.
type Options struct {
	// ArgoCDNamespace is where Argo CD keeps its Applications when the
	// tracking information names none; default "argocd".
	ArgoCDNamespace string
}

// Discover finds the Git source of ro's target. A missing object named by
// the labels is an error that names it.
func Discover(ctx context.Context, c client.Reader, ro *backstopv1.Rollout, target *appsv1.Deployment, opts Options) (*Source, error) {
	if rv := ro.Spec.Revert; rv != nil && rv.Source != nil {
		s := &Source{Tool: ToolRollout, URL: rv.Source.URL, Branch: rv.Source.Branch, Path: cleanPath(rv.Source.Path),
			From: "Rollout " + ro.Namespace + "/" + ro.Name}
		if rv.Source.SecretRef != nil {
			s.SecretNamespace, s.SecretName = ro.Namespace, rv.Source.SecretRef.Name
		}
		// The revision applied still comes from a GitOps tool, if any.
		if found, err := discoverTool(ctx, c, target, opts); err == nil && sameRepo(found.URL, s.URL) {
			s.Revision = found.Revision
		}
		return s, nil
	}
	return discoverTool(ctx, c, target, opts)
}

func discoverTool(ctx context.Context, c client.Reader, target *appsv1.Deployment, opts Options) (*Source, error) {
	labels, annotations := target.GetLabels(), target.GetAnnotations()
	if name := labels[FluxNameLabel]; name != "" {
		ns := labels[FluxNamespaceLabel]
		if ns == "" {
			ns = target.Namespace
		}
		return fromFlux(ctx, c, types.NamespacedName{Namespace: ns, Name: name}, target)
	}
	argoNS := opts.ArgoCDNamespace
	if argoNS == "" {
		argoNS = "argocd"
	}
	if id := annotations[ArgoTrackingID]; id != "" {
		app, _, _ := strings.Cut(id, ":")
		return fromArgo(ctx, c, argoApp(app, argoNS), argoNS, target)
	}
	if app := labels[ArgoInstanceLabel]; app != "" {
		return fromArgo(ctx, c, argoApp(app, argoNS), argoNS, target)
	}
	return nil, ErrNotFound
}

// argoApp reads an application name as Argo CD writes it: "name", or
// "namespace_name" for applications in any namespace.
func argoApp(app, defaultNS string) types.NamespacedName {
	if ns, name, ok := strings.Cut(app, "_"); ok && ns != "" && name != "" {
		return types.NamespacedName{Namespace: ns, Name: name}
	}
	return types.NamespacedName{Namespace: defaultNS, Name: app}
}

func fromFlux(ctx context.Context, c client.Reader, key types.NamespacedName, target *appsv1.Deployment) (*Source, error) {
	ks, err := get(ctx, c, KustomizationGVK, key)
	if err != nil {
		return nil, err
	}
	if !fluxApplies(ks, target) {
		return nil, notApplied("Kustomization "+key.String(), "status.inventory", target)
	}
	path, _, _ := unstructured.NestedString(ks.Object, "spec", "path")
	kind, _, _ := unstructured.NestedString(ks.Object, "spec", "sourceRef", "kind")
	name, _, _ := unstructured.NestedString(ks.Object, "spec", "sourceRef", "name")
	ns, _, _ := unstructured.NestedString(ks.Object, "spec", "sourceRef", "namespace")
	revision, _, _ := unstructured.NestedString(ks.Object, "status", "lastAttemptedRevision")
	if revision == "" {
		revision, _, _ = unstructured.NestedString(ks.Object, "status", "lastAppliedRevision")
	}
	from := "Kustomization " + key.String()
	if kind != GitRepositoryGVK.Kind {
		return nil, fmt.Errorf("%s takes its manifests from a %s, not a GitRepository: set spec.revert.source", from, kind)
	}
	if ns == "" {
		ns = key.Namespace
	}
	repoKey := types.NamespacedName{Namespace: ns, Name: name}
	repo, err := get(ctx, c, GitRepositoryGVK, repoKey)
	if err != nil {
		return nil, err
	}
	s := &Source{Tool: ToolFlux, Path: cleanPath(path), Revision: fluxRevision(revision), From: from}
	s.URL, _, _ = unstructured.NestedString(repo.Object, "spec", "url")
	s.Branch = fluxBranch(repo)
	if secret, _, _ := unstructured.NestedString(repo.Object, "spec", "secretRef", "name"); secret != "" {
		s.SecretNamespace, s.SecretName = ns, secret
	}
	if s.URL == "" {
		return nil, fmt.Errorf("GitRepository %s has no spec.url", repoKey)
	}
	return s, nil
}

// The labels and annotations that name a GitOps tool's object are set by
// whoever writes the Deployment, so they alone do not show that the tool
// applies it: a Deployment labelled with another team's Kustomization would
// have its reverts pushed to that team's repository, with that
// Kustomization's credentials. The tool's own record decides: the objects a
// Kustomization applied (status.inventory), the resources of an Application
// (status.resources). Both are written by the tool's controller, through
// the status subresource.

// fluxApplies says whether the Kustomization's inventory lists the target,
// as kustomize-controller writes its entries: NAMESPACE_NAME_GROUP_KIND.
func fluxApplies(ks *unstructured.Unstructured, target *appsv1.Deployment) bool {
	entries, _, _ := unstructured.NestedSlice(ks.Object, "status", "inventory", "entries")
	id := target.Namespace + "_" + target.Name + "_apps_Deployment"
	for _, e := range entries {
		if m, ok := e.(map[string]any); ok && m["id"] == id {
			return true
		}
	}
	return false
}

// argoApplies says whether the Application's resources list the target.
func argoApplies(app *unstructured.Unstructured, target *appsv1.Deployment) bool {
	resources, _, _ := unstructured.NestedSlice(app.Object, "status", "resources")
	for _, r := range resources {
		m, ok := r.(map[string]any)
		if ok && m["group"] == "apps" && m["kind"] == "Deployment" && m["namespace"] == target.Namespace && m["name"] == target.Name {
			return true
		}
	}
	return false
}

// notApplied is the error of a target whose labels name a tool's object
// that does not record applying it.
func notApplied(from, field string, target *appsv1.Deployment) error {
	return fmt.Errorf("%s does not list Deployment %s/%s in its %s, so the target's labels do not show that it applies the target: set spec.revert.source, or let the tool apply the target first",
		from, target.Namespace, target.Name, field)
}

// fluxBranch reads the branch a GitRepository follows: spec.ref.branch, or
// spec.ref.name when it is a branch reference.
func fluxBranch(repo *unstructured.Unstructured) string {
	if b, _, _ := unstructured.NestedString(repo.Object, "spec", "ref", "branch"); b != "" {
		return b
	}
	if n, _, _ := unstructured.NestedString(repo.Object, "spec", "ref", "name"); strings.HasPrefix(n, "refs/heads/") {
		return strings.TrimPrefix(n, "refs/heads/")
	}
	return ""
}

// fluxRevision reads the commit of a Flux revision: "main@sha1:abc",
// "sha1:abc", or the older "main/abc".
func fluxRevision(rev string) string {
	if _, after, ok := strings.Cut(rev, "@"); ok {
		rev = after
	}
	if _, after, ok := strings.Cut(rev, ":"); ok {
		return after
	}
	if i := strings.LastIndex(rev, "/"); i >= 0 {
		return rev[i+1:]
	}
	return rev
}

// fromArgo reads the source of the Application key. argoNS is Argo CD's own
// namespace, which holds the repository credentials even for Applications
// in other namespaces.
func fromArgo(ctx context.Context, c client.Reader, key types.NamespacedName, argoNS string, target *appsv1.Deployment) (*Source, error) {
	app, err := get(ctx, c, ApplicationGVK, key)
	if err != nil {
		return nil, err
	}
	from := "Application " + key.String()
	if !argoApplies(app, target) {
		return nil, notApplied(from, "status.resources", target)
	}
	src, found, _ := unstructured.NestedMap(app.Object, "spec", "source")
	if !found {
		return nil, fmt.Errorf("%s has no spec.source (multi-source Applications are not supported): set spec.revert.source", from)
	}
	project, _, _ := unstructured.NestedString(app.Object, "spec", "project")
	if project == "" {
		project = "default"
	}
	s := &Source{Tool: ToolArgoCD, ArgoCDNamespace: argoNS, ArgoCDProject: project, From: from}
	s.URL, _ = src["repoURL"].(string)
	path, _ := src["path"].(string)
	s.Path = cleanPath(path)
	if rev, _ := src["targetRevision"].(string); rev != "" && rev != "HEAD" {
		s.Branch = strings.TrimPrefix(rev, "refs/heads/")
	}
	s.Revision, _, _ = unstructured.NestedString(app.Object, "status", "sync", "revision")
	if s.URL == "" {
		return nil, fmt.Errorf("%s has no spec.source.repoURL", from)
	}
	return s, nil
}

// get reads one object of a kind, with an error that names it when it is
// missing or its kind is not installed.
func get(ctx context.Context, c client.Reader, gvk schema.GroupVersionKind, key types.NamespacedName) (*unstructured.Unstructured, error) {
	obj := &unstructured.Unstructured{}
	obj.SetGroupVersionKind(gvk)
	err := c.Get(ctx, key, obj)
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("%s %s, named by the target's labels, was not found", gvk.Kind, key)
	case err != nil:
		return nil, fmt.Errorf("reading %s %s: %w", gvk.Kind, key, err)
	}
	return obj, nil
}

// cleanPath makes a path relative to the repository root: "./apps/x/" and
// "apps/x" are the same folder.
func cleanPath(p string) string {
	p = strings.TrimPrefix(strings.TrimSpace(p), "./")
	p = strings.Trim(p, "/")
	if p == "." {
		return ""
	}
	return p
}

// sameRepo compares repository URLs loosely: scheme, user information and a
// trailing .git or slash do not matter.
func sameRepo(a, b string) bool {
	norm := func(u string) string {
		u = strings.ToLower(strings.TrimSpace(u))
		if _, rest, ok := strings.Cut(u, "://"); ok {
			u = rest
		}
		if at := strings.LastIndex(u, "@"); at >= 0 {
			u = u[at+1:]
		}
		u = strings.Replace(u, ":", "/", 1)
		return strings.TrimSuffix(strings.TrimSuffix(u, "/"), ".git")
	}
	return a != "" && norm(a) == norm(b)
}
