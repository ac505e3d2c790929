package analysis

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// renderFuzzTemplates are the templates FuzzRender puts an arg into.
var renderFuzzTemplates = []struct {
	query string
	safe  string // a value that fits; an accepted value must give the same shape
	kind  string // where the arg goes: "string", "regex", "single", "raw", "label_replace" or "token" (outside quotes)
}{
	{`sum(rate(http_requests_total{namespace="{{.Namespace}}",route="{{.Args.v}}"}[{{.Window}}]))`, "x", "string"},
	{`sum(rate(http_requests_total{route=~"{{regex .Args.v}}"}[{{.Window}}]))`, "x", "regex"},
	{`up{route='{{.Args.v}}'}`, "x", "single"},
	{"up{route=`{{.Args.v}}`}", "x", "raw"},
	{`label_replace(up, "dst", "{{.Args.v}}", "src", "(.*)")`, "x", "label_replace"},
	{`sum(rate({{.Args.v}}_total{namespace="{{.Namespace}}"}[5m]))`, "http_requests", "token"},
	{`sum(rate(up[5m])) > {{.Args.v}}`, "0.5", "token"},
	{`sum(rate(up[{{.Args.v}}]))`, "5m", "token"},
	{`sum by ({{.Args.v}}) (up)`, "route", "token"},
	{`up{ {{.Args.v}}="x"}`, "route", "token"},
	{`up offset {{.Args.v}}`, "5m", "token"},
	{`{{.Args.v}}`, "up", "token"},
	{`up{route={{printf "%q" .Args.v}}}`, "x", "string"},
	{`sum(rate(x{pod=~"{{regex .Args.v}}-.*",app="{{.Args.v}}"}[5m])) > {{.Args.v}}`, "1", "token"},
}

// FuzzRender checks that an arg either is refused with a *RenderError or
// renders a query that parses, has the template's shape, and keeps the arg's
// value exactly where it is inside a string literal.
func FuzzRender(f *testing.F) {
	f.Add(uint8(0), `x"} or vector(1) #`)
	f.Fuzz(func(t *testing.T, choice uint8, v string) {
		tmpl := renderFuzzTemplates[int(choice)%len(renderFuzzTemplates)]
		vars := renderTestVars(map[string]string{"v": v})
		got, err := RenderQuery(tmpl.query, vars)
		if err != nil {
			var re *RenderError
			if !errors.As(err, &re) {
				t.Fatalf("error %T %v is not a *RenderError", err, err)
			}
			switch re.Reason {
			case RenderShape, RenderSyntax:
			default:
				t.Fatalf("unexpected reason: %v", re)
			}
			if len(v) > 64 && strings.Contains(re.Message, v) {
				t.Fatalf("message quotes the whole value: %s", re.Message)
			}
			switch {
			case tmpl.kind == "string", tmpl.kind == "label_replace", tmpl.kind == "raw":
				t.Fatalf("a value in a string literal was refused: %v", err)
			case tmpl.kind == "regex" && utf8.ValidString(v):
				t.Fatalf("a regex-quoted UTF-8 value was refused: %v", err)
			case tmpl.kind == "single" && !strings.Contains(v, `"`):
				t.Fatalf("a value without \" in single quotes was refused: %v", err)
			}
			return
		}

		// The design's guarantee: the query has the shape it has with a
		// harmless value of the same class.
		same, err := RenderQuery(tmpl.query, renderTestVars(map[string]string{"v": renderPlaceholder(v)}))
		if err != nil {
			t.Fatalf("placeholder %q refused: %v", renderPlaceholder(v), err)
		}
		renderTestSameShape(t, got, same)
		// Independently of the classes: no operator, function, aggregation or
		// matcher was added. A value outside a string literal is one token,
		// of a kind the template may not expect (a threshold of "up"
		// compares with a metric), so literals and selectors of a name alone
		// are leaves, and vector matching is not compared.
		want, err := RenderQuery(tmpl.query, renderTestVars(map[string]string{"v": tmpl.safe}))
		if err != nil {
			t.Fatalf("safe value refused: %v", err)
		}
		if g, w := renderFuzzShape(t, got), renderFuzzShape(t, want); renderShapeDiff(w, g) != "" {
			t.Fatalf("query %q has another structure than %q: %s", got, want, renderShapeDiff(w, g))
		}

		switch tmpl.kind {
		case "string", "single":
			if m := renderTestMatcher(t, got, "route"); m.Value != v {
				t.Fatalf("matcher value %q, want %q", m.Value, v)
			}
		case "raw":
			// Backquotes have no escapes: the value is kept only if it has
			// nothing to escape, but it never leaves the literal.
			if m := renderTestMatcher(t, got, "route"); m.Value != renderEscape(v) {
				t.Fatalf("matcher value %q, want %q", m.Value, renderEscape(v))
			}
		case "regex":
			m := renderTestMatcher(t, got, "route")
			if m.Value != regexp.QuoteMeta(v) {
				t.Fatalf("regex %q, want %q", m.Value, regexp.QuoteMeta(v))
			}
			lm, err := labels.NewMatcher(labels.MatchRegexp, "route", m.Value)
			if err != nil {
				t.Fatal(err)
			}
			if !lm.Matches(v) {
				t.Fatalf("regex %q does not match %q", m.Value, v)
			}
			if other := v + "x"; lm.Matches(other) {
				t.Fatalf("regex %q matches %q", m.Value, other)
			}
		case "label_replace":
			expr, err := parser.NewParser(parser.Options{}).ParseExpr(got)
			if err != nil {
				t.Fatal(err)
			}
			if s := expr.(*parser.Call).Args[2].(*parser.StringLiteral).Val; s != v {
				t.Fatalf("string literal %q, want %q", s, v)
			}
		}
	})
}

// renderFuzzShape is renderShape with every literal, and every selector with
// only a metric name, described as a leaf, and binary operators without their
// vector matching.
func renderFuzzShape(t *testing.T, query string) []string {
	t.Helper()
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(query)
	if err != nil {
		t.Fatalf("query %q does not parse: %v", query, err)
	}
	var shape []string
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.NumberLiteral, *parser.StringLiteral:
			shape = append(shape, "leaf")
			return nil
		case *parser.VectorSelector:
			if len(n.LabelMatchers) == 1 && n.LabelMatchers[0].Name == model.MetricNameLabel &&
				n.OriginalOffset == 0 && n.OriginalOffsetExpr == nil && n.Timestamp == nil {
				shape = append(shape, "leaf")
				return nil
			}
		}
		s := renderNodeShape(n)
		if b, ok := n.(*parser.BinaryExpr); ok {
			s = fmt.Sprintf("binary %s bool=%t", b.Op, b.ReturnBool)
		}
		shape = append(shape, s)
		return nil
	})
	return shape
}
