package revert

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestMerge3(t *testing.T) {
	tests := []struct {
		name               string
		base, ours, theirs string
		want               string
		wantConflicts      []Conflict
	}{
		{
			name:   "changes in different regions",
			base:   "a\nb\nc\nd\ne\nf\n",
			ours:   "A\nb\nc\nd\ne\nf\n",
			theirs: "a\nb\nc\nd\ne\nF\n",
			want:   "A\nb\nc\nd\ne\nF\n",
		},
		{
			// Revert of commit C (base = file at C, theirs = C's parent)
			// after a later commit changed another line (ours = head).
			name:   "revert one-line change after later edit elsewhere",
			base:   "replicas: 3\nport: 8080\nimage: app:v2\nlog: info\n",
			ours:   "replicas: 5\nport: 8080\nimage: app:v2\nlog: info\n",
			theirs: "replicas: 3\nport: 8080\nimage: app:v1\nlog: info\n",
			want:   "replicas: 5\nport: 8080\nimage: app:v1\nlog: info\n",
		},
		{
			name:          "both changed the same line",
			base:          "a\nb\nc\n",
			ours:          "a\nB1\nc\n",
			theirs:        "a\nB2\nc\n",
			want:          "a\n<<<<<<< ours\nB1\n||||||| base\nb\n=======\nB2\n>>>>>>> theirs\nc\n",
			wantConflicts: []Conflict{{BaseStart: 2, BaseEnd: 3}},
		},
		{
			name:   "identical change on both sides",
			base:   "a\nb\nc\n",
			ours:   "a\nX\nc\n",
			theirs: "a\nX\nc\n",
			want:   "a\nX\nc\n",
		},
		{
			name:          "deletion versus modification",
			base:          "a\nb\nc\n",
			ours:          "a\nc\n",
			theirs:        "a\nB\nc\n",
			want:          "a\n<<<<<<< ours\n||||||| base\nb\n=======\nB\n>>>>>>> theirs\nc\n",
			wantConflicts: []Conflict{{BaseStart: 2, BaseEnd: 3}},
		},
		{
			// git treats changes with no unchanged base line between them
			// as one conflicting region.
			name:          "adjacent changes conflict",
			base:          "a\nb\nc\nd\n",
			ours:          "a\nB\nc\nd\n",
			theirs:        "a\nb\nC\nd\n",
			want:          "a\n<<<<<<< ours\nB\nc\n||||||| base\nb\nc\n=======\nb\nC\n>>>>>>> theirs\nd\n",
			wantConflicts: []Conflict{{BaseStart: 2, BaseEnd: 4}},
		},
		{
			name:   "insertion at start and at end",
			base:   "a\nb\nc\n",
			ours:   "start\na\nb\nc\n",
			theirs: "a\nb\nc\nend\n",
			want:   "start\na\nb\nc\nend\n",
		},
		{
			name:          "insertions at the same point",
			base:          "a\nb\n",
			ours:          "a\nx\nb\n",
			theirs:        "a\ny\nb\n",
			want:          "a\n<<<<<<< ours\nx\n||||||| base\n=======\ny\n>>>>>>> theirs\nb\n",
			wantConflicts: []Conflict{{BaseStart: 2, BaseEnd: 2}},
		},
		{
			name:   "no trailing newline kept from ours",
			base:   "a\nb\nc\nd",
			ours:   "A\nb\nc\nd",
			theirs: "a\nb\nC\nd",
			want:   "A\nb\nC\nd",
		},
		{
			name:   "no trailing newline kept from theirs",
			base:   "a\nb\nc\nd\n",
			ours:   "A\nb\nc\nd\n",
			theirs: "a\nb\nc\nd\ne",
			want:   "A\nb\nc\nd\ne",
		},
		{
			name:          "conflict on last line without newline",
			base:          "a\nb",
			ours:          "a\nB",
			theirs:        "a\nC",
			want:          "a\n<<<<<<< ours\nB\n||||||| base\nb\n=======\nC\n>>>>>>> theirs\n",
			wantConflicts: []Conflict{{BaseStart: 2, BaseEnd: 3}},
		},
		{
			name:   "CRLF clean",
			base:   "a\r\nb\r\nc\r\nd\r\n",
			ours:   "A\r\nb\r\nc\r\nd\r\n",
			theirs: "a\r\nb\r\nc\r\nD\r\n",
			want:   "A\r\nb\r\nc\r\nD\r\n",
		},
		{
			name:          "CRLF conflict markers",
			base:          "a\r\nb\r\nc\r\n",
			ours:          "a\r\nB\r\nc\r\n",
			theirs:        "a\r\nX\r\nc\r\n",
			want:          "a\r\n<<<<<<< ours\r\nB\r\n||||||| base\r\nb\r\n=======\r\nX\r\n>>>>>>> theirs\r\nc\r\n",
			wantConflicts: []Conflict{{BaseStart: 2, BaseEnd: 3}},
		},
		{
			name:   "empty base, ours adds",
			base:   "",
			ours:   "a\n",
			theirs: "",
			want:   "a\n",
		},
		{
			name:          "empty base, both add",
			base:          "",
			ours:          "a\n",
			theirs:        "b\n",
			want:          "<<<<<<< ours\na\n||||||| base\n=======\nb\n>>>>>>> theirs\n",
			wantConflicts: []Conflict{{BaseStart: 1, BaseEnd: 1}},
		},
		{
			name:   "ours empties the file, theirs unchanged",
			base:   "a\nb\n",
			ours:   "",
			theirs: "a\nb\n",
			want:   "",
		},
		{
			name:          "theirs empties the file, ours changed",
			base:          "a\nb\n",
			ours:          "a\nc\n",
			theirs:        "",
			want:          "<<<<<<< ours\na\nc\n||||||| base\na\nb\n=======\n>>>>>>> theirs\n",
			wantConflicts: []Conflict{{BaseStart: 1, BaseEnd: 3}},
		},
		{
			name: "all empty",
			want: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, conflicts := Merge3([]byte(tt.base), []byte(tt.ours), []byte(tt.theirs))
			if string(got) != tt.want {
				t.Errorf("merged:\n%q\nwant:\n%q", got, tt.want)
			}
			if !reflect.DeepEqual(conflicts, tt.wantConflicts) {
				t.Errorf("conflicts = %v, want %v", conflicts, tt.wantConflicts)
			}
			if gitPath, err := exec.LookPath("git"); err == nil {
				out, count := mergeRunGit(t, gitPath, t.TempDir(), []byte(tt.base), []byte(tt.ours), []byte(tt.theirs))
				if string(out) != tt.want || count != len(tt.wantConflicts) {
					t.Errorf("git merge-file gives %q with %d conflicts", out, count)
				}
			}
		})
	}
}

func TestMerge3LargeFileSmallDiff(t *testing.T) {
	var base, ours, theirs bytes.Buffer
	const n = 20000
	for i := range n {
		line := fmt.Sprintf("line %d\n", i)
		base.WriteString(line)
		switch i {
		case 100:
			ours.WriteString("ours changed\n")
		case 15000:
			theirs.WriteString("theirs changed\n")
			theirs.WriteString(line)
			ours.WriteString(line)
		default:
			ours.WriteString(line)
			theirs.WriteString(line)
		}
		if i != 100 && i != 15000 {
			continue
		}
		if i == 100 {
			theirs.WriteString(line)
		}
	}
	got, conflicts := Merge3(base.Bytes(), ours.Bytes(), theirs.Bytes())
	if conflicts != nil {
		t.Fatalf("conflicts = %v", conflicts)
	}
	if !bytes.Contains(got, []byte("ours changed\n")) || !bytes.Contains(got, []byte("theirs changed\nline 15000\n")) {
		t.Fatalf("merge lost a change")
	}
	if want := base.Len() - len("line 100\n") + len("ours changed\n") + len("theirs changed\n"); len(got) != want {
		t.Fatalf("len = %d, want %d", len(got), want)
	}
}

// TestMerge3MatchesGit compares Merge3 with `git merge-file -p --diff3` on
// random small inputs (see mergeRandomInputs) whose diffs are unambiguous:
// every base line is distinct and edits only add lines that are not in the
// base. It requires that
//
//   - both agree on whether the merge is clean, and
//   - a clean merge is byte for byte git's result,
//
// and logs how many cases (clean or conflicting) match git byte for byte
// with the same number of conflicts.
//
// Where a diff is ambiguous (a line could be matched with several equal
// lines), Merge3 may pick a different minimal alignment from git's and so
// place conflict boundaries differently, or even find a conflict where git
// does not (or the reverse). The test therefore also runs inputs drawn from
// a five-letter alphabet, where lines repeat, but only logs how many of them
// agree with git.
func TestMerge3MatchesGit(t *testing.T) {
	gitPath, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git not installed")
	}
	dir := t.TempDir()
	const cases = 500
	for _, ambiguous := range []bool{false, true} {
		rng := rand.New(rand.NewSource(1))
		conflicting, sameOutcome, identical := 0, 0, 0
		for i := range cases {
			base, ours, theirs := mergeRandomInputs(rng, ambiguous)
			got, conflicts := Merge3(base, ours, theirs)
			want, count := mergeRunGit(t, gitPath, dir, base, ours, theirs)
			if count > 0 {
				conflicting++
			}
			if bytes.Equal(got, want) && len(conflicts) == count {
				identical++
			}
			ok := (len(conflicts) == 0) == (count == 0) && (count > 0 || bytes.Equal(got, want))
			if ok {
				sameOutcome++
			}
			if !ok && !ambiguous {
				t.Errorf("case %d: base %q ours %q theirs %q:\n%d conflicts: %q\ngit: %d conflicts: %q",
					i, base, ours, theirs, len(conflicts), got, count, want)
			}
		}
		t.Logf("ambiguous=%v: %d of %d cases conflicted in git; %d agree on outcome, %d identical to git",
			ambiguous, conflicting, cases, sameOutcome, identical)
		if conflicting < cases/10 || conflicting > cases*9/10 {
			t.Errorf("random inputs are badly balanced: %d of %d conflicted", conflicting, cases)
		}
	}
}

func mergeRunGit(t *testing.T, gitPath, dir string, base, ours, theirs []byte) ([]byte, int) {
	t.Helper()
	for name, data := range map[string][]byte{"base": base, "ours": ours, "theirs": theirs} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(gitPath, "merge-file", "-p", "--diff3", "ours", "base", "theirs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull, "HOME="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return out, 0
	case errors.As(err, &exitErr) && exitErr.ExitCode() > 0 && exitErr.ExitCode() < 128 && stderr.Len() == 0:
		return out, exitErr.ExitCode()
	default:
		t.Fatalf("git merge-file: %v: %s", err, stderr.String())
		return nil, 0
	}
}

// mergeRandomInputs makes a base of up to 8 lines and two edited copies.
// Files are LF or CRLF, and the last line sometimes lacks its newline. Lines
// are single letters. Unless ambiguous is set, the base lines are distinct
// and inserted or replacing lines never occur in the base (though ours and
// theirs may add the same one), so each side's diff against the base has one
// minimal alignment. With ambiguous set, all lines come from a five-letter
// alphabet and repeat a lot.
func mergeRandomInputs(rng *rand.Rand, ambiguous bool) (base, ours, theirs []byte) {
	eol := "\n"
	if rng.Intn(5) == 0 {
		eol = "\r\n"
	}
	letters := rng.Perm(26)
	b := make([]string, rng.Intn(9))
	for i := range b {
		if ambiguous {
			b[i] = string(rune('a'+rng.Intn(5))) + eol
		} else {
			b[i] = string(rune('a'+letters[i])) + eol
		}
	}
	line := func() string {
		if ambiguous {
			return string(rune('a'+rng.Intn(5))) + eol
		}
		return string(rune('a'+letters[len(b)+rng.Intn(26-len(b))])) + eol
	}
	edit := func(in []string) []string {
		out := append([]string(nil), in...)
		for range rng.Intn(4) {
			p := rng.Intn(len(out) + 1)
			switch op := rng.Intn(3); {
			case op == 0 || len(out) == p: // insert
				out = append(out[:p], append([]string{line()}, out[p:]...)...)
			case op == 1: // delete
				out = append(out[:p], out[p+1:]...)
			default: // replace
				out[p] = line()
			}
		}
		return out
	}
	o, th := edit(b), edit(b)
	join := func(lines []string) []byte {
		s := strings.Join(lines, "")
		if len(s) > 0 && rng.Intn(4) == 0 {
			s = strings.TrimSuffix(s, eol)
		}
		return []byte(s)
	}
	return join(b), join(o), join(th)
}
