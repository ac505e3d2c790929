package manifests_test

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// TestRBACIsLeastPrivilege lists every rule the default install grants the
// manager and fails on what least privilege forbids: a wildcard anywhere,
// the verbs that hand out more rights, Secrets read other than by name, and
// writes to Secrets other than those of the primary's copies (create,
// update, delete by name; no patch, no deletecollection). The rules come
// from the kubebuilder markers beside the code that needs them (make
// generate).
func TestRBACIsLeastPrivilege(t *testing.T) {
	var rules []rbacv1.PolicyRule
	for _, u := range render(t, "config/default") {
		if u.GetKind() != "ClusterRole" && u.GetKind() != "Role" {
			continue
		}
		var role rbacv1.ClusterRole // a Role's rules read the same
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &role); err != nil {
			t.Fatal(err)
		}
		for _, r := range role.Rules {
			t.Logf("%s %s: groups %q resources %q verbs %q", u.GetKind(), u.GetName(), r.APIGroups, r.Resources, r.Verbs)
			rules = append(rules, r)
		}
		if role.AggregationRule != nil {
			t.Errorf("%s %s aggregates other roles: its rights are not all listed here", u.GetKind(), u.GetName())
		}
	}
	if len(rules) == 0 {
		t.Fatal("config/default grants no rules: the render found no roles")
	}
	for _, r := range rules {
		for _, field := range [][]string{r.APIGroups, r.Resources, r.Verbs, r.ResourceNames} {
			if slices.Contains(field, rbacv1.ResourceAll) || slices.ContainsFunc(field, func(s string) bool { return strings.Contains(s, "*") }) {
				t.Errorf("a wildcard in %+v", r)
			}
		}
		if len(r.NonResourceURLs) > 0 {
			t.Errorf("non-resource URLs granted: %+v", r)
		}
		for _, v := range []string{"escalate", "bind", "impersonate"} {
			if slices.Contains(r.Verbs, v) {
				t.Errorf("verb %s, which hands out more rights, in %+v", v, r)
			}
		}
		for _, res := range r.Resources {
			switch {
			case res == "secrets" && !slices.Equal(r.Verbs, []string{"create", "delete", "get", "update"}):
				// Secrets are read by the name a Rollout or its target
				// gives, never listed or watched (no cache of every
				// Secret); the only writes are the primary's copies of
				// the Secrets its target reads, each by name.
				t.Errorf("Secrets granted %q; want only create, delete, get and update", r.Verbs)
			case res == "pods" && !slices.Equal(r.Verbs, []string{"list"}):
				// Pods are listed, uncached, only to say why a canary
				// missed its progress deadline; never watched or written.
				t.Errorf("Pods granted %q; want only list", r.Verbs)
			case strings.HasPrefix(res, "pods/") && res != "pods/status":
				t.Errorf("pod subresource %s granted: %+v", res, r)
			}
		}
	}
}

// TestManagerRunsUnprivileged: the manager's pod runs as a non-root user
// with a read-only root filesystem, no privilege escalation, no
// capabilities and the runtime's seccomp profile; /tmp, for the Git work of
// reverts, is the only writable place.
func TestManagerRunsUnprivileged(t *testing.T) {
	var d appsv1.Deployment
	find(t, render(t, "config/default"), "Deployment", "backstop-manager", &d)
	pod := d.Spec.Template.Spec
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot ||
		pod.SecurityContext.RunAsUser == nil || *pod.SecurityContext.RunAsUser == 0 {
		t.Errorf("pod securityContext %+v; want a non-root user", pod.SecurityContext)
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Errorf("the pod shares the host's namespaces")
	}
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Fatalf("container %s has no securityContext", c.Name)
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("container %s: the root filesystem is writable", c.Name)
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("container %s may escalate privileges", c.Name)
		case sc.Privileged != nil && *sc.Privileged:
			t.Errorf("container %s is privileged", c.Name)
		case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
			t.Errorf("container %s capabilities %+v; want all dropped, none added", c.Name, sc.Capabilities)
		case sc.SeccompProfile == nil && (pod.SecurityContext.SeccompProfile == nil):
			t.Errorf("container %s has no seccomp profile", c.Name)
		}
		for _, m := range c.VolumeMounts {
			if m.MountPath != "/tmp" && !m.ReadOnly {
				t.Errorf("container %s mounts %s writable; only /tmp should be", c.Name, m.MountPath)
			}
		}
	}
}
