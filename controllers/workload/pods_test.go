package workload_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"backstop.dev/backstop/controllers/workload"
)

// Pod states as the kubelet and the scheduler write them.
var (
	ready = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	imagePull = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: corev1.ConditionFalse}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "app:v9", State: corev1.ContainerState{
			Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: `Back-off pulling image "app:v9"`}}}}}
	crashLoop = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: corev1.ConditionFalse}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "app:v9", RestartCount: 4, State: corev1.ContainerState{
			Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 1m20s restarting failed container=app"}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				Reason: "OOMKilled", ExitCode: 137, Message: "the app's own words, which may hold a secret"}}}}}
	unschedulable = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled,
		Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: "0/3 nodes are available: 3 Insufficient memory."}}}
	initFailed = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: corev1.ConditionFalse}},
		InitContainerStatuses: []corev1.ContainerStatus{{Name: "migrate", Image: "app:v9", State: corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 2}}}}}
	configError = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: corev1.ConditionFalse}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "app:v9", State: corev1.ContainerState{
			Waiting: &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: `secret "db" not found`}}}}}
	creating = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: corev1.ConditionFalse}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "app:v9", State: corev1.ContainerState{
			Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}}
)

// TestPodTrouble: what PodTrouble reads from the pods of a canary that is
// not ready, against the real apiserver. Ready pods and pods of other
// Deployments say nothing; pods that share a reason are counted together,
// the most common first (then by name), at most three reasons named; a container's
// termination message (the application's own output) never shows.
func TestPodTrouble(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pods  []corev1.PodStatus
		other []corev1.PodStatus // pods of another Deployment
		want  string
	}{{
		name: "every pod ready",
		pods: []corev1.PodStatus{ready, ready},
		want: "",
	}, {
		name: "an image that cannot be pulled",
		pods: []corev1.PodStatus{imagePull, imagePull, ready},
		want: `2 pods: ImagePullBackOff (Back-off pulling image "app:v9")`,
	}, {
		name: "a crash loop, with how the container last ended",
		pods: []corev1.PodStatus{crashLoop},
		want: "1 pod: CrashLoopBackOff (back-off 1m20s restarting failed container=app), container app last ended OOMKilled with exit code 137",
	}, {
		name: "no node to run on",
		pods: []corev1.PodStatus{unschedulable, unschedulable, unschedulable},
		want: "3 pods: Unschedulable (0/3 nodes are available: 3 Insufficient memory.)",
	}, {
		name: "an init container that failed",
		pods: []corev1.PodStatus{initFailed},
		want: "1 pod: container migrate ended Error with exit code 2",
	}, {
		name: "still being created says nothing",
		pods: []corev1.PodStatus{creating},
		want: "",
	}, {
		name: "the most common reasons first, at most three",
		pods: []corev1.PodStatus{crashLoop, imagePull, imagePull, unschedulable, unschedulable, unschedulable, configError, initFailed},
		want: "3 pods: Unschedulable (0/3 nodes are available: 3 Insufficient memory.); " +
			`2 pods: ImagePullBackOff (Back-off pulling image "app:v9"); ` +
			"1 pod: CrashLoopBackOff (back-off 1m20s restarting failed container=app), container app last ended OOMKilled with exit code 137; " +
			"and 2 other reasons",
	}, {
		name:  "another Deployment's pods are not looked at",
		pods:  []corev1.PodStatus{ready},
		other: []corev1.PodStatus{crashLoop},
		want:  "",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t)
			createPods(t, ns, "web", tc.pods)
			createPods(t, ns, "other", tc.other)
			d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
				Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}
			got, err := workload.PodTrouble(context.Background(), env.Client, d)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("PodTrouble =\n  %s\nwant\n  %s", got, tc.want)
			}
			if strings.Contains(got, "own words") {
				t.Errorf("PodTrouble shows a termination message: %s", got)
			}
		})
	}
}

// createPods creates pods labelled app=app with the statuses, as the
// kubelet would leave them.
func createPods(t *testing.T, ns, app string, statuses []corev1.PodStatus) {
	t.Helper()
	ctx := context.Background()
	for i, st := range statuses {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-%d", app, i), Labels: map[string]string{"app": app}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:v9"}}},
		}
		if err := env.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		p.Status = *st.DeepCopy()
		if err := env.Client.Status().Update(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
}
