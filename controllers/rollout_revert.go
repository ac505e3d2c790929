package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing/object"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/revert"
	"backstop.dev/backstop/revert/source"
)

// GitReverter reverts rolled-back releases in Git. Revert returns at once:
// the revert runs in the background, and its result is handed to the
// reconciler, the only writer of the status, at its next look
// (status.revert.state Pending until then). Nothing of it is kept but in
// status: a manager restarted while a revert is Pending starts it again,
// and the revert finds its own commit by the release trailer instead of
// pushing a second one.
type GitReverter struct {
	// Reader reads Deployments, Secrets and the GitOps tools' objects
	// without the cache.
	Reader client.Reader
	// Author of revert commits whose Rollout names none.
	Author object.Signature
	// Attempts bounds the tries of a revert that fails for a reason other
	// than a conflict (the server is down, say); default 5.
	Attempts int
	// Backoff is the wait before the second try, doubled after each;
	// default 5s.
	Backoff time.Duration

	mu      sync.Mutex
	running map[string]bool
	done    map[string]backstopv1.RevertStatus
}

// RevertPoll is how often a Rollout whose revert is Pending is looked at.
const RevertPoll = 2 * time.Second

// Revert implements Reverter: it starts the revert of ro's failed release,
// or records its result once it has finished.
func (g *GitReverter) Revert(ctx context.Context, ro *backstopv1.Rollout) error {
	if rv := ro.Spec.Revert; rv != nil && rv.Mode == backstopv1.RevertDisabled {
		ro.Status.Revert = &backstopv1.RevertStatus{State: backstopv1.RevertSkipped, Message: "spec.revert.mode is Disabled"}
		return nil
	}
	release := releaseID(ro)
	g.mu.Lock()
	defer g.mu.Unlock()
	if st, ok := g.done[release]; ok {
		delete(g.done, release)
		ro.Status.Revert = &st
		return nil
	}
	if st := ro.Status.Revert; st != nil && st.State != backstopv1.RevertPending && st.Release == release {
		return nil
	}
	ro.Status.Revert = &backstopv1.RevertStatus{State: backstopv1.RevertPending, Release: release,
		Message: "Reverting revision " + ro.Status.CanaryRevision + " in Git"}
	if g.running[release] {
		return nil
	}
	if g.running == nil {
		g.running, g.done = map[string]bool{}, map[string]backstopv1.RevertStatus{}
	}
	g.running[release] = true
	job := ro.DeepCopy()
	logger := log.FromContext(ctx).WithValues("release", release)
	go func() {
		st := g.run(log.IntoContext(context.Background(), logger), job)
		st.Release = release
		g.mu.Lock()
		defer g.mu.Unlock()
		delete(g.running, release)
		g.done[release] = st
	}()
	return nil
}

// releaseID names a failed release: the Rollout and the revision.
func releaseID(ro *backstopv1.Rollout) string {
	return ro.Namespace + "/" + ro.Name + "@" + ro.Status.CanaryRevision
}

// run makes the revert, trying again with backoff when it fails for a
// reason other than a conflict.
func (g *GitReverter) run(ctx context.Context, ro *backstopv1.Rollout) backstopv1.RevertStatus {
	attempts, wait := g.Attempts, g.Backoff
	if attempts <= 0 {
		attempts = 5
	}
	if wait <= 0 {
		wait = 5 * time.Second
	}
	var st backstopv1.RevertStatus
	for i := 1; ; i++ {
		st = g.once(ctx, ro)
		st.Attempts = int32(i)
		now := metav1.Now()
		st.LastAttemptTime = &now
		if st.State != backstopv1.RevertFailed || i >= attempts || errors.Is(ctx.Err(), context.Canceled) {
			break
		}
		log.FromContext(ctx).Info("Failed to revert; trying again", "attempt", i, "message", st.Message)
		time.Sleep(wait)
		wait *= 2
	}
	log.FromContext(ctx).Info("Finished the revert", "state", st.State, "commit", st.Commit, "branch", st.Branch)
	return st
}

// once makes one attempt at the revert.
func (g *GitReverter) once(ctx context.Context, ro *backstopv1.Rollout) backstopv1.RevertStatus {
	failed := func(format string, args ...any) backstopv1.RevertStatus {
		return backstopv1.RevertStatus{State: backstopv1.RevertFailed, Message: revert.Scrub(fmt.Sprintf(format, args...))}
	}
	var target appsv1.Deployment
	if err := g.Reader.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: ro.Spec.TargetRef.Name}, &target); err != nil {
		return failed("reading the target: %v", err)
	}
	src, err := source.Discover(ctx, g.Reader, ro, &target, source.Options{})
	if err != nil {
		return failed("%v", err)
	}
	st := backstopv1.RevertStatus{Repository: revert.Scrub(src.URL)}
	from, to := ro.Status.StableSourceRevision, ro.Status.CanarySourceRevision
	if from == "" || to == "" || from == to {
		st.State, st.Message = backstopv1.RevertFailed, fmt.Sprintf(
			"the source revisions of the stable (%q) and the failed (%q) versions are not known apart: nothing is reverted; revert the change in %s by hand",
			from, to, st.Repository)
		return st
	}
	var data map[string][]byte
	if src.SecretName != "" {
		var secret corev1.Secret
		if err := g.Reader.Get(ctx, types.NamespacedName{Namespace: src.SecretNamespace, Name: src.SecretName}, &secret); err != nil {
			return failed("reading the Git credentials in Secret %s/%s: %v", src.SecretNamespace, src.SecretName, err)
		}
		data = secret.Data
	}
	auth, err := revert.Auth(src.URL, data, false)
	if err != nil {
		return failed("the Git credentials in Secret %s/%s: %v", src.SecretNamespace, src.SecretName, err)
	}
	req := revert.Request{
		URL: src.URL, Branch: src.Branch, Auth: auth,
		Range:   &revert.Range{From: from, To: to, Path: src.Path},
		Release: releaseID(ro), Rollout: ro.Namespace + "/" + ro.Name,
		Reason: failureReason(ro), Author: g.author(ro),
	}
	if req.Branch == "" {
		req.Branch = "main"
	}
	if rv := ro.Spec.Revert; rv != nil {
		if rv.Mode == backstopv1.RevertBranch {
			req.Mode = revert.ModeBranch
		}
		if rv.Signing != nil {
			if rv.Signing.Format == "SSH" {
				return failed("SSH signing of revert commits is not supported yet; use OpenPGP")
			}
			var secret corev1.Secret
			if err := g.Reader.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: rv.Signing.SecretRef.Name}, &secret); err != nil {
				return failed("reading the signing key in Secret %s: %v", rv.Signing.SecretRef.Name, err)
			}
			if req.SignKey, err = revert.SigningKey(secret.Data); err != nil {
				return failed("%v", err)
			}
		}
	}
	res, err := (&revert.Reverter{}).Revert(ctx, req)
	st.Branch, st.Commit, st.Reverted = res.Branch, res.SHA, res.Reverted
	switch {
	case errors.Is(err, revert.ErrNothingToRevert):
		st.State, st.Message = backstopv1.RevertPushed, "Nothing to revert: the branch already undoes the change"
	case err != nil:
		return failed("%v", err)
	case len(res.Conflict) > 0:
		st.State, st.ConflictingFiles = backstopv1.RevertConflict, res.Conflict
		st.Message = fmt.Sprintf("Later commits changed the same lines of %s: the attempt is on branch %s for a person to finish",
			strings.Join(res.Conflict, ", "), res.Branch)
	default:
		st.State = backstopv1.RevertPushed
		st.Message = fmt.Sprintf("Pushed revert %.10s to branch %s", res.SHA, res.Branch)
		if res.Already {
			st.Message = fmt.Sprintf("Revert %.10s was already on branch %s", res.SHA, res.Branch)
		}
	}
	return st
}

// failureReason says why the release failed, for the commit message.
func failureReason(ro *backstopv1.Rollout) string {
	if a := ro.Status.Analysis; a != nil {
		for _, c := range a.Checks {
			if c.Verdict == backstopv1.VerdictFail {
				return fmt.Sprintf("check %s failed: value %s, bound %s", c.Name, c.Value, c.Bound)
			}
		}
	}
	return "the release of revision " + ro.Status.CanaryRevision + " was rolled back"
}

func (g *GitReverter) author(ro *backstopv1.Rollout) object.Signature {
	a := g.Author
	if rv := ro.Spec.Revert; rv != nil && rv.Author != nil {
		a.Name, a.Email = rv.Author.Name, rv.Author.Email
	}
	if a.Name == "" {
		a.Name, a.Email = "Backstop", "backstop@backstop.dev"
	}
	a.When = time.Now()
	return a
}
