package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers/plan"
	"backstop.dev/backstop/controllers/workload"
)

// Config tracking (workload.ConfigRefs): the ConfigMaps and Secrets the
// target reads are part of its revision, and the primary reads copies of
// them made at promotion. ConfigMaps are watched, metadata only, so a
// change wakes the Rollouts whose target reads one at once; their contents
// are read without the cache, and only when their resourceVersion moved
// (workload.ConfigReader). Secrets are not watched: a watch of Secrets
// would need list and watch of every Secret of the cluster, so a Rollout
// whose target reads a Secret looks at its Secrets' resourceVersions every
// SecretPoll instead, and a change to a Secret starts a release within
// that time.

// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;create;update;delete

// DefaultSecretPoll is how often a Rollout whose target reads a tracked
// Secret looks at it, when RolloutReconciler.SecretPoll is unset.
const DefaultSecretPoll = time.Minute

// indexConfigMaps indexes Deployments by the ConfigMaps their pod
// templates read, as nameKey has a ConfigMap.
const indexConfigMaps = "backstop.dev/configmaps"

func indexDeploymentConfigMaps(o client.Object) []string {
	d := o.(*appsv1.Deployment)
	var keys []string
	for _, ref := range workload.ConfigRefs(d.Spec.Template) {
		if ref.Kind == workload.KindConfigMap {
			keys = append(keys, d.Namespace+"/"+ref.Name)
		}
	}
	return keys
}

// enqueueByConfigMap enqueues the Rollouts whose target reads the watched
// ConfigMap.
func (r *RolloutReconciler) enqueueByConfigMap() handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		var deps appsv1.DeploymentList
		if err := r.List(ctx, &deps, client.InNamespace(o.GetNamespace()), client.MatchingFields{indexConfigMaps: nameKey(o)}); err != nil {
			log.FromContext(ctx).Error(err, "Failed to list the Deployments that read a ConfigMap")
			return nil
		}
		var reqs []reconcile.Request
		for i := range deps.Items {
			var list backstopv1.RolloutList
			if err := r.List(ctx, &list, client.MatchingFields{indexTarget: nameKey(&deps.Items[i])}); err != nil {
				log.FromContext(ctx).Error(err, "Failed to list Rollouts for a watched object", "index", indexTarget)
				return nil
			}
			for j := range list.Items {
				reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[j])})
			}
		}
		return reqs
	})
}

// configReader is the reconciler's workload.ConfigReader.
func (r *RolloutReconciler) configReader() *workload.ConfigReader {
	r.configsOnce.Do(func() {
		r.configs = &workload.ConfigReader{Cached: r.Client, Uncached: r.revisionReader()}
	})
	return r.configs
}

func (r *RolloutReconciler) secretPoll() time.Duration {
	if r.SecretPoll <= 0 {
		return DefaultSecretPoll
	}
	return r.SecretPoll
}

// targetRevision is the revision of the target: its TemplateHash combined
// with the digest of the configs it reads that are tracked. It remembers
// the TemplateHash of the revision, for restartCanary.
func (r *RolloutReconciler) targetRevision(target *appsv1.Deployment, tracked workload.Tracked) string {
	hash := workload.TemplateHash(target.Spec.Template)
	rev := workload.CombineRevision(hash, tracked.Digest())
	r.templateHashes.remember(rev, hash)
	return rev
}

// templateHashes remembers the TemplateHash part of the revisions seen.
type templateHashes struct {
	mu   sync.Mutex
	hash map[string]string
}

// maxTemplateHashes bounds templateHashes; past it, it forgets all.
const maxTemplateHashes = 100000

func (t *templateHashes) remember(revision, hash string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.hash == nil || len(t.hash) >= maxTemplateHashes {
		t.hash = map[string]string{}
	}
	t.hash[revision] = hash
}

func (t *templateHashes) recall(revision string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h, ok := t.hash[revision]
	return h, ok
}

// restartCanary scales the canary to zero when a release restarts (from →
// to) for a change of the target's ConfigMaps or Secrets alone, after the
// routes took its traffic away: its running pods were started with the
// data of the revision that was replaced, and nothing else would replace
// them (the Deployment controller rolls pods for a template change only;
// environment variables never change in a running pod). The release's
// first step scales it up again, with pods that read the new data. When
// it is not known whether the template changed too (the manager restarted
// since the replaced revision was seen), the canary is restarted as well.
func (r *RolloutReconciler) restartCanary(ctx context.Context, ro *backstopv1.Rollout, target *appsv1.Deployment, tracked workload.Tracked,
	w plan.World, from, to plan.State) error {
	restart := from.Canary != "" && to.Canary != from.Canary && to.Phase == backstopv1.PhaseProgressing &&
		(releasing(from.Phase) || from.Phase == backstopv1.PhasePromoting)
	if !restart || len(tracked) == 0 || w.CanaryDown {
		return nil
	}
	if hash, known := r.templateHashes.recall(from.Canary); known && hash != workload.TemplateHash(target.Spec.Template) {
		return nil
	}
	key := types.NamespacedName{Namespace: ro.Namespace, Name: target.Name}
	if _, err := workload.Scale(ctx, r.Client, key, 0); err != nil {
		return fmt.Errorf("scaling the canary down, for pods that read the new ConfigMaps and Secrets: %w", err)
	}
	log.FromContext(ctx).Info("Scaled the canary down, so that its new pods read the new ConfigMaps and Secrets", "replaced", from.Canary, "revision", to.Canary)
	return nil
}

// maxChangedConfigs bounds the configs changedConfigs names.
const maxChangedConfigs = 5

// changedConfigs names the tracked configs whose data the target reads
// and the primary does not (new ones included), and those the primary
// reads through copies and the target no longer tracks, for the message of
// a release that starts: "ConfigMap app-config, Secret db". Only names:
// never data. Empty when none changed.
func changedConfigs(names workload.Names, primary *appsv1.Deployment, tracked workload.Tracked) string {
	reads := map[workload.ConfigRef]string{}
	for _, c := range workload.PrimaryConfigsOf(primary.Spec.Template).Copies {
		reads[c.ConfigRef] = c.Copy
	}
	var changed []string
	for _, c := range tracked.Primary(names).Copies {
		if reads[c.ConfigRef] != c.Copy {
			changed = append(changed, string(c.Kind)+" "+c.Name)
		}
		delete(reads, c.ConfigRef)
	}
	for ref := range reads {
		changed = append(changed, string(ref.Kind)+" "+ref.Name)
	}
	slices.Sort(changed)
	if len(changed) > maxChangedConfigs {
		changed = append(changed[:maxChangedConfigs], fmt.Sprintf("and %d more", len(changed)-maxChangedConfigs))
	}
	return strings.Join(changed, ", ")
}

// copyConfigs performs the config part of plan.ActCopyToPrimary: it reads
// the configs the target reads, checks that they are still those of
// revision, the one that was checked (if not, the action fails, and the
// next look finds the target at another revision and starts the release
// again), and makes the primary's copies of them. It returns what the
// primary records of them.
func (r *RolloutReconciler) copyConfigs(ctx context.Context, ro *backstopv1.Rollout, target *appsv1.Deployment, revision string) (workload.PrimaryConfigs, error) {
	refs := workload.ConfigRefs(target.Spec.Template)
	if len(refs) == 0 {
		return workload.PrimaryConfigs{}, nil
	}
	uncached := r.revisionReader()
	sources, tracked, err := workload.ReadSources(ctx, uncached, ro.Namespace, refs)
	if err != nil {
		return workload.PrimaryConfigs{}, err
	}
	if got := r.targetRevision(target, tracked); got != revision {
		return workload.PrimaryConfigs{}, fmt.Errorf("the ConfigMaps or Secrets the target reads changed since revision %s was checked (they now make revision %s), so it is not copied; the release starts again", revision, got)
	}
	pc, err := workload.EnsureCopies(ctx, r.Client, uncached, ro, sources)
	if err != nil {
		return workload.PrimaryConfigs{}, err
	}
	if pc.Digest != tracked.Digest() {
		return workload.PrimaryConfigs{}, fmt.Errorf("the primary's copies of %d ConfigMaps or Secrets hold other data than their sources", len(sources))
	}
	return pc, nil
}

// pruneCopies deletes the copies among candidates (refs of copies) that
// neither the primary, which now reads the copies of pc, nor a kept
// template (for a restore in the bake time) reads.
func (r *RolloutReconciler) pruneCopies(ctx context.Context, ro *backstopv1.Rollout, candidates []workload.ConfigRef, pc workload.PrimaryConfigs) error {
	if len(candidates) == 0 {
		return nil
	}
	keep := pc.CopyRefs()
	kept, err := workload.RevisionCopies(ctx, r.revisionReader(), ro)
	if err != nil {
		return err
	}
	keep = append(keep, kept...)
	var stale []workload.ConfigRef
	for _, ref := range candidates {
		if !slices.Contains(keep, ref) && !slices.Contains(stale, ref) {
			stale = append(stale, ref)
		}
	}
	return workload.DeleteCopies(ctx, r.Client, r.revisionReader(), ro, stale)
}
