package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
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

// fluxModules are the Flux modules whose CRDs FluxCRDs returns, as the
// tools module hack/tools/flux-kustomize pins them.
var fluxModules = []string{"github.com/fluxcd/source-controller@v1.9.6", "github.com/fluxcd/kustomize-controller@v1.9.6"}

// FluxCRDs returns the folders of Flux's own CRDs (source-controller's and
// kustomize-controller's), for StartWith, downloading the modules through
// the Go module proxy when they are not in the module cache.
func FluxCRDs() ([]string, error) {
	var dirs []string
	for _, m := range fluxModules {
		cmd := exec.Command("go", "mod", "download", "-json", m)
		cmd.Dir = filepath.Join(RepoRoot(), "hack", "tools", "flux-kustomize")
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("downloading %s for its CRDs: %w", m, err)
		}
		var mod struct{ Dir string }
		if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
			return nil, fmt.Errorf("go mod download %s says no folder: %s", m, out)
		}
		dirs = append(dirs, filepath.Join(mod.Dir, "config", "crd", "bases"))
	}
	return dirs, nil
}
