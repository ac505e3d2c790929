package revert

import (
	"errors"
	"strings"
	"testing"
)

func TestWholeValue(t *testing.T) {
	tests := []struct {
		line, v string
		want    bool
	}{
		{"  newTag: v2", "v2", true},
		{`  newTag: "v2"`, "v2", true},
		{"        image: shop/app:v2", "v2", true},
		{"image: shop/app@sha256:abc", "sha256:abc", true},
		{"  - name: TAG", "TAG", true},
		{"tag: v2 # the canary", "v2", true},
		{"version=v2,", "v2", true},
		{"apiVersion: autoscaling/v2", "v2", false},
		{"  newTag: v22", "v2", false},
		{"  newTag: v1.v2x", "v2", false},
		{"v2", "v2", true},
		{"image: shop/app:v1 # not v2x, but v2", "v2", true},
	}
	for _, tt := range tests {
		if got := wholeValue(tt.line, tt.v); got != tt.want {
			t.Errorf("wholeValue(%q, %q) = %v, want %v", tt.line, tt.v, got, tt.want)
		}
	}
}

// image is the change of the fixture's bad commit as the controller
// describes it.
var image = Change{Texts: []string{"shop/app:v2"}, Values: []string{"v2"}}

func TestFindRevertsTheCommitThatBroughtTheImage(t *testing.T) {
	f := newFixture(t)
	// After the bad commit: another file of the app, and the bad file's
	// other lines.
	f.w.Write(t, "apps/app/service.yaml", "kind: Service\n")
	f.w.Commit(t, "Add a Service")
	f.w.Write(t, manifest, deployment(3, "v2"))
	f.w.Commit(t, "Scale to 3")
	f.w.Push(t)

	req := f.request(f.bad)
	req.Commits = nil
	req.Find = &Find{Path: "apps/app", Changes: []Change{image}}
	res := revert(t, &Reverter{}, req)

	if len(res.Reverted) != 1 || res.Reverted[0] != f.bad {
		t.Fatalf("reverted %v, want only the bad commit %s", res.Reverted, f.bad)
	}
	if want := `apps/app/deployment.yaml: "image: shop/app:v2"`; len(res.Found) != 1 || res.Found[0].Why != want {
		t.Errorf("found %+v, want why %s", res.Found, want)
	}
	if got := f.git(t, "show", "main:"+manifest) + "\n"; got != deployment(3, "v1") {
		t.Errorf("manifest after the revert:\n%s", got)
	}
}

func TestFindKustomizeTagAndAnEnvChange(t *testing.T) {
	f := newFixture(t)
	f.w.Write(t, "apps/app/kustomization.yaml", "images:\n- name: shop/app\n  newTag: v1\n")
	f.w.Commit(t, "Pin the tag in kustomize")
	f.w.Write(t, "apps/app/kustomization.yaml", "images:\n- name: shop/app\n  newTag: v3\n")
	tag := f.w.Commit(t, "Release v3")
	f.w.Write(t, "apps/app/env.yaml", "FEATURE_CHECKOUT: \"on\"\n")
	env := f.w.Commit(t, "Turn the new checkout on")
	f.w.Push(t)

	req := f.request(f.bad)
	req.Commits = nil
	req.Find = &Find{Path: "apps/app", Changes: []Change{
		{Texts: []string{"shop/app:v3"}, Values: []string{"v3"}},
		{Values: []string{"on"}},
	}}
	res := revert(t, &Reverter{}, req)

	if got := strings.Join(res.Reverted, " "); got != env+" "+tag {
		t.Fatalf("reverted %s, want the env commit then the tag commit", got)
	}
	if got := f.git(t, "show", "main:apps/app/kustomization.yaml") + "\n"; got != "images:\n- name: shop/app\n  newTag: v1\n" {
		t.Errorf("kustomization after the revert:\n%s", got)
	}
}

func TestFindNothing(t *testing.T) {
	f := newFixture(t)
	req := f.request(f.bad)
	req.Commits = nil
	req.Find = &Find{Path: "apps/app", Changes: []Change{{Texts: []string{"shop/app:v9"}, Values: []string{"v9"}}}}
	_, err := (&Reverter{}).Revert(t.Context(), req)
	if !errors.Is(err, errNotFound) || !strings.Contains(err.Error(), `"shop/app:v9" or "v9"`) {
		t.Fatalf("err = %v, want one saying no commit added shop/app:v9", err)
	}
	if head := f.git(t, "rev-parse", "main"); head != f.bad {
		t.Errorf("main moved to %s", head)
	}
}
