package revert

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage/memory"

	"backstop.dev/backstop/test/gittest"
)

const (
	user     = "backstop"
	password = "pa55-w0rd-xyz"
	repoName = "shop/config"
	manifest = "apps/app/deployment.yaml"
)

func deployment(replicas int, image string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  replicas: %d
  selector:
    matchLabels:
      app: app
  template:
    spec:
      containers:
      - name: app
        image: shop/app:%s
`, replicas, image)
}

// fixture is a repository with v1 of the app on main, then a bad commit that
// moves it to v2.
type fixture struct {
	s    *gittest.Server
	w    *gittest.Work
	good string // the last good commit
	bad  string // the offending commit
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	s := gittest.NewServer(t, gittest.Options{Username: user, Password: password})
	s.CreateRepo(t, repoName, "main")
	w := s.Clone(t, repoName)
	w.Write(t, manifest, deployment(2, "v1"))
	w.Write(t, "README.md", "config\n")
	good := w.Commit(t, "Deploy app v1")
	w.Write(t, manifest, deployment(2, "v2"))
	bad := w.Commit(t, "Deploy app v2\n\nNew checkout flow.")
	w.Push(t)
	return &fixture{s: s, w: w, good: good, bad: bad}
}

func (f *fixture) request(commits ...string) Request {
	return Request{
		URL:     f.s.URL(repoName),
		Branch:  "main",
		Auth:    &githttp.BasicAuth{Username: user, Password: password},
		Commits: commits,
		Release: "shop/app@" + commits[0][:10],
		Rollout: "shop/app",
		Reason:  `check "error-rate" = 0.12 > 0.05`,
		Author:  object.Signature{Name: "Backstop", Email: "backstop@example.com", When: time.Unix(1_800_000_000, 0)},
	}
}

func (f *fixture) git(t *testing.T, args ...string) string {
	t.Helper()
	return gittest.Git(t, f.s.Dir(repoName), args...)
}

func revert(t *testing.T, r *Reverter, req Request) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := r.Revert(ctx, req)
	if err != nil {
		t.Fatalf("Revert: %v", err)
	}
	return res
}

func TestRevertSingleCommit(t *testing.T) {
	f := newFixture(t)
	req := f.request(f.bad)
	res := revert(t, &Reverter{}, req)

	if res.Already || res.Conflict != nil || res.Branch != "main" || res.Attempts != 1 {
		t.Fatalf("result = %+v", res)
	}
	if head := f.git(t, "rev-parse", "main"); head != res.SHA {
		t.Fatalf("main = %s, want the revert %s", head, res.SHA)
	}
	if got := f.git(t, "show", "main:"+manifest) + "\n"; got != deployment(2, "v1") {
		t.Errorf("manifest after revert:\n%s", got)
	}
	if parent := f.git(t, "rev-parse", "main^"); parent != f.bad {
		t.Errorf("parent = %s, want %s", parent, f.bad)
	}
	want := `Revert "Deploy app v2"

This reverts commit ` + f.bad + `.
Rollout shop/app failed: check "error-rate" = 0.12 > 0.05

Reverts: ` + f.bad + `
Backstop-Rollout: shop/app
Backstop-Release: ` + req.Release
	if msg := f.git(t, "log", "-1", "--format=%B", "main"); msg != want {
		t.Errorf("message:\n%s\nwant:\n%s", msg, want)
	}
	// git itself parses the trailers.
	if tr := f.git(t, "log", "-1", "--format=%(trailers:key=Backstop-Release,valueonly)", "main"); tr != req.Release {
		t.Errorf("Backstop-Release trailer = %q", tr)
	}
	if who := f.git(t, "log", "-1", "--format=%an <%ae> %at|%cn <%ce>", "main"); who != "Backstop <backstop@example.com> 1800000000|Backstop <backstop@example.com>" {
		t.Errorf("author|committer = %q", who)
	}
	if fsck := f.git(t, "fsck", "--strict"); strings.Contains(fsck, "error") {
		t.Errorf("git fsck: %s", fsck)
	}
	// The rest of the tree is untouched.
	if diff := f.git(t, "diff", "--name-only", f.good, "main"); diff != "" {
		t.Errorf("tree differs from the good commit: %s", diff)
	}
}

func TestRevertLaterUnrelatedCommit(t *testing.T) {
	f := newFixture(t)
	f.w.Write(t, "apps/other/config.yaml", "other: 1\n")
	f.w.Remove(t, "README.md")
	later := f.w.Commit(t, "Other app")
	f.w.Push(t)

	res := revert(t, &Reverter{}, f.request(f.bad))
	if res.Conflict != nil {
		t.Fatalf("conflict: %v", res.Conflict)
	}
	if got := f.git(t, "show", "main:"+manifest) + "\n"; got != deployment(2, "v1") {
		t.Errorf("manifest:\n%s", got)
	}
	if got := f.git(t, "show", "main:apps/other/config.yaml"); got != "other: 1" {
		t.Errorf("later change lost: %q", got)
	}
	if ls := f.git(t, "ls-tree", "--name-only", "main"); strings.Contains(ls, "README.md") {
		t.Errorf("later deletion lost: %s", ls)
	}
	if parent := f.git(t, "rev-parse", "main^"); parent != later {
		t.Errorf("parent = %s, want %s", parent, later)
	}
}

// TestRevertAlreadyUndoneByHand: when a person already put the good content
// back, there is nothing to revert and nothing is pushed.
func TestRevertAlreadyUndoneByHand(t *testing.T) {
	f := newFixture(t)
	f.w.Write(t, manifest, deployment(2, "v1"))
	f.w.Commit(t, "Back to v1 by hand")
	f.w.Push(t)
	pushes := f.s.Pushes()
	_, err := (&Reverter{}).Revert(context.Background(), f.request(f.bad))
	if !errors.Is(err, ErrNothingToRevert) {
		t.Fatalf("Revert: %v; want ErrNothingToRevert", err)
	}
	if f.s.Pushes() != pushes {
		t.Errorf("%d pushes; want none", f.s.Pushes()-pushes)
	}
}

func TestRevertCleanMergeSameFile(t *testing.T) {
	f := newFixture(t)
	f.w.Write(t, manifest, deployment(3, "v2"))
	f.w.Commit(t, "Scale app to 3")
	f.w.Push(t)

	res := revert(t, &Reverter{}, f.request(f.bad))
	if res.Conflict != nil {
		t.Fatalf("conflict: %v", res.Conflict)
	}
	if got := f.git(t, "show", "main:"+manifest) + "\n"; got != deployment(3, "v1") {
		t.Errorf("manifest after merge:\n%s", got)
	}
}

func TestRevertSeveralCommits(t *testing.T) {
	f := newFixture(t)
	f.w.Write(t, "apps/app/config.yaml", "flag: on\n")
	second := f.w.Commit(t, "Add app config")
	f.w.Write(t, manifest, deployment(2, "v3"))
	third := f.w.Commit(t, "Deploy app v3")
	f.w.Push(t)

	req := f.request(f.bad, third, second)
	res := revert(t, &Reverter{}, req)
	if res.Conflict != nil {
		t.Fatalf("conflict: %v", res.Conflict)
	}
	if diff := f.git(t, "diff", "--name-only", f.good, "main"); diff != "" {
		t.Errorf("tree differs from the good commit: %s", diff)
	}
	msg := f.git(t, "log", "-1", "--format=%B", "main")
	if !strings.HasPrefix(msg, "Revert 3 commits of "+req.Release+"\n\nThis reverts commit "+third+".\nThis reverts commit "+second+".\nThis reverts commit "+f.bad+".\n") {
		t.Errorf("message (want newest first):\n%s", msg)
	}
	if tr := f.git(t, "log", "-1", "--format=%(trailers:key=Reverts,valueonly,separator=%x2C)", "main"); tr != third+","+second+","+f.bad {
		t.Errorf("Reverts trailers = %q", tr)
	}
}

func TestRevertConflict(t *testing.T) {
	f := newFixture(t)
	f.w.Write(t, manifest, deployment(2, "v3"))
	later := f.w.Commit(t, "Deploy app v3")
	f.w.Push(t)

	req := f.request(f.bad)
	res := revert(t, &Reverter{}, req)
	if len(res.Conflict) != 1 || res.Conflict[0] != manifest {
		t.Fatalf("Conflict = %v, want [%s]", res.Conflict, manifest)
	}
	side := SideBranchFor(req.Release)
	if res.Branch != side || side != "backstop/revert/shop-app-"+f.bad[:10] {
		t.Errorf("branch = %q, side branch %q", res.Branch, side)
	}
	if head := f.git(t, "rev-parse", "main"); head != later {
		t.Errorf("main moved to %s", head)
	}
	if head := f.git(t, "rev-parse", side); head != res.SHA {
		t.Errorf("side branch = %s, want %s", head, res.SHA)
	}
	if tr := f.git(t, "log", "-1", "--format=%(trailers:key=Backstop-Conflict,valueonly)", side); tr != manifest {
		t.Errorf("Backstop-Conflict trailer = %q", tr)
	}
	got := f.git(t, "show", side+":"+manifest)
	for _, m := range []string{"<<<<<<<", "|||||||", "=======", ">>>>>>>", "image: shop/app:v3", "image: shop/app:v1"} {
		if !strings.Contains(got, m) {
			t.Errorf("attempt lacks %q:\n%s", m, got)
		}
	}
	// A second call finds the attempt and pushes nothing.
	pushes := f.s.Pushes()
	again := revert(t, &Reverter{}, req)
	if !again.Already || again.SHA != res.SHA || again.Branch != side || f.s.Pushes() != pushes ||
		len(again.Conflict) != 1 || again.Conflict[0] != manifest {
		t.Errorf("second call = %+v, pushes %d → %d", again, pushes, f.s.Pushes())
	}
}

func TestRevertConcurrentPusher(t *testing.T) {
	f := newFixture(t)
	other := f.s.Clone(t, repoName)
	var theirs string
	r := &Reverter{beforePush: func(attempt int) {
		if attempt == 1 {
			other.Write(t, "apps/other/config.yaml", "other: 2\n")
			theirs = other.Commit(t, "Someone else's change")
			other.Push(t)
		}
	}}
	res := revert(t, r, f.request(f.bad))
	if res.Attempts != 2 || res.Conflict != nil || res.Already {
		t.Fatalf("result = %+v, want 2 attempts", res)
	}
	if head := f.git(t, "rev-parse", "main"); head != res.SHA {
		t.Fatalf("main = %s, want %s", head, res.SHA)
	}
	if parent := f.git(t, "rev-parse", "main^"); parent != theirs {
		t.Errorf("revert's parent = %s, want the concurrent commit %s", parent, theirs)
	}
	if got := f.git(t, "show", "main:"+manifest) + "\n"; got != deployment(2, "v1") {
		t.Errorf("manifest:\n%s", got)
	}
	if got := f.git(t, "show", "main:apps/other/config.yaml"); got != "other: 2" {
		t.Errorf("concurrent change lost: %q", got)
	}
}

func TestRevertGivesUp(t *testing.T) {
	f := newFixture(t)
	other := f.s.Clone(t, repoName)
	n := 0
	r := &Reverter{beforePush: func(int) {
		n++
		other.Write(t, "counter", fmt.Sprint(n))
		other.Commit(t, "Race "+fmt.Sprint(n))
		other.Push(t)
	}}
	req := f.request(f.bad)
	req.MaxAttempts = 2
	_, err := r.Revert(context.Background(), req)
	if err == nil || !strings.Contains(err.Error(), "gave up after 2 attempts") {
		t.Fatalf("err = %v", err)
	}
	if head := f.git(t, "log", "-1", "--format=%s", "main"); head != "Race 2" {
		t.Errorf("main head = %q", head)
	}
}

// TestRevertOutlastsABusyBranch: ten Rollouts rolled back at once while
// people push (test/faults' push race) moved the branch under one revert
// five times in a row, more than the five pushes it used to try. With the
// default bound, a revert whose branch moves before each of its first
// seven pushes lands on the eighth, on top of all seven commits.
func TestRevertOutlastsABusyBranch(t *testing.T) {
	f := newFixture(t)
	other := f.s.Clone(t, repoName)
	const moves = 7
	r := &Reverter{beforePush: func(attempt int) {
		if attempt <= moves {
			other.Write(t, "counter", fmt.Sprint(attempt))
			other.Commit(t, "Race "+fmt.Sprint(attempt))
			other.Push(t)
		}
	}}
	res := revert(t, r, f.request(f.bad))
	if res.Attempts != moves+1 {
		t.Fatalf("result = %+v, want %d attempts", res, moves+1)
	}
	if head := f.git(t, "rev-parse", "main"); head != res.SHA {
		t.Fatalf("main = %s, want the revert %s", head, res.SHA)
	}
	if parent := f.git(t, "log", "-1", "--format=%s", "main^"); parent != "Race "+fmt.Sprint(moves) {
		t.Errorf("the revert's parent is %q, want the last concurrent commit", parent)
	}
	if got := f.git(t, "show", "main:counter"); got != fmt.Sprint(moves) {
		t.Errorf("the concurrent commits' file = %q, want %d", got, moves)
	}
}

func TestRevertIdempotent(t *testing.T) {
	f := newFixture(t)
	req := f.request(f.bad)
	first := revert(t, &Reverter{}, req)
	pushes := f.s.Pushes()

	// A restarted controller with a later clock, after someone else pushed.
	f.w.Pull(t)
	f.w.Write(t, "apps/other/config.yaml", "other: 1\n")
	f.w.Commit(t, "Other app")
	f.w.Push(t)
	pushes++
	req.Author.When = time.Time{}
	second := revert(t, &Reverter{}, req)
	if !second.Already || second.SHA != first.SHA || second.Branch != "main" || second.Attempts != 0 {
		t.Errorf("second = %+v, want Already %s", second, first.SHA)
	}
	if got := f.s.Pushes(); got != pushes {
		t.Errorf("pushes = %d, want %d", got, pushes)
	}
	if n := f.git(t, "log", "--format=%H", "--grep=Backstop-Release: "+req.Release, "main"); n != first.SHA {
		t.Errorf("reverts on main: %q", n)
	}
}

func TestRevertWrongCredentials(t *testing.T) {
	f := newFixture(t)
	req := f.request(f.bad)
	wrong := "wr0ng-s3cret-pw"
	req.Auth = &githttp.BasicAuth{Username: user, Password: wrong}
	req.URL = strings.Replace(req.URL, "http://", "http://"+user+":"+wrong+"@", 1)
	pushes := f.s.Pushes()
	_, err := (&Reverter{}).Revert(context.Background(), req)
	if err == nil {
		t.Fatal("no error with wrong credentials")
	}
	if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), user+":") {
		t.Errorf("error leaks credentials: %v", err)
	}
	t.Logf("error: %v", err)
	if f.s.Pushes() != pushes {
		t.Error("pushed with wrong credentials")
	}
}

func TestRevertModeBranch(t *testing.T) {
	f := newFixture(t)
	req := f.request(f.bad)
	req.Mode = ModeBranch
	req.SideBranch = "review/revert-v2"
	res := revert(t, &Reverter{}, req)
	if res.Branch != "review/revert-v2" || res.Conflict != nil {
		t.Fatalf("result = %+v", res)
	}
	if head := f.git(t, "rev-parse", "main"); head != f.bad {
		t.Errorf("main moved to %s", head)
	}
	if got := f.git(t, "show", "review/revert-v2:"+manifest) + "\n"; got != deployment(2, "v1") {
		t.Errorf("manifest on side branch:\n%s", got)
	}
	if parent := f.git(t, "rev-parse", "review/revert-v2^"); parent != f.bad {
		t.Errorf("parent = %s", parent)
	}
}

func TestRevertAddedAndDeletedFiles(t *testing.T) {
	f := newFixture(t)
	f.w.Write(t, "apps/app/extra/a.yaml", "a: 1\n")
	f.w.Remove(t, "README.md")
	bad := f.w.Commit(t, "Add extra, drop README")
	f.w.Push(t)

	revert(t, &Reverter{}, f.request(bad))
	ls := f.git(t, "ls-tree", "-r", "--name-only", "main")
	if ls != "README.md\n"+manifest {
		t.Errorf("files after revert:\n%s", ls)
	}
}

func TestRevertBadRequest(t *testing.T) {
	f := newFixture(t)
	for name, mutate := range map[string]func(*Request){
		"short sha":        func(r *Request) { r.Commits = []string{f.bad[:10]} },
		"unknown commit":   func(r *Request) { r.Commits = []string{strings.Repeat("a", 40)} },
		"no release":       func(r *Request) { r.Release = "" },
		"no branch":        func(r *Request) { r.Branch = "nope" },
		"two-line release": func(r *Request) { r.Release = "a\nBackstop-Release: b" },
		"unknown mode":     func(r *Request) { r.Mode = "Force" },
	} {
		req := f.request(f.bad)
		mutate(&req)
		if _, err := (&Reverter{}).Revert(context.Background(), req); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestIsNonFastForward(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("non-fast-forward update: refs/heads/main"), true},
		{fmt.Errorf("push: %w", errors.New("non-fast-forward update: refs/heads/main")), true},
		{errors.New("command error on refs/heads/main: non-fast-forward"), true},
		{errors.New("command error on refs/heads/main: fetch first"), true},
		{errors.New("command error on refs/heads/main: failed to update ref"), true},
		{errors.New("command error on refs/heads/main: pre-receive hook declined"), false},
		{errors.New("command error on refs/heads/main: protected branch hook declined: non-fast-forward pushes are not allowed"), false},
		{errors.New("unpack error: non-fast-forward"), false},
		{errors.New("authentication required"), false},
		{errors.New("some refs were not updated"), false},
	} {
		if got := isNonFastForward(tc.err); got != tc.want {
			t.Errorf("isNonFastForward(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestScrubError(t *testing.T) {
	req := &Request{Auth: &githttp.TokenAuth{Token: "ghp_secrettoken"}}
	err := scrub(fmt.Errorf("fetch https://x-access-token:ghp_secrettoken@github.com/o/r: %w (token ghp_secrettoken)", context.Canceled), req)
	if got := err.Error(); got != "fetch https://github.com/o/r: context canceled (token ***)" {
		t.Errorf("scrubbed = %q", got)
	}
	if !errors.Is(err, context.Canceled) {
		t.Error("scrubbed error lost its cause")
	}
}

func TestBackoff(t *testing.T) {
	for attempt := 1; attempt <= 10; attempt++ {
		base := 100 * time.Millisecond << min(attempt-1, 4) // at most 1.6s
		for range 50 {
			if d := backoff(attempt); d < base/2 || d >= base*3/2 {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v)", attempt, d, base/2, base*3/2)
			}
		}
	}
}

func TestWriteTree(t *testing.T) {
	s := memory.NewStorage()
	blob := func(c string) *entry {
		h, err := writeBlob(s, []byte(c))
		if err != nil {
			t.Fatal(err)
		}
		return &entry{Mode: filemode.Regular, Hash: h}
	}
	root, err := writeTree(s, nil, map[string]*entry{
		"a/b/c.txt": blob("c"),
		"a/b.txt":   blob("b"),
		"a-b":       {Mode: filemode.Executable, Hash: blob("x").Hash},
		"z":         blob("z"),
	})
	if err != nil {
		t.Fatal(err)
	}
	tree, err := object.GetTree(s, root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range tree.Entries {
		names = append(names, e.Name)
	}
	// git order: "a-b" < "a/" < "z".
	if got := strings.Join(names, ","); got != "a-b,a,z" {
		t.Errorf("root entries = %s", got)
	}
	if e, _ := tree.FindEntry("a-b"); e.Mode != filemode.Executable {
		t.Errorf("mode = %v", e.Mode)
	}
	// Deleting the only file of a directory drops the directory.
	root2, err := writeTree(s, tree, map[string]*entry{"a/b/c.txt": nil, "z": nil})
	if err != nil {
		t.Fatal(err)
	}
	tree2, _ := object.GetTree(s, root2)
	var files []string
	_ = tree2.Files().ForEach(func(f *object.File) error { files = append(files, f.Name); return nil })
	if got := strings.Join(files, ","); got != "a-b,a/b.txt" {
		t.Errorf("files = %s", got)
	}
	if _, err := tree2.FindEntry("a/b"); err == nil {
		t.Error("empty directory a/b kept")
	}
}

// TestRevertRange: without a list of commits, the commits between the
// stable and the failed source revisions that changed the path are
// reverted; a commit of another app in that range, and one after it, stay.
func TestRevertRange(t *testing.T) {
	f := newFixture(t)
	f.w.Write(t, "apps/other/config.yaml", "other: 1\n")
	other := f.w.Commit(t, "Other app")
	f.w.Write(t, manifest, deployment(4, "v2"))
	scale := f.w.Commit(t, "Scale app to 4")
	f.w.Write(t, "apps/later.yaml", "later: 1\n")
	f.w.Commit(t, "A later change")
	f.w.Push(t)

	req := f.request(f.bad)
	req.Commits = nil
	req.Range = &Range{From: f.good, To: scale, Path: "apps/app/"}
	res := revert(t, &Reverter{}, req)
	if len(res.Reverted) != 2 || res.Reverted[0] != scale || res.Reverted[1] != f.bad {
		t.Errorf("reverted %v; want [%s %s] (scale, then the image change)", res.Reverted, scale, f.bad)
	}
	if got := f.git(t, "show", "main:"+manifest) + "\n"; got != deployment(2, "v1") {
		t.Errorf("manifest after the revert:\n%s", got)
	}
	for _, kept := range []string{"apps/other/config.yaml", "apps/later.yaml"} {
		if out := f.git(t, "ls-tree", "--name-only", "-r", "main"); !strings.Contains(out, kept) {
			t.Errorf("%s was lost (it is not under the path, or after the range)", kept)
		}
	}

	req.Range = &Range{From: f.good, To: other, Path: "apps/none"}
	req.Release = "shop/app@none"
	if _, err := (&Reverter{}).Revert(context.Background(), req); err == nil || !strings.Contains(err.Error(), `changed "apps/none"`) {
		t.Errorf("a range with no commit under the path: %v", err)
	}
}

// TestRevertSigned: with a signing key from a Secret (encrypted, with its
// passphrase), the revert commit carries an OpenPGP signature that
// `git verify-commit` accepts with the public key imported into gpg.
func TestRevertSigned(t *testing.T) {
	entity, err := openpgp.NewEntity("Backstop", "", "backstop@example.com", &packet.Config{RSABits: 2048})
	if err != nil {
		t.Fatal(err)
	}
	var public bytes.Buffer
	w, _ := armor.Encode(&public, openpgp.PublicKeyType, nil)
	if err := entity.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := entity.EncryptPrivateKeys([]byte("sesame"), nil); err != nil {
		t.Fatal(err)
	}
	var private bytes.Buffer
	w, _ = armor.Encode(&private, openpgp.PrivateKeyType, nil)
	if err := entity.SerializePrivateWithoutSigning(w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()

	if _, err := SigningKey(map[string][]byte{"git.asc": private.Bytes()}); err == nil || !strings.Contains(err.Error(), `no "passphrase"`) {
		t.Errorf("an encrypted key without its passphrase: %v", err)
	}
	if _, err := SigningKey(map[string][]byte{"git.asc": private.Bytes(), "passphrase": []byte("wrong")}); err == nil || strings.Contains(err.Error(), "wrong") {
		t.Errorf("a wrong passphrase: %v; want an error that does not quote it", err)
	}
	key, err := SigningKey(map[string][]byte{"git.asc": private.Bytes(), "passphrase": []byte("sesame\n")})
	if err != nil {
		t.Fatal(err)
	}

	f := newFixture(t)
	req := f.request(f.bad)
	req.Signer = key
	res := revert(t, &Reverter{}, req)

	gnupg := t.TempDir()
	run := func(name string, stdin []byte, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "GNUPGHOME="+gnupg, "GIT_CONFIG_NOSYSTEM=1", "HOME="+gnupg)
		cmd.Stdin = bytes.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	run("gpg", public.Bytes(), "--batch", "--import")
	out := run("git", nil, "-C", f.s.Dir(repoName), "verify-commit", "-v", res.SHA)
	if !strings.Contains(out, "Good signature") {
		t.Errorf("git verify-commit:\n%s", out)
	}
}

func TestBetween(t *testing.T) {
	// A ── M1 ──── M2 (merge of M1 and B1) ── M3
	//  └── B1 ──┘
	s := gittest.NewServer(t, gittest.Options{})
	s.CreateRepo(t, "graph", "main")
	w := s.Clone(t, "graph")
	commit := func(name string) string {
		w.Write(t, name, name+"\n")
		return w.Commit(t, name)
	}
	a := commit("A")
	gittest.Git(t, w.Dir, "checkout", "-q", "-b", "side")
	b1 := commit("B1")
	gittest.Git(t, w.Dir, "checkout", "-q", "main")
	m1 := commit("M1")
	gittest.Git(t, w.Dir, "merge", "-q", "--no-edit", "side")
	m2 := gittest.Git(t, w.Dir, "rev-parse", "HEAD")
	m3 := commit("M3")
	repo, err := git.PlainOpen(w.Dir)
	if err != nil {
		t.Fatal(err)
	}
	get := func(sha string) *object.Commit {
		c, err := repo.CommitObject(plumbing.NewHash(sha))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	name := map[string]string{a: "A", b1: "B1", m1: "M1", m2: "M2", m3: "M3"}
	tests := []struct {
		from, to string
		want     []string // as sets: equal commit times order arbitrarily
	}{
		{a, m3, []string{"B1", "M1", "M2", "M3"}},
		{m1, m3, []string{"B1", "M2", "M3"}},
		{b1, m2, []string{"M1", "M2"}},
		{b1, m1, []string{"M1"}},
		{m3, m3, nil},
		{m3, a, nil},
	}
	for _, tt := range tests {
		t.Run(name[tt.from]+".."+name[tt.to], func(t *testing.T) {
			got, err := between(get(tt.from), get(tt.to), 100)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, c := range got {
				names = append(names, name[c.Hash.String()])
			}
			sort.Strings(names)
			if strings.Join(names, " ") != strings.Join(tt.want, " ") {
				t.Errorf("between = %v, want %v", names, tt.want)
			}
		})
	}
	if _, err := between(get(a), get(m3), 3); err == nil {
		t.Error("between with a limit of 3 over 4 commits: no error")
	}
}
