package testenv

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
)

// InstallGitOpsKinds installs the Flux (Kustomization, GitRepository) and
// Argo CD (Application) kinds that Backstop reads, from the minimal
// definitions in testdata/gitops-crds.yaml, and waits until they are
// served. Installing them again is harmless.
func (e *Env) InstallGitOpsKinds(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	raw, err := os.ReadFile(filepath.Join(RepoRoot(), "test", "testenv", "testdata", "gitops-crds.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(string(raw)), 4096)
	for {
		crd := &unstructured.Unstructured{}
		if dec.Decode(&crd.Object) != nil {
			break
		}
		if err := e.Client.Create(ctx, crd); err != nil && !strings.Contains(err.Error(), "already exists") {
			t.Fatal(err)
		}
	}
	for _, kind := range []struct{ apiVersion, list string }{
		{"kustomize.toolkit.fluxcd.io/v1", "KustomizationList"},
		{"source.toolkit.fluxcd.io/v1", "GitRepositoryList"},
		{"argoproj.io/v1alpha1", "ApplicationList"},
	} {
		Eventually(t, kind.list+" is served", func() bool {
			list := &unstructured.UnstructuredList{}
			list.SetAPIVersion(kind.apiVersion)
			list.SetKind(kind.list)
			return e.Client.List(ctx, list) == nil
		})
	}
}
