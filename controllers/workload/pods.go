package workload

import (
	"context"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"backstop.dev/backstop/internal/text"
)

// The bounds of PodTrouble's answer: how many kinds of trouble it names,
// and how long each message from the kubelet or the scheduler may be.
const (
	maxTroubles       = 3
	maxTroubleMessage = 200
)

// PodTrouble says, from the pods of d that are not ready, why they are not:
// the scheduler's reason (Unschedulable, with its message), a container's
// waiting reason (ImagePullBackOff, ErrImagePull, CrashLoopBackOff,
// CreateContainerConfigError… with the kubelet's message), or how a
// container last ended (its reason, such as OOMKilled or Error, and exit
// code). Pods that share a reason are counted together, the most common
// first, and at most three reasons are named. It is empty when every pod
// is ready or no pod says why.
//
// It reads the pods from reader (the API server, not a cache: the manager
// caches no pods) only when asked, which the reconciler does once a canary
// has missed its progress deadline. A container's termination message is
// never read: it is the application's own output and may hold anything.
func PodTrouble(ctx context.Context, reader client.Reader, d *appsv1.Deployment) (string, error) {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() {
		return "", err
	}
	var pods corev1.PodList
	if err := reader.List(ctx, &pods, client.InNamespace(d.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return "", fmt.Errorf("listing the pods of Deployment %s: %w", d.Name, err)
	}
	count := map[string]int{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp != nil || podReady(p) {
			continue
		}
		if why := podTrouble(p); why != "" {
			count[why]++
		}
	}
	troubles := make([]string, 0, len(count))
	for why := range count {
		troubles = append(troubles, why)
	}
	sort.Slice(troubles, func(i, j int) bool {
		if count[troubles[i]] != count[troubles[j]] {
			return count[troubles[i]] > count[troubles[j]]
		}
		return troubles[i] < troubles[j]
	})
	var parts []string
	for i, why := range troubles {
		if i == maxTroubles {
			parts = append(parts, fmt.Sprintf("and %d other reasons", len(troubles)-maxTroubles))
			break
		}
		noun := "pod"
		if count[why] > 1 {
			noun = "pods"
		}
		parts = append(parts, fmt.Sprintf("%d %s: %s", count[why], noun, why))
	}
	return strings.Join(parts, "; "), nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podTrouble is why one pod is not ready, or "".
func podTrouble(p *corev1.Pod) string {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason != "" {
			return withMessage(c.Reason, c.Message)
		}
	}
	statuses := append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
	for _, cs := range statuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" && w.Reason != "PodInitializing" && w.Reason != "ContainerCreating" {
			why := withMessage(w.Reason, w.Message)
			if t := cs.LastTerminationState.Terminated; t != nil {
				why += fmt.Sprintf(", container %s last ended %s with exit code %d", cs.Name, orDefault(t.Reason, "Error"), t.ExitCode)
			}
			return why
		}
		if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
			return fmt.Sprintf("container %s ended %s with exit code %d", cs.Name, orDefault(t.Reason, "Error"), t.ExitCode)
		}
	}
	return ""
}

func withMessage(reason, message string) string {
	message = strings.Join(strings.Fields(message), " ")
	if message == "" {
		return reason
	}
	return reason + " (" + text.Truncate(message, maxTroubleMessage) + ")"
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
