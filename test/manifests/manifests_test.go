// Package manifests_test checks what users apply: the kustomize packages in
// config/ against a real kube-apiserver (server-side dry runs, so admission,
// the CRD schemas and their CEL rules all run), and the printer columns that
// `kubectl get` shows for a Rollout.
package manifests_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

// managerNamespace is the namespace config/default installs into.
const managerNamespace = "backstop-system"

// result is what one kubectl run printed and how it exited.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit code %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// kubectl runs bin/kubectl from the repository root with stdin as its input.
// A kubectl that cannot start at all fails the test; a non-zero exit code is
// returned for the caller to judge.
func kubectl(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Timeout)
	defer cancel()
	cmd := env.KubectlCmd(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("running kubectl %s: %v\n%s", strings.Join(args, " "), err, r)
	}
	return r
}

// mustKubectl runs kubectl and fails the test unless it exits with 0.
func mustKubectl(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	r := kubectl(t, stdin, args...)
	if r.code != 0 {
		t.Fatalf("kubectl %s failed: %s", strings.Join(args, " "), r)
	}
	return r
}

// render builds a kustomization with kubectl's kustomize and returns its
// objects.
func render(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	out := mustKubectl(t, nil, "kustomize", dir).stdout
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(out), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding the output of kubectl kustomize %s: %v", dir, err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
	return objs
}

// find returns the rendered object of that kind and name, converted to out.
func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string, out any) {
	t.Helper()
	for _, u := range objs {
		if u.GetKind() == kind && u.GetName() == name {
			data, err := json.Marshal(u.Object)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, out); err != nil {
				t.Fatalf("decoding %s %s: %v", kind, name, err)
			}
			return
		}
	}
	t.Fatalf("the rendered manifests have no %s %s", kind, name)
}

// createManagerNamespace applies config/manager/namespace.yaml for real: a
// server dry run does not persist the Namespace it creates, so the
// namespaced objects of the same dry run would find none. The Namespace is
// left in place: without a namespace controller a deleted one would stay
// Terminating and refuse the next run's objects (go test -count=2).
func createManagerNamespace(t *testing.T) {
	t.Helper()
	mustKubectl(t, nil, "apply", "-f", "config/manager/namespace.yaml")
}

func TestDefaultInstallIsAcceptedByTheAPIServer(t *testing.T) {
	createManagerNamespace(t)

	r := mustKubectl(t, nil, "apply", "-k", "config/default", "--dry-run=server")

	// The CRDs exist already (testenv installed them), so they are
	// "configured" or "unchanged"; everything else is new.
	for _, want := range []string{
		"customresourcedefinition.apiextensions.k8s.io/rollouts.backstop.dev ",
		"customresourcedefinition.apiextensions.k8s.io/slotemplates.backstop.dev ",
		"customresourcedefinition.apiextensions.k8s.io/clusterslotemplates.backstop.dev ",
		"serviceaccount/backstop-manager created (server dry run)",
		"clusterrole.rbac.authorization.k8s.io/backstop-manager created (server dry run)",
		"clusterrolebinding.rbac.authorization.k8s.io/backstop-manager created (server dry run)",
		"role.rbac.authorization.k8s.io/backstop-leader-election created (server dry run)",
		"rolebinding.rbac.authorization.k8s.io/backstop-leader-election created (server dry run)",
		"service/backstop-manager-metrics created (server dry run)",
		"deployment.apps/backstop-manager created (server dry run)",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the dry run does not report %q:\n%s", want, r)
		}
	}
	// The namespace warns on pod templates that break the restricted Pod
	// Security profile; the manager's must not.
	if strings.Contains(r.stderr, "PodSecurity") {
		t.Errorf("the manager's pod template breaks the namespace's Pod Security profile:\n%s", r.stderr)
	}
}

func TestDefaultInstallWiresTheManager(t *testing.T) {
	objs := render(t, "config/default")

	var d appsv1.Deployment
	find(t, objs, "Deployment", "backstop-manager", &d)
	if d.Namespace != managerNamespace {
		t.Errorf("Deployment namespace = %q, want %q", d.Namespace, managerNamespace)
	}
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("the manager pod has %d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.Image != "backstop:latest" {
		t.Errorf("image = %q, want backstop:latest", c.Image)
	}
	wantArgs := []string{"--leader-elect", "--health-probe-bind-address=:8081", "--metrics-bind-address=:8080"}
	if !reflect.DeepEqual(c.Args, wantArgs) {
		t.Errorf("args = %q, want %q", c.Args, wantArgs)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for name, probe := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
		if probe == nil || probe.HTTPGet == nil {
			t.Errorf("no HTTP probe on %s", name)
			continue
		}
		port := probe.HTTPGet.Port.IntVal
		if probe.HTTPGet.Port.StrVal != "" {
			port = ports[probe.HTTPGet.Port.StrVal]
		}
		if probe.HTTPGet.Path != name || port != 8081 {
			t.Errorf("probe = %s on port %d, want %s on 8081", probe.HTTPGet.Path, port, name)
		}
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("the manager container has no securityContext")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot,
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem,
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation,
		sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}),
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("the manager container is not locked down: %+v", sc)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("the manager container needs CPU and memory requests and a memory limit: %+v", c.Resources)
	}

	var svc corev1.Service
	find(t, objs, "Service", "backstop-manager-metrics", &svc)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8080 || ports[svc.Spec.Ports[0].TargetPort.StrVal] != 8080 {
		t.Errorf("the metrics Service does not reach the container's port 8080: %+v", svc.Spec.Ports)
	}
	if !reflect.DeepEqual(svc.Spec.Selector, d.Spec.Template.Labels) {
		t.Errorf("the metrics Service selects %v, the manager pods are labelled %v", svc.Spec.Selector, d.Spec.Template.Labels)
	}

	// The ServiceAccount the pod runs as is the one both bindings grant.
	var crb rbacv1.ClusterRoleBinding
	find(t, objs, "ClusterRoleBinding", "backstop-manager", &crb)
	var rb rbacv1.RoleBinding
	find(t, objs, "RoleBinding", "backstop-leader-election", &rb)
	want := rbacv1.Subject{Kind: "ServiceAccount", Name: pod.ServiceAccountName, Namespace: managerNamespace}
	for _, got := range [][]rbacv1.Subject{crb.Subjects, rb.Subjects} {
		if len(got) != 1 || got[0] != want {
			t.Errorf("binding subjects = %+v, want [%+v]", got, want)
		}
	}
	if crb.RoleRef.Kind != "ClusterRole" || crb.RoleRef.Name != "backstop-manager" {
		t.Errorf("the ClusterRoleBinding grants %+v, want the ClusterRole backstop-manager", crb.RoleRef)
	}
}

// An overlay can install elsewhere and set the image, as the comments in
// config/default and config/manager promise.
func TestDefaultInstallOverlay(t *testing.T) {
	dir := t.TempDir()
	base, err := filepath.Rel(dir, filepath.Join(testenv.RepoRoot(), "config", "default"))
	if err != nil {
		t.Fatal(err)
	}
	kustomization := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: delivery
resources:
- %s
images:
- name: backstop
  newName: registry.example.com/backstop
  newTag: v1.2.3
`, base)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		t.Fatal(err)
	}
	objs := render(t, dir)

	var d appsv1.Deployment
	find(t, objs, "Deployment", "backstop-manager", &d)
	if got := d.Spec.Template.Spec.Containers[0].Image; got != "registry.example.com/backstop:v1.2.3" {
		t.Errorf("image = %q, want the overlay's registry.example.com/backstop:v1.2.3", got)
	}
	var crb rbacv1.ClusterRoleBinding
	find(t, objs, "ClusterRoleBinding", "backstop-manager", &crb)
	if len(crb.Subjects) != 1 || crb.Subjects[0].Namespace != "delivery" {
		t.Errorf("ClusterRoleBinding subjects = %+v, want the ServiceAccount in the overlay's namespace delivery", crb.Subjects)
	}
}

func TestSamplesAreAcceptedByTheAPIServer(t *testing.T) {
	ns := env.Namespace(t)

	r := mustKubectl(t, nil, "apply", "-k", "config/samples", "--dry-run=server", "-n", ns)
	for _, want := range []string{
		"rollout.backstop.dev/podinfo created (server dry run)",
		"rollout.backstop.dev/checkout created (server dry run)",
		"slotemplate.backstop.dev/latency-p99 created (server dry run)",
		"clusterslotemplate.backstop.dev/http-error-rate created (server dry run)",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the dry run does not report %q:\n%s", want, r)
		}
	}

	// The same dry run rejects a sample that breaks a CEL rule, so the
	// acceptance above means the samples passed those rules.
	objs := render(t, "config/samples")
	var broken *unstructured.Unstructured
	for _, u := range objs {
		if u.GetKind() == "Rollout" && u.GetName() == "podinfo" {
			broken = u
		}
	}
	if broken == nil {
		t.Fatal("config/samples has no Rollout podinfo")
	}
	routes, _, _ := unstructured.NestedSlice(broken.Object, "spec", "routes")
	if len(routes) == 0 {
		t.Fatal("the sample Rollout podinfo has no routes")
	}
	delete(routes[0].(map[string]any), "parentRefs")
	if err := unstructured.SetNestedSlice(broken.Object, routes, "spec", "routes"); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(broken.Object)
	if err != nil {
		t.Fatal(err)
	}
	r = kubectl(t, bytes.NewReader(data), "apply", "-f", "-", "--dry-run=server", "-n", ns)
	if r.code == 0 || !strings.Contains(r.stderr, "a generated route needs parentRefs") {
		t.Errorf("a sample without parentRefs should be rejected by the CEL rule:\n%s", r)
	}
}

func TestPrinterColumns(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)

	ro := &backstopv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop"},
		Spec: backstopv1.RolloutSpec{
			TargetRef: backstopv1.TargetReference{Name: "shop"},
			Service:   backstopv1.ServiceSpec{Port: 8080},
			Routes: []backstopv1.Route{{
				Name:       "shop",
				ParentRefs: []gwapiv1.ParentReference{{Name: "public"}},
			}},
			Strategy: backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{
				Steps: []backstopv1.CanaryStep{{SetWeight: ptr[int32](20)}, {Pause: &backstopv1.PauseStep{}}},
			}},
		},
	}
	if err := env.Client.Create(ctx, ro); err != nil {
		t.Fatalf("creating the Rollout: %v", err)
	}
	ro.Status = backstopv1.RolloutStatus{
		Phase:          backstopv1.PhaseProgressing,
		CanaryWeight:   20,
		CurrentStep:    2,
		StableRevision: "abc",
		CanaryRevision: "def",
		Conditions: []metav1.Condition{{
			Type:               "Ready",
			Status:             metav1.ConditionFalse,
			Reason:             "Progressing",
			Message:            "Canary at 20%",
			LastTransitionTime: metav1.NewTime(time.Now().Truncate(time.Second)),
		}},
	}
	if err := env.Client.Status().Update(ctx, ro); err != nil {
		t.Fatalf("updating the Rollout status: %v", err)
	}
	slot := &backstopv1.SLOTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "errors"},
		Spec: backstopv1.SLOTemplateSpec{CheckSpec: backstopv1.CheckSpec{
			Query: "vector(0)",
			Max:   ptr[backstopv1.Decimal]("0.01"),
		}},
	}
	if err := env.Client.Create(ctx, slot); err != nil {
		t.Fatalf("creating the SLOTemplate: %v", err)
	}

	t.Run("kubectl get bro", func(t *testing.T) {
		r := mustKubectl(t, nil, "get", "bro", "-n", ns)
		header, rows := table(t, r.stdout)
		assertFields(t, "header", header, []string{"NAME", "PHASE", "WEIGHT", "STEP", "STABLE", "CANARY", "AGE"})
		if len(rows) != 1 {
			t.Fatalf("kubectl get bro printed %d rows, want 1:\n%s", len(rows), r.stdout)
		}
		// AGE is the last field and changes with time.
		assertFields(t, "row", rows[0][:len(rows[0])-1], []string{"shop", "Progressing", "20", "2", "abc", "def"})
	})

	t.Run("kubectl get bro -o wide", func(t *testing.T) {
		r := mustKubectl(t, nil, "get", "bro", "-n", ns, "-o", "wide")
		header, rows := table(t, r.stdout)
		assertFields(t, "header", header, []string{"NAME", "PHASE", "WEIGHT", "STEP", "STABLE", "CANARY", "AGE", "READY", "MESSAGE"})
		if len(rows) != 1 {
			t.Fatalf("kubectl get bro -o wide printed %d rows, want 1:\n%s", len(rows), r.stdout)
		}
		row := rows[0]
		if len(row) < 8 {
			t.Fatalf("kubectl get bro -o wide printed too few fields:\n%s", r.stdout)
		}
		// Field 6 is AGE; the Ready condition's message splits into words.
		assertFields(t, "row", append(row[:6:6], row[7:]...), []string{"shop", "Progressing", "20", "2", "abc", "def", "False", "Canary", "at", "20%"})
	})

	t.Run("Table API", func(t *testing.T) {
		cs, err := kubernetes.NewForConfig(env.Config)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := cs.Discovery().RESTClient().Get().
			AbsPath("/apis/backstop.dev/v1alpha1/namespaces", ns, "rollouts").
			SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").
			DoRaw(ctx)
		if err != nil {
			t.Fatalf("listing Rollouts as a Table: %v", err)
		}
		var tbl metav1.Table
		if err := json.Unmarshal(raw, &tbl); err != nil {
			t.Fatalf("decoding the Table: %v\n%s", err, raw)
		}
		if tbl.Kind != "Table" {
			t.Fatalf("the server answered a %q, not a Table:\n%s", tbl.Kind, raw)
		}
		var names []string
		priorities := map[string]int32{}
		for _, c := range tbl.ColumnDefinitions {
			names = append(names, c.Name)
			priorities[c.Name] = c.Priority
		}
		assertFields(t, "columns", names, []string{"Name", "Phase", "Weight", "Step", "Stable", "Canary", "Age", "Ready", "Message"})
		for name, want := range map[string]int32{"Phase": 0, "Weight": 0, "Canary": 0, "Ready": 1, "Message": 1} {
			if priorities[name] != want {
				t.Errorf("column %s has priority %d, want %d", name, priorities[name], want)
			}
		}
		if len(tbl.Rows) != 1 {
			t.Fatalf("the Table has %d rows, want 1:\n%s", len(tbl.Rows), raw)
		}
		cells := tbl.Rows[0].Cells
		if len(cells) != len(names) {
			t.Fatalf("the row has %d cells for %d columns: %v", len(cells), len(names), cells)
		}
		var got []string
		for i, c := range cells {
			if names[i] != "Age" {
				got = append(got, fmt.Sprint(c))
			}
		}
		assertFields(t, "cells", got, []string{"shop", "Progressing", "20", "2", "abc", "def", "False", "Canary at 20%"})
	})

	t.Run("kubectl get backstop", func(t *testing.T) {
		r := mustKubectl(t, nil, "get", "backstop", "-n", ns)
		for _, want := range []string{"rollout.backstop.dev/shop", "slotemplate.backstop.dev/errors"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("the category backstop does not list %s:\n%s", want, r)
			}
		}
	})
}

// table splits kubectl's table output into the header's fields and each
// row's fields.
func table(t *testing.T, out string) (header []string, rows [][]string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 || lines[0] == "" {
		t.Fatalf("kubectl printed no table:\n%s", out)
	}
	for _, l := range lines[1:] {
		rows = append(rows, strings.Fields(l))
	}
	return strings.Fields(lines[0]), rows
}

func assertFields(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func ptr[T any](v T) *T { return &v }

// TestArgoCDCredentialsGrant: config/argocd lets the manager's
// ServiceAccount list Secrets and read the SSH known hosts in Argo CD's
// namespace, which revert/source needs to find Argo CD's repository
// credentials, and nothing in other namespaces.
func TestArgoCDCredentialsGrant(t *testing.T) {
	createManagerNamespace(t)
	mustKubectl(t, strings.NewReader("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: argocd\n"), "apply", "-f", "-")
	mustKubectl(t, nil, "apply", "-k", "config/argocd")
	t.Cleanup(func() { kubectl(t, nil, "delete", "-k", "config/argocd", "--ignore-not-found") })

	as := "--as=system:serviceaccount:" + managerNamespace + ":backstop-manager"
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"list", "secrets", "-n", "argocd"}, "yes"},
		{[]string{"get", "secrets", "-n", "argocd"}, "yes"},
		{[]string{"get", "configmaps/argocd-ssh-known-hosts-cm", "-n", "argocd"}, "yes"},
		{[]string{"get", "configmaps/argocd-cm", "-n", "argocd"}, "no"},
		{[]string{"list", "secrets", "-n", "default"}, "no"},
		{[]string{"delete", "secrets", "-n", "argocd"}, "no"},
	}
	for _, tt := range tests {
		r := kubectl(t, nil, append([]string{"auth", "can-i", as}, tt.args...)...)
		if got := strings.TrimSpace(r.stdout); got != tt.want {
			t.Errorf("can the manager %s? %q, want %q (%s)", strings.Join(tt.args, " "), got, tt.want, r)
		}
	}
}
