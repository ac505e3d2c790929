package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"backstop.dev/backstop/test/fluxsource"
	"backstop.dev/backstop/test/gittest"
	"backstop.dev/backstop/test/proc"
)

// The Git side of the stack: a git server holding the fleet repository
// that Flux applies from.
const (
	// FleetRepo is the repository of manifests Flux applies.
	FleetRepo = "fleet"
	// FleetBranch is the branch Flux follows.
	FleetBranch = "main"
	// GitUser is the user of the git server; its password is random.
	GitUser = "flux"
)

// Fleet is the stack's git server and a working clone of the fleet
// repository, through which changes are committed as a person would.
type Fleet struct {
	// Server is the git server.
	Server *gittest.Server
	// Password of GitUser.
	Password string
	// Work is the working clone.
	Work string
}

// startFleet starts the git server and makes the fleet repository with
// files (path → content) as its first commit.
func startFleet(dir string) (*Fleet, error) {
	pass := make([]byte, 12)
	if _, err := rand.Read(pass); err != nil {
		return nil, err
	}
	f := &Fleet{Password: hex.EncodeToString(pass), Work: filepath.Join(dir, "fleet-work")}
	srv, err := gittest.Open(filepath.Join(dir, "git"), gittest.Options{Username: GitUser, Password: f.Password})
	if err != nil {
		return nil, err
	}
	f.Server = srv
	if err := srv.Create(FleetRepo, FleetBranch); err != nil {
		srv.Stop()
		return nil, err
	}
	// The clone asks for credentials through a helper reading a file, so
	// the password is in no URL, command line or log.
	creds := filepath.Join(dir, "git-credentials")
	if err := os.WriteFile(creds, []byte("username="+GitUser+"\npassword="+f.Password+"\n"), 0o600); err != nil {
		return nil, err
	}
	helper := `!f() { test "$1" = get && cat '` + creds + `'; }; f`
	if _, err := srv.Git("", "clone", "--quiet", "--config", "credential.helper="+helper, srv.URL(FleetRepo), f.Work); err != nil {
		srv.Stop()
		return nil, err
	}
	return f, nil
}

// Commit writes files (path → content; "" removes the file) in the working
// clone, commits them with message and pushes, and returns the commit.
func (f *Fleet) Commit(files map[string]string, message string) (string, error) {
	for path, content := range files {
		p := filepath.Join(f.Work, filepath.FromSlash(path))
		if content == "" {
			if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
				return "", err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	for _, args := range [][]string{{"add", "--all"}, {"commit", "--quiet", "-m", message}} {
		if _, err := f.Server.Git(f.Work, args...); err != nil {
			return "", err
		}
	}
	if err := f.Push(); err != nil {
		return "", err
	}
	return f.Server.Git(f.Work, "rev-parse", "HEAD")
}

// Push pushes the working clone's branch, first pulling what others (the
// Backstop revert) pushed.
func (f *Fleet) Push() error {
	remote, err := f.Server.Git(f.Work, "ls-remote", "--heads", "origin", FleetBranch)
	if err != nil {
		return err
	}
	if remote != "" { // the first push makes the branch
		if _, err := f.Server.Git(f.Work, "pull", "--quiet", "--rebase", "origin", FleetBranch); err != nil {
			return err
		}
	}
	_, err = f.Server.Git(f.Work, "push", "--quiet", "origin", FleetBranch)
	return err
}

// Head is the branch's head on the server.
func (f *Fleet) Head() (string, error) {
	return f.Server.Git(f.Server.Dir(FleetRepo), "rev-parse", FleetBranch)
}

// HeadAt is the branch's head on the server and when a push last moved
// it: the modification time of the branch's loose ref, which git rewrites
// on each push (to the kernel's file-time granularity, a few
// milliseconds). at is zero when the ref is packed, as after a git gc.
func (f *Fleet) HeadAt() (commit string, at time.Time, err error) {
	ref, err := os.Open(filepath.Join(f.Server.Dir(FleetRepo), "refs", "heads", FleetBranch))
	if err != nil {
		commit, err = f.Head()
		return commit, time.Time{}, err
	}
	defer ref.Close()
	// git replaces the file on a push: content and time both come from
	// the file opened here.
	b, err := io.ReadAll(ref)
	if err != nil {
		return "", time.Time{}, err
	}
	info, err := ref.Stat()
	if err != nil {
		return "", time.Time{}, err
	}
	return strings.TrimSpace(string(b)), info.ModTime(), nil
}

// The Flux objects of the stack.
const (
	FluxNamespace = "flux-system"
	// FleetSource is the GitRepository of the fleet repository.
	FleetSource = "fleet"
)

// gitops starts the git server with the fleet repository, Flux's
// kustomize-controller, and the stand-in for source-controller
// (test/fluxsource), and makes the GitRepository FluxNamespace/FleetSource
// with its credentials. Kustomizations are the caller's (Kustomization).
func (s *Stack) gitops(ctx context.Context) error {
	fleet, err := startFleet(s.Dir)
	if err != nil {
		return err
	}
	s.Fleet = fleet
	health, err := freePort()
	if err != nil {
		return err
	}
	p, err := proc.Start(s.Dir, "kustomize-controller", bin("kustomize-controller"), []string{
		"--metrics-addr=0",
		"--health-addr=" + net.JoinHostPort("127.0.0.1", strconv.Itoa(health)),
		"--events-addr=",
		"--watch-all-namespaces=true",
		"--concurrent=4",
		"--no-remote-bases=true",
	}, "KUBECONFIG="+s.Env.Kubeconfig, "RUNTIME_NAMESPACE="+FluxNamespace)
	if err != nil {
		return err
	}
	s.procs = append(s.procs, p)
	artifacts, err := freePort()
	if err != nil {
		return err
	}
	source := &fluxsource.Controller{Client: s.Env.Client, ArtifactDir: filepath.Join(s.Dir, "artifacts"),
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(artifacts)), Poll: time.Second, Log: s.opts.PodLog}
	sourceDone := make(chan error, 1)
	go func() { sourceDone <- source.Run(s.podsCtx) }()
	s.waits = append(s.waits, sourceDone)

	c := s.Env.Client
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: FluxNamespace}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: FluxNamespace, Name: FleetSource + "-auth"},
			Data: map[string][]byte{"username": []byte(GitUser), "password": []byte(fleet.Password)}},
	} {
		if err := c.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	repo := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
		"metadata": map[string]any{"namespace": FluxNamespace, "name": FleetSource},
		"spec": map[string]any{"url": fleet.Server.URL(FleetRepo), "interval": "1m",
			"ref": map[string]any{"branch": FleetBranch}, "secretRef": map[string]any{"name": FleetSource + "-auth"}},
	}}
	if err := c.Create(ctx, repo); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return proc.WaitFor(ctx, "kustomize-controller to be ready", time.Minute, p, func() error {
		return proc.HTTPOK(fmt.Sprintf("http://127.0.0.1:%d/readyz", health))
	})
}

// Kustomization makes a Flux Kustomization FluxNamespace/name applying
// path of the fleet repository into namespace, as a team's GitOps setup
// would.
func (s *Stack) Kustomization(ctx context.Context, name, path, namespace string) error {
	k := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
		"metadata": map[string]any{"namespace": FluxNamespace, "name": name},
		"spec": map[string]any{"interval": "1m", "path": path, "prune": true, "targetNamespace": namespace,
			"sourceRef": map[string]any{"kind": "GitRepository", "name": FleetSource}},
	}}
	return s.Env.Client.Create(ctx, k)
}

// AppliedRevision is the revision Flux last applied for the Kustomization
// name, such as "main@sha1:<sha>"; empty before the first.
func (s *Stack) AppliedRevision(ctx context.Context, name string) string {
	k := &unstructured.Unstructured{}
	k.SetAPIVersion("kustomize.toolkit.fluxcd.io/v1")
	k.SetKind("Kustomization")
	if err := s.Env.Client.Get(ctx, client.ObjectKey{Namespace: FluxNamespace, Name: name}, k); err != nil {
		return ""
	}
	rev, _, _ := unstructured.NestedString(k.Object, "status", "lastAppliedRevision")
	return rev
}
