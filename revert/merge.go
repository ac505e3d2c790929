package revert

import "bytes"

// Conflict is a region where ours and theirs both changed the base differently.
type Conflict struct {
	// BaseStart/BaseEnd: the conflicting lines of base, 1-based, end
	// exclusive (BaseStart == BaseEnd for an insertion point).
	BaseStart, BaseEnd int
}

// Merge3 merges the changes from base to theirs into ours, line by line. With
// no conflict it returns the merged text and nil. With conflicts it returns
// text with diff3-style markers (<<<<<<< ours / ||||||| base / ======= /
// >>>>>>> theirs) and the conflicts.
//
// The merge is the classic diff3 algorithm: base is diffed against ours and
// against theirs, and base lines matched in both diffs are stable. Between two
// stable runs (or before the first / after the last) lies an unstable chunk:
// if only one side changed it, that side is taken; if both changed it the same
// way, that is taken; otherwise it is a conflict. Because stable runs must
// contain at least one unchanged base line, changes on the two sides that
// touch each other (no unchanged base line between them) form one conflict.
//
// Lines include their terminating '\n'; a final line without one is a
// different line from the same text with one. Conflict markers end in "\r\n"
// when the first line of base ends in "\r\n" and the first line of ours does
// not end in a bare "\n" (it ends in "\r\n", or ours is a single line with
// no newline, or empty), and in "\n" otherwise; this agrees with git
// merge-file on the inputs of the tests. A section of a conflict whose last line lacks a newline gets one
// (with the same ending as the markers) so that the next marker starts a
// line.
func Merge3(base, ours, theirs []byte) (merged []byte, conflicts []Conflict) {
	switch {
	case bytes.Equal(ours, base):
		return bytes.Clone(theirs), nil
	case bytes.Equal(theirs, base), bytes.Equal(ours, theirs):
		return bytes.Clone(ours), nil
	}

	ids := map[string]int{}
	bl, bi := mergeLines(base, ids)
	ol, oi := mergeLines(ours, ids)
	tl, ti := mergeLines(theirs, ids)
	mo := mergeMatch(bi, oi) // base index -> ours index, or -1
	mt := mergeMatch(bi, ti) // base index -> theirs index, or -1
	eol := mergeEOL(bl, ol)

	out := make([]byte, 0, len(ours)+len(theirs))
	b, o, t := 0, 0, 0
	for b < len(bl) || o < len(ol) || t < len(tl) {
		// A stable line: unchanged in both and aligned with the cursors.
		if b < len(bl) && mo[b] == o && mt[b] == t {
			out = append(out, bl[b]...)
			b, o, t = b+1, o+1, t+1
			continue
		}
		// The unstable chunk runs to the next base line matched in both.
		e, oe, te := b, len(ol), len(tl)
		for ; e < len(bl); e++ {
			if mo[e] >= 0 && mt[e] >= 0 {
				oe, te = mo[e], mt[e]
				break
			}
		}
		bc, oc, tc := bi[b:e], oi[o:oe], ti[t:te]
		oursChanged := !mergeEqual(oc, bc)
		theirsChanged := !mergeEqual(tc, bc)
		switch {
		case !theirsChanged || (oursChanged && mergeEqual(oc, tc)):
			out = mergeAppend(out, ol[o:oe])
		case !oursChanged:
			out = mergeAppend(out, tl[t:te])
		default:
			conflicts = append(conflicts, Conflict{BaseStart: b + 1, BaseEnd: e + 1})
			out = append(out, "<<<<<<< ours"+eol...)
			out = mergeSection(out, ol[o:oe], eol)
			out = append(out, "||||||| base"+eol...)
			out = mergeSection(out, bl[b:e], eol)
			out = append(out, "======="+eol...)
			out = mergeSection(out, tl[t:te], eol)
			out = append(out, ">>>>>>> theirs"+eol...)
		}
		b, o, t = e, oe, te
	}
	return out, conflicts
}

// mergeLines splits data into lines, each with its '\n', and gives each
// distinct line an id from ids (shared between the files being compared).
func mergeLines(data []byte, ids map[string]int) ([][]byte, []int) {
	var lines [][]byte
	var nums []int
	for len(data) > 0 {
		n := bytes.IndexByte(data, '\n') + 1
		if n == 0 {
			n = len(data)
		}
		line := data[:n:n]
		data = data[n:]
		id, ok := ids[string(line)]
		if !ok {
			id = len(ids)
			ids[string(line)] = id
		}
		lines = append(lines, line)
		nums = append(nums, id)
	}
	return lines, nums
}

// mergeEOL returns the line ending for conflict markers (see Merge3).
func mergeEOL(base, ours [][]byte) string {
	if len(base) == 0 || !bytes.HasSuffix(base[0], []byte("\r\n")) {
		return "\n"
	}
	if len(ours) > 0 && bytes.HasSuffix(ours[0], []byte("\n")) && !bytes.HasSuffix(ours[0], []byte("\r\n")) {
		return "\n"
	}
	return "\r\n"
}

func mergeEqual(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func mergeAppend(out []byte, lines [][]byte) []byte {
	for _, l := range lines {
		out = append(out, l...)
	}
	return out
}

// mergeSection appends the lines of one side of a conflict, ending them with
// a newline if the last one lacks it.
func mergeSection(out []byte, lines [][]byte, eol string) []byte {
	out = mergeAppend(out, lines)
	if len(lines) > 0 && !bytes.HasSuffix(out, []byte("\n")) {
		out = append(out, eol...)
	}
	return out
}

// mergeMatch computes a shortest edit script from a to b with Myers' O(ND)
// algorithm (linear-space variant, "An O(ND) Difference Algorithm and Its
// Variations", 1986) and returns, for each index of a, the index of b it is
// matched with, or -1 if the line is deleted.
//
// Lines that occur in only one of a and b can never be matched, so they are
// left out of the search: the longest common subsequence is the same, and a
// file rewritten from scratch costs linear time instead of quadratic.
func mergeMatch(a, b []int) []int {
	ina, inb := map[int]bool{}, map[int]bool{}
	for _, x := range a {
		ina[x] = true
	}
	for _, x := range b {
		inb[x] = true
	}
	var fa, fb, ia, ib []int // kept lines and their original indices
	for i, x := range a {
		if inb[x] {
			fa, ia = append(fa, x), append(ia, i)
		}
	}
	for i, x := range b {
		if ina[x] {
			fb, ib = append(fb, x), append(ib, i)
		}
	}
	fm := make([]int, len(fa))
	for i := range fm {
		fm[i] = -1
	}
	size := 2*((len(fa)+len(fb)+1)/2) + 3
	d := &mergeDiffer{a: fa, b: fb, match: fm, vf: make([]int, size), vb: make([]int, size)}
	d.compare(0, len(fa), 0, len(fb))
	m := make([]int, len(a))
	for i := range m {
		m[i] = -1
	}
	for i, j := range fm {
		if j >= 0 {
			m[ia[i]] = ib[j]
		}
	}
	return m
}

type mergeDiffer struct {
	a, b   []int
	match  []int
	vf, vb []int // furthest x per diagonal, forward and reverse searches
}

func (d *mergeDiffer) compare(a0, a1, b0, b1 int) {
	for {
		for a0 < a1 && b0 < b1 && d.a[a0] == d.b[b0] {
			d.match[a0] = b0
			a0, b0 = a0+1, b0+1
		}
		for a0 < a1 && b0 < b1 && d.a[a1-1] == d.b[b1-1] {
			a1, b1 = a1-1, b1-1
			d.match[a1] = b1
		}
		if a0 == a1 || b0 == b1 {
			return
		}
		// With no common prefix or suffix and both sides non-empty, the
		// edit distance is at least 2, so both halves are strictly smaller.
		x0, y0, x1, y1 := d.middleSnake(a0, a1, b0, b1)
		for x := x0; x < x1; x++ {
			d.match[x] = y0 + (x - x0)
		}
		d.compare(a0, x0, b0, y0)
		a0, b0 = x1, y1 // tail call for the second half
	}
}

// middleSnake finds the middle snake of an optimal path from (a0,b0) to
// (a1,b1) and returns its start and end in absolute coordinates.
func (d *mergeDiffer) middleSnake(a0, a1, b0, b1 int) (x0, y0, x1, y1 int) {
	a, b := d.a, d.b
	n, m := a1-a0, b1-b0
	delta := n - m
	odd := delta&1 != 0
	maxD := (n + m + 1) / 2
	off := maxD + 1
	vf, vb := d.vf, d.vb
	vf[off+1], vb[off+1] = 0, 0
	for D := 0; D <= maxD; D++ {
		// Forward search, in coordinates relative to (a0, b0).
		for k := -D; k <= D; k += 2 {
			var x int
			if k == -D || (k != D && vf[off+k-1] < vf[off+k+1]) {
				x = vf[off+k+1]
			} else {
				x = vf[off+k-1] + 1
			}
			y := x - k
			sx, sy := x, y
			for x < n && y < m && a[a0+x] == b[b0+y] {
				x, y = x+1, y+1
			}
			vf[off+k] = x
			// Reverse diagonal c = delta - k (see below).
			if c := delta - k; odd && c >= -(D-1) && c <= D-1 && x >= n-vb[off+c] {
				return a0 + sx, b0 + sy, a0 + x, b0 + y
			}
		}
		// Reverse search: a forward search over the reversed sequences, with
		// x' = n-x, y' = m-y, so diagonal c = x'-y' = delta-k.
		for c := -D; c <= D; c += 2 {
			var x int
			if c == -D || (c != D && vb[off+c-1] < vb[off+c+1]) {
				x = vb[off+c+1]
			} else {
				x = vb[off+c-1] + 1
			}
			y := x - c
			sx, sy := x, y
			for x < n && y < m && a[a1-1-x] == b[b1-1-y] {
				x, y = x+1, y+1
			}
			vb[off+c] = x
			if k := delta - c; !odd && k >= -D && k <= D && vf[off+k] >= n-x {
				return a1 - x, b1 - y, a1 - sx, b1 - sy
			}
		}
	}
	panic("revert: no middle snake") // unreachable
}
