package fluxsource

import (
	"fmt"
	"reflect"
	"strings"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// Condition types and reasons, as named by source-controller
// (api/v1/condition_types.go, github.com/fluxcd/pkg/apis/meta).
const (
	conditionReady = "Ready"
	// conditionArtifactInStorage is True when the artifact of
	// status.artifact is stored.
	conditionArtifactInStorage = "ArtifactInStorage"
	// conditionFetchFailed is True (negative polarity) when Git could not be
	// read.
	conditionFetchFailed = "FetchFailed"
	// conditionStorageOperationFailed is True (negative polarity) when the
	// artifact could not be stored.
	conditionStorageOperationFailed = "StorageOperationFailed"
	// conditionArtifactOutdated is True while a newer revision awaits
	// storing; the Controller never leaves it set, and removes it.
	conditionArtifactOutdated = "ArtifactOutdated"

	reasonSucceeded            = "Succeeded"
	reasonGitOperationFailed   = "GitOperationFailed"
	reasonAuthenticationFailed = "AuthenticationFailed"
	reasonArchiveFailed        = "ArchiveOperationFailed"
	// reasonUnsupportedSpec is the stand-in's own: the spec asks for what
	// it does not do.
	reasonUnsupportedSpec = "UnsupportedSpec"

	// reconcileRequestAnnotation asks for a reconcile now (flux reconcile);
	// its value is echoed in status.lastHandledReconcileAt.
	reconcileRequestAnnotation = "reconcile.fluxcd.io/requestedAt"
)

// artifact is meta.Artifact of github.com/fluxcd/pkg/apis/meta.
type artifact struct {
	Digest         string      `json:"digest,omitempty"`
	Path           string      `json:"path"`
	URL            string      `json:"url"`
	Revision       string      `json:"revision"`
	LastUpdateTime metav1.Time `json:"lastUpdateTime"`
	Size           *int64      `json:"size,omitempty"`
}

// gitRepositoryStatus is the part of source-controller's
// GitRepositoryStatus that the Controller writes.
type gitRepositoryStatus struct {
	ObservedGeneration     int64              `json:"observedGeneration,omitempty"`
	Conditions             []metav1.Condition `json:"conditions,omitempty"`
	Artifact               *artifact          `json:"artifact,omitempty"`
	ObservedIgnore         *string            `json:"observedIgnore,omitempty"`
	LastHandledReconcileAt string             `json:"lastHandledReconcileAt,omitempty"`
}

// revisionOf is the revision source-controller gives a branch's commit
// (git.Commit.String of github.com/fluxcd/pkg/git): "<branch>@sha1:<hash>".
func revisionOf(branch, hash string) string {
	return branch + "@sha1:" + hash
}

// readStatus decodes the status of obj.
func readStatus(obj *unstructured.Unstructured) (gitRepositoryStatus, error) {
	var st gitRepositoryStatus
	raw, found, err := unstructured.NestedMap(obj.Object, "status")
	if err != nil || !found {
		return st, err
	}
	err = runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &st)
	return st, err
}

// setStatus sets the status of obj to st and reports whether it changed.
func setStatus(obj *unstructured.Unstructured, st gitRepositoryStatus) (bool, error) {
	raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&st)
	if err != nil {
		return false, err
	}
	old, _, _ := unstructured.NestedMap(obj.Object, "status")
	if reflect.DeepEqual(old, raw) {
		return false, nil
	}
	obj.Object["status"] = raw
	return true, nil
}

// succeeded is the status after storing art, or finding it stored: Ready
// and ArtifactInStorage True, the failure conditions gone.
func succeeded(obj *unstructured.Unstructured, old gitRepositoryStatus, art artifact, spec gitRepositorySpec) gitRepositoryStatus {
	st := carried(obj, old)
	st.ObservedGeneration = obj.GetGeneration()
	st.Artifact = &art
	st.ObservedIgnore = spec.Ignore
	msg := fmt.Sprintf("stored artifact for revision '%s'", art.Revision)
	for _, t := range []string{conditionFetchFailed, conditionStorageOperationFailed, conditionArtifactOutdated} {
		apimeta.RemoveStatusCondition(&st.Conditions, t)
	}
	setCondition(&st, obj, conditionArtifactInStorage, metav1.ConditionTrue, reasonSucceeded, msg)
	setCondition(&st, obj, conditionReady, metav1.ConditionTrue, reasonSucceeded, msg)
	return st
}

// failed is the status after a failure: the failure condition cond True
// and Ready False, both with reason and msg; the last artifact is kept.
func failed(obj *unstructured.Unstructured, old gitRepositoryStatus, cond, reason, msg string) gitRepositoryStatus {
	st := carried(obj, old)
	msg = strings.TrimSpace(msg)
	setCondition(&st, obj, cond, metav1.ConditionTrue, reason, msg)
	setCondition(&st, obj, conditionReady, metav1.ConditionFalse, reason, msg)
	return st
}

// carried is old with the reconcile request of obj handled.
func carried(obj *unstructured.Unstructured, old gitRepositoryStatus) gitRepositoryStatus {
	st := old
	st.Conditions = append([]metav1.Condition(nil), old.Conditions...)
	if v, ok := obj.GetAnnotations()[reconcileRequestAnnotation]; ok {
		st.LastHandledReconcileAt = v
	}
	return st
}

// setCondition sets a condition with the generation of obj, its
// lastTransitionTime changing only with its status.
func setCondition(st *gitRepositoryStatus, obj *unstructured.Unstructured, t string, status metav1.ConditionStatus, reason, msg string) {
	apimeta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type:               t,
		Status:             status,
		ObservedGeneration: obj.GetGeneration(),
		Reason:             reason,
		Message:            msg,
	})
}

// readyCondition is the Ready condition of st, or nil.
func readyCondition(st gitRepositoryStatus) *metav1.Condition {
	return apimeta.FindStatusCondition(st.Conditions, conditionReady)
}
