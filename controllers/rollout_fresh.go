package controllers

import (
	"strconv"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// written remembers, per Rollout, the resourceVersion its last status write
// returned, so that a reconcile does not act on a copy from before that
// write.
//
// The cache sees a status write some milliseconds after it is made, and a
// reconcile can start in between: the reconciler's own route write, say,
// wakes the Rollout at once. Such a copy still shows the state before the
// decision just recorded (Progressing at 20% rather than RollingBack), and
// acting on it would repeat what that decision undid: the rollback's route
// sends 20% to the failed canary again until the next look. The status
// write of such a decision conflicts (patchStatus), but its side effects
// would already be done. So a reconcile whose copy is older than the last
// write waits for the cache instead.
//
// resourceVersions are opaque to clients in general; the apiserver's
// storage (etcd) makes them increasing integers, which is what this
// compares. Any other form is taken as fresh, as is a Rollout this process
// never wrote: a manager that starts lists every Rollout anew.
type written struct {
	mu       sync.Mutex
	versions map[types.NamespacedName]writtenVersion
}

type writtenVersion struct {
	uid     types.UID
	version uint64
}

// record notes the resourceVersion of a Rollout just written.
func (w *written) record(obj client.Object) {
	v, err := strconv.ParseUint(obj.GetResourceVersion(), 10, 64)
	if err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.versions == nil {
		w.versions = map[types.NamespacedName]writtenVersion{}
	}
	w.versions[client.ObjectKeyFromObject(obj)] = writtenVersion{uid: obj.GetUID(), version: v}
}

// stale says whether obj is a copy from before the last write recorded.
func (w *written) stale(obj client.Object) bool {
	v, err := strconv.ParseUint(obj.GetResourceVersion(), 10, 64)
	if err != nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	last, ok := w.versions[client.ObjectKeyFromObject(obj)]
	return ok && last.uid == obj.GetUID() && v < last.version
}

// forget drops what is known of a deleted Rollout.
func (w *written) forget(key types.NamespacedName) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.versions, key)
}
