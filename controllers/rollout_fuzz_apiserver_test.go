package controllers_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers"
)

// TestRolloutFuzzModelAgreesWithTheAPIServer: FuzzRolloutSpec feeds the
// manager only what its model of the apiserver admits (the CRD's schema
// with pruning, defaults and the CEL rules the plan's bounds rest on). This
// test sends every body of the fuzzer's corpus to the real apiserver, as a
// dry-run create, and proves the model decides each the same way: so a
// duration of 3000000h, a setWeight of 101, field names in another case or
// a step with two kinds are refused (or admitted) by the real apiserver as
// the fuzzer assumes.
func TestRolloutFuzzModelAgreesWithTheAPIServer(t *testing.T) {
	ns := env.Namespace(t)
	corpus := controllers.RolloutFuzzCorpus(t)
	names := make([]string, 0, len(corpus))
	for name := range corpus {
		names = append(names, name)
	}
	slices.Sort(names)
	admitted, refused, skipped := 0, 0, 0
	for _, name := range names {
		body := corpus[name]
		var obj map[string]any
		if err := utiljson.Unmarshal(body, &obj); err != nil || obj == nil {
			skipped++ // no request to send
			continue
		}
		delete(obj, "status")
		obj["apiVersion"], obj["kind"] = backstopv1.GroupVersion.String(), backstopv1.RolloutKind
		obj["metadata"] = map[string]any{"name": "fuzz", "namespace": ns}
		u := &unstructured.Unstructured{Object: obj}
		err := env.Client.Create(context.Background(), u, client.DryRunAll)
		model := controllers.RolloutFuzzAdmit(t, body)
		switch {
		case err == nil && model == "":
			admitted++
			t.Logf("%s: admitted by both", name)
		case err != nil && model != "":
			refused++
			t.Logf("%s: refused by both; the model: %s; the apiserver: %s", name, model, rolloutFuzzFirstLine(err.Error()))
		case err == nil:
			t.Errorf("%s: the apiserver admits it, the model refuses it: %s", name, model)
		default:
			t.Errorf("%s: the model admits it, the apiserver refuses it: %v", name, err)
		}
	}
	t.Logf("%d bodies: %d admitted and %d refused by both, %d not JSON objects", len(corpus), admitted, refused, skipped)
}

func rolloutFuzzFirstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
