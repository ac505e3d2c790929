package testenv

import (
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// UserKubeconfig provisions a user of the control plane named name, in
// groups, and returns the path of a kubeconfig file that authenticates as
// it. The user has no RBAC rights until a test grants some.
func (e *Env) UserKubeconfig(t testing.TB, name string, groups ...string) string {
	t.Helper()
	user, err := e.env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		t.Fatalf("adding user %s: %v", name, err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatalf("writing a kubeconfig for user %s: %v", name, err)
	}
	path := filepath.Join(t.TempDir(), name+".kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
