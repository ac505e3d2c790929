package analysis

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"text/template"
	"text/template/parse"
	"time"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// renderFuzzTemplates are the templates FuzzRender puts two args, v and w,
// into. Every value that lands in a string literal lands in the matcher on
// label "route" (v) or "other" (w), or in label_replace's replacement.
var renderFuzzTemplates = []struct {
	query string
	safe  string // a value of v that fits; an accepted v must give the same structure
	kind  string // where v goes: "string", "regex", "single", "raw", "label_replace" or "token" (outside quotes)
	wkind string // where w goes, the same way; "" when w is not used
}{
	{`sum(rate(http_requests_total{namespace="{{.Namespace}}",route="{{.Args.v}}"}[{{.Window}}]))`, "x", "string", ""},
	{`sum(rate(http_requests_total{route=~"{{regex .Args.v}}"}[{{.Window}}]))`, "x", "regex", ""},
	{`up{route='{{.Args.v}}'}`, "x", "single", ""},
	{"up{route=`{{.Args.v}}`}", "x", "raw", ""},
	{`label_replace(up, "dst", "{{.Args.v}}", "src", "(.*)")`, "x", "label_replace", ""},
	{`sum(rate({{.Args.v}}_total{namespace="{{.Namespace}}"}[5m]))`, "http_requests", "token", ""},
	{`sum(rate(up[5m])) > {{.Args.v}}`, "0.5", "token", ""},
	{`sum(rate(up[{{.Args.v}}]))`, "5m", "token", ""},
	{`sum by ({{.Args.v}}) (up)`, "route", "token", ""},
	{`up{ {{.Args.v}}="x"}`, "route", "token", ""},
	{`up offset {{.Args.v}}`, "5m", "token", ""},
	{`{{.Args.v}}`, "up", "token", ""},
	{`up{route={{printf "%q" .Args.v}}}`, "x", "string", ""},
	{`sum(rate(x{pod=~"{{regex .Args.v}}-.*",app="{{.Args.v}}"}[5m])) > {{.Args.v}}`, "1", "token", ""},
	// Two values side by side: the end of one literal and the start of the
	// next are each the fuzzer's, so a value that ends in a backslash and
	// one that starts with a quote meet.
	{`up{route="{{.Args.v}}",other="{{.Args.w}}"}`, "x", "string", "string"},
	{`up{route="{{.Args.v}}"} / on() group_left up{other='{{.Args.w}}'}`, "x", "string", "single"},
	{`sum(rate(http_requests_total{route=~"{{regex .Args.v}}.*",other!~"{{regex .Args.w}}"}[{{.Window}}]))`, "x", "regex", "regex"},
	{"up{route=`{{.Args.v}}`,other=\"{{.Args.w}}\"}", "x", "raw", "string"},
}

// renderFuzzFits says whether a value of kind must be accepted: a value in
// double quotes always is, in a regex when it is UTF-8 (RE2's rule), in
// single quotes when it has no double quote. A token outside quotes may be
// refused.
func renderFuzzFits(kind, v string) bool {
	switch kind {
	case "", "string", "label_replace", "raw":
		return true
	case "regex":
		return utf8.ValidString(v)
	case "single":
		return !strings.Contains(v, `"`)
	}
	return false
}

// FuzzRender checks that args either are refused with a *RenderError or
// render a query that parses, has the template's structure, and keeps each
// value exactly where it is inside a string literal:
//
//   - an arg in a string literal (double quotes, label_replace) is never
//     refused, nor one in a regex that is UTF-8, nor one without a double
//     quote in single quotes; an error's message never quotes a value
//     longer than 64 bytes in full;
//   - the query has the structure it has with a harmless value: with every
//     substituted literal blanked, the parsed query prints the same as the
//     one rendered with the safe value, so no matcher, selector, operator
//     or function was added, closed or removed;
//   - after unquoting, the matcher holds the value itself (the regex
//     quoted for RE2, matching the value and nothing longer);
//   - rendering is deterministic.
func FuzzRender(f *testing.F) {
	f.Add(uint8(0), `x"} or vector(1) #`, "")
	f.Fuzz(func(t *testing.T, choice uint8, v, w string) {
		tmpl := renderFuzzTemplates[int(choice)%len(renderFuzzTemplates)]
		args := map[string]string{"v": v, "w": w}
		got, err := RenderQuery(tmpl.query, renderTestVars(args))
		if again, err2 := RenderQuery(tmpl.query, renderTestVars(args)); again != got || fmt.Sprint(err) != fmt.Sprint(err2) {
			t.Fatalf("two renderings differ: %q, %v and %q, %v", got, err, again, err2)
		}
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
			for _, val := range []string{v, w} {
				if len(val) > renderMaxValue && strings.Contains(re.Message, val) {
					t.Fatalf("message quotes a whole value of %d bytes: %s", len(val), re.Message)
				}
			}
			if renderFuzzFits(tmpl.kind, v) && renderFuzzFits(tmpl.wkind, w) {
				t.Fatalf("values that fit where they go (%s, %s) were refused: %v", tmpl.kind, tmpl.wkind, err)
			}
			t.Logf("template %d refused %q, %q: %s", int(choice)%len(renderFuzzTemplates), v, w, re.Reason)
			return
		}
		t.Logf("template %d rendered %q", int(choice)%len(renderFuzzTemplates), got)

		// The design's guarantee: the query has the shape it has with a
		// harmless value of the same class.
		same, err := RenderQuery(tmpl.query, renderTestVars(map[string]string{"v": renderPlaceholder(v), "w": renderPlaceholder(w)}))
		if err != nil {
			t.Fatalf("placeholders %q, %q refused: %v", renderPlaceholder(v), renderPlaceholder(w), err)
		}
		renderTestSameShape(t, got, same)
		want, err := RenderQuery(tmpl.query, renderTestVars(map[string]string{"v": tmpl.safe, "w": "x"}))
		if err != nil {
			t.Fatalf("safe values refused: %v", err)
		}
		if tmpl.kind == "token" {
			// A value outside a string literal is one token, of a kind the
			// template may not expect (a threshold of "up" compares with a
			// metric), so literals and selectors of a name alone are
			// leaves, and vector matching is not compared. No operator,
			// function, aggregation or matcher was added.
			if g, w := renderFuzzShape(t, got), renderFuzzShape(t, want); renderShapeDiff(w, g) != "" {
				t.Fatalf("query %q has another structure than %q: %s", got, want, renderShapeDiff(w, g))
			}
			return
		}
		// Independently of renderShape: the whole syntax tree but the
		// substituted literals is the safe query's, printed by the parser.
		if g, w := renderFuzzBlank(t, got), renderFuzzBlank(t, want); g != w {
			t.Fatalf("query %q is not the safe query %q with other literals:\n got %s\nwant %s", got, want, g, w)
		}
		renderFuzzValue(t, got, "route", tmpl.kind, v)
		renderFuzzValue(t, got, "other", tmpl.wkind, w)
	})
}

// renderFuzzValue checks what the value of the matcher on label (or of
// label_replace's replacement) is after unquoting.
func renderFuzzValue(t *testing.T, query, label, kind, v string) {
	t.Helper()
	switch kind {
	case "string", "single":
		if m := renderTestMatcher(t, query, label); m.Value != v {
			t.Fatalf("matcher %s value %q, want %q", label, m.Value, v)
		}
	case "raw":
		// Backquotes have no escapes: the value is kept only if it has
		// nothing to escape, but it never leaves the literal.
		if m := renderTestMatcher(t, query, label); m.Value != renderEscape(v) {
			t.Fatalf("matcher %s value %q, want %q", label, m.Value, renderEscape(v))
		}
	case "regex":
		m := renderTestMatcher(t, query, label)
		if !strings.HasPrefix(m.Value, regexp.QuoteMeta(v)) {
			t.Fatalf("regex %q does not start with %q", m.Value, regexp.QuoteMeta(v))
		}
		if m.Value != regexp.QuoteMeta(v) {
			return // the template adds to the regex (.*)
		}
		lm, err := labels.NewMatcher(labels.MatchRegexp, label, m.Value)
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
		expr, err := parser.NewParser(parser.Options{}).ParseExpr(query)
		if err != nil {
			t.Fatal(err)
		}
		if s := expr.(*parser.Call).Args[2].(*parser.StringLiteral).Val; s != v {
			t.Fatalf("string literal %q, want %q", s, v)
		}
	}
}

// renderFuzzBlank parses query and prints it with the values of the
// matchers on "route" and "other" and of label_replace's replacement
// replaced by a mark: what is left is the structure and every other name
// and value.
func renderFuzzBlank(t *testing.T, query string) string {
	t.Helper()
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(query)
	if err != nil {
		t.Fatalf("query %q does not parse: %v", query, err)
	}
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			for _, m := range n.LabelMatchers {
				if m.Name == "route" || m.Name == "other" {
					m.Value = "<value>"
				}
			}
		case *parser.Call:
			if n.Func.Name == "label_replace" && len(n.Args) == 5 {
				if s, ok := n.Args[2].(*parser.StringLiteral); ok {
					s.Val = "<value>"
				}
			}
		}
		return nil
	})
	return expr.String()
}

// renderFuzzShape is renderShape with every literal, and every selector with
// only a metric name, described as a leaf, and binary operators without their
// vector matching.
func renderFuzzShape(t *testing.T, query string) []string {
	t.Helper()
	expr, err := parser.NewParser(parser.Options{EnableExperimentalFunctions: true}).ParseExpr(query)
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

// FuzzRenderTemplate renders a template the fuzzer writes, as a Rollout's
// or an SLOTemplate's author may, with an arg the fuzzer chooses:
//
//   - it never panics, and ends: a template cannot make rendering run
//     without end (range and template calls are refused, the output is
//     bounded);
//   - an error is a *RenderError of a documented reason whose message
//     quotes no value longer than 64 bytes in full;
//   - a rendered query is at most 64 KiB and parses as PromQL;
//   - when the template has no control flow and does not look inside a
//     value (if, with, comparisons, len, index, slice), the query has the
//     structure (renderFuzzShape) it has with the arg "x", when both render;
//   - rendering is deterministic.
func FuzzRenderTemplate(f *testing.F) {
	f.Add(`sum(rate(http_requests_total{namespace="{{.Namespace}}",route="{{.Args.v}}"}[{{.Window}}]))`, `x"} or vector(1) #`)
	f.Fuzz(func(t *testing.T, query, v string) {
		vars := renderTestVars(map[string]string{"v": v})
		got, err := RenderQuery(query, vars)
		if again, err2 := RenderQuery(query, vars); again != got || fmt.Sprint(err) != fmt.Sprint(err2) {
			t.Fatalf("two renderings differ: %q, %v and %q, %v", got, err, again, err2)
		}
		if err != nil {
			var re *RenderError
			if !errors.As(err, &re) {
				t.Fatalf("error %T %v is not a *RenderError", err, err)
			}
			switch re.Reason {
			case RenderTemplate, RenderSyntax, RenderShape:
			default:
				t.Fatalf("unexpected reason: %v", re)
			}
			if len(v) > renderMaxValue && strings.Contains(re.Message, v) {
				t.Fatalf("message quotes the whole value of %d bytes: %s", len(v), re.Message)
			}
			t.Logf("%d-byte template refused: %s", len(query), re)
			return
		}
		t.Logf("%d-byte template rendered %d bytes", len(query), len(got))
		if len(got) > renderMaxQuery {
			t.Fatalf("rendered query of %d bytes, more than %d", len(got), renderMaxQuery)
		}
		if _, err := renderParser.ParseExpr(got); err != nil {
			t.Fatalf("rendered query %q does not parse: %v", got, err)
		}
		if !renderFuzzValueBlind(query) {
			return
		}
		plain, err := RenderQuery(query, renderTestVars(map[string]string{"v": "x"}))
		if err != nil {
			return // v fits where "x" does not, as a duration does
		}
		if g, w := renderFuzzShape(t, got), renderFuzzShape(t, plain); renderShapeDiff(w, g) != "" {
			t.Fatalf("query %q has another structure than %q: %s", got, plain, renderShapeDiff(w, g))
		}
	})
}

// renderFuzzValueBlind says whether a template renders the same structure
// whatever its values: it parses, and has no if, with or range, and calls
// no function that looks at a value's raw text.
func renderFuzzValueBlind(query string) bool {
	tmpl, err := template.New("query").Funcs(renderFuncs).Parse(query)
	if err != nil {
		return false
	}
	blind := true
	var walk func(n parse.Node)
	walk = func(n parse.Node) {
		switch n := n.(type) {
		case *parse.ListNode:
			if n == nil {
				return
			}
			for _, c := range n.Nodes {
				walk(c)
			}
		case *parse.IfNode, *parse.WithNode, *parse.RangeNode:
			blind = false
		case *parse.ActionNode:
			walk(n.Pipe)
		case *parse.PipeNode:
			if n == nil {
				return
			}
			for _, c := range n.Cmds {
				walk(c)
			}
		case *parse.CommandNode:
			for _, a := range n.Args {
				walk(a)
			}
		case *parse.IdentifierNode:
			switch n.Ident {
			case "eq", "ne", "lt", "le", "gt", "ge", "and", "or", "not", "len", "index", "slice", "call":
				blind = false
			}
		}
	}
	for _, t := range tmpl.Templates() {
		if t.Tree != nil {
			walk(t.Tree.Root)
		}
	}
	return blind
}

// TestRenderRefusesTemplateCalls: a template that calls defined templates,
// two calls per level, forty levels deep (2^40 calls that print nothing,
// in about 2,500 of the 4,096 bytes a query may have), is refused at once
// instead of holding the reconcile that renders it for days; so are a
// template calling itself and block. FuzzRenderTemplate's corpus keeps
// these inputs too.
func TestRenderRefusesTemplateCalls(t *testing.T) {
	var doubling strings.Builder
	const levels = 40
	for i := range levels {
		fmt.Fprintf(&doubling, `{{define "t%d"}}{{template "t%d" .}}{{template "t%d" .}}{{end}}`, i, i+1, i+1)
	}
	fmt.Fprintf(&doubling, `{{define "t%d"}}{{end}}{{template "t0" .}}up`, levels)
	cases := map[string]string{
		"calls doubling 40 deep":    doubling.String(),
		"a template calling itself": `{{define "a"}}{{template "a" .}}{{end}}{{template "a" .}}up`,
		"block":                     `{{block "b" .}}up{{end}}`,
		"a call in a branch":        `{{define "n"}}{{.Namespace}}{{end}}up{namespace="{{if .Namespace}}{{template "n" .}}{{end}}"}`,
	}
	for name, query := range cases {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			_, err := RenderQuery(query, renderTestVars(nil))
			if !renderTestIsReason(err, RenderTemplate) || !strings.Contains(err.Error(), "template and block are not allowed") {
				t.Fatalf("RenderQuery(%d bytes) = %v, want a TemplateError refusing template calls", len(query), err)
			}
			t.Logf("%d-byte template refused in %v: %v", len(query), time.Since(start), err)
		})
	}
	// A define that is never called is harmless and stays allowed.
	if _, err := RenderQuery(`{{define "unused"}}x{{end}}up{namespace="{{.Namespace}}"}`, renderTestVars(nil)); err != nil {
		t.Fatalf("a template with an unused define was refused: %v", err)
	}
}
