package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The committed reference is what the generator makes of the committed CRDs.
func TestReferenceIsCurrent(t *testing.T) {
	out := filepath.Join(t.TempDir(), "v1alpha1.md")
	if err := run(filepath.Join("..", "..", "config", "crd", "bases"), out); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	committed := filepath.Join("..", "..", "docs", "reference", "v1alpha1.md")
	got, err := os.ReadFile(committed)
	if err != nil {
		t.Fatalf("%v: run make docs", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("docs/reference/v1alpha1.md is not what config/crd/bases generates (%s): run make docs", firstDifference(got, want))
	}
}

// firstDifference names the first line where got and want differ.
func firstDifference(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d: committed %q, generated %q", i+1, clip(gl), clip(wl))
		}
	}
	return "no line differs"
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}

// Two kinds, cluster-scoped first on disk, with the schema features the
// reference shows.
const testCRDs = `---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.dev
spec:
  group: example.dev
  names:
    kind: Widget
    plural: widgets
  scope: Cluster
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size:
                type: integer
`

const testGadget = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.dev
spec:
  group: example.dev
  names:
    kind: Gadget
    plural: gadgets
    shortNames: [gad]
    categories: [example]
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
    additionalPrinterColumns:
    - jsonPath: .status.phase
      name: Phase
      type: string
    schema:
      openAPIV3Schema:
        description: Gadget makes <name>-primary from *anything*.
        type: object
        required: [spec]
        properties:
          spec:
            description: |-
              GadgetSpec is the spec.

              It has two paragraphs and a pipe | in them.
            type: object
            required: [name]
            x-kubernetes-validations:
            - rule: has(self.name) || has(self.alias)
              message: name or alias
            properties:
              name:
                description: Name matches ` + "`a|b`" + `.
                type: string
                minLength: 1
                maxLength: 63
                pattern: ^(a|b)$
              mode:
                type: string
                default: Fast
                enum: [Fast, Slow]
              ratio:
                type: string
                default: "0.5"
              replicas:
                type: integer
                format: int32
                minimum: 1
                maximum: 100
              port:
                x-kubernetes-int-or-string: true
              labels:
                type: object
                additionalProperties:
                  type: string
                maxProperties: 8
              steps:
                type: array
                maxItems: 4
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  properties:
                    name:
                      type: string
              ports:
                type: array
                x-kubernetes-list-type: set
                items:
                  type: integer
                  minimum: 1
`

func renderTestCRDs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "widgets.yaml"), []byte(testCRDs), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gadgets.yaml"), []byte(testGadget), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out", "ref.md")
	if err := run(dir, out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRenderShowsEachFieldWithItsSchema(t *testing.T) {
	doc := renderTestCRDs(t)
	for _, want := range []string{
		"`apiVersion: example.dev/v1`, `kind: Gadget`, namespaced. Resource `gadgets.example.dev`, short names `gad`, categories `example`. It has a status subresource.",
		"Gadget makes &lt;name&gt;-primary from \\*anything\\*.",
		"| Phase | string | `.status.phase` | 0 |",
		"| `.spec` | [object](#gadget-spec) | **required** |  |  | GadgetSpec is the spec.<br><br>It has two paragraphs and a pipe \\| in them. |",
		"| `.spec.name` | string | **required** |  | pattern `^(a\\|b)$`<br>length 1–63 | Name matches `a\\|b`. |",
		"| `.spec.mode` | string | optional | `Fast` | one of `Fast`, `Slow` |  |",
		"| `.spec.ratio` | string | optional | `\"0.5\"` |  |  |",
		"| `.spec.replicas` | integer (int32) | optional |  | 1–100 |  |",
		"| `.spec.port` | integer or string | optional |  |  |  |",
		"| `.spec.labels` | map of string to string | optional |  | entries at most 8 |  |",
		"| `.spec.steps` | array of [object](#gadget-specsteps) | optional |  | items at most 4<br>unique by `name` |  |",
		"| `.spec.ports` | array of integer | optional |  | unique items<br>each item: ≥ 1 |  |",
		"Rules on `.spec`:\n\n- name or alias: `has(self.name) || has(self.alias)`\n",
		"### Gadget `.spec.steps[]`\n\n| Field |",
		"| `.spec.steps[].name` | string | optional |",
		"`apiVersion: example.dev/v1`, `kind: Widget`, cluster-scoped.",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("the reference lacks\n%s\n\nit is:\n%s", want, doc)
		}
	}
}

func TestRenderPutsNamespacedKindsFirst(t *testing.T) {
	doc := renderTestCRDs(t)
	gadget, widget := strings.Index(doc, "## Gadget"), strings.Index(doc, "## Widget")
	if gadget < 0 || widget < 0 || gadget > widget {
		t.Errorf("Gadget (namespaced) at %d, Widget (cluster-scoped) at %d: want Gadget first", gadget, widget)
	}
	if !strings.Contains(doc, "- [Gadget](#gadget)\n- [Widget](#widget)\n") {
		t.Errorf("the index of kinds is missing or out of order:\n%s", doc)
	}
}

// Every link to a section of the page names a heading on it.
func TestRenderLinksOnlyToItsHeadings(t *testing.T) {
	for name, doc := range map[string]string{"test CRDs": renderTestCRDs(t), "committed reference": readCommitted(t)} {
		anchors := map[string]bool{}
		for _, line := range strings.Split(doc, "\n") {
			if strings.HasPrefix(line, "#") {
				anchors[Slug(strings.TrimLeft(line, "# "))] = true
			}
		}
		links := regexp.MustCompile(`\]\(#([^)]+)\)`).FindAllStringSubmatch(doc, -1)
		if len(links) == 0 {
			t.Errorf("%s: no links", name)
		}
		for _, l := range links {
			if !anchors[l[1]] {
				t.Errorf("%s: link to #%s, which no heading has", name, l[1])
			}
		}
	}
}

func readCommitted(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "reference", "v1alpha1.md"))
	if err != nil {
		t.Fatalf("%v: run make docs", err)
	}
	return string(b)
}

func TestRenderIsDeterministic(t *testing.T) {
	first := renderTestCRDs(t)
	for range 5 {
		if again := renderTestCRDs(t); again != first {
			t.Fatalf("two runs differ:\n%s", firstDifference([]byte(again), []byte(first)))
		}
	}
}

func TestLoadFailsWithoutCRDs(t *testing.T) {
	if err := run(t.TempDir(), filepath.Join(t.TempDir(), "ref.md")); err == nil || !strings.Contains(err.Error(), "no CustomResourceDefinition") {
		t.Errorf("run on an empty folder: got %v, want an error saying there is no CRD", err)
	}
}

func TestSlugIsGitHubs(t *testing.T) {
	for heading, want := range map[string]string{
		"Rollout `.spec.routes[].http`":         "rollout-specrouteshttp",
		"Status, condition, Events and metric":  "status-condition-events-and-metric",
		"--watch":                               "--watch",
		"Credentials Backstop cannot use":       "credentials-backstop-cannot-use",
		"`kubectl get`":                         "kubectl-get",
		"Revert Conflict and Failed":            "revert-conflict-and-failed",
		"snake_case stays":                      "snake_case-stays",
		"Flux (kustomize-controller) & Argo CD": "flux-kustomize-controller--argo-cd",
	} {
		if got := Slug(heading); got != want {
			t.Errorf("Slug(%q) = %q, want %q", heading, got, want)
		}
	}
}
