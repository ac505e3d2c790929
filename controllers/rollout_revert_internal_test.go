package controllers

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"backstop.dev/backstop/revert"
)

func TestTemplateChanges(t *testing.T) {
	pod := func(init string, containers ...corev1.Container) *corev1.PodTemplateSpec {
		p := &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: containers}}
		if init != "" {
			p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: init}}
		}
		return p
	}
	app := func(image string, env ...corev1.EnvVar) corev1.Container {
		return corev1.Container{Name: "app", Image: image, Env: env}
	}
	tests := []struct {
		name           string
		stable, failed *corev1.PodTemplateSpec
		want           []revert.Change
	}{{
		name:   "a new tag: the image or the tag alone",
		stable: pod("", app("registry.example:5000/shop/app:1.4.1")),
		failed: pod("", app("registry.example:5000/shop/app:1.4.2")),
		want:   []revert.Change{{Texts: []string{"registry.example:5000/shop/app:1.4.2"}, Values: []string{"1.4.2"}}},
	}, {
		name:   "a new digest",
		stable: pod("", app("shop/app@sha256:aaaa")),
		failed: pod("", app("shop/app@sha256:bbbb")),
		want:   []revert.Change{{Texts: []string{"shop/app@sha256:bbbb"}, Values: []string{"sha256:bbbb"}}},
	}, {
		name:   "another image of the same tag: the image only",
		stable: pod("", app("shop/app:2")),
		failed: pod("", app("shop/app-next:2")),
		want:   []revert.Change{{Texts: []string{"shop/app-next:2"}}},
	}, {
		name:   "an init container and an environment value",
		stable: pod("shop/migrate:1", app("shop/app:1", corev1.EnvVar{Name: "CHECKOUT", Value: "old"})),
		failed: pod("shop/migrate:2", app("shop/app:1", corev1.EnvVar{Name: "CHECKOUT", Value: "new-flow"}, corev1.EnvVar{Name: "X", Value: "1"})),
		want: []revert.Change{
			{Texts: []string{"shop/migrate:2"}, Values: []string{"2"}},
			{Values: []string{"new-flow"}},
		},
	}, {
		name:   "nothing that tells them apart",
		stable: pod("", app("shop/app:1")),
		failed: pod("", app("shop/app:1")),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := templateChanges(tt.stable, tt.failed); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("templateChanges = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestConfigMapChanges(t *testing.T) {
	stable := map[string]string{
		"mode":      "fast",
		"same":      "kept",
		"app.yaml":  "server:\n  port: 8080\n  pool: 10\n}\n",
		"short":     "a",
		"unchanged": "line one\nline two\n",
	}
	failed := map[string]string{
		"mode":      "slow-path",
		"same":      "kept",
		"app.yaml":  "server:\n  port: 8080\n  pool: 0\n  retries: 9\n}\n",
		"short":     "b",
		"new":       "fresh-value\n",
		"unchanged": "line one\nline two\n",
	}
	want := []revert.Change{
		{Values: []string{"pool: 0", "retries: 9"}},
		{Values: []string{"slow-path"}},
		{Values: []string{"fresh-value"}},
	}
	// In the order of the keys: app.yaml, mode, new.
	if got := configMapChanges(stable, failed); !reflect.DeepEqual(got, want) {
		t.Errorf("configMapChanges = %+v, want %+v", got, want)
	}
}
