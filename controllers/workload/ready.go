package workload

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
)

// progressDeadlineExceeded is the reason of the Progressing condition when
// the Deployment controller gave up waiting (k8s.io/kubectl's
// TimedOutReason).
const progressDeadlineExceeded = "ProgressDeadlineExceeded"

// Ready says whether a Deployment has rolled out completely: the Deployment
// controller has seen its current generation, every replica runs the
// current template and is available and ready, and no replica of an older
// template remains. When it is not, reason says in words what is missing,
// for example "2 of 3 replicas updated". A Deployment past its progress
// deadline is not ready, and reason says so (see ProgressDeadlineExceeded).
func Ready(d *appsv1.Deployment) (bool, string) {
	if d.Status.ObservedGeneration < d.Generation {
		return false, fmt.Sprintf("generation %d not yet observed by the Deployment controller (observed %d)",
			d.Generation, d.Status.ObservedGeneration)
	}
	if c := progressing(d); c != nil && c.Reason == progressDeadlineExceeded {
		return false, "progress deadline exceeded: " + c.Message
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	switch {
	case st.UpdatedReplicas < want:
		return false, fmt.Sprintf("%d of %d replicas updated", st.UpdatedReplicas, want)
	case st.Replicas > st.UpdatedReplicas:
		return false, fmt.Sprintf("%d old replicas pending termination", st.Replicas-st.UpdatedReplicas)
	case st.Replicas > want:
		return false, fmt.Sprintf("%d replicas beyond the %d wanted pending termination", st.Replicas-want, want)
	case st.AvailableReplicas < want:
		return false, fmt.Sprintf("%d of %d replicas available", st.AvailableReplicas, want)
	case st.ReadyReplicas < want:
		return false, fmt.Sprintf("%d of %d replicas ready", st.ReadyReplicas, want)
	}
	return true, fmt.Sprintf("%d of %d replicas ready", want, want)
}

// ProgressDeadlineExceeded says whether the Deployment controller reported
// that the Deployment's current generation failed to progress within its
// progressDeadlineSeconds: a failure to act on, not a wait.
func ProgressDeadlineExceeded(d *appsv1.Deployment) bool {
	c := progressing(d)
	return d.Status.ObservedGeneration >= d.Generation && c != nil && c.Reason == progressDeadlineExceeded
}

func progressing(d *appsv1.Deployment) *appsv1.DeploymentCondition {
	for i := range d.Status.Conditions {
		c := &d.Status.Conditions[i]
		if c.Type == appsv1.DeploymentProgressing {
			return c
		}
	}
	return nil
}
