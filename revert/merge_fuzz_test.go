package revert

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/storage/memory"
)

// mergeMarkers are the lines that open, divide and close a conflict, without
// their line ending.
var mergeMarkers = []string{"<<<<<<< ours", "||||||| base", "=======", ">>>>>>> theirs"}

// FuzzMerge3 checks the three-way merge on any three files, and on a revert
// built from the fuzzer's bytes:
//
//   - conflicts do not depend on which side is which, are ordered and
//     separated by at least one line, and lie within base;
//   - nothing changed on one side gives the other side; the same change on
//     both is no conflict;
//   - the inputs are left as they were, and merging is deterministic;
//   - every line of a clean merge is a line of ours or of theirs: no two
//     lines are joined, no line ending is lost or changed;
//   - with conflicts, every line is an input's line, a marker, or an
//     input's last line without a newline ended by the markers' ending; there
//     is one set of markers per conflict, ending as docs/revert.md says
//     (CRLF when base's first line does and ours' first line does not end
//     in a bare LF);
//   - as the revert uses it (state.merge): a file with a NUL byte in its
//     first 8,000 bytes on any side is a conflict and is left as it is at
//     the head; otherwise the merged text is stored, a conflict exactly when
//     Merge3 reports one;
//   - the revert of a change, after a later change elsewhere in the file
//     (at least one line apart), gives the file as before the change with
//     the later change kept, and no conflict; a later change that touches
//     the reverted lines is reported as a conflict, never merged silently.
func FuzzMerge3(f *testing.F) {
	f.Add([]byte("a\nb\nc\n"), []byte("a\nB\nc\n"), []byte("a\nb\nC\n"))
	f.Fuzz(func(t *testing.T, base, ours, theirs []byte) {
		in := [][]byte{bytes.Clone(base), bytes.Clone(ours), bytes.Clone(theirs)}
		merged, conflicts := Merge3(base, ours, theirs)
		if !bytes.Equal(base, in[0]) || !bytes.Equal(ours, in[1]) || !bytes.Equal(theirs, in[2]) {
			t.Fatalf("Merge3 changed its inputs")
		}
		if again, c := Merge3(base, ours, theirs); !bytes.Equal(again, merged) || !reflect.DeepEqual(c, conflicts) {
			t.Fatalf("two merges differ: %q %v and %q %v", merged, conflicts, again, c)
		}

		// Conflicts do not depend on which side is which.
		_, swapped := Merge3(base, theirs, ours)
		if !reflect.DeepEqual(conflicts, swapped) {
			t.Errorf("conflicts %v, with sides swapped %v", conflicts, swapped)
		}
		baseLines := mergeFuzzLines(base)
		for i, c := range conflicts {
			if c.BaseStart < 1 || c.BaseEnd < c.BaseStart || c.BaseEnd > len(baseLines)+1 {
				t.Errorf("bad conflict range %v in a base of %d lines", c, len(baseLines))
			}
			if i > 0 && c.BaseStart <= conflicts[i-1].BaseEnd {
				t.Errorf("conflicts %v and %v are not apart", conflicts[i-1], c)
			}
		}

		// Nothing changed on our side: the result is theirs.
		if got, c := Merge3(base, base, theirs); !bytes.Equal(got, theirs) || c != nil {
			t.Errorf("Merge3(base, base, theirs) = %q, %v; want %q", got, c, theirs)
		}
		// Nothing changed on their side: the result is ours.
		if got, c := Merge3(base, ours, base); !bytes.Equal(got, ours) || c != nil {
			t.Errorf("Merge3(base, ours, base) = %q, %v; want %q", got, c, ours)
		}
		// The same change on both sides is no conflict.
		if got, c := Merge3(base, ours, ours); !bytes.Equal(got, ours) || c != nil {
			t.Errorf("Merge3(base, ours, ours) = %q, %v; want %q", got, c, ours)
		}

		mergeFuzzProvenance(t, base, ours, theirs, merged, conflicts)
		mergeFuzzFile(t, base, ours, theirs, merged, conflicts)
		t.Logf("merged %d, %d and %d bytes into %d, with %d conflicts; the revert built from them: %s",
			len(base), len(ours), len(theirs), len(merged), len(conflicts), mergeFuzzRevert(t, base, ours, theirs))
	})
}

// mergeFuzzProvenance checks where each line of merged comes from, and the
// conflict markers.
func mergeFuzzProvenance(t *testing.T, base, ours, theirs, merged []byte, conflicts []Conflict) {
	t.Helper()
	eol := "\n"
	bl, ol := mergeFuzzLines(base), mergeFuzzLines(ours)
	if len(bl) > 0 && bytes.HasSuffix(bl[0], []byte("\r\n")) &&
		!(len(ol) > 0 && bytes.HasSuffix(ol[0], []byte("\n")) && !bytes.HasSuffix(ol[0], []byte("\r\n"))) {
		eol = "\r\n"
	}
	known := map[string]bool{}
	hasMarker := false
	for _, side := range [][]byte{base, ours, theirs} {
		for _, l := range mergeFuzzLines(side) {
			known[string(l)] = true
			if !bytes.HasSuffix(l, []byte("\n")) {
				known[string(l)+eol] = true // a section's last line gets the markers' ending
			}
			for _, m := range mergeMarkers {
				if bytes.HasPrefix(l, []byte(m)) {
					hasMarker = true
				}
			}
		}
	}
	clean := map[string]bool{}
	for _, l := range append(mergeFuzzLines(ours), mergeFuzzLines(theirs)...) {
		clean[string(l)] = true
	}
	count := map[string]int{}
	for _, l := range mergeFuzzLines(merged) {
		switch {
		case conflicts == nil && !clean[string(l)]:
			t.Fatalf("line %q of the clean merge %q is not a line of ours or theirs", l, merged)
		case conflicts != nil && !known[string(l)]:
			count[string(l)]++
			if !mergeFuzzIsMarker(string(l), eol) {
				t.Fatalf("line %q of the merge %q is no input's line and no marker ending in %q", l, merged, eol)
			}
		}
	}
	if conflicts == nil || hasMarker {
		return
	}
	for _, m := range mergeMarkers {
		if n := count[m+eol]; n != len(conflicts) {
			t.Fatalf("%d lines %q for %d conflicts in %q", n, m+eol, len(conflicts), merged)
		}
	}
}

func mergeFuzzIsMarker(line, eol string) bool {
	for _, m := range mergeMarkers {
		if line == m+eol {
			return true
		}
	}
	return false
}

// mergeFuzzFile runs the merge as the revert runs it on one file, and checks
// the result against docs/revert.md: binary is a conflict kept as ours, text
// is merged.
func mergeFuzzFile(t *testing.T, base, ours, theirs, merged []byte, conflicts []Conflict) {
	t.Helper()
	st := &state{s: memory.NewStorage(), changes: map[string]*entry{}, conflicts: map[string]bool{}}
	var es [3]*entry
	for i, b := range [][]byte{base, ours, theirs} {
		h, err := writeBlob(st.s, b)
		if err != nil {
			t.Fatal(err)
		}
		es[i] = &entry{Mode: filemode.Regular, Hash: h}
	}
	if err := st.merge("f", es[0], es[1], es[2]); err != nil {
		t.Fatal(err)
	}
	binary := false
	for _, b := range [][]byte{base, ours, theirs} {
		binary = binary || bytes.IndexByte(b[:min(len(b), 8000)], 0) >= 0
	}
	if binary {
		if !st.conflicts["f"] || st.changes["f"] != nil {
			t.Fatalf("a binary file was merged (conflict %t, change %v)", st.conflicts["f"], st.changes["f"])
		}
		return
	}
	if st.conflicts["f"] != (conflicts != nil) {
		t.Fatalf("file conflict %t, Merge3 conflicts %v", st.conflicts["f"], conflicts)
	}
	got, err := st.blob(st.changes["f"])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, merged) {
		t.Fatalf("stored %q, Merge3 gave %q", got, merged)
	}
}

// mergeFuzzRevert builds a revert from the fuzzer's bytes. The file before
// the offending commit (P) has the lines of a, the commit replaces some of
// them by the lines of b (giving C), and a later commit replaces some lines
// of C by the lines of c (giving H, the head). Each line is made distinct
// (p3:, x0:, y1: ...), so the diffs have one answer, and keeps its own
// ending (CRLF when the fuzzer's line ends in CR); the files may end in a
// line without a newline that no commit touches. Where the changes are is
// drawn from a hash of the three inputs, the later change mostly at least
// a line away from the offending one.
//
// The revert is Merge3(C, H, P): base the file at the offending commit, ours
// the head, theirs the parent.
func mergeFuzzRevert(t *testing.T, a, b, c []byte) string {
	t.Helper()
	h := fnv.New64a()
	for _, in := range [][]byte{a, b, c} {
		fmt.Fprintf(h, "%d:", len(in))
		h.Write(in)
	}
	r := rand.New(rand.NewPCG(h.Sum64(), 0))
	p, x, y := mergeFuzzDistinct("p", a), mergeFuzzDistinct("x", b), mergeFuzzDistinct("y", c)
	var tail [][]byte
	if r.IntN(2) == 0 {
		tail = [][]byte{[]byte("end")}
	}
	i1 := r.IntN(len(p) + 1)
	j1 := i1 + r.IntN(len(p)-i1+1)
	cl := mergeFuzzJoin(p[:i1], x, p[j1:])
	xs, xe := i1, i1+len(x) // the offending change's lines in C
	// The later change: two times in three at least one line away from
	// the offending one when C has room for that, else anywhere.
	lo, hi := 0, len(cl)
	switch apart := r.IntN(3); {
	case apart == 0 && xs >= 1:
		hi = xs - 1 // before, a line apart
	case apart == 1 && xe+1 <= len(cl):
		lo = xe + 1 // after, a line apart
	}
	i2 := lo + r.IntN(hi-lo+1)
	j2 := i2 + r.IntN(hi-i2+1)
	hl := mergeFuzzJoin(cl[:i2], y, cl[j2:])
	parent, commit, head := mergeFuzzText(p, tail), mergeFuzzText(cl, tail), mergeFuzzText(hl, tail)

	merged, conflicts := Merge3(commit, head, parent)
	undoNoop := i1 == j1 && len(x) == 0
	laterNoop := i2 == j2 && len(y) == 0
	var want []byte
	what := fmt.Sprintf("lines %d-%d of %d put back beside a later change of lines %d-%d, clean", i1+1, j1, len(p), i2+1, j2)
	switch {
	case laterNoop:
		want, what = parent, "no later change: the parent, clean"
	case undoNoop:
		want, what = head, "the commit changed nothing: the head, clean"
	case j2 < xs || i2 > xe:
		// A line of C that neither change touches lies between them: the
		// result is the head with the offending lines put back as they
		// were in the parent.
		hxs := xs
		if j2 < xs {
			hxs += len(y) - (j2 - i2)
		}
		want = mergeFuzzText(mergeFuzzJoin(hl[:hxs], p[i1:j1], hl[hxs+len(x):]), tail)
	default:
		// The later change touches the reverted lines.
		if conflicts == nil && !bytes.Equal(head, parent) {
			t.Fatalf("a later change touching the reverted lines merged without a conflict:\nparent %q\ncommit %q\nhead   %q\nmerged %q",
				parent, commit, head, merged)
		}
		return fmt.Sprintf("a later change touching the reverted lines, %d conflicts", len(conflicts))
	}
	if conflicts != nil || !bytes.Equal(merged, want) {
		t.Fatalf("revert of lines %d-%d after a later change of lines %d-%d:\nparent %q\ncommit %q\nhead   %q\nmerged %q, conflicts %v\nwant   %q",
			i1, j1, i2, j2, parent, commit, head, merged, conflicts, want)
	}
	return what
}

// mergeFuzzLines splits data into lines, each with its '\n'.
func mergeFuzzLines(data []byte) [][]byte {
	var lines [][]byte
	for len(data) > 0 {
		n := bytes.IndexByte(data, '\n') + 1
		if n == 0 {
			n = len(data)
		}
		lines = append(lines, data[:n])
		data = data[n:]
	}
	return lines
}

// mergeFuzzDistinct makes one line of each line of data, prefixed with
// prefix and its index, ending in '\n'.
func mergeFuzzDistinct(prefix string, data []byte) [][]byte {
	var lines [][]byte
	for i, l := range mergeFuzzLines(data) {
		lines = append(lines, fmt.Appendf(nil, "%s%d:%s\n", prefix, i, bytes.TrimSuffix(l, []byte("\n"))))
	}
	return lines
}

func mergeFuzzJoin(parts ...[][]byte) [][]byte {
	var out [][]byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func mergeFuzzText(lines, tail [][]byte) []byte {
	return bytes.Join(mergeFuzzJoin(lines, tail), nil)
}
