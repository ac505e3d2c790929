// Package argocdhealth tests config/argocd/health.lua, the Argo CD health
// check of a Rollout, in the Lua interpreter Argo CD runs it in. It is a
// module of its own so that the interpreter stays out of the product's
// dependencies.
package argocdhealth

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

// script is the health check under test.
const script = "../../config/argocd/health.lua"

// health is what a health check returns, as Argo CD reads it.
type health struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// fixture is a file of testdata: a Rollout and the health Argo CD must
// show for it.
type fixture struct {
	Health  health         `json:"health"`
	Rollout map[string]any `json:"rollout"`
}

// statuses are the health statuses Argo CD accepts from a script; it
// shows any other as Unknown.
var statuses = map[string]bool{"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true}

func TestRolloutHealth(t *testing.T) {
	source, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no fixtures in testdata")
	}
	seen := map[string]bool{}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			f := readFixture(t, file)
			seen[f.Health.Status] = true
			got, err := runHealth(string(source), f.Rollout)
			if err != nil {
				t.Fatal(err)
			}
			if got != f.Health {
				t.Errorf("health %+v; want %+v", got, f.Health)
			}
		})
	}
	for _, s := range []string{"Healthy", "Progressing", "Degraded", "Suspended"} {
		if !seen[s] {
			t.Errorf("no fixture expects %s", s)
		}
	}
}

// TestLibrariesArgoCDLeavesClosedAreNotThere: the interpreter below opens
// only what Argo CD opens for a script from argocd-cm, so a check that
// used the string library would fail here as it fails in Argo CD.
func TestLibrariesArgoCDLeavesClosedAreNotThere(t *testing.T) {
	_, err := runHealth(`return { status = string.format("%s", "Healthy") }`, map[string]any{})
	if err == nil {
		t.Fatal("a script using the string library ran")
	}
}

func readFixture(t *testing.T, file string) fixture {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	// An object from the API server holds its integers as int64, and
	// Argo CD hands them to Lua so.
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	var f fixture
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	f.Rollout = integers(f.Rollout).(map[string]any)
	if f.Rollout["kind"] != "Rollout" || f.Rollout["apiVersion"] != "backstop.dev/v1alpha1" {
		t.Fatalf("%s: rollout is a %v %v; want a backstop.dev/v1alpha1 Rollout", file, f.Rollout["apiVersion"], f.Rollout["kind"])
	}
	if !statuses[f.Health.Status] {
		t.Fatalf("%s: health.status %q is not one Argo CD knows", file, f.Health.Status)
	}
	return f
}

// integers turns the json.Numbers of v into int64 or float64, as the
// API machinery decodes an unstructured object.
func integers(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = integers(e)
		}
		return v
	case []any:
		for i, e := range v {
			v[i] = integers(e)
		}
		return v
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	}
	return v
}

// runHealth runs a health check on obj the way Argo CD's util/lua does:
// only the package, base, table and os libraries open (its os is a safe
// subset; no check here uses it), one second to run, the object as the
// global obj, and the returned table read as a status and a message.
func runHealth(source string, obj map[string]any) (health, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return health{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(source); err != nil {
		return health{}, err
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return health{}, fmt.Errorf("the script returned a %s, not a table", l.Get(-1).Type())
	}
	var h health
	for field, into := range map[string]*string{"status": &h.Status, "message": &h.Message} {
		switch v := ret.RawGetString(field).(type) {
		case lua.LString:
			*into = string(v)
		case *lua.LNilType:
		default:
			return health{}, fmt.Errorf("the script returned %s = %s, not a string", field, v.Type())
		}
	}
	if !statuses[h.Status] {
		return health{}, fmt.Errorf("the script returned status %q, which Argo CD shows as Unknown", h.Status)
	}
	return h, nil
}

// toLua converts a value of an unstructured object as Argo CD's
// decodeValue does: maps and lists become tables, numbers LNumber.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, e := range v {
			t.Append(toLua(l, e))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for k, e := range v {
			t.RawSetH(lua.LString(k), toLua(l, e))
		}
		return t
	}
	return lua.LNil
}
