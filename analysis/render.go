package analysis

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
)

// QueryVars are the values a query template may use.
type QueryVars struct {
	Namespace, Name                        string // the Rollout's namespace and name
	Target, Primary, Canary                string // Deployment names
	Service, PrimaryService, CanaryService string // Service names
	Window, Interval                       time.Duration
	Args                                   map[string]string
}

// RenderError says why a query could not be rendered. Reason is one of the
// constants RenderTemplate, RenderSyntax and RenderShape.
type RenderError struct {
	Reason  string // RenderTemplate, RenderSyntax or RenderShape
	Message string // for people; never includes a value longer than 64 bytes in full
}

func (e *RenderError) Error() string {
	return e.Reason + ": " + e.Message
}

// Reasons of a RenderError.
const (
	// RenderTemplate: the Go template does not parse or execute (an unknown
	// field, a missing arg, a zero .Window or .Interval that the template uses).
	RenderTemplate = "TemplateError"
	// RenderSyntax: the rendered query is not valid PromQL, and the template is
	// to blame; the message carries the parser's message and position.
	RenderSyntax = "SyntaxError"
	// RenderShape: a value would change the query's shape, or does not fit
	// where the template uses it; the message names the variable but does not
	// quote its value.
	RenderShape = "UnsafeValue"
)

// renderMaxQuery bounds the length of a rendered query.
const renderMaxQuery = 64 << 10

// renderMaxValue is how much of a value an error message may quote.
const renderMaxValue = 64

// renderParser parses rendered queries. Experimental functions are accepted:
// whether they are enabled is the Prometheus server's decision.
var renderParser = parser.NewParser(parser.Options{EnableExperimentalFunctions: true})

var renderFuncs = template.FuncMap{"regex": renderRegex}

// RenderQuery executes the query template with vars and returns a PromQL
// expression that parsed. Errors are *RenderError.
//
// The template is a Go text/template. Its variables are:
//
//	.Namespace, .Name                         the Rollout's namespace and name
//	.Target, .Primary, .Canary                Deployment names
//	.Service, .PrimaryService, .CanaryService Service names
//	.Window, .Interval                        PromQL durations such as 5m or 1h30m;
//	                                          using one shorter than 1ms is an error
//	.Args.NAME (or index .Args "NAME")        a template arg; a missing one is an error
//
// Every string value prints escaped for a PromQL string literal in double
// quotes, whatever the printf verb (%q adds the quotes): a value used as
// "{{.Args.route}}" always yields exactly that value. Outside double quotes a
// value must be one token that fits where it is used: a name such as
// http_requests or job:errors:rate5m, a number such as 0.99, or a duration
// such as 5m; a Kubernetes name with a dash fits only inside quotes. A value
// that would change the structure of the query is refused (RenderShape); one
// token of another kind that fits is not (a threshold of "up" compares with
// the metric up). Inside single quotes a value with a double quote is
// refused; inside backquotes a value with a backslash, quote or control
// character is kept safely but not exactly.
//
// Besides the text/template builtins, except range, template and block,
// which are refused, one function is available:
//
//	regex V   V escaped for an RE2 regular expression (regexp.QuoteMeta), then
//	          for a string literal: {l=~"{{regex .Args.path}}.*"} matches the
//	          values that start with the arg exactly. Apply it to a variable,
//	          not to the output of printf.
//
// The keys of .Args are not escaped, so .Args and dot print whole as "<.Args>"
// and "<.>", and range is refused.
//
// The template is rendered twice: once with the values and once with each
// value replaced by a placeholder of the same kind (a number by 1, a duration
// by 1m, a name by backstop_placeholder, anything else by x). Both must parse
// and their syntax trees must have the same node types, operators, function
// names, aggregations, matcher and grouping counts and match types. Actions
// such as {{if eq .Args.mode "sum"}} see the real value in both renderings,
// so a template may choose its structure from a value; what a value prints
// may only fill in a name, string, number or duration.
func RenderQuery(query string, vars QueryVars) (string, error) {
	vals := renderCollect(vars)
	tmpl, err := template.New("query").Option("missingkey=error").Funcs(renderFuncs).Parse(query)
	if err != nil {
		return "", renderFail(RenderTemplate, vals, "the query template does not parse: %v", err)
	}
	if err := renderCheckTemplate(tmpl); err != nil {
		return "", renderFail(RenderTemplate, vals, "%v", err)
	}
	r := &renderer{tmpl: tmpl, vals: vals}

	rendered, err := r.exec(r.asIs)
	if err != nil {
		if errors.Is(err, errRenderTooLong) {
			return "", renderFail(RenderTemplate, vals, "the rendered query is longer than %d bytes", renderMaxQuery)
		}
		return "", renderFail(RenderTemplate, vals, "the query template does not execute: %v", err)
	}
	masked, err := r.exec(r.masked)
	if err != nil {
		// Control flow sees the real values in both runs, so this is unlikely.
		return "", renderFail(RenderTemplate, vals, "the query template does not execute: %v", err)
	}
	realExpr, realErr := renderParser.ParseExpr(rendered)
	maskedExpr, maskedErr := renderParser.ParseExpr(masked)

	switch {
	case realErr == nil && maskedErr == nil:
		want := renderShape(maskedExpr)
		diff := renderShapeDiff(want, renderShape(realExpr))
		if diff == "" {
			return rendered, nil
		}
		return "", r.blameShape(want, "the rendered query has another structure ("+diff+")")
	case realErr != nil && maskedErr == nil:
		return "", r.blameShape(renderShape(maskedExpr), "the rendered query does not parse")
	case realErr == nil && maskedErr != nil:
		return "", r.blameUnchecked()
	default:
		if e := r.blameMisfit(); e != nil {
			return "", e
		}
		return "", renderFail(RenderSyntax, vals, "the rendered query is not valid PromQL: %v (query: %s)", realErr, rendered)
	}
}

// renderCheckTemplate refuses range: it would print the keys of .Args as
// they are, and a range over a number could render without end. It refuses
// template (and block, which is a define and a template) too: templates
// that call each other twice, forty deep, print nothing and run for days
// within the 4096 bytes a query may have, holding a reconcile.
func renderCheckTemplate(tmpl *template.Template) error {
	var tree *parse.Tree
	var check func(n parse.Node) error
	check = func(n parse.Node) error {
		switch n := n.(type) {
		case *parse.ListNode:
			if n == nil {
				return nil
			}
			for _, c := range n.Nodes {
				if err := check(c); err != nil {
					return err
				}
			}
		case *parse.IfNode:
			return errors.Join(check(n.List), check(n.ElseList))
		case *parse.WithNode:
			return errors.Join(check(n.List), check(n.ElseList))
		case *parse.RangeNode:
			loc, _ := tree.ErrorContext(n)
			return fmt.Errorf("%s: range is not allowed in a query template", loc)
		case *parse.TemplateNode:
			loc, _ := tree.ErrorContext(n)
			return fmt.Errorf("%s: template and block are not allowed in a query template", loc)
		}
		return nil
	}
	// In the order of their names, so that of several refused actions the
	// same one is reported each time (Templates comes from a map).
	all := tmpl.Templates()
	slices.SortFunc(all, func(a, b *template.Template) int { return strings.Compare(a.Name(), b.Name()) })
	for _, t := range all {
		if tree = t.Tree; tree != nil {
			if err := check(tree.Root); err != nil {
				return err
			}
		}
	}
	return nil
}

// renderValue is one variable of a query template.
type renderValue struct {
	name string // as a template writes it, e.g. .Args.route
	key  string // the key in .Args, for args
	raw  string
	err  error // set when using the variable is an error
}

// renderCollect lists the variables in a fixed order: fields, then args by key.
func renderCollect(vars QueryVars) []renderValue {
	vals := []renderValue{
		{name: ".Namespace", raw: vars.Namespace},
		{name: ".Name", raw: vars.Name},
		{name: ".Target", raw: vars.Target},
		{name: ".Primary", raw: vars.Primary},
		{name: ".Canary", raw: vars.Canary},
		{name: ".Service", raw: vars.Service},
		{name: ".PrimaryService", raw: vars.PrimaryService},
		{name: ".CanaryService", raw: vars.CanaryService},
		renderDuration(".Window", vars.Window),
		renderDuration(".Interval", vars.Interval),
	}
	keys := make([]string, 0, len(vars.Args))
	for k := range vars.Args {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		vals = append(vals, renderValue{name: renderArgName(k), key: k, raw: vars.Args[k]})
	}
	return vals
}

func renderDuration(name string, d time.Duration) renderValue {
	if d < time.Millisecond {
		return renderValue{name: name, err: fmt.Errorf("%s is %v; it must be at least 1ms", name, d)}
	}
	return renderValue{name: name, raw: model.Duration(d).String()}
}

var renderIdentRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func renderArgName(key string) string {
	if renderIdentRe.MatchString(key) {
		return ".Args." + key
	}
	return fmt.Sprintf("(index .Args %q)", renderTruncate(key))
}

// renderer executes one parsed template with variations of its values.
type renderer struct {
	tmpl *template.Template
	vals []renderValue
}

func (r *renderer) asIs(i int) renderText   { return renderEscaped(r.vals[i].raw) }
func (r *renderer) masked(i int) renderText { return renderMasked(r.vals[i].raw) }

var errRenderTooLong = errors.New("rendered query too long")

// exec renders the template with the values that text returns.
func (r *renderer) exec(text func(i int) renderText) (string, error) {
	d := renderData{
		Namespace:      text(0),
		Name:           text(1),
		Target:         text(2),
		Primary:        text(3),
		Canary:         text(4),
		Service:        text(5),
		PrimaryService: text(6),
		CanaryService:  text(7),
		window:         text(8),
		interval:       text(9),
		windowErr:      r.vals[8].err,
		intervalErr:    r.vals[9].err,
		Args:           make(renderArgs, len(r.vals)-10),
	}
	for i := 10; i < len(r.vals); i++ {
		d.Args[r.vals[i].key] = text(i)
	}
	var w renderLimitWriter
	if err := r.tmpl.Execute(&w, d); err != nil {
		return "", err
	}
	return w.b.String(), nil
}

// only returns a text function that renders value i as is (or as the given
// text) and every other value masked.
func (r *renderer) only(i int, t renderText) func(int) renderText {
	return func(j int) renderText {
		if j == i {
			return t
		}
		return r.masked(j)
	}
}

// blameShape names the values that, rendered alone among placeholders, do not
// give the shape want.
func (r *renderer) blameShape(want []string, detail string) *RenderError {
	var names []string
	for i, v := range r.vals {
		if v.err != nil || renderMasked(v.raw).String() == renderEscaped(v.raw).String() {
			continue
		}
		q, err := r.exec(r.only(i, r.asIs(i)))
		if err != nil {
			continue
		}
		e, err := renderParser.ParseExpr(q)
		if err != nil || renderShapeDiff(want, renderShape(e)) != "" {
			names = append(names, v.name)
		}
	}
	if len(names) == 0 {
		return renderFail(RenderShape, r.vals, "the values together would change the query's shape: %s", detail)
	}
	return renderFail(RenderShape, r.vals, "the value of %s would change the query's shape: %s",
		strings.Join(names, ", "), detail)
}

// blameUnchecked names the values whose placeholders break a query that
// parses with the real values: such a value sits where a placeholder cannot,
// for example as a function name or a keyword, so its effect is not checked.
func (r *renderer) blameUnchecked() *RenderError {
	var names []string
	for i, v := range r.vals {
		q, err := r.exec(func(j int) renderText {
			if j == i {
				return r.masked(j)
			}
			return r.asIs(j)
		})
		if err != nil {
			continue
		}
		if _, err := renderParser.ParseExpr(q); err != nil {
			names = append(names, v.name)
		}
	}
	what := "a value is"
	if len(names) > 0 {
		what = strings.Join(names, ", ") + " is"
	}
	return renderFail(RenderShape, r.vals,
		"%s used where its effect on the query cannot be checked (for example as a function name or keyword); "+
			"use values only inside string literals or as names, numbers and durations", what)
}

// renderPlaceholders are the placeholders of the lexical classes.
var renderPlaceholders = []string{"1m", "backstop_placeholder", "1"}

// blameMisfit looks, when neither query parses, for a value that is not a
// single name, number or duration, used where a placeholder of one of those
// classes makes the query parse. It returns nil if the template is to blame.
// A value that is a single token is not blamed: a template that puts a number
// where only a name fits is as likely to be wrong as the value.
func (r *renderer) blameMisfit() *RenderError {
	for i, v := range r.vals {
		if v.err != nil || renderPlaceholder(v.raw) != "x" {
			continue
		}
		for _, p := range renderPlaceholders {
			q, err := r.exec(r.only(i, renderMasked(p)))
			if err != nil {
				continue
			}
			if _, err := renderParser.ParseExpr(q); err == nil {
				return renderFail(RenderShape, r.vals,
					"the value of %s does not fit where the template uses it: the rendered query does not parse with it, but does with %s",
					v.name, renderClass(p))
			}
		}
	}
	return nil
}

func renderClass(placeholder string) string {
	switch placeholder {
	case "1":
		return "a number"
	case "1m":
		return "a duration"
	case "backstop_placeholder":
		return "a name"
	}
	return "a string"
}

// renderData is what a query template sees as dot.
type renderData struct {
	Namespace, Name                        renderText
	Target, Primary, Canary                renderText
	Service, PrimaryService, CanaryService renderText
	Args                                   renderArgs

	window, interval       renderText
	windowErr, intervalErr error
}

// Format prints dot as a whole without the keys of .Args, which are not
// escaped; see renderArgs.
func (renderData) Format(f fmt.State, _ rune) { io.WriteString(f, "<.>") }

// renderArgs is .Args. Its keys are plain strings, so that .Args.route works,
// and are the same in both renderings, so the shape check cannot see them:
// printed whole, with any verb, it shows no keys, and range is refused.
type renderArgs map[string]renderText

func (renderArgs) Format(f fmt.State, _ rune) { io.WriteString(f, "<.Args>") }

// Window is the analysis window as a PromQL duration.
func (d renderData) Window() (renderText, error) { return d.window, d.windowErr }

// Interval is the analysis interval as a PromQL duration.
func (d renderData) Interval() (renderText, error) { return d.interval, d.intervalErr }

// renderText is a value in a template. Its underlying string is the raw value,
// which comparisons (eq, len, if) see; printing it, with any fmt verb, gives
// String: the escaped value (renderEscaped) or a placeholder (renderMasked).
// So both renderings take the same branches. A template that prints text it
// computes from a value's bytes (printf "%c" (index .Args.v 0)) defeats the
// shape check; only the template's author can write that.
type renderText interface {
	fmt.Stringer
	renderRaw() string
	renderSame(raw string) renderText // a value of the same kind
}

// renderEscaped prints as its value escaped for a PromQL string literal.
type renderEscaped string

func (v renderEscaped) String() string                   { return renderEscape(string(v)) }
func (v renderEscaped) Format(f fmt.State, verb rune)    { renderFormat(f, verb, v) }
func (v renderEscaped) renderRaw() string                { return string(v) }
func (v renderEscaped) renderSame(raw string) renderText { return renderEscaped(raw) }

// renderMasked prints as the placeholder of its value's lexical class.
type renderMasked string

func (v renderMasked) String() string                   { return renderPlaceholder(string(v)) }
func (v renderMasked) Format(f fmt.State, verb rune)    { renderFormat(f, verb, v) }
func (v renderMasked) renderRaw() string                { return string(v) }
func (v renderMasked) renderSame(raw string) renderText { return renderMasked(raw) }

// renderFormat prints a value as String gives it with every fmt verb, so that
// printf "%#v" or "%x" cannot print the raw value; %q puts it in double
// quotes, which makes a PromQL string literal.
func renderFormat(f fmt.State, verb rune, v fmt.Stringer) {
	if verb == 'q' {
		io.WriteString(f, `"`+v.String()+`"`)
		return
	}
	io.WriteString(f, v.String())
}

// renderRegex is the template function regex: it escapes a value for RE2.
// The PromQL string escaping happens when the result is printed, after the
// regex escaping, so that the string literal's value is the regex.
func renderRegex(v any) (renderText, error) {
	switch v := v.(type) {
	case renderText:
		return v.renderSame(regexp.QuoteMeta(v.renderRaw())), nil
	case string:
		// Template text, or printf output that is already escaped.
		return renderEscaped(regexp.QuoteMeta(v)), nil
	case nil:
		return nil, errors.New("regex of a missing value")
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.String {
		return renderEscaped(regexp.QuoteMeta(rv.String())), nil
	}
	return renderEscaped(regexp.QuoteMeta(fmt.Sprint(v))), nil
}

// renderEscape escapes s for a PromQL string literal in double quotes, so that
// the literal's value is s byte for byte:
//   - \ and " get a backslash; ' and ` become \x27 and \x60, which the lexer
//     and strutil.Unquote accept in both '...' and "..." (\' is refused in
//     "..." and \" in '...');
//   - \a \b \f \n \r \t \v keep their names, other ASCII controls become \xHH;
//   - other runes that are not printable become \uHHHH or \UHHHHHHHH, and so
//     does a literal U+FFFD, which the lexer takes for invalid UTF-8;
//   - bytes that are not UTF-8 become \xHH, which unquotes to that byte.
func renderEscape(s string) string {
	if !strings.ContainsFunc(s, renderNeedsEscape) && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			fmt.Fprintf(&b, `\x%02x`, s[i])
			i++
			continue
		}
		i += size
		switch r {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\'':
			b.WriteString(`\x27`)
		case '`':
			b.WriteString(`\x60`)
		case '\a':
			b.WriteString(`\a`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\v':
			b.WriteString(`\v`)
		default:
			switch {
			case r < ' ' || r == 0x7f:
				fmt.Fprintf(&b, `\x%02x`, r)
			case r < utf8.RuneSelf:
				b.WriteRune(r)
			case r == utf8.RuneError || !unicode.IsPrint(r):
				if r <= 0xffff {
					fmt.Fprintf(&b, `\u%04x`, r)
				} else {
					fmt.Fprintf(&b, `\U%08x`, r)
				}
			default:
				b.WriteRune(r)
			}
		}
	}
	return b.String()
}

func renderNeedsEscape(r rune) bool {
	switch {
	case r == '\\' || r == '"' || r == '\'' || r == '`':
		return true
	case r < ' ' || r == 0x7f:
		return true
	case r >= utf8.RuneSelf:
		return r == utf8.RuneError || !unicode.IsPrint(r)
	}
	return false
}

var (
	renderNumberRe = regexp.MustCompile(`^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$`)
	renderNameRe   = regexp.MustCompile(`^[A-Za-z_:][A-Za-z0-9_:]*$`)
)

// renderPlaceholder returns a harmless value of the same lexical class as v:
// 1 for a number (keeping its sign), 1m for a duration, backstop_placeholder
// for a name, and x for anything else.
func renderPlaceholder(v string) string {
	switch {
	case v == "":
		// Nothing is not a class of its own: it removes a token, which can
		// change a count, as in sum by ({{.Args.label}}).
		return "x"
	case renderNumberRe.MatchString(v):
		if v[0] == '+' || v[0] == '-' {
			return v[:1] + "1"
		}
		return "1"
	case renderIsDuration(v):
		return "1m"
	case renderNameRe.MatchString(v):
		return "backstop_placeholder"
	}
	return "x"
}

func renderIsDuration(v string) bool {
	_, err := model.ParseDuration(v)
	return err == nil
}

// renderShape describes the syntax tree of e without its names, values and
// durations, in depth-first order with ")" closing each node's children.
func renderShape(e parser.Expr) []string {
	var shape []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		shape = append(shape, renderNodeShape(n))
		return nil
	})
	return shape
}

func renderNodeShape(n parser.Node) string {
	switch n := n.(type) {
	case nil:
		return ")"
	case *parser.AggregateExpr:
		return fmt.Sprintf("aggregation %s without=%t grouping=%d param=%t",
			n.Op, n.Without, len(n.Grouping), n.Param != nil)
	case *parser.BinaryExpr:
		s := fmt.Sprintf("binary %s bool=%t", n.Op, n.ReturnBool)
		if m := n.VectorMatching; m != nil {
			s += fmt.Sprintf(" matching=%s on=%t labels=%d include=%d fill=%t/%t",
				m.Card, m.On, len(m.MatchingLabels), len(m.Include),
				m.FillValues.LHS != nil, m.FillValues.RHS != nil)
		}
		return s
	case *parser.Call:
		return fmt.Sprintf("call %s args=%d", n.Func.Name, len(n.Args))
	case *parser.MatrixSelector:
		return "matrix range=" + renderDurationShape(n.RangeExpr)
	case *parser.SubqueryExpr:
		return fmt.Sprintf("subquery range=%s step=%s offset=%s at=%t/%s",
			renderDurationShape(n.RangeExpr), renderDurationShape(n.StepExpr),
			renderDurationShape(n.OriginalOffsetExpr), n.Timestamp != nil, n.StartOrEnd)
	case *parser.VectorSelector:
		types := make([]string, len(n.LabelMatchers))
		for i, m := range n.LabelMatchers {
			types[i] = m.Type.String()
		}
		return fmt.Sprintf("selector matchers=[%s] offset=%t/%s at=%t/%s anchored=%t smoothed=%t",
			strings.Join(types, " "), n.OriginalOffset != 0, renderDurationShape(n.OriginalOffsetExpr),
			n.Timestamp != nil, n.StartOrEnd, n.Anchored, n.Smoothed)
	case *parser.NumberLiteral:
		return "number"
	case *parser.StringLiteral:
		return "string"
	case *parser.ParenExpr:
		return "paren"
	case *parser.UnaryExpr:
		return "unary " + n.Op.String()
	}
	return fmt.Sprintf("%T", n)
}

// renderDurationShape describes a duration expression without its values.
func renderDurationShape(e parser.Expr) string {
	switch e := e.(type) {
	case nil:
		return "-"
	case *parser.DurationExpr:
		if e == nil {
			return "-"
		}
		return fmt.Sprintf("(%s wrapped=%t %s %s)", e.Op, e.Wrapped,
			renderDurationShape(e.LHS), renderDurationShape(e.RHS))
	case *parser.NumberLiteral:
		return "number"
	}
	return fmt.Sprintf("%T", e)
}

// renderShapeDiff describes the first difference between two shapes, or
// returns "" if they are the same.
func renderShapeDiff(want, got []string) string {
	for i := range min(len(want), len(got)) {
		if want[i] != got[i] {
			return fmt.Sprintf("expected %s, found %s", want[i], got[i])
		}
	}
	switch {
	case len(got) > len(want):
		return "found more nodes: " + got[len(want)]
	case len(got) < len(want):
		return "found fewer nodes: expected " + want[len(got)]
	}
	return ""
}

// renderLimitWriter collects a rendered query up to renderMaxQuery bytes.
type renderLimitWriter struct {
	b strings.Builder
}

func (w *renderLimitWriter) Write(p []byte) (int, error) {
	if w.b.Len()+len(p) > renderMaxQuery {
		return 0, errRenderTooLong
	}
	return w.b.Write(p)
}

// renderFail makes a RenderError whose message quotes no value longer than
// renderMaxValue bytes in full, in any of the forms it may take in a query.
func renderFail(reason string, vals []renderValue, format string, args ...any) *RenderError {
	msg := fmt.Sprintf(format, args...)
	for _, v := range vals {
		if len(v.raw) <= renderMaxValue {
			continue
		}
		forms := []string{v.raw, renderEscape(v.raw), regexp.QuoteMeta(v.raw), renderEscape(regexp.QuoteMeta(v.raw))}
		for _, f := range slices.Clone(forms) {
			forms = append(forms, strings.Trim(strconv.Quote(f), `"`))
		}
		// Longest first, so that a form is not cut inside a longer one.
		slices.SortFunc(forms, func(a, b string) int { return len(b) - len(a) })
		for _, f := range forms {
			if len(f) > renderMaxValue {
				msg = strings.ReplaceAll(msg, f, renderTruncate(f))
			}
		}
	}
	return &RenderError{Reason: reason, Message: msg}
}

// renderTruncate cuts s to at most renderMaxValue bytes on a rune boundary and
// marks the cut with "…".
func renderTruncate(s string) string {
	if len(s) <= renderMaxValue {
		return s
	}
	n := renderMaxValue
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
