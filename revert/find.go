package revert

import (
	"errors"
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"

	"backstop.dev/backstop/internal/text"
)

// Find selects the offending commits of a source whose GitOps tool records
// no revisions: walking the branch's history back from its head, the
// commits under Path that added a line showing one of Changes, until the
// commit that brought in each change is found (its files showed no sign of
// the change before it) or Limit commits were looked at.
type Find struct {
	// Path is a folder relative to the repository root; empty for all.
	Path string
	// Changes are what the failed version has and the stable one has not.
	Changes []Change
	// Limit bounds the commits looked at; default 1000.
	Limit int
}

// Change is one difference of the failed version from the stable one, as a
// manifest may show it: any of Texts anywhere in a line, or any of Values
// as a whole value.
type Change struct {
	// Texts are found anywhere in a line, such as the image
	// "registry.example/shop/app:1.4.2".
	Texts []string
	// Values are found only as a whole value: after a space, ':', '=', '@'
	// or a quote, and before the end of the line, a space, a quote, ',' or
	// '#'. So "newTag: 1.4.2" and "image: shop/app:1.4.2" show 1.4.2, and
	// "autoscaling/v2" does not show v2.
	Values []string
}

// defaultFindLimit bounds the history a Find walks.
const defaultFindLimit = 1000

// Found is an offending commit, and why it was taken.
type Found struct {
	// SHA of the commit.
	SHA string
	// Why it was taken, at most MaxWhy bytes: the file and the line it
	// added, e.g. `apps/app/deployment.yaml: "image: shop/app:v2"`, or the
	// file it changed between two source revisions.
	Why string
}

// MaxWhy bounds Found.Why, as the API bounds a reverted commit's reason.
const MaxWhy = 512

// errNotFound says a Find found no commit.
var errNotFound = errors.New("not found")

// find walks the history from head (see Find) and returns the offending
// commits, newest first.
func find(head *object.Commit, f Find) ([]Found, error) {
	pending := map[int]bool{}
	for i, ch := range f.Changes {
		if len(ch.Texts)+len(ch.Values) > 0 {
			pending[i] = true
		}
	}
	if len(pending) == 0 {
		return nil, errors.New("revert: nothing tells the failed version from the stable one")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultFindLimit
	}
	prefix := strings.Trim(f.Path, "/")
	var out []Found
	n := 0
	err := object.NewCommitPreorderIter(head, nil, nil).ForEach(func(c *object.Commit) error {
		if n++; n > limit || len(pending) == 0 {
			return storer.ErrStop
		}
		if c.NumParents() != 1 {
			return nil
		}
		why, introduced, err := f.adds(c, prefix)
		if err != nil {
			return err
		}
		if why != "" {
			out = append(out, Found{SHA: c.Hash.String(), Why: why})
		}
		for _, i := range introduced {
			delete(pending, i)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("revert: %w: no commit of the last %d under %q added %s", errNotFound, limit, f.Path, f.describe())
	}
	return out, nil
}

// adds looks at the files under prefix that c changed. why names the first
// line c added that shows a change; introduced lists the changes c's added
// lines show that its files did not show before c.
func (f *Find) adds(c *object.Commit, prefix string) (why string, introduced []int, err error) {
	parent, err := c.Parent(0)
	if err != nil {
		return "", nil, err
	}
	pt, err := parent.Tree()
	if err != nil {
		return "", nil, err
	}
	ct, err := c.Tree()
	if err != nil {
		return "", nil, err
	}
	changes, err := object.DiffTree(pt, ct)
	if err != nil {
		return "", nil, err
	}
	shownBefore, added := map[int]bool{}, map[int]bool{}
	for _, ch := range changes {
		name := ch.To.Name
		if name == "" || !(prefix == "" || name == prefix || strings.HasPrefix(name, prefix+"/")) {
			continue
		}
		from, to, err := ch.Files()
		if err != nil {
			return "", nil, err
		}
		old, err := lines(from)
		if err != nil {
			return "", nil, err
		}
		next, err := lines(to)
		if err != nil {
			return "", nil, err
		}
		had := map[string]int{}
		for _, l := range old {
			had[l]++
			for _, i := range f.shows(l) {
				shownBefore[i] = true
			}
		}
		for _, l := range next {
			if had[l] > 0 {
				had[l]--
				continue
			}
			shown := f.shows(l)
			for _, i := range shown {
				added[i] = true
			}
			if why == "" && len(shown) > 0 {
				why = text.Truncate(fmt.Sprintf("%s: %q", name, text.Truncate(strings.TrimSpace(l), 120)), MaxWhy)
			}
		}
	}
	for i := range added {
		if !shownBefore[i] {
			introduced = append(introduced, i)
		}
	}
	return why, introduced, nil
}

// lines splits a text file into lines; a binary or missing file has none.
func lines(f *object.File) ([]string, error) {
	if f == nil {
		return nil, nil
	}
	if bin, err := f.IsBinary(); err != nil || bin {
		return nil, err
	}
	content, err := f.Contents()
	if err != nil {
		return nil, err
	}
	return strings.Split(content, "\n"), nil
}

// shows lists the changes line shows.
func (f *Find) shows(line string) []int {
	var out []int
	for i, ch := range f.Changes {
		if ch.shownBy(line) {
			out = append(out, i)
		}
	}
	return out
}

func (ch Change) shownBy(line string) bool {
	for _, t := range ch.Texts {
		if t != "" && strings.Contains(line, t) {
			return true
		}
	}
	for _, v := range ch.Values {
		if v != "" && wholeValue(line, v) {
			return true
		}
	}
	return false
}

// wholeValue says whether v occurs in line as a whole value (see
// Find.Values).
func wholeValue(line, v string) bool {
	for i := 0; ; {
		j := strings.Index(line[i:], v)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(v)
		if (start == 0 || strings.ContainsRune(" \t:=@\"'", rune(line[start-1]))) &&
			(end == len(line) || strings.ContainsRune(" \t\"',#\r", rune(line[end]))) {
			return true
		}
		i = start + 1
	}
}

func (f *Find) describe() string {
	var all []string
	for _, ch := range f.Changes {
		for _, t := range append(append([]string{}, ch.Texts...), ch.Values...) {
			all = append(all, fmt.Sprintf("%q", t))
		}
	}
	return strings.Join(all, " or ")
}
