// Command crdref writes the field reference of the Backstop API from the
// CRDs that controller-gen generates: one section per kind, and one table per
// object type with each field's type, whether it is required, its default,
// its validation and its description (the Go doc comment).
//
//	go run ./hack/crdref -out docs/reference/v1alpha1.md
//
// The output depends on the CRDs alone, so a test can tell whether the
// committed reference is current.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"sigs.k8s.io/yaml"
)

func main() {
	crds := flag.String("crds", "config/crd/bases", "folder of the CRD YAML files")
	out := flag.String("out", "docs/reference/v1alpha1.md", "the Markdown file to write")
	flag.Parse()
	if err := run(*crds, *out); err != nil {
		fmt.Fprintln(os.Stderr, "crdref:", err)
		os.Exit(1)
	}
}

// run renders the CRDs in dir into the file out.
func run(dir, out string) error {
	crds, err := load(dir)
	if err != nil {
		return err
	}
	doc, err := render(crds)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	return os.WriteFile(out, doc, 0o644)
}

// crd is the part of an apiextensions.k8s.io/v1 CustomResourceDefinition the
// reference shows.
type crd struct {
	Kind string `json:"kind"`
	Spec struct {
		Group string `json:"group"`
		Names struct {
			Kind       string   `json:"kind"`
			Plural     string   `json:"plural"`
			ShortNames []string `json:"shortNames"`
			Categories []string `json:"categories"`
		} `json:"names"`
		Scope    string    `json:"scope"`
		Versions []version `json:"versions"`
	} `json:"spec"`

	file string
}

type version struct {
	Name   string `json:"name"`
	Schema struct {
		OpenAPIV3Schema *schema `json:"openAPIV3Schema"`
	} `json:"schema"`
	Subresources         map[string]json.RawMessage `json:"subresources"`
	AdditionalPrinterCol []printerColumn            `json:"additionalPrinterColumns"`
}

type printerColumn struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	JSONPath string `json:"jsonPath"`
	Priority int    `json:"priority"`
}

// schema is an OpenAPI v3 schema as a structural CRD schema writes it.
type schema struct {
	Type                 string             `json:"type"`
	Format               string             `json:"format"`
	Description          string             `json:"description"`
	Properties           map[string]*schema `json:"properties"`
	Required             []string           `json:"required"`
	Items                *schema            `json:"items"`
	AdditionalProperties *schema            `json:"additionalProperties"`
	Default              json.RawMessage    `json:"default"`
	Enum                 []json.RawMessage  `json:"enum"`
	Pattern              string             `json:"pattern"`
	MinLength            *int64             `json:"minLength"`
	MaxLength            *int64             `json:"maxLength"`
	Minimum              *float64           `json:"minimum"`
	Maximum              *float64           `json:"maximum"`
	ExclusiveMinimum     bool               `json:"exclusiveMinimum"`
	ExclusiveMaximum     bool               `json:"exclusiveMaximum"`
	MinItems             *int64             `json:"minItems"`
	MaxItems             *int64             `json:"maxItems"`
	MinProperties        *int64             `json:"minProperties"`
	MaxProperties        *int64             `json:"maxProperties"`
	IntOrString          bool               `json:"x-kubernetes-int-or-string"`
	ListType             string             `json:"x-kubernetes-list-type"`
	ListMapKeys          []string           `json:"x-kubernetes-list-map-keys"`
	Validations          []celRule          `json:"x-kubernetes-validations"`
}

type celRule struct {
	Rule    string `json:"rule"`
	Message string `json:"message"`
}

// load reads every CRD in dir, in the order the reference shows them:
// namespaced kinds first, then cluster-scoped ones, each by kind.
func load(dir string) ([]crd, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	var crds []crd
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, part := range splitDocuments(b) {
			var c crd
			if err := yaml.Unmarshal(part, &c); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			if c.Kind != "CustomResourceDefinition" {
				continue
			}
			c.file = filepath.Base(f)
			crds = append(crds, c)
		}
	}
	if len(crds) == 0 {
		return nil, fmt.Errorf("no CustomResourceDefinition in %s", dir)
	}
	sort.SliceStable(crds, func(i, j int) bool {
		a, b := crds[i].Spec, crds[j].Spec
		if a.Scope != b.Scope {
			return a.Scope == "Namespaced"
		}
		return a.Names.Kind < b.Names.Kind
	})
	return crds, nil
}

// splitDocuments splits a YAML stream at its "---" lines.
func splitDocuments(b []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if strings.TrimRight(string(line), " \r\n") == "---" {
			docs = append(docs, bytes.Clone(cur.Bytes()))
			cur.Reset()
			continue
		}
		cur.Write(line)
	}
	docs = append(docs, cur.Bytes())
	var out [][]byte
	for _, d := range docs {
		if len(bytes.TrimSpace(d)) > 0 {
			out = append(out, d)
		}
	}
	return out
}

// writer builds the document and hands out GitHub heading anchors, which
// it numbers as GitHub does when two headings have the same slug.
type writer struct {
	buf   bytes.Buffer
	slugs map[string]int
}

func (w *writer) printf(format string, args ...any) { fmt.Fprintf(&w.buf, format, args...) }

// heading writes a heading and returns its anchor.
func (w *writer) heading(level int, text string) string {
	w.printf("%s %s\n\n", strings.Repeat("#", level), text)
	s := Slug(text)
	if n, ok := w.slugs[s]; ok {
		w.slugs[s] = n + 1
		s = fmt.Sprintf("%s-%d", s, n+1)
	} else {
		w.slugs[s] = 0
	}
	return s
}

// section is one object type of a kind: the fields of the object at path.
type section struct {
	kind   string
	path   string // such as .spec.routes[]; empty for the kind itself
	schema *schema
}

func render(crds []crd) ([]byte, error) {
	var err error
	w := &writer{slugs: map[string]int{}}
	w.printf("<!-- Generated by `go run ./hack/crdref` (make docs) from config/crd/bases. Do not edit. -->\n\n")
	w.heading(1, "API reference")
	group := crds[0].Spec.Group
	var versions []string
	for _, c := range crds {
		for _, v := range c.Spec.Versions {
			if !slices.Contains(versions, v.Name) {
				versions = append(versions, v.Name)
			}
		}
	}
	w.printf("The fields of the kinds of the API group `%s`, version %s, as the API\n", group, strings.Join(versions, ", "))
	w.printf("server validates them. This page is generated from the CRDs in\n")
	w.printf("`config/crd/bases`, whose descriptions are the Go doc comments of\n")
	w.printf("`api/v1alpha1`. What the fields do, with examples, is in\n")
	w.printf("[Rollouts](../spec/v1alpha1/rollout.md) and\n")
	w.printf("[SLO templates](../spec/v1alpha1/slotemplate.md).\n\n")
	w.printf("Each table lists the fields of one object. **Validation** shows the\n")
	w.printf("schema's limits: allowed values, a regular expression the value must\n")
	w.printf("match, lengths, bounds, item counts, and the CEL rules with the message\n")
	w.printf("the API server answers when one is broken.\n\n")

	// The index of kinds; their anchors are known once they are written,
	// so it is written into a separate buffer first.
	type kindDoc struct {
		kind, anchor string
		body         bytes.Buffer
	}
	var kinds []*kindDoc
	head := bytes.Clone(w.buf.Bytes())
	w.buf.Reset()
	for _, c := range crds {
		for _, v := range c.Spec.Versions {
			if v.Schema.OpenAPIV3Schema == nil {
				return nil, fmt.Errorf("%s: version %s has no schema", c.file, v.Name)
			}
			k := &kindDoc{kind: c.Spec.Names.Kind}
			if k.anchor, err = renderKind(w, c, v); err != nil {
				return nil, err
			}
			k.body.Write(w.buf.Bytes())
			w.buf.Reset()
			kinds = append(kinds, k)
		}
	}
	var out bytes.Buffer
	out.Write(head)
	for _, k := range kinds {
		fmt.Fprintf(&out, "- [%s](#%s)\n", k.kind, k.anchor)
	}
	out.WriteString("\n")
	for _, k := range kinds {
		out.Write(k.body.Bytes())
	}
	return append(bytes.TrimRight(out.Bytes(), "\n"), '\n'), nil
}

// renderKind writes one kind and returns its anchor.
func renderKind(w *writer, c crd, v version) (string, error) {
	names := c.Spec.Names
	anchor := w.heading(2, names.Kind)
	scope := "namespaced"
	if c.Spec.Scope == "Cluster" {
		scope = "cluster-scoped"
	}
	w.printf("`apiVersion: %s/%s`, `kind: %s`, %s.", c.Spec.Group, v.Name, names.Kind, scope)
	w.printf(" Resource `%s.%s`", names.Plural, c.Spec.Group)
	if len(names.ShortNames) > 0 {
		w.printf(", short names %s", codeList(names.ShortNames))
	}
	if len(names.Categories) > 0 {
		w.printf(", categories %s", codeList(names.Categories))
	}
	w.printf(".")
	if _, ok := v.Subresources["status"]; ok {
		w.printf(" It has a status subresource.")
	}
	w.printf("\n\n")
	root := v.Schema.OpenAPIV3Schema
	if d := paragraphs(root.Description); d != "" {
		w.printf("%s\n\n", d)
	}
	if len(v.AdditionalPrinterCol) > 0 {
		w.printf("`kubectl get %s` shows these columns (priority 1 only with `-o wide`):\n\n", names.Plural)
		w.printf("| Column | Type | JSONPath | Priority |\n|---|---|---|---|\n")
		for _, pc := range v.AdditionalPrinterCol {
			w.printf("| %s | %s | %s | %d |\n", cell(pc.Name), pc.Type, codeCell(pc.JSONPath), pc.Priority)
		}
		w.printf("\n")
	}

	// Sections in document order: an object's section comes before those
	// of the objects under it.
	var sections []*section
	var collect func(path string, s *schema)
	collect = func(path string, s *schema) {
		sections = append(sections, &section{kind: names.Kind, path: path, schema: s})
		for _, name := range sortedKeys(s.Properties) {
			p := s.Properties[name]
			child, obj := objectOf(path+"."+name, p)
			if obj != nil {
				collect(child, obj)
			}
		}
	}
	collect("", root)
	for _, sec := range sections {
		title := names.Kind + " object"
		if sec.path != "" {
			title = sectionTitle(names.Kind, sec.path)
		}
		// Links to a section are made from its title alone, so its
		// anchor must not have been numbered as a duplicate.
		if got := w.heading(3, title); got != Slug(title) {
			return "", fmt.Errorf("%s: the heading %q has the anchor %q, not %q: links to it would break", c.file, title, got, Slug(title))
		}
		renderSection(w, sec)
	}
	return anchor, nil
}

// objectOf returns the object with fields that p holds, and its path: p
// itself, the items of an array (path[]), or the values of a map (path{}).
func objectOf(path string, p *schema) (string, *schema) {
	switch {
	case len(p.Properties) > 0:
		return path, p
	case p.Items != nil && len(p.Items.Properties) > 0:
		return path + "[]", p.Items
	case p.AdditionalProperties != nil && len(p.AdditionalProperties.Properties) > 0:
		return path + "{}", p.AdditionalProperties
	}
	return "", nil
}

// sectionTitle is the heading of the section of the object at path.
func sectionTitle(kind, path string) string { return kind + " `" + path + "`" }

// renderSection writes the table of one object's fields, and the CEL rules
// on the object.
func renderSection(w *writer, sec *section) {
	s := sec.schema
	if sec.path != "" {
		if d := paragraphs(s.Description); d != "" {
			w.printf("%s\n\n", d)
		}
	}
	if len(s.Properties) > 0 {
		w.printf("| Field | Type | Required | Default | Validation | Description |\n")
		w.printf("|---|---|---|---|---|---|\n")
		for _, name := range sortedKeys(s.Properties) {
			p := s.Properties[name]
			path := sec.path + "." + name
			req := "optional"
			if slices.Contains(s.Required, name) {
				req = "**required**"
			}
			desc := p.Description
			if desc == "" && sec.path == "" && name == "metadata" {
				desc = "Standard object metadata: name, namespace, labels, annotations."
			}
			w.printf("| %s | %s | %s | %s | %s | %s |\n",
				codeCell(path), typeOf(path, p, sec.kind), req, defaultOf(p), validationOf(p), cell(desc))
		}
		w.printf("\n")
	}
	if len(s.Validations) > 0 {
		w.printf("Rules on %s:\n\n", map[bool]string{true: "the object", false: code(sec.path)}[sec.path == ""])
		for _, r := range s.Validations {
			w.printf("- %s: %s\n", paragraphs(r.Message), code(oneLine(r.Rule)))
		}
		w.printf("\n")
	}
}

// typeOf names p's type, linking objects to their sections.
func typeOf(path string, p *schema, kind string) string {
	link := func(childPath string) string {
		return "[object](#" + Slug(sectionTitle(kind, childPath)) + ")"
	}
	switch {
	case p.IntOrString:
		return "integer or string"
	case len(p.Properties) > 0:
		return link(path)
	case p.Type == "array" && p.Items != nil:
		if len(p.Items.Properties) > 0 {
			return "array of " + link(path+"[]")
		}
		return "array of " + typeOf(path+"[]", p.Items, kind)
	case p.Type == "object" && p.AdditionalProperties != nil:
		if len(p.AdditionalProperties.Properties) > 0 {
			return "map of " + link(path+"{}")
		}
		return "map of string to " + typeOf(path+"{}", p.AdditionalProperties, kind)
	}
	t := p.Type
	if t == "" {
		t = "any"
	}
	if p.Format != "" {
		t += " (" + p.Format + ")"
	}
	return t
}

func defaultOf(p *schema) string {
	if len(p.Default) == 0 {
		return ""
	}
	return codeCell(jsonText(p.Default))
}

// validationOf lists the schema's limits on p, and on its items or values.
func validationOf(p *schema) string {
	var parts []string
	add := func(prefix string, s *schema) {
		if len(s.Enum) > 0 {
			var vals []string
			for _, e := range s.Enum {
				vals = append(vals, codeCell(jsonText(e)))
			}
			parts = append(parts, prefix+"one of "+strings.Join(vals, ", "))
		}
		if s.Pattern != "" {
			parts = append(parts, prefix+"pattern "+codeCell(s.Pattern))
		}
		if r := rangeText(s.MinLength, s.MaxLength); r != "" {
			parts = append(parts, prefix+"length "+r)
		}
		if r := numberRange(s); r != "" {
			parts = append(parts, prefix+r)
		}
		if r := rangeText(s.MinItems, s.MaxItems); r != "" {
			parts = append(parts, prefix+"items "+r)
		}
		if r := rangeText(s.MinProperties, s.MaxProperties); r != "" {
			parts = append(parts, prefix+"entries "+r)
		}
		switch s.ListType {
		case "set":
			parts = append(parts, prefix+"unique items")
		case "map":
			parts = append(parts, prefix+"unique by "+codeList(s.ListMapKeys))
		}
		// An object's own rules are listed under its table.
		if len(s.Properties) == 0 {
			for _, r := range s.Validations {
				parts = append(parts, prefix+"rule "+codeCell(oneLine(r.Rule))+": "+cell(r.Message))
			}
		}
	}
	add("", p)
	if p.Items != nil && len(p.Items.Properties) == 0 {
		add("each item: ", p.Items)
	}
	if p.AdditionalProperties != nil && len(p.AdditionalProperties.Properties) == 0 {
		add("each value: ", p.AdditionalProperties)
	}
	return strings.Join(parts, "<br>")
}

func rangeText(lo, hi *int64) string {
	switch {
	case lo != nil && hi != nil:
		return fmt.Sprintf("%d–%d", *lo, *hi)
	case lo != nil:
		return fmt.Sprintf("at least %d", *lo)
	case hi != nil:
		return fmt.Sprintf("at most %d", *hi)
	}
	return ""
}

func numberRange(s *schema) string {
	num := func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
	if s.Minimum != nil && s.Maximum != nil && !s.ExclusiveMinimum && !s.ExclusiveMaximum {
		return num(*s.Minimum) + "–" + num(*s.Maximum)
	}
	var parts []string
	if s.Minimum != nil {
		op := "≥"
		if s.ExclusiveMinimum {
			op = ">"
		}
		parts = append(parts, op+" "+num(*s.Minimum))
	}
	if s.Maximum != nil {
		op := "≤"
		if s.ExclusiveMaximum {
			op = "<"
		}
		parts = append(parts, op+" "+num(*s.Maximum))
	}
	return strings.Join(parts, ", ")
}

// jsonText is a JSON value as it reads in YAML: strings without quotes
// unless they would read as another type, everything else as compact JSON.
func jsonText(raw json.RawMessage) string {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		if s == "" {
			return `""`
		}
		if _, err := strconv.ParseFloat(s, 64); err == nil || s == "true" || s == "false" || s == "null" {
			return strconv.Quote(s)
		}
		return s
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return string(raw)
	}
	b, _ := json.Marshal(v) // sorted keys, compact
	return string(b)
}

func sortedKeys(m map[string]*schema) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func codeList(items []string) string {
	var out []string
	for _, it := range items {
		out = append(out, code(it))
	}
	return strings.Join(out, ", ")
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// code is s as a Markdown code span: the fence is longer than any run of
// backticks in s.
func code(s string) string {
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	pad := ""
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		pad = " "
	}
	return fence + pad + s + pad + fence
}

// codeCell is code(s) for a table cell: GitHub's tables split cells at
// unescaped pipes even in code spans, and drop the escape there.
func codeCell(s string) string { return strings.ReplaceAll(code(s), "|", `\|`) }

// paragraphs is a description as Markdown text outside a table: its
// paragraphs kept, each on one line.
func paragraphs(s string) string {
	var ps []string
	for _, p := range splitParagraphs(s) {
		ps = append(ps, escapeText(p, false))
	}
	return strings.Join(ps, "\n\n")
}

// cell is a description as one table cell: paragraphs joined by line
// breaks.
func cell(s string) string {
	var ps []string
	for _, p := range splitParagraphs(s) {
		ps = append(ps, escapeText(p, true))
	}
	return strings.Join(ps, "<br><br>")
}

func splitParagraphs(s string) []string {
	var out []string
	for _, p := range strings.Split(strings.TrimSpace(s), "\n\n") {
		if p = oneLine(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// escapeText escapes one line of plain text for Markdown, leaving its code
// spans as they are: <, > and & would read as HTML, * as emphasis, and | as
// the end of a table cell.
func escapeText(s string, inTable bool) string {
	var b strings.Builder
	for s != "" {
		i := strings.IndexByte(s, '`')
		if i < 0 {
			b.WriteString(escapePlain(s))
			break
		}
		b.WriteString(escapePlain(s[:i]))
		s = s[i:]
		n := len(s) - len(strings.TrimLeft(s, "`"))
		fence := s[:n]
		end := closingFence(s[n:], n)
		if end < 0 {
			// An unmatched backtick is text.
			b.WriteString(strings.Repeat(`\`+"`", n))
			s = s[n:]
			continue
		}
		span := s[n : n+end]
		if inTable {
			span = strings.ReplaceAll(span, "|", `\|`)
		}
		b.WriteString(fence + span + fence)
		s = s[n+end+n:]
	}
	return b.String()
}

// closingFence returns where the first run of exactly n backticks starts
// in s, or -1.
func closingFence(s string, n int) int {
	for i := 0; i < len(s); {
		if s[i] != '`' {
			i++
			continue
		}
		j := i
		for j < len(s) && s[j] == '`' {
			j++
		}
		if j-i == n {
			return i
		}
		i = j
	}
	return -1
}

var plain = strings.NewReplacer(`\`, `\\`, "&", "&amp;", "<", "&lt;", ">", "&gt;", "*", `\*`, "|", `\|`)

func escapePlain(s string) string { return plain.Replace(s) }

// Slug is the anchor GitHub gives a heading: the heading's text in lower
// case, without the characters that are not letters, digits, spaces,
// hyphens or underscores, and with each space made a hyphen. Markdown
// code marks are not part of the text.
func Slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_':
			b.WriteRune(r)
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case r > 127 && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			b.WriteRune(r)
		}
	}
	return b.String()
}
