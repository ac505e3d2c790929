// Package docs_test keeps the documentation true to the product: every
// Backstop object in a YAML example of README.md and docs/ is created, as a
// server-side dry run, against a real kube-apiserver with the CRDs installed
// (so the schema, its defaults and its CEL rules all judge it), and every
// relative link points at a file, and at a heading of it, that exists.
//
// A YAML block that is deliberately partial is marked by the line
// <!-- fragment --> just before its fence; the test skips it.
package docs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

// fragmentMark before a fence marks a block the test skips.
const fragmentMark = "<!-- fragment -->"

// root is the repository's root, relative to this package.
const root = ".."

// page is one Markdown file of the documentation.
type page struct {
	path  string // relative to the repository root, with slashes
	lines []string
}

// pages are README.md and every Markdown file under docs/.
func pages(t *testing.T) []page {
	t.Helper()
	paths := []string{"README.md"}
	err := filepath.WalkDir(filepath.Join(root, "docs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			paths = append(paths, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(paths[1:])
	var out []page
	for _, p := range paths {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page{path: p, lines: strings.Split(string(b), "\n")})
	}
	if len(out) < 10 {
		t.Fatalf("found only %d pages: %v", len(out), paths)
	}
	return out
}

// block is a fenced code block.
type block struct {
	info     string // the info string's first word, such as yaml
	line     int    // the fence's line, from 1
	text     string // the content, without the fence's indentation
	fragment bool   // marked as a deliberately partial example
	first    int    // the line of the content's first line
}

var fenceRE = regexp.MustCompile("^( *)(`{3,}|~{3,})\\s*([^`\\s]*)")

// blocks returns the fenced code blocks of p, and p's lines with the
// blocks' lines emptied (the prose).
func (p page) blocks() ([]block, []string) {
	var out []block
	prose := slices.Clone(p.lines)
	for i := 0; i < len(p.lines); i++ {
		m := fenceRE.FindStringSubmatch(p.lines[i])
		if m == nil {
			continue
		}
		indent, fence := len(m[1]), m[2]
		b := block{info: strings.ToLower(m[3]), line: i + 1, first: i + 2}
		for j := i - 1; j >= 0; j-- {
			if s := strings.TrimSpace(p.lines[j]); s != "" {
				b.fragment = s == fragmentMark
				break
			}
		}
		var content []string
		prose[i] = ""
		j := i + 1
		for ; j < len(p.lines); j++ {
			s := strings.TrimLeft(p.lines[j], " ")
			prose[j] = ""
			if strings.HasPrefix(s, fence) && strings.Trim(s, fence[:1]+" ") == "" {
				break
			}
			line := p.lines[j]
			for k := 0; k < indent && strings.HasPrefix(line, " "); k++ {
				line = line[1:]
			}
			content = append(content, line)
		}
		b.text = strings.Join(content, "\n")
		out = append(out, b)
		i = j
	}
	return out, prose
}

// document is one YAML document of a block.
type document struct {
	line int // its first line in the page
	text string
}

// documents splits a block at its "---" lines.
func (b block) documents() []document {
	var out []document
	cur := document{line: b.first}
	var lines []string
	for i, l := range strings.Split(b.text, "\n") {
		if strings.HasPrefix(l, "---") && strings.TrimSpace(strings.SplitN(l[3:], "#", 2)[0]) == "" {
			cur.text = strings.Join(lines, "\n")
			out = append(out, cur)
			cur, lines = document{line: b.first + i + 1}, nil
			continue
		}
		lines = append(lines, l)
	}
	cur.text = strings.Join(lines, "\n")
	return append(out, cur)
}

func isYAML(info string) bool { return info == "yaml" || info == "yml" }

// howtos are the pages whose manifests are meant to be applied as they
// are: there, every object of a kind the test API server serves (core,
// apps, Gateway API and Backstop) is checked, not only Backstop's.
const howtos = "docs/howto/"

// judge creates the object of one YAML document of the page at path as a
// server-side dry run, in the namespace ns when its kind is namespaced. It
// returns the object's kind, or "" for a document the test does not judge:
// one that is not an object, or an object of another API than Backstop's
// outside the how-tos, or one the test API server does not serve there
// (Flux, Argo CD and kustomize objects).
func judge(ctx context.Context, ns, path string, d document) (string, error) {
	var v any
	if err := yaml.Unmarshal([]byte(d.text), &v); err != nil {
		return "", fmt.Errorf("the YAML does not parse: %w", err)
	}
	obj, ok := v.(map[string]any)
	if !ok || obj["apiVersion"] == nil || obj["kind"] == nil {
		return "", nil
	}
	u := &unstructured.Unstructured{Object: obj}
	backstop := u.GetAPIVersion() == backstopv1.GroupVersion.String()
	if !backstop && !strings.HasPrefix(path, howtos) {
		return "", nil
	}
	gvk := u.GroupVersionKind()
	mapping, err := env.Client.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
	switch {
	case err != nil && backstop:
		return "", fmt.Errorf("%s %q: the API server does not serve the kind: %w", u.GetKind(), u.GetName(), err)
	case err != nil:
		return "", nil
	}
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		u.SetNamespace(ns)
	}
	if err := env.Client.Create(ctx, u, client.DryRunAll); err != nil {
		return "", fmt.Errorf("%s %q: the API server refuses it: %w", u.GetKind(), u.GetName(), err)
	}
	return u.GetKind(), nil
}

// Every Backstop object in the YAML examples, and every object the API
// server knows in the how-tos, is one the API server accepts.
func TestExamplesAreValid(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	kinds := map[string]int{}
	for _, p := range pages(t) {
		bs, _ := p.blocks()
		for _, b := range bs {
			if !isYAML(b.info) || b.fragment {
				continue
			}
			for _, d := range b.documents() {
				kind, err := judge(ctx, ns, p.path, d)
				if err != nil {
					t.Errorf("%s:%d: %v", p.path, d.line, err)
				}
				if kind != "" {
					kinds[kind]++
				}
			}
		}
	}
	// The test must have judged something: each kind appears in the docs.
	for _, k := range []string{"Rollout", "SLOTemplate", "ClusterSLOTemplate", "Deployment", "Service"} {
		if kinds[k] == 0 {
			t.Errorf("no %s example was checked; checked %v", k, kinds)
		}
	}
	t.Logf("checked %v", kinds)
}

// A block is split into its documents, each with its first line; a broken
// object is refused with the API server's message; a marked fragment is
// recognised; and objects the test does not judge are left alone.
func TestExamplesReportWhereTheyFail(t *testing.T) {
	p := page{path: "docs/example.md", lines: strings.Split(strings.Join([]string{
		"# Example",
		"",
		"```yaml",
		"apiVersion: backstop.dev/v1alpha1",
		"kind: SLOTemplate",
		"metadata: { name: fine }",
		"spec: { query: up, max: \"1\" }",
		"---",
		"apiVersion: backstop.dev/v1alpha1",
		"kind: SLOTemplate",
		"metadata: { name: broken }",
		"spec: { query: up }",
		"---",
		"apiVersion: v1",
		"kind: Service",
		"metadata: { name: not-judged-outside-the-how-tos }",
		"spec: { ports: [] }",
		"```",
		"",
		fragmentMark,
		"```yaml",
		"spec: {}",
		"```",
	}, "\n"), "\n")}
	bs, _ := p.blocks()
	if len(bs) != 2 || bs[0].fragment || !bs[1].fragment {
		t.Fatalf("blocks: got %+v, want two, the second a fragment", bs)
	}
	docs := bs[0].documents()
	if len(docs) != 3 || docs[0].line != 4 || docs[1].line != 9 || docs[2].line != 14 {
		t.Fatalf("documents: got %+v, want three starting at lines 4, 9 and 14", docs)
	}
	ns := env.Namespace(t)
	ctx := context.Background()
	if kind, err := judge(ctx, ns, p.path, docs[0]); kind != "SLOTemplate" || err != nil {
		t.Errorf("line 4: got %q, %v; want an accepted SLOTemplate", kind, err)
	}
	if _, err := judge(ctx, ns, p.path, docs[1]); err == nil || !strings.Contains(err.Error(), "a query check needs min, max or compare") {
		t.Errorf("line 9: got %v; want the API server's refusal quoting the CEL rule's message", err)
	}
	if kind, err := judge(ctx, ns, p.path, docs[2]); kind != "" || err != nil {
		t.Errorf("line 14: got %q, %v; want a Service outside the how-tos left alone", kind, err)
	}
	if _, err := judge(ctx, ns, "docs/howto/example.md", docs[2]); err == nil {
		t.Errorf("line 14 in a how-to: a Service without ports was accepted")
	}
}

// link is a relative link found in a page.
type link struct {
	line   int
	target string
}

// inline links [text](target "title") and reference definitions [x]: target.
var (
	linkRE = regexp.MustCompile(`\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	refRE  = regexp.MustCompile(`(?m)^ {0,3}\[[^\]]+\]:\s+<?(\S+?)>?(?:\s|$)`)
)

// links returns the relative links of p's prose, code spans left out.
func (p page) links() []link {
	_, prose := p.blocks()
	text := stripCodeSpans(strings.Join(prose, "\n"))
	var out []link
	for _, re := range []*regexp.Regexp{linkRE, refRE} {
		for _, m := range re.FindAllStringSubmatchIndex(text, -1) {
			target := text[m[2]:m[3]]
			if u, err := url.Parse(target); err == nil && u.Scheme != "" {
				continue // http:, https:, mailto:
			}
			out = append(out, link{line: strings.Count(text[:m[2]], "\n") + 1, target: target})
		}
	}
	return out
}

// stripCodeSpans blanks the code spans of Markdown text, keeping its line
// breaks, so that what they show is not read as links.
func stripCodeSpans(s string) string {
	b := []byte(s)
	for i := 0; i < len(b); {
		if b[i] != '`' {
			i++
			continue
		}
		n := 0
		for i+n < len(b) && b[i+n] == '`' {
			n++
		}
		end := closingRun(b[i+n:], n)
		if end < 0 {
			i += n
			continue
		}
		for k := i; k < i+n+end+n; k++ {
			if b[k] != '\n' {
				b[k] = ' '
			}
		}
		i += n + end + n
	}
	return string(b)
}

// closingRun returns where the first run of exactly n backticks starts in
// b, or -1.
func closingRun(b []byte, n int) int {
	for i := 0; i < len(b); {
		if b[i] != '`' {
			i++
			continue
		}
		j := i
		for j < len(b) && b[j] == '`' {
			j++
		}
		if j-i == n {
			return i
		}
		i = j
	}
	return -1
}

var headingRE = regexp.MustCompile(`^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$`)

// anchors are the anchors GitHub gives p's headings.
func (p page) anchors() map[string]bool {
	_, prose := p.blocks()
	out := map[string]bool{}
	seen := map[string]int{}
	for _, l := range prose {
		m := headingRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		s := slug(headingText(m[2]))
		if n, ok := seen[s]; ok {
			seen[s] = n + 1
			s = fmt.Sprintf("%s-%d", s, n+1)
		} else {
			seen[s] = 0
		}
		out[s] = true
	}
	return out
}

var inlineLinkRE = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)

// headingText is what a heading reads once rendered: links become their
// text.
func headingText(md string) string { return inlineLinkRE.ReplaceAllString(md, "$1") }

// slug is GitHub's anchor for a heading's text: lower case, without the
// characters that are not letters, digits, spaces, hyphens or underscores,
// and with each space made a hyphen.
func slug(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Every relative link points at a file that exists, and at a heading of it.
func TestLinksResolve(t *testing.T) {
	ps := pages(t)
	anchors := map[string]map[string]bool{}
	for _, p := range ps {
		anchors[p.path] = p.anchors()
	}
	checked := 0
	for _, p := range ps {
		for _, l := range p.links() {
			checked++
			if err := resolve(p.path, l.target, anchors); err != nil {
				t.Errorf("%s:%d: link %s: %v", p.path, l.line, l.target, err)
			}
		}
	}
	if checked < 50 {
		t.Errorf("checked only %d links", checked)
	}
}

// resolve checks one link of the page from.
func resolve(from, target string, anchors map[string]map[string]bool) error {
	file, frag, _ := strings.Cut(target, "#")
	path := from
	if file != "" {
		unescaped, err := url.PathUnescape(file)
		if err != nil {
			return err
		}
		path = filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(from), unescaped)))
		if strings.HasPrefix(path, "../") {
			return errors.New("it leaves the repository")
		}
		if _, err := os.Stat(filepath.Join(root, path)); err != nil {
			return fmt.Errorf("%s does not exist", path)
		}
	}
	if frag == "" {
		return nil
	}
	as, ok := anchors[path]
	if !ok {
		if !strings.HasSuffix(path, ".md") {
			return nil // a line anchor into a source file, say
		}
		b, err := os.ReadFile(filepath.Join(root, path))
		if err != nil {
			return err
		}
		as = page{path: path, lines: strings.Split(string(b), "\n")}.anchors()
		anchors[path] = as
	}
	if !as[frag] {
		return fmt.Errorf("%s has no heading with the anchor #%s", path, frag)
	}
	return nil
}

// The link check finds what it must: links in prose, not in code, and
// anchors the way GitHub makes them.
func TestLinkCheckReadsMarkdownAsGitHubDoes(t *testing.T) {
	p := page{path: "docs/x.md", lines: strings.Split(strings.Join([]string{
		"# Title",
		"## Status, condition, Events and metric",
		"## Title",
		"See [the spec](spec/v1alpha1/rollout.md#phase) and `[code](not-a-link.md)`,",
		"[a link over",
		"two lines](revert.md#signing) and [out](https://example.com/x.md).",
		"```yaml",
		"[not](inside-a-block.md)",
		"```",
		"[ref]: conditions.md#reverted",
	}, "\n"), "\n")}
	var got []string
	for _, l := range p.links() {
		got = append(got, fmt.Sprintf("%d %s", l.line, l.target))
	}
	want := []string{"4 spec/v1alpha1/rollout.md#phase", "6 revert.md#signing", "10 conditions.md#reverted"}
	if !slices.Equal(got, want) {
		t.Errorf("links: got %q, want %q", got, want)
	}
	as := p.anchors()
	for _, a := range []string{"title", "status-condition-events-and-metric", "title-1"} {
		if !as[a] {
			t.Errorf("no anchor #%s in %v", a, as)
		}
	}
	all := map[string]map[string]bool{p.path: as}
	for target, ok := range map[string]bool{
		"#title-1":                           true,
		"#missing":                           false,
		"revert.md#signing":                  true,
		"revert.md#no-such-heading":          false,
		"no-such-page.md":                    false,
		"../config/argocd/health.lua":        true,
		"../../outside.md":                   false,
		"spec/v1alpha1/rollout.md#bake-time": true,
	} {
		if err := resolve(p.path, target, all); (err == nil) != ok {
			t.Errorf("resolve(%q): %v, want ok=%v", target, err, ok)
		}
	}
}

// Pages may not be empty of examples by accident: the how-tos each hold a
// Rollout.
func TestHowTosShowARollout(t *testing.T) {
	found := 0
	for _, p := range pages(t) {
		if !strings.HasPrefix(p.path, "docs/howto/") {
			continue
		}
		found++
		bs, _ := p.blocks()
		has := false
		for _, b := range bs {
			if isYAML(b.info) && !b.fragment && bytes.Contains([]byte(b.text), []byte("kind: Rollout\n")) {
				has = true
			}
		}
		if !has {
			t.Errorf("%s: no complete Rollout in a YAML block", p.path)
		}
	}
	if found < 7 {
		t.Errorf("found %d how-tos under docs/howto, want 7", found)
	}
}

// docs/README.md is the index of the documentation: it links every page
// under docs/.
func TestIndexListsEveryPage(t *testing.T) {
	var index page
	listed := map[string]bool{}
	all := pages(t)
	for _, p := range all {
		if p.path == "docs/README.md" {
			index = p
		}
	}
	if index.path == "" {
		t.Fatal("docs/README.md does not exist")
	}
	for _, l := range index.links() {
		file, _, _ := strings.Cut(l.target, "#")
		listed[filepath.ToSlash(filepath.Join("docs", file))] = true
	}
	for _, p := range all {
		if strings.HasPrefix(p.path, "docs/") && p.path != index.path && !listed[p.path] {
			t.Errorf("docs/README.md does not link %s", p.path)
		}
	}
}
