package rig

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// Leaks looks for every value of Secrets where a user or an operator
// looks: the manager's log, the namespace's Events (core and
// events.k8s.io), the Rollouts (status and all), and the repository's
// every commit, message and content, on every branch. It returns where
// each one showed, empty when none did, and how many bytes it searched.
func (r *Rig) Leaks(ctx context.Context) (leaks []string, searched int, err error) {
	places := map[string]string{}
	logs, err := filepath.Glob(filepath.Join(r.Dir, "*.log"))
	if err != nil {
		return nil, 0, err
	}
	for _, f := range logs {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, 0, err
		}
		places["log "+filepath.Base(f)] = string(b)
	}
	for name, list := range map[string]client.ObjectList{
		"Events":                &corev1.EventList{},
		"events.k8s.io Events":  &eventsv1.EventList{},
		"Rollouts (and status)": &backstopv1.RolloutList{},
	} {
		if err := r.Env.Client.List(ctx, list, client.InNamespace(r.Namespace)); err != nil {
			return nil, 0, fmt.Errorf("listing %s: %w", name, err)
		}
		b, err := json.Marshal(list)
		if err != nil {
			return nil, 0, err
		}
		places[name] = string(b)
	}
	history, err := r.Git.Git(r.Git.Dir(Repo), "log", "--all", "-p", "--format=fuller")
	if err != nil {
		return nil, 0, err
	}
	places["git log --all -p"] = history
	for place, text := range places {
		searched += len(text)
		for _, secret := range Secrets {
			if strings.Contains(text, secret) {
				leaks = append(leaks, fmt.Sprintf("%s shows %.4s…", place, secret))
			}
		}
	}
	return leaks, searched, nil
}
