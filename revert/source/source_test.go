package source_test

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/revert/source"
	"backstop.dev/backstop/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

// create creates an object of a GitOps kind, then writes its status the
// way its controller would.
func create(t *testing.T, apiVersion, kind, ns, name string, spec, status map[string]any) {
	t.Helper()
	ctx := context.Background()
	obj := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	obj.SetAPIVersion(apiVersion)
	obj.SetKind(kind)
	obj.SetNamespace(ns)
	obj.SetName(name)
	if kind == "Application" && status != nil {
		obj.Object["status"] = status
	}
	if err := env.Client.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
	if kind != "Application" && status != nil {
		obj.Object["status"] = status
		if err := env.Client.Status().Update(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
}

func target(ns string, labels, annotations map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app", Labels: labels, Annotations: annotations}}
}

func rollout(ns string) *backstopv1.Rollout {
	return &backstopv1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}}
}

// TestDiscover finds the source from each place, as Flux and Argo CD leave
// their marks on what they apply.
func TestDiscover(t *testing.T) {
	env.InstallGitOpsKinds(t)
	ns := env.Namespace(t)
	fluxNS := env.Namespace(t)
	argoNS := env.Namespace(t)
	// What the tools record of applying the target ns/app.
	inventory := map[string]any{"entries": []any{
		map[string]any{"id": ns + "_app-config__ConfigMap", "v": "v1"},
		map[string]any{"id": ns + "_app_apps_Deployment", "v": "v1"},
	}}
	resources := []any{map[string]any{"group": "apps", "version": "v1", "kind": "Deployment", "namespace": ns, "name": "app"}}
	create(t, "source.toolkit.fluxcd.io/v1", "GitRepository", fluxNS, "fleet",
		map[string]any{"url": "https://git.example.com/org/fleet.git", "ref": map[string]any{"branch": "main"}, "secretRef": map[string]any{"name": "fleet-auth"}, "interval": "1m"}, nil)
	create(t, "source.toolkit.fluxcd.io/v1", "GitRepository", fluxNS, "by-name",
		map[string]any{"url": "ssh://git@git.example.com/org/other.git", "ref": map[string]any{"name": "refs/heads/release"}}, nil)
	create(t, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", fluxNS, "apps",
		map[string]any{"path": "./apps/shop/", "sourceRef": map[string]any{"kind": "GitRepository", "name": "fleet"}, "interval": "1m", "prune": true},
		map[string]any{"lastAppliedRevision": "main@sha1:0123456789abcdef0123456789abcdef01234567", "inventory": inventory})
	create(t, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", fluxNS, "other",
		map[string]any{"path": "apps", "sourceRef": map[string]any{"kind": "GitRepository", "name": "by-name", "namespace": fluxNS}},
		map[string]any{"lastAppliedRevision": "release/89abcdef", "inventory": inventory})
	create(t, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", fluxNS, "applying",
		map[string]any{"path": "apps", "sourceRef": map[string]any{"kind": "GitRepository", "name": "fleet"}},
		map[string]any{"lastAppliedRevision": "main@sha1:1111111111111111111111111111111111111111",
			"lastAttemptedRevision": "main@sha1:2222222222222222222222222222222222222222", "inventory": inventory})
	create(t, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", fluxNS, "from-bucket",
		map[string]any{"path": "apps", "sourceRef": map[string]any{"kind": "Bucket", "name": "b"}}, map[string]any{"inventory": inventory})
	// Another team's Kustomization, which does not apply the target.
	create(t, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", fluxNS, "theirs",
		map[string]any{"path": "theirs", "sourceRef": map[string]any{"kind": "GitRepository", "name": "fleet"}},
		map[string]any{"lastAppliedRevision": "main@sha1:3333333333333333333333333333333333333333",
			"inventory": map[string]any{"entries": []any{map[string]any{"id": fluxNS + "_their-app_apps_Deployment", "v": "v1"}}}})
	create(t, "argoproj.io/v1alpha1", "Application", argoNS, "shop",
		map[string]any{"project": "team-a", "source": map[string]any{"repoURL": "https://git.example.com/org/argo.git", "path": "shop", "targetRevision": "main"}},
		map[string]any{"sync": map[string]any{"revision": "fedcba9876543210fedcba9876543210fedcba98"}, "resources": resources})
	create(t, "argoproj.io/v1alpha1", "Application", argoNS, "theirs",
		map[string]any{"source": map[string]any{"repoURL": "https://git.example.com/org/theirs.git", "path": "."}},
		map[string]any{"resources": []any{map[string]any{"group": "apps", "kind": "Deployment", "namespace": ns, "name": "their-app"}}})
	create(t, "argoproj.io/v1alpha1", "Application", argoNS, "head",
		map[string]any{"source": map[string]any{"repoURL": "https://git.example.com/org/argo.git", "path": ".", "targetRevision": "HEAD"}},
		map[string]any{"resources": resources})
	create(t, "argoproj.io/v1alpha1", "Application", ns, "web",
		map[string]any{"project": "web", "source": map[string]any{"repoURL": "git@git.example.com:org/web.git", "path": "deploy"}},
		map[string]any{"resources": resources})

	flux := map[string]string{source.FluxNameLabel: "apps", source.FluxNamespaceLabel: fluxNS}
	cases := []struct {
		name    string
		ro      func(*backstopv1.Rollout)
		target  *appsv1.Deployment
		want    source.Source
		wantErr string
	}{{
		name:   "Flux Kustomization and GitRepository",
		target: target(ns, flux, nil),
		want: source.Source{Tool: source.ToolFlux, URL: "https://git.example.com/org/fleet.git", Branch: "main", Path: "apps/shop",
			SecretNamespace: fluxNS, SecretName: "fleet-auth", Revision: "0123456789abcdef0123456789abcdef01234567", From: "Kustomization " + fluxNS + "/apps"},
	}, {
		name:   "Flux with a branch reference and an old-style revision",
		target: target(ns, map[string]string{source.FluxNameLabel: "other", source.FluxNamespaceLabel: fluxNS}, nil),
		want: source.Source{Tool: source.ToolFlux, URL: "ssh://git@git.example.com/org/other.git", Branch: "release", Path: "apps",
			Revision: "89abcdef", From: "Kustomization " + fluxNS + "/other"},
	}, {
		name:   "Flux applying a revision: the attempted one, recorded before the apply",
		target: target(ns, map[string]string{source.FluxNameLabel: "applying", source.FluxNamespaceLabel: fluxNS}, nil),
		want: source.Source{Tool: source.ToolFlux, URL: "https://git.example.com/org/fleet.git", Branch: "main", Path: "apps",
			SecretNamespace: fluxNS, SecretName: "fleet-auth", Revision: "2222222222222222222222222222222222222222", From: "Kustomization " + fluxNS + "/applying"},
	}, {
		name:    "Flux from a Bucket",
		target:  target(ns, map[string]string{source.FluxNameLabel: "from-bucket", source.FluxNamespaceLabel: fluxNS}, nil),
		wantErr: "takes its manifests from a Bucket, not a GitRepository",
	}, {
		name:    "Flux labels naming a missing Kustomization",
		target:  target(ns, map[string]string{source.FluxNameLabel: "gone", source.FluxNamespaceLabel: fluxNS}, nil),
		wantErr: "Kustomization " + fluxNS + "/gone, named by the target's labels, was not found",
	}, {
		name:    "Flux labels naming a Kustomization that does not apply the target",
		target:  target(ns, map[string]string{source.FluxNameLabel: "theirs", source.FluxNamespaceLabel: fluxNS}, nil),
		wantErr: "Kustomization " + fluxNS + "/theirs does not list Deployment " + ns + "/app in its status.inventory",
	}, {
		name:    "an Argo CD label naming an Application that does not apply the target",
		target:  target(ns, map[string]string{source.ArgoInstanceLabel: "theirs"}, nil),
		wantErr: "Application " + argoNS + "/theirs does not list Deployment " + ns + "/app in its status.resources",
	}, {
		name:   "Argo CD instance label",
		target: target(ns, map[string]string{source.ArgoInstanceLabel: "shop"}, nil),
		want: source.Source{Tool: source.ToolArgoCD, URL: "https://git.example.com/org/argo.git", Branch: "main", Path: "shop",
			ArgoCDNamespace: argoNS, ArgoCDProject: "team-a",
			Revision: "fedcba9876543210fedcba9876543210fedcba98", From: "Application " + argoNS + "/shop"},
	}, {
		name:   "Argo CD tracking id, application in any namespace, HEAD",
		target: target(ns, nil, map[string]string{source.ArgoTrackingID: argoNS + "_head:apps/Deployment:" + ns + "/app"}),
		want: source.Source{Tool: source.ToolArgoCD, URL: "https://git.example.com/org/argo.git",
			ArgoCDNamespace: argoNS, ArgoCDProject: "default", From: "Application " + argoNS + "/head"},
	}, {
		name:   "Argo CD application in another namespace keeps its credentials in Argo CD's",
		target: target(ns, nil, map[string]string{source.ArgoTrackingID: ns + "_web:apps/Deployment:" + ns + "/app"}),
		want: source.Source{Tool: source.ToolArgoCD, URL: "git@git.example.com:org/web.git", Path: "deploy",
			ArgoCDNamespace: argoNS, ArgoCDProject: "web", From: "Application " + ns + "/web"},
	}, {
		name: "the Rollout's source wins, with the revision Flux applied",
		ro: func(ro *backstopv1.Rollout) {
			ro.Spec.Revert = &backstopv1.RevertSpec{Source: &backstopv1.GitSource{URL: "git@git.example.com:org/fleet.git", Branch: "main", Path: "apps/shop",
				SecretRef: &backstopv1.LocalObjectReference{Name: "mine"}}}
		},
		target: target(ns, flux, nil),
		want: source.Source{Tool: source.ToolRollout, URL: "git@git.example.com:org/fleet.git", Branch: "main", Path: "apps/shop",
			SecretNamespace: ns, SecretName: "mine", Revision: "0123456789abcdef0123456789abcdef01234567", From: "Rollout " + ns + "/app"},
	}, {
		name:    "no source anywhere",
		target:  target(ns, nil, nil),
		wantErr: "no Git source",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ro := rollout(ns)
			if tc.ro != nil {
				tc.ro(ro)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err := source.Discover(ctx, env.Client, ro, tc.target, source.Options{ArgoCDNamespace: argoNS})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Discover: %v, %+v; want an error containing %q", err, got, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *got != tc.want {
				t.Errorf("Discover:\n got %+v\nwant %+v", *got, tc.want)
			}
		})
	}
}
