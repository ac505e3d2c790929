// Package revert commits a revert of the offending change to the source Git
// repository and pushes it, so the GitOps tool re-applies the good version.
//
// go-git has no revert and no merge, so this package builds both: Revert
// computes the inverse of each offending commit and applies it onto the branch
// head, tree by tree, with a line-level three-way merge (Merge3) for files a
// later commit also changed. A real conflict is never pushed to the branch:
// the attempt, with conflict markers, goes to a side branch for a human.
//
// A revert is idempotent: its commit carries the trailer
// "Backstop-Release: <release>", and Revert looks for it on the branch and the
// side branch before doing anything, so a restarted controller never pushes a
// second revert. A push rejected as non-fast-forward is retried on the new
// head with jittered exponential backoff.
//
// Errors never carry credentials: URLs are stripped of user info and the
// request's password or token is masked in every error Revert returns.
package revert

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"

	"backstop.dev/backstop/internal/text"
)

// Mode says where a revert is pushed.
type Mode string

const (
	// ModePush pushes the revert onto the branch the GitOps tool follows.
	ModePush Mode = "Push"
	// ModeBranch pushes the revert to a new side branch, for review.
	ModeBranch Mode = "Branch"
)

// Trailer keys written into every revert commit.
const (
	TrailerReverts = "Reverts"
	TrailerRollout = "Backstop-Rollout"
	TrailerRelease = "Backstop-Release"
	// TrailerConflict names a conflicting file, on an attempt pushed to the
	// side branch.
	TrailerConflict = "Backstop-Conflict"
)

const (
	defaultMaxAttempts = 10
	// historyLimit bounds the walk that looks for an existing revert.
	historyLimit = 1000
	remoteName   = "origin"
)

// ErrNothingToRevert says the branch already holds what the offending
// commits changed back (someone reverted them by hand): no empty revert
// commit is pushed.
var ErrNothingToRevert = errors.New("the branch already undoes the offending commits: nothing to revert")

// Request is one revert.
type Request struct {
	// URL of the repository (https, http or ssh).
	URL string
	// Branch the GitOps tool follows.
	Branch string
	// Auth for go-git, e.g. *githttp.BasicAuth; nil for none.
	Auth transport.AuthMethod
	// Commits are the full SHAs of the offending commits, in any order; they
	// are reverted newest first. A merge commit is reverted against its first
	// parent. When empty, the commits come from Range.
	Commits []string
	// Range selects the offending commits when Commits is empty: the
	// non-merge commits reachable from Range.To but not from Range.From that
	// changed files under Range.Path, as the GitOps tool's revisions of the
	// stable and the failed release say.
	Range *Range
	// Find selects the offending commits when Commits and Range are empty,
	// for a source whose GitOps tool records no revisions.
	Find *Find
	// Release identifies the failed release, e.g. "shop/app@8b02f6d41c". It is
	// written as the trailer "Backstop-Release: <Release>" and makes Revert
	// idempotent.
	Release string
	// Rollout is "namespace/name", written as "Backstop-Rollout: <Rollout>".
	Rollout string
	// Reason explains the failure in the body: failed check, value and bound.
	// It must hold no secrets.
	Reason string
	// Author is the author and committer; When is set to now if zero.
	Author object.Signature
	// Mode is ModePush (default) or ModeBranch.
	Mode Mode
	// SideBranch receives the revert in ModeBranch and the attempt on a
	// conflict. Default "backstop/revert/<Release with / and @ replaced by ->".
	SideBranch string
	// MaxAttempts bounds the pushes tried on non-fast-forward; default 10,
	// which outlasts a branch that others push to several times a second
	// for about ten seconds.
	MaxAttempts int
	// Signer, when set, signs the revert commit (see SigningKey for OpenPGP
	// and SSHSigningKey for SSH).
	Signer Signer
}

// Range is the history between two source revisions, limited to a path.
type Range struct {
	// From is the full SHA the stable version was applied from.
	From string
	// To is the full SHA the failed version was applied from.
	To string
	// Path is a folder relative to the repository root; empty for all.
	Path string
}

// Result says what happened.
type Result struct {
	// SHA of the revert commit, or of the existing one when Already.
	SHA string
	// Branch the commit was pushed to (or found on, when Already).
	Branch string
	// Already is true when a commit with this Release trailer was already on
	// the branch or the side branch: nothing was pushed.
	Already bool
	// Conflict lists, sorted, the files with a real conflict: nothing was
	// pushed to Branch, the attempt (with markers) was pushed to SideBranch.
	Conflict []string
	// Attempts is the number of pushes tried.
	Attempts int
	// Reverted lists the commits reverted, newest first.
	Reverted []string
	// Found says why each commit was taken, when Range or Find chose them.
	Found []Found
}

// Reverter makes reverts. The zero Reverter clones into a temporary
// directory for each revert; with a Cache it keeps the clones.
type Reverter struct {
	// Cache keeps a clone per repository between reverts; nil for none.
	Cache *Cache

	// beforePush, when set, runs before every push (tests inject a concurrent
	// pusher here).
	beforePush func(attempt int)
}

// SideBranchFor returns the default side branch for a release.
func SideBranchFor(release string) string {
	r := strings.NewReplacer("/", "-", "@", "-").Replace(release)
	return "backstop/revert/" + r
}

// Revert commits one revert of req.Commits on top of req.Branch and pushes it
// (see the package documentation).
func (r *Reverter) Revert(ctx context.Context, req Request) (Result, error) {
	res, err := r.revert(ctx, &req)
	if err != nil {
		return res, scrub(err, &req)
	}
	return res, nil
}

func (r *Reverter) revert(ctx context.Context, req *Request) (Result, error) {
	if err := validate(req); err != nil {
		return Result{}, err
	}
	if req.Mode == "" {
		req.Mode = ModePush
	}
	if req.SideBranch == "" {
		req.SideBranch = SideBranchFor(req.Release)
	}
	if req.MaxAttempts <= 0 {
		req.MaxAttempts = defaultMaxAttempts
	}
	if req.Author.When.IsZero() {
		req.Author.When = time.Now()
	}

	repo, done, err := r.Cache.open(req.URL)
	if err != nil {
		return Result{}, fmt.Errorf("opening the clone of %s: %w", req.URL, err)
	}
	defer done()

	commits := req.Commits
	res, err := r.attempts(ctx, repo, req)
	if err != nil && r.Cache != nil && cloneBroken(err) {
		// The cached clone may be at fault (objects lost to a full disk,
		// say): make it again, once.
		if repo, err = r.Cache.reset(req.URL); err != nil {
			return res, fmt.Errorf("making the clone of %s again: %w", req.URL, err)
		}
		req.Commits = commits
		res, err = r.attempts(ctx, repo, req)
	}
	return res, err
}

// attempts builds the revert on the branch head and pushes it, until the
// push is not rejected for the branch having moved, or MaxAttempts.
func (r *Reverter) attempts(ctx context.Context, repo *git.Repository, req *Request) (Result, error) {
	var res Result
	for attempt := 1; ; attempt++ {
		head, side, err := fetch(ctx, repo, req)
		if err != nil {
			return res, err
		}
		if c, branch, err := findExisting(repo, req, head, side); err != nil {
			return res, err
		} else if c != nil {
			res.SHA, res.Branch, res.Already = c.Hash.String(), branch, true
			res.Conflict = trailers(c.Message, TrailerConflict)
			return res, nil
		}

		if len(req.Commits) == 0 {
			if res.Found, err = choose(repo.Storer, req, head); err != nil {
				return res, err
			}
			for _, f := range res.Found {
				req.Commits = append(req.Commits, f.SHA)
			}
		}
		res.Reverted = req.Commits
		rec := &recorder{EncodedObjectStorer: repo.Storer}
		commit, conflicts, err := makeRevert(rec, req, head)
		if err != nil {
			return res, err
		}
		res.SHA = commit.String()

		target := req.Branch
		if len(conflicts) > 0 || req.Mode == ModeBranch {
			target = req.SideBranch
		}
		res.Branch, res.Conflict = target, conflicts

		if r.beforePush != nil {
			r.beforePush(attempt)
		}
		res.Attempts = attempt
		old := head
		if target != req.Branch {
			old = side
		}
		err = push(ctx, repo, req, rec.written, commit, old, target)
		if err == nil {
			return res, nil
		}
		if target != req.Branch || !isNonFastForward(err) {
			return res, fmt.Errorf("push %s to branch %q: %w", shortSHA(res.SHA), target, err)
		}
		if attempt >= req.MaxAttempts {
			return res, fmt.Errorf("push revert to branch %q: gave up after %d attempts: %w", target, attempt, err)
		}
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return res, fmt.Errorf("push revert to branch %q after %d attempts: %w", target, attempt, err)
		}
	}
}

// rangeLimit bounds the commits looked at to resolve a Range.
const rangeLimit = 10000

// choose finds the offending commits of a request without Commits, from its
// Range or else its Find.
func choose(s storer.EncodedObjectStorer, req *Request, head plumbing.Hash) ([]Found, error) {
	if r := req.Range; r != nil {
		found, err := inRange(s, *r)
		if err == nil && len(found) == 0 {
			err = fmt.Errorf("revert: no commit between %s and %s changed %q", shortSHA(r.From), shortSHA(r.To), r.Path)
		}
		return found, err
	}
	c, err := object.GetCommit(s, head)
	if err != nil {
		return nil, err
	}
	return find(c, *req.Find)
}

// inRange lists, newest first, the non-merge commits reachable from r.To
// and not from r.From that changed a file under r.Path.
func inRange(s storer.EncodedObjectStorer, r Range) ([]Found, error) {
	from, err := object.GetCommit(s, plumbing.NewHash(r.From))
	if err != nil {
		return nil, fmt.Errorf("revert: the stable revision %s is not on the branch: %w", shortSHA(r.From), err)
	}
	to, err := object.GetCommit(s, plumbing.NewHash(r.To))
	if err != nil {
		return nil, fmt.Errorf("revert: the failed revision %s is not on the branch: %w", shortSHA(r.To), err)
	}
	commits, err := between(from, to, rangeLimit)
	if err != nil {
		return nil, fmt.Errorf("revert: between %s and %s: %w", shortSHA(r.From), shortSHA(r.To), err)
	}
	prefix := strings.Trim(r.Path, "/")
	var out []Found
	for _, c := range commits {
		if c.NumParents() != 1 {
			continue
		}
		file, err := touches(c, prefix)
		if err != nil {
			return nil, err
		}
		if file != "" {
			out = append(out, Found{SHA: c.Hash.String(),
				Why: text.Truncate(fmt.Sprintf("%s changed between the stable (%s) and the failed (%s) source revisions", file, shortSHA(r.From), shortSHA(r.To)), MaxWhy)})
		}
	}
	return out, nil
}

// between returns, newest first by committer time, the commits reachable
// from to and not from from, as git rev-list from..to does: both histories
// are walked newest first together (on equal times, from's side first), and
// the walk ends when only commits reachable from from are left to look at
// and none of them is newer than the oldest commit taken. It looks at most
// at limit commits, so its cost is the size of the range, not of the
// history.
func between(from, to *object.Commit, limit int) ([]*object.Commit, error) {
	stable := map[plumbing.Hash]bool{} // reachable from `from`, as far as known
	queued := map[plumbing.Hash]bool{}
	var queue commitQueue
	interesting := 0 // queued commits not known to be reachable from `from`
	add := func(c *object.Commit, isStable bool) {
		if isStable && !stable[c.Hash] {
			stable[c.Hash] = true
			if queued[c.Hash] {
				interesting--
			}
		}
		if _, ok := queued[c.Hash]; ok {
			return
		}
		queued[c.Hash] = true
		heap.Push(&queue, queuedCommit{c, isStable})
		if !isStable {
			interesting++
		}
	}
	add(from, true)
	add(to, false)
	var out []*object.Commit
	var oldest time.Time
	for n := 0; queue.Len() > 0; n++ {
		if interesting == 0 && (len(out) == 0 || queue[0].c.Committer.When.Before(oldest)) {
			break
		}
		if n >= limit {
			return nil, fmt.Errorf("more than %d commits apart", limit)
		}
		c := heap.Pop(&queue).(queuedCommit).c
		queued[c.Hash] = false // taken; stays a key so it is not queued again
		isStable := stable[c.Hash]
		if !isStable {
			interesting--
			out = append(out, c)
			if oldest.IsZero() || c.Committer.When.Before(oldest) {
				oldest = c.Committer.When
			}
		}
		if err := c.Parents().ForEach(func(p *object.Commit) error {
			add(p, isStable)
			return nil
		}); err != nil {
			return nil, err
		}
	}
	// Drop what turned out to be reachable from `from` after it was taken
	// (clock skew between committers).
	kept := out[:0]
	for _, c := range out {
		if !stable[c.Hash] {
			kept = append(kept, c)
		}
	}
	return kept, nil
}

// queuedCommit is a commit waiting in a commitQueue.
type queuedCommit struct {
	c      *object.Commit
	stable bool
}

// commitQueue is a max-heap of commits by committer time, the stable side
// first on equal times.
type commitQueue []queuedCommit

func (q commitQueue) Len() int { return len(q) }
func (q commitQueue) Less(i, j int) bool {
	ti, tj := q[i].c.Committer.When, q[j].c.Committer.When
	if ti.Equal(tj) {
		return q[i].stable && !q[j].stable
	}
	return ti.After(tj)
}
func (q commitQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *commitQueue) Push(x any)   { *q = append(*q, x.(queuedCommit)) }
func (q *commitQueue) Pop() any {
	old := *q
	c := old[len(old)-1]
	*q = old[:len(old)-1]
	return c
}

// touches returns the first file under prefix a commit changed, or "".
func touches(c *object.Commit, prefix string) (string, error) {
	parent, err := c.Parent(0)
	if err != nil {
		return "", err
	}
	pt, err := parent.Tree()
	if err != nil {
		return "", err
	}
	ct, err := c.Tree()
	if err != nil {
		return "", err
	}
	changes, err := object.DiffTree(pt, ct)
	if err != nil {
		return "", err
	}
	for _, ch := range changes {
		for _, name := range []string{ch.From.Name, ch.To.Name} {
			if name != "" && (prefix == "" || name == prefix || strings.HasPrefix(name, prefix+"/")) {
				return name, nil
			}
		}
	}
	return "", nil
}

func validate(req *Request) error {
	switch {
	case req.URL == "":
		return errors.New("revert: no repository URL")
	case req.Branch == "":
		return errors.New("revert: no branch")
	case len(req.Commits) == 0 && req.Range == nil && req.Find == nil:
		return errors.New("revert: no commits to revert")
	case req.Range != nil && (!plumbing.IsHash(req.Range.From) || !plumbing.IsHash(req.Range.To)):
		return errors.New("revert: a range needs the full SHAs of both revisions")
	case req.Release == "":
		return errors.New("revert: no release")
	case strings.ContainsAny(req.Release+req.Rollout+req.Branch+req.SideBranch, "\r\n"):
		return errors.New("revert: release, rollout and branches must be single lines")
	case req.Mode != "" && req.Mode != ModePush && req.Mode != ModeBranch:
		return fmt.Errorf("revert: unknown mode %q", req.Mode)
	}
	for _, c := range req.Commits {
		if !plumbing.IsHash(c) {
			return fmt.Errorf("revert: %q is not a full commit SHA", c)
		}
	}
	return nil
}

// errBranchNotFound says the remote has no such branch.
var errBranchNotFound = errors.New("not found")

// fetch brings the branch (full history, see Cache) and, if it exists, the
// side branch into the clone. It returns their
// heads; side is zero when the side branch does not exist.
func fetch(ctx context.Context, repo *git.Repository, req *Request) (head, side plumbing.Hash, err error) {
	// A side branch deleted on the remote since the last fetch must not
	// linger in the cached clone.
	if err := repo.Storer.RemoveReference(trackingRef(req.SideBranch)); err != nil {
		return head, side, err
	}
	specs := []config.RefSpec{refSpec(req.Branch), refSpec(req.SideBranch)}
	err = repo.FetchContext(ctx, &git.FetchOptions{RemoteName: remoteName, RefSpecs: specs, Auth: req.Auth, Tags: git.NoTags, Force: true})
	if errors.Is(err, git.NoMatchingRefSpecError{}) {
		// The side branch does not exist (or the branch does not: the
		// second fetch says which).
		err = repo.FetchContext(ctx, &git.FetchOptions{RemoteName: remoteName, RefSpecs: specs[:1], Auth: req.Auth, Tags: git.NoTags, Force: true})
		if errors.Is(err, git.NoMatchingRefSpecError{}) {
			return head, side, fmt.Errorf("fetch %s: branch %q: %w", req.URL, req.Branch, errBranchNotFound)
		}
	}
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return head, side, &fetchError{fmt.Errorf("fetch %s: %w", req.URL, err)}
	}
	ref, err := repo.Reference(trackingRef(req.Branch), true)
	if err != nil {
		return head, side, fmt.Errorf("fetch %s: branch %q: %w", req.URL, req.Branch, err)
	}
	head = ref.Hash()
	if ref, err := repo.Reference(trackingRef(req.SideBranch), true); err == nil {
		side = ref.Hash()
	}
	return head, side, nil
}

// fetchError is a fetch that failed.
type fetchError struct{ err error }

func (e *fetchError) Error() string { return e.err.Error() }
func (e *fetchError) Unwrap() error { return e.err }

func refSpec(branch string) config.RefSpec {
	return config.RefSpec("+" + plumbing.NewBranchReferenceName(branch).String() + ":" + trackingRef(branch).String())
}

func trackingRef(branch string) plumbing.ReferenceName {
	return plumbing.NewRemoteReferenceName(remoteName, branch)
}

// findExisting looks for a commit with this release's trailer on the branch,
// then on the side branch, each within historyLimit commits of its head. It
// returns nil when there is none.
func findExisting(repo *git.Repository, req *Request, head, side plumbing.Hash) (*object.Commit, string, error) {
	for _, b := range []struct {
		name string
		head plumbing.Hash
	}{{req.Branch, head}, {req.SideBranch, side}} {
		if b.head.IsZero() {
			continue
		}
		c, err := findTrailer(repo.Storer, b.head, TrailerRelease, req.Release)
		if err != nil || c != nil {
			return c, b.name, err
		}
	}
	return nil, "", nil
}

var errStop = errors.New("stop")

func findTrailer(s storer.EncodedObjectStorer, from plumbing.Hash, key, value string) (*object.Commit, error) {
	c, err := object.GetCommit(s, from)
	if err != nil {
		return nil, err
	}
	var found *object.Commit
	n := 0
	err = object.NewCommitPreorderIter(c, nil, nil).ForEach(func(c *object.Commit) error {
		if n++; n > historyLimit {
			return errStop
		}
		for _, v := range trailers(c.Message, key) {
			if v == value {
				found = c
				return errStop
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, err
	}
	return found, nil
}

// trailers returns the values of the "key: value" lines of a message's last
// paragraph (its trailers).
func trailers(msg, key string) []string {
	paragraphs := strings.Split(strings.TrimSpace(msg), "\n\n")
	var values []string
	for _, line := range strings.Split(paragraphs[len(paragraphs)-1], "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == key {
			values = append(values, strings.TrimSpace(v))
		}
	}
	return values
}

// makeRevert builds and stores the revert commit on top of head. conflicts is
// non-empty when some files needed a merge that did not resolve; the commit
// then holds the attempt with conflict markers.
func makeRevert(s storer.EncodedObjectStorer, req *Request, head plumbing.Hash) (plumbing.Hash, []string, error) {
	headCommit, err := object.GetCommit(s, head)
	if err != nil {
		return plumbing.ZeroHash, nil, err
	}
	headTree, err := headCommit.Tree()
	if err != nil {
		return plumbing.ZeroHash, nil, err
	}
	commits, err := offending(s, req.Commits, headCommit)
	if err != nil {
		return plumbing.ZeroHash, nil, err
	}

	st := &state{s: s, head: headTree, changes: map[string]*entry{}, conflicts: map[string]bool{}}
	for _, c := range commits {
		if err := st.revertCommit(c); err != nil {
			return plumbing.ZeroHash, nil, fmt.Errorf("revert %s: %w", shortSHA(c.Hash.String()), err)
		}
	}
	tree, err := writeTree(s, headTree, st.changes)
	if err != nil {
		return plumbing.ZeroHash, nil, err
	}
	var conflicts []string
	for p := range st.conflicts {
		conflicts = append(conflicts, p)
	}
	sort.Strings(conflicts)
	if tree == headTree.Hash && len(conflicts) == 0 {
		return plumbing.ZeroHash, nil, ErrNothingToRevert
	}

	commit := &object.Commit{
		Author:       req.Author,
		Committer:    req.Author,
		Message:      message(req, commits, conflicts),
		TreeHash:     tree,
		ParentHashes: []plumbing.Hash{head},
	}
	if req.Signer != nil {
		if err := sign(commit, req.Signer); err != nil {
			return plumbing.ZeroHash, nil, err
		}
	}
	obj := s.NewEncodedObject()
	if err := commit.Encode(obj); err != nil {
		return plumbing.ZeroHash, nil, err
	}
	sha, err := s.SetEncodedObject(obj)
	if err != nil {
		return plumbing.ZeroHash, nil, err
	}
	return sha, conflicts, nil
}

// offending resolves the commits, checks that each is on the branch, and
// orders them newest first: by ancestry, then by committer time.
func offending(s storer.EncodedObjectStorer, shas []string, head *object.Commit) ([]*object.Commit, error) {
	seen := map[plumbing.Hash]bool{}
	var commits []*object.Commit
	for _, sha := range shas {
		h := plumbing.NewHash(sha)
		if seen[h] {
			continue
		}
		seen[h] = true
		c, err := object.GetCommit(s, h)
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			return nil, fmt.Errorf("commit %s is not on the branch", sha)
		}
		if err != nil {
			return nil, fmt.Errorf("commit %s: %w", sha, err)
		}
		if c.Hash != head.Hash {
			on, err := c.IsAncestor(head)
			if err != nil {
				return nil, fmt.Errorf("commit %s: %w", sha, err)
			}
			if !on {
				return nil, fmt.Errorf("commit %s is not on the branch", sha)
			}
		}
		commits = append(commits, c)
	}
	return newestFirst(commits)
}

// newestFirst orders commits so that a descendant always comes before its
// ancestors, and otherwise the later committer time first.
func newestFirst(commits []*object.Commit) ([]*object.Commit, error) {
	sort.SliceStable(commits, func(i, j int) bool {
		return commits[i].Committer.When.After(commits[j].Committer.When)
	})
	// descends[i][j]: commits[i] has commits[j] as an ancestor.
	descends := make([][]bool, len(commits))
	for i := range commits {
		descends[i] = make([]bool, len(commits))
		for j := range commits {
			if i == j {
				continue
			}
			anc, err := commits[j].IsAncestor(commits[i])
			if err != nil {
				return nil, err
			}
			descends[i][j] = anc
		}
	}
	done := make([]bool, len(commits))
	ordered := make([]*object.Commit, 0, len(commits))
	for len(ordered) < len(commits) {
		for i := range commits {
			if done[i] {
				continue
			}
			newest := true // no remaining commit descends from commits[i]
			for j := range commits {
				if !done[j] && descends[j][i] {
					newest = false
					break
				}
			}
			if newest {
				done[i] = true
				ordered = append(ordered, commits[i])
				break
			}
		}
	}
	return ordered, nil
}

// message is the revert's commit message. An attempt with conflicts also
// carries one "Backstop-Conflict: <path>" trailer per file, so a later call
// that finds it can report the conflict again.
func message(req *Request, commits []*object.Commit, conflicts []string) string {
	var b strings.Builder
	if len(commits) == 1 {
		subject, _, _ := strings.Cut(strings.TrimSpace(commits[0].Message), "\n")
		fmt.Fprintf(&b, "Revert %q\n\n", strings.TrimSpace(subject))
	} else {
		fmt.Fprintf(&b, "Revert %d commits of %s\n\n", len(commits), req.Release)
	}
	for _, c := range commits {
		fmt.Fprintf(&b, "This reverts commit %s.\n", c.Hash)
	}
	reason := strings.TrimSpace(req.Reason)
	if reason == "" {
		reason = "no reason given"
	}
	fmt.Fprintf(&b, "Rollout %s failed: %s\n\n", req.Rollout, reason)
	for _, c := range commits {
		fmt.Fprintf(&b, "%s: %s\n", TrailerReverts, c.Hash)
	}
	if req.Rollout != "" {
		fmt.Fprintf(&b, "%s: %s\n", TrailerRollout, req.Rollout)
	}
	fmt.Fprintf(&b, "%s: %s\n", TrailerRelease, req.Release)
	for _, p := range conflicts {
		fmt.Fprintf(&b, "%s: %s\n", TrailerConflict, p)
	}
	return b.String()
}

// entry is a file in a tree; nil in a change set means deleted.
type entry struct {
	Mode filemode.FileMode
	Hash plumbing.Hash
}

// state accumulates the revert of several commits over the head tree.
type state struct {
	s         storer.EncodedObjectStorer
	head      *object.Tree
	changes   map[string]*entry // path → new entry, nil = delete
	conflicts map[string]bool
}

// ours returns the file at path in the accumulated tree, or nil.
func (st *state) ours(path string) (*entry, error) {
	if e, ok := st.changes[path]; ok {
		return e, nil
	}
	te, err := st.head.FindEntry(path)
	if errors.Is(err, object.ErrEntryNotFound) || errors.Is(err, object.ErrDirectoryNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if te.Mode == filemode.Dir {
		return nil, nil
	}
	return &entry{Mode: te.Mode, Hash: te.Hash}, nil
}

func (st *state) revertCommit(c *object.Commit) error {
	cTree, err := c.Tree()
	if err != nil {
		return err
	}
	pTree := &object.Tree{} // a root commit reverts to nothing
	if c.NumParents() > 0 {
		p, err := c.Parent(0)
		if err != nil {
			return err
		}
		if pTree, err = p.Tree(); err != nil {
			return err
		}
	}
	changes, err := object.DiffTree(pTree, cTree)
	if err != nil {
		return err
	}
	for _, ch := range changes {
		if err := st.revertChange(ch); err != nil {
			return err
		}
	}
	return nil
}

// revertChange applies the inverse of one file change: base is the file in
// the offending commit, theirs the file in its parent, ours the file now.
func (st *state) revertChange(ch *object.Change) error {
	var base, theirs *entry
	path := ch.To.Name
	if ch.To.Name != "" {
		base = &entry{Mode: ch.To.TreeEntry.Mode, Hash: ch.To.TreeEntry.Hash}
	} else {
		path = ch.From.Name
	}
	if ch.From.Name != "" {
		theirs = &entry{Mode: ch.From.TreeEntry.Mode, Hash: ch.From.TreeEntry.Hash}
	}
	ours, err := st.ours(path)
	if err != nil {
		return err
	}
	switch {
	case sameEntry(ours, theirs):
		return nil // already as before the offending commit
	case sameEntry(ours, base):
		st.changes[path] = theirs // untouched since: take the parent's version
		return nil
	case base == nil && ours != nil && theirs != nil:
		// deleted by the offending commit, re-created differently since
		return st.merge(path, nil, ours, theirs)
	case base != nil && ours == nil:
		// modified by the offending commit, deleted since: keep the parent's
		// version for the human to decide
		st.conflicts[path] = true
		st.changes[path] = theirs
		return nil
	default:
		return st.merge(path, base, ours, theirs)
	}
}

// merge runs Merge3 on the three versions (nil is an empty file) and records
// the result; a file deleted on one side, or binary, is always a conflict.
func (st *state) merge(path string, base, ours, theirs *entry) error {
	baseB, err := st.blob(base)
	if err != nil {
		return err
	}
	oursB, err := st.blob(ours)
	if err != nil {
		return err
	}
	theirsB, err := st.blob(theirs)
	if err != nil {
		return err
	}
	mode := ours.Mode
	if theirs != nil && base != nil && ours.Mode == base.Mode {
		mode = theirs.Mode
	}
	if isBinary(baseB) || isBinary(oursB) || isBinary(theirsB) || !mode.IsFile() {
		st.conflicts[path] = true
		return nil // keep ours
	}
	merged, conflicts := Merge3(baseB, oursB, theirsB)
	if len(conflicts) > 0 || base == nil || theirs == nil {
		st.conflicts[path] = true
	}
	h, err := writeBlob(st.s, merged)
	if err != nil {
		return err
	}
	st.changes[path] = &entry{Mode: mode, Hash: h}
	return nil
}

func (st *state) blob(e *entry) ([]byte, error) {
	if e == nil || e.Mode == filemode.Submodule {
		return nil, nil
	}
	b, err := object.GetBlob(st.s, e.Hash)
	if err != nil {
		return nil, err
	}
	rd, err := b.Reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(rd)
	return buf.Bytes(), err
}

func sameEntry(a, b *entry) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Hash == b.Hash && a.Mode == b.Mode
}

func isBinary(b []byte) bool {
	if len(b) > 8000 {
		b = b[:8000]
	}
	return bytes.IndexByte(b, 0) >= 0
}

func writeBlob(s storer.EncodedObjectStorer, content []byte) (plumbing.Hash, error) {
	obj := s.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	w, err := obj.Writer()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if _, err := w.Write(content); err != nil {
		return plumbing.ZeroHash, err
	}
	if err := w.Close(); err != nil {
		return plumbing.ZeroHash, err
	}
	return s.SetEncodedObject(obj)
}

// writeTree applies changes (path → entry, nil = delete) to t (nil = empty),
// creating and dropping nested trees as needed, stores every new tree and
// returns the root's hash. Unchanged subtrees are shared, not rewritten.
func writeTree(s storer.EncodedObjectStorer, t *object.Tree, changes map[string]*entry) (plumbing.Hash, error) {
	h, _, err := writeSubtree(s, t, changes)
	return h, err
}

func writeSubtree(s storer.EncodedObjectStorer, t *object.Tree, changes map[string]*entry) (plumbing.Hash, bool, error) {
	entries := map[string]object.TreeEntry{}
	if t != nil {
		for _, e := range t.Entries {
			entries[e.Name] = e
		}
	}
	sub := map[string]map[string]*entry{}
	for p, e := range changes {
		dir, rest, nested := strings.Cut(p, "/")
		if !nested {
			if e == nil {
				delete(entries, p)
			} else {
				entries[p] = object.TreeEntry{Name: p, Mode: e.Mode, Hash: e.Hash}
			}
			continue
		}
		if sub[dir] == nil {
			sub[dir] = map[string]*entry{}
		}
		sub[dir][rest] = e
	}
	for dir, ch := range sub {
		var subtree *object.Tree
		if e, ok := entries[dir]; ok && e.Mode == filemode.Dir {
			var err error
			if subtree, err = object.GetTree(s, e.Hash); err != nil {
				return plumbing.ZeroHash, false, err
			}
		}
		h, empty, err := writeSubtree(s, subtree, ch)
		if err != nil {
			return plumbing.ZeroHash, false, err
		}
		if empty {
			delete(entries, dir)
		} else {
			entries[dir] = object.TreeEntry{Name: dir, Mode: filemode.Dir, Hash: h}
		}
	}
	if len(entries) == 0 {
		return plumbing.ZeroHash, true, nil
	}
	tree := &object.Tree{}
	for _, e := range entries {
		tree.Entries = append(tree.Entries, e)
	}
	sort.Slice(tree.Entries, func(i, j int) bool {
		return gitName(tree.Entries[i]) < gitName(tree.Entries[j])
	})
	obj := s.NewEncodedObject()
	if err := tree.Encode(obj); err != nil {
		return plumbing.ZeroHash, false, err
	}
	h, err := s.SetEncodedObject(obj)
	return h, false, err
}

// gitName is the name git sorts tree entries by: directories as "name/".
func gitName(e object.TreeEntry) string {
	if e.Mode == filemode.Dir {
		return e.Name + "/"
	}
	return e.Name
}

// recorder remembers the objects a revert writes: they are what its push
// sends.
type recorder struct {
	storer.EncodedObjectStorer
	written []plumbing.Hash
}

func (r *recorder) SetEncodedObject(o plumbing.EncodedObject) (plumbing.Hash, error) {
	h, err := r.EncodedObjectStorer.SetEncodedObject(o)
	if err == nil {
		r.written = append(r.written, h)
	}
	return h, err
}

// errMoved says the branch on the remote is no longer where the revert was
// built on: fetch and build again.
var errMoved = errors.New("the branch moved on the remote since it was fetched")

// push updates branch on the remote from old (zero: create it) to commit,
// sending the objects the revert wrote. It never forces: the update is made
// only if the branch is still at old, which the server checks again as it
// updates the ref, so a concurrent pusher makes it fail with errMoved or the
// server's "failed to update ref".
//
// go-git's Remote.Push is not used because it walks every object reachable
// from the remote's refs to find what to send, which takes minutes in a
// large repository; the revert knows what it wrote.
func push(ctx context.Context, repo *git.Repository, req *Request, objects []plumbing.Hash, commit, old plumbing.Hash, branch string) (err error) {
	if !old.IsZero() && old != commit {
		c, err := object.GetCommit(repo.Storer, commit)
		if err != nil {
			return err
		}
		o, err := object.GetCommit(repo.Storer, old)
		if err != nil {
			return err
		}
		if ok, err := o.IsAncestor(c); err != nil || !ok {
			return fmt.Errorf("branch %q holds commits the revert is not built on; it is not overwritten", branch)
		}
	}
	ep, err := transport.NewEndpoint(req.URL)
	if err != nil {
		return err
	}
	cl, err := client.NewClient(ep)
	if err != nil {
		return err
	}
	sess, err := cl.NewReceivePackSession(ep, req.Auth)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := sess.Close(); err == nil {
			err = cerr
		}
	}()
	adv, err := sess.AdvertisedReferencesContext(ctx)
	if err != nil {
		return err
	}
	refs, err := adv.AllReferences()
	if err != nil {
		return err
	}
	name := plumbing.NewBranchReferenceName(branch)
	current := plumbing.ZeroHash
	if ref, err := refs.Reference(name); err == nil {
		current = ref.Hash()
	}
	switch {
	case current == commit:
		return nil // pushed before
	case current != old:
		return fmt.Errorf("%w: %s is at %s, not %s", errMoved, name, shortSHA(current.String()), shortSHA(old.String()))
	}

	update := packp.NewReferenceUpdateRequestFromCapabilities(adv.Capabilities)
	update.Commands = []*packp.Command{{Name: name, Old: old, New: commit}}
	var pack bytes.Buffer
	if _, err := packfile.NewEncoder(&pack, repo.Storer, !adv.Capabilities.Supports(capability.OFSDelta)).Encode(objects, 0); err != nil {
		return err
	}
	update.Packfile = io.NopCloser(&pack)
	report, err := sess.ReceivePack(ctx, update)
	if err != nil {
		return err
	}
	if report != nil {
		if err := report.Error(); err != nil {
			return err
		}
	}
	return repo.Storer.SetReference(plumbing.NewHashReference(trackingRef(branch), commit))
}

// isNonFastForward reports whether a push failed because the branch moved
// since it was fetched, so fetching and re-applying may succeed. go-git has no
// sentinel for it (git.ErrNonFastForwardUpdate is only for Worktree.Pull); it
// reports, as plain strings:
//   - "non-fast-forward update: refs/heads/<b>" when its own client-side check
//     (remote.go, checkFastForwardUpdate) finds the advertised head is not an
//     ancestor of the pushed commit;
//   - "command error on refs/heads/<b>: <status>" from the server's
//     report-status (packp.CommandStatus.Error), where git receive-pack says
//     "non-fast-forward", "fetch first", or, when another push won the race
//     between advertisement and update, "failed to update ref" / "failed to
//     lock".
func isNonFastForward(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, git.ErrNonFastForwardUpdate) || errors.Is(err, errMoved) {
		return true
	}
	msg := err.Error()
	if strings.Contains(msg, "non-fast-forward update: refs/") {
		return true
	}
	_, status, ok := strings.Cut(msg, "command error on refs/")
	if !ok {
		return false
	}
	if _, s, ok := strings.Cut(status, ": "); ok {
		status = s
	}
	for _, s := range []string{"non-fast-forward", "fetch first", "failed to update ref", "failed to lock"} {
		if strings.HasPrefix(status, s) {
			return true
		}
	}
	return false
}

// backoff is 100ms·2^(attempt-1), at most 1.6s, ±50%.
func backoff(attempt int) time.Duration {
	d := 100 * time.Millisecond << min(attempt-1, 4)
	return d/2 + rand.N(d)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func shortSHA(s string) string {
	if len(s) > 10 {
		return s[:10]
	}
	return s
}

// scrubbedError carries a message stripped of credentials; errors.Is still
// sees the original, but its text is never exposed.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string        { return e.msg }
func (e *scrubbedError) Is(target error) bool { return errors.Is(e.err, target) }

// scrub removes user info from every URL in err's text and masks the
// request's password, token or key passphrase wherever it appears.
func scrub(err error, req *Request) error {
	msg := Scrub(err.Error())
	for _, secret := range secrets(req.Auth) {
		if len(secret) >= 3 {
			msg = strings.ReplaceAll(msg, secret, "***")
		}
	}
	return &scrubbedError{msg: msg, err: err}
}

func secrets(auth transport.AuthMethod) []string {
	switch a := auth.(type) {
	case *githttp.BasicAuth:
		return []string{a.Password}
	case *githttp.TokenAuth:
		return []string{a.Token}
	case *gitssh.Password:
		return []string{a.Password}
	}
	return nil
}
