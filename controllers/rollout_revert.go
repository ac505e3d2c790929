package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
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
	"backstop.dev/backstop/controllers/workload"
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
	// Backoff is the wait before the second try, doubled after each up
	// to a minute; default 5s.
	Backoff time.Duration
	// TryTimeout bounds each try (fetch, build, push): one that takes
	// longer, against a Git server that accepts the connection but does
	// not answer, say, is stopped and counts as failed; default
	// DefaultRevertTryTimeout.
	TryTimeout time.Duration
	// Cache keeps a clone per repository between reverts; nil clones
	// afresh each time.
	Cache *revert.Cache
	// Source configures the discovery of the source (Argo CD's namespace).
	Source source.Options

	mu      sync.Mutex
	running map[string]bool
	done    map[string]backstopv1.RevertStatus
	// retrying holds, for a running revert whose last try failed and that
	// will try again, the Pending status that says so.
	retrying map[string]backstopv1.RevertStatus
}

// RevertPoll is how often a Rollout whose revert is Pending is looked at.
const RevertPoll = 2 * time.Second

// DefaultRevertTryTimeout bounds a try of a revert: thirty times what the
// first clone of a repository of 50,000 commits takes (test/bench/revert).
const DefaultRevertTryTimeout = 5 * time.Minute

// DefaultRevertRetry is how long after its last attempt a Failed revert is
// tried again, while the Rollout stays RolledBack.
const DefaultRevertRetry = 5 * time.Minute

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
		if st, ok := g.retrying[release]; ok {
			ro.Status.Revert = &st
		}
		return nil
	}
	if g.running == nil {
		g.running, g.done, g.retrying = map[string]bool{}, map[string]backstopv1.RevertStatus{}, map[string]backstopv1.RevertStatus{}
	}
	g.running[release] = true
	job := ro.DeepCopy()
	logger := log.FromContext(ctx).WithValues("release", release)
	go func() {
		st := g.run(log.IntoContext(context.Background(), logger), job, func(failed backstopv1.RevertStatus) {
			failed.Release = release
			g.mu.Lock()
			defer g.mu.Unlock()
			g.retrying[release] = failed
		})
		st.Release = release
		g.mu.Lock()
		defer g.mu.Unlock()
		delete(g.running, release)
		delete(g.retrying, release)
		g.done[release] = st
	}()
	return nil
}

// Collect implements RevertCollector.
func (g *GitReverter) Collect(ro *backstopv1.Rollout) (ended, running bool) {
	st := ro.Status.Revert
	if st == nil {
		return false, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if done, ok := g.done[st.Release]; ok {
		delete(g.done, st.Release)
		ro.Status.Revert = &done
		return true, false
	}
	if retrying, ok := g.retrying[st.Release]; ok {
		ro.Status.Revert = &retrying
	}
	return false, g.running[st.Release]
}

// releaseID names a failed release: the Rollout and the revision.
func releaseID(ro *backstopv1.Rollout) string {
	return ro.Namespace + "/" + ro.Name + "@" + ro.Status.CanaryRevision
}

// run makes the revert, trying again with backoff when it fails for a
// reason other than a conflict. Before each wait it hands retrying the
// Pending status that says which try failed, why, and when the next one
// is, so that status.revert shows a revert that keeps failing (a Git
// server down, say) while it is still tried.
func (g *GitReverter) run(ctx context.Context, ro *backstopv1.Rollout, retrying func(backstopv1.RevertStatus)) backstopv1.RevertStatus {
	attempts, wait, timeout := g.Attempts, g.Backoff, g.TryTimeout
	if attempts <= 0 {
		attempts = 5
	}
	if wait <= 0 {
		wait = 5 * time.Second
	}
	if timeout <= 0 {
		timeout = DefaultRevertTryTimeout
	}
	var st backstopv1.RevertStatus
	// What tells the failed version from the stable one is read once, at
	// the first try: the target may return to the stable version (a person
	// or the GitOps tool fixing it) while later tries wait.
	var found *[]revert.Change
	for i := 1; ; i++ {
		try, cancel := context.WithTimeout(ctx, timeout)
		st = g.once(try, ro, &found)
		if st.State == backstopv1.RevertFailed && errors.Is(try.Err(), context.DeadlineExceeded) {
			st.Message = fmt.Sprintf("the try took longer than %s: %s", timeout, st.Message)
		}
		cancel()
		st.Attempts = int32(i)
		now := metav1.Now()
		st.LastAttemptTime = &now
		if st.State != backstopv1.RevertFailed || i >= attempts || errors.Is(ctx.Err(), context.Canceled) {
			break
		}
		log.FromContext(ctx).Info("Failed to revert; trying again", "attempt", i, "message", st.Message)
		retrying(backstopv1.RevertStatus{State: backstopv1.RevertPending, Repository: st.Repository,
			Message:  fmt.Sprintf("Try %d of %d failed: %s; trying again in %s", i, attempts, st.Message, wait),
			Attempts: st.Attempts, LastAttemptTime: st.LastAttemptTime})
		time.Sleep(wait)
		wait = min(2*wait, time.Minute)
	}
	log.FromContext(ctx).Info("Finished the revert", "state", st.State, "commit", st.Commit, "branch", st.Branch)
	return st
}

// once makes one attempt at the revert.
func (g *GitReverter) once(ctx context.Context, ro *backstopv1.Rollout, found **[]revert.Change) backstopv1.RevertStatus {
	failed := func(format string, args ...any) backstopv1.RevertStatus {
		return backstopv1.RevertStatus{State: backstopv1.RevertFailed, Message: revert.Scrub(fmt.Sprintf(format, args...))}
	}
	var target appsv1.Deployment
	if err := g.Reader.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: ro.Spec.TargetRef.Name}, &target); err != nil {
		return failed("reading the target: %v", err)
	}
	src, err := source.Discover(ctx, g.Reader, ro, &target, g.Source)
	if err != nil {
		return failed("%v", err)
	}
	st := backstopv1.RevertStatus{Repository: revert.Scrub(src.URL)}
	creds, err := source.ReadCredentials(ctx, g.Reader, src)
	if err != nil {
		return failed("%v", err)
	}
	insecure := creds.Insecure || (ro.Spec.Revert != nil && ro.Spec.Revert.InsecureSkipHostKeyVerification)
	auth, err := revert.Auth(src.URL, creds.Data, insecure)
	if err != nil {
		return failed("the Git credentials from %s: %v", creds.From, err)
	}
	req := revert.Request{
		URL: src.URL, Branch: src.Branch, Auth: auth,
		Release: releaseID(ro), Rollout: ro.Namespace + "/" + ro.Name,
		Reason: failureReason(ro), Author: g.author(ro),
	}
	if from, to := ro.Status.StableSourceRevision, ro.Status.CanarySourceRevision; from != "" && to != "" && from != to {
		req.Range = &revert.Range{From: from, To: to, Path: src.Path}
	} else {
		// No GitOps revisions to bound the change: look for it in the
		// history of the path, by what the failed version runs.
		if *found == nil {
			changes, err := g.changes(ctx, ro, &target)
			if err != nil {
				return failed("%v", err)
			}
			*found = &changes
		}
		changes := **found
		if len(changes) == 0 {
			st.State, st.Message = backstopv1.RevertFailed, fmt.Sprintf(
				"the source revisions of the stable and the failed versions are not known, and their images, environment and ConfigMaps are the same: nothing is reverted; revert the change in %s by hand",
				st.Repository)
			return st
		}
		req.Find = &revert.Find{Path: src.Path, Changes: changes}
	}
	if req.Branch == "" {
		req.Branch = "main"
	}
	if rv := ro.Spec.Revert; rv != nil {
		if rv.Mode == backstopv1.RevertBranch {
			req.Mode = revert.ModeBranch
		}
		if rv.Signing != nil {
			var secret corev1.Secret
			if err := g.Reader.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: rv.Signing.SecretRef.Name}, &secret); err != nil {
				return failed("reading the signing key in Secret %s: %v", rv.Signing.SecretRef.Name, err)
			}
			if rv.Signing.Format == "SSH" {
				req.Signer, err = revert.SSHSigningKey(secret.Data)
			} else {
				req.Signer, err = revert.SigningKey(secret.Data)
			}
			if err != nil {
				return failed("the signing key in Secret %s: %v", rv.Signing.SecretRef.Name, err)
			}
		}
	}
	res, err := (&revert.Reverter{Cache: g.Cache}).Revert(ctx, req)
	st.Branch, st.Commit, st.Reverted = res.Branch, res.SHA, revertedCommits(res)
	switch {
	case errors.Is(err, revert.ErrNothingToRevert):
		st.State, st.Message = backstopv1.RevertPushed, "Nothing to revert: the branch already undoes the change"
	case err != nil:
		return failed("%v", err)
	case len(res.Conflict) > 0:
		st.State, st.ConflictingFiles = backstopv1.RevertConflict, capList(res.Conflict)
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

// revertedCommits lists the commits of res, with the reasons they were
// taken.
func revertedCommits(res revert.Result) []backstopv1.RevertedCommit {
	why := map[string]string{}
	for _, f := range res.Found {
		why[f.SHA] = f.Why
	}
	var out []backstopv1.RevertedCommit
	for _, sha := range capList(res.Reverted) {
		out = append(out, backstopv1.RevertedCommit{Commit: sha, Reason: why[sha]}) // at most revert.MaxWhy
	}
	return out
}

// maxListed bounds the commits and files listed in status.revert (the API's
// MaxItems); the commit message lists them all.
const maxListed = 64

func capList(s []string) []string {
	if len(s) > maxListed {
		return s[:maxListed]
	}
	return s
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

// changes describes what the failed version runs and the stable one does
// not, for a revert that must look for the offending commits in the
// history (revert.Find): each container's image that differs, as the full
// reference or its tag or digest alone (as kustomize's newTag and Helm
// values hold it), each environment value that differs, and each value of
// a tracked ConfigMap that differs from the primary's copy. The stable
// version is what the primary runs after the rollback. Secrets are never
// compared: a value found in the history becomes the reason of a reverted
// commit in status and in the revert's commit message.
func (g *GitReverter) changes(ctx context.Context, ro *backstopv1.Rollout, target *appsv1.Deployment) ([]revert.Change, error) {
	var primary appsv1.Deployment
	if err := g.Reader.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: workload.NamesFor(ro).Primary}, &primary); err != nil {
		return nil, fmt.Errorf("reading the primary, to tell the failed version from the stable one: %w", err)
	}
	out := templateChanges(&primary.Spec.Template, &target.Spec.Template)
	reads := workload.ConfigRefs(target.Spec.Template)
	for _, cp := range workload.PrimaryConfigsOf(primary.Spec.Template).Copies {
		if cp.Kind != workload.KindConfigMap || !slices.Contains(reads, cp.ConfigRef) {
			continue
		}
		var stable, failed corev1.ConfigMap
		if err := g.Reader.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: cp.Copy}, &stable); err != nil {
			return nil, fmt.Errorf("reading the primary's copy of ConfigMap %s: %w", cp.Name, err)
		}
		if err := g.Reader.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: cp.Name}, &failed); err != nil {
			return nil, fmt.Errorf("reading ConfigMap %s: %w", cp.Name, err)
		}
		out = append(out, configMapChanges(stable.Data, failed.Data)...)
	}
	return out, nil
}

// configMapChanges lists the values of a ConfigMap's data that differ from
// stable to failed, in the order of their keys: a one-line value whole, and
// of a value of several lines (a configuration file) each line it adds,
// without its indentation, when it has at least minConfigLine characters,
// since a manifest holds such a file as a block of lines.
func configMapChanges(stable, failed map[string]string) []revert.Change {
	keys := slices.Sorted(maps.Keys(failed))
	var out []revert.Change
	for _, k := range keys {
		v, was := failed[k], stable[k]
		if v == was {
			continue
		}
		if !strings.Contains(strings.TrimRight(v, "\n"), "\n") {
			if v = strings.TrimSpace(v); len(v) >= 2 {
				out = append(out, revert.Change{Values: []string{v}})
			}
			continue
		}
		had := map[string]bool{}
		for _, l := range strings.Split(was, "\n") {
			had[strings.TrimSpace(l)] = true
		}
		var added []string
		for _, l := range strings.Split(v, "\n") {
			if l = strings.TrimSpace(l); len(l) >= minConfigLine && !had[l] && !slices.Contains(added, l) {
				added = append(added, l)
			}
		}
		if len(added) > 0 {
			out = append(out, revert.Change{Values: added})
		}
	}
	return out
}

// minConfigLine is the shortest line of a configuration file that tells a
// commit added it: shorter ones ("}", "on") are in many files.
const minConfigLine = 4

// templateChanges lists the changes from stable to failed (see changes).
func templateChanges(stable, failed *corev1.PodTemplateSpec) []revert.Change {
	before := map[string]corev1.Container{}
	for _, c := range append(append([]corev1.Container{}, stable.Spec.InitContainers...), stable.Spec.Containers...) {
		before[c.Name] = c
	}
	var out []revert.Change
	for _, c := range append(append([]corev1.Container{}, failed.Spec.InitContainers...), failed.Spec.Containers...) {
		old, ok := before[c.Name]
		if c.Image != "" && (!ok || c.Image != old.Image) {
			ch := revert.Change{Texts: []string{c.Image}}
			if v := imageVersion(c.Image); v != "" && v != imageVersion(old.Image) {
				ch.Values = []string{v}
			}
			out = append(out, ch)
		}
		env := map[string]string{}
		for _, e := range old.Env {
			env[e.Name] = e.Value
		}
		for _, e := range c.Env {
			if was, ok := env[e.Name]; (!ok || was != e.Value) && len(e.Value) >= 2 {
				out = append(out, revert.Change{Values: []string{e.Value}})
			}
		}
	}
	return out
}

// imageVersion is the tag or digest of an image reference: "1.4.2" of
// "registry.example:5000/shop/app:1.4.2", "sha256:…" of "shop/app@sha256:…";
// empty without one.
func imageVersion(image string) string {
	if _, digest, ok := strings.Cut(image, "@"); ok {
		return digest
	}
	name := image[strings.LastIndex(image, "/")+1:]
	if _, tag, ok := strings.Cut(name, ":"); ok {
		return tag
	}
	return ""
}
