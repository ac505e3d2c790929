// Package fluxsource is a small stand-in for the GitRepository reconciler of
// Flux source-controller v1.9.6, for the end-to-end stack, where
// source-controller cannot be built (github.com/fluxcd/pkg/artifact is not
// on the module proxy). With it the real kustomize-controller applies what
// is in Git, including the reverts Backstop pushes.
//
// Every Poll the Controller lists the GitRepository objects
// (source.toolkit.fluxcd.io/v1) of all namespaces, resolves the head of each
// one's branch with go-git, and when it differs from status.artifact archives
// the commit's tree as source-controller does (a tar.gz of the files, minus
// the default ignore patterns, with the owners, times and modes of the
// headers normalised) into
//
//	<ArtifactDir>/gitrepository/<namespace>/<name>/<commit>.tar.gz
//
// served at http://<Addr>/gitrepository/<namespace>/<name>/<commit>.tar.gz.
// It then writes the status source-controller writes: status.artifact with
// path, url, revision ("<branch>@sha1:<commit>"), digest
// ("sha256:<hex>" of the tarball), lastUpdateTime and size; the conditions
// ArtifactInStorage and Ready, True with reason Succeeded and the message
// "stored artifact for revision '<revision>'"; and observedGeneration. A
// failure sets FetchFailed (or StorageOperationFailed) to True and Ready to
// False with the same reason and message, and keeps the last artifact, as
// source-controller does. Messages never hold credentials.
//
// What it supports of the spec: url (http, https), ref.branch (default
// "master", as Flux), secretRef (a Secret of the same namespace with
// username and password, for basic auth), ignore, timeout and suspend. Any
// other ref (tag, semver, name, commit), include, verify,
// recurseSubmodules, sparseCheckout, proxySecretRef and provider make the
// object not Ready with reason UnsupportedSpec rather than being ignored.
// spec.interval is not honoured: every object is checked every Poll.
// .sourceignore files in the repository are not read.
package fluxsource

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// GroupVersionKind of the objects the Controller reconciles.
var GroupVersionKind = schema.GroupVersionKind{Group: "source.toolkit.fluxcd.io", Version: "v1", Kind: "GitRepository"}

const (
	// defaultPoll is how often the objects are checked when Poll is 0.
	defaultPoll = time.Second
	// defaultTimeout bounds the Git operations of one object when
	// spec.timeout is unset, as in Flux.
	defaultTimeout = 60 * time.Second
	// kindDir is the folder of ArtifactDir for GitRepository artifacts.
	kindDir = "gitrepository"
	// shutdownGrace is how long the artifact server has to finish the
	// requests in flight when Run returns.
	shutdownGrace = 5 * time.Second
)

// Controller reconciles GitRepository objects and serves their artifacts.
type Controller struct {
	// Client reads GitRepository objects (as unstructured.Unstructured) and
	// Secrets and writes the status of GitRepository objects.
	Client client.Client
	// ArtifactDir is where the artifacts are stored and served from.
	ArtifactDir string
	// Addr is the host:port the artifacts are served on, such as
	// 127.0.0.1:9090; with port 0 a free port is taken, and the artifact
	// URLs name it.
	Addr string
	// Poll is how often the objects are checked; 1s when 0.
	Poll time.Duration
	// Log receives what the Controller did.
	Log logr.Logger
}

// Run serves the artifacts and reconciles the objects until ctx ends. It
// returns an error only when it cannot start: a reconcile that fails is
// reported in the object's status and logged.
func (c *Controller) Run(ctx context.Context) error {
	if c.Client == nil || c.ArtifactDir == "" || c.Addr == "" {
		return errors.New("fluxsource: Client, ArtifactDir and Addr are required")
	}
	if err := os.MkdirAll(filepath.Join(c.ArtifactDir, kindDir), 0o755); err != nil {
		return fmt.Errorf("fluxsource: creating the artifact folder: %w", err)
	}
	l, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("fluxsource: serving artifacts: %w", err)
	}
	host := l.Addr().String()
	srv := &http.Server{
		Handler:           http.FileServer(http.Dir(c.ArtifactDir)),
		ReadHeaderTimeout: 10 * time.Second,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	c.Log.Info("Started serving artifacts", "addr", host, "dir", c.ArtifactDir)

	poll := c.Poll
	if poll <= 0 {
		poll = defaultPoll
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		c.reconcileAll(ctx, host)
		select {
		case <-ctx.Done():
			shutdown, cancel := context.WithTimeout(context.Background(), shutdownGrace)
			defer cancel()
			_ = srv.Shutdown(shutdown)
			return nil
		case err := <-served:
			return fmt.Errorf("fluxsource: serving artifacts: %w", err)
		case <-tick.C:
		}
	}
}

// reconcileAll reconciles every GitRepository once and removes the
// artifacts of those that are gone.
func (c *Controller) reconcileAll(ctx context.Context, host string) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(GroupVersionKind.GroupVersion().WithKind(GroupVersionKind.Kind + "List"))
	if err := c.Client.List(ctx, list); err != nil {
		if ctx.Err() == nil {
			c.Log.Error(err, "Failed to list GitRepositories")
		}
		return
	}
	live := map[string]bool{}
	for i := range list.Items {
		obj := &list.Items[i]
		live[filepath.Join(obj.GetNamespace(), obj.GetName())] = true
		if ctx.Err() != nil {
			return
		}
		c.reconcile(ctx, host, obj)
	}
	c.collectGarbage(live)
}

// reconcile brings one GitRepository's artifact and status up to date.
func (c *Controller) reconcile(ctx context.Context, host string, obj *unstructured.Unstructured) {
	log := c.Log.WithValues("gitrepository", client.ObjectKeyFromObject(obj).String())
	old, err := readStatus(obj)
	if err != nil {
		log.Error(err, "Failed to read the status; writing it anew")
		old = gitRepositoryStatus{}
	}
	spec, err := parseSpec(obj)
	if err != nil {
		c.writeStatus(ctx, log, obj, failed(obj, old, conditionFetchFailed, reasonUnsupportedSpec, err.Error()))
		return
	}
	if spec.Suspend {
		return
	}
	art, err := c.artifact(ctx, log, obj, spec, old, host)
	if err != nil {
		var se *storageError
		var sec *secretError
		switch {
		case errors.As(err, &se):
			c.writeStatus(ctx, log, obj, failed(obj, old, conditionStorageOperationFailed, se.reason, se.Error()))
		case errors.As(err, &sec):
			c.writeStatus(ctx, log, obj, failed(obj, old, conditionFetchFailed, reasonAuthenticationFailed, err.Error()))
		default:
			c.writeStatus(ctx, log, obj, failed(obj, old, conditionFetchFailed, reasonGitOperationFailed, redact(err.Error(), spec.URL)))
		}
		return
	}
	c.writeStatus(ctx, log, obj, succeeded(obj, old, art, spec))
}

// artifact returns the artifact of the branch's head, stored anew when the
// last one is of another commit or is missing from ArtifactDir.
func (c *Controller) artifact(ctx context.Context, log logr.Logger, obj *unstructured.Unstructured, spec gitRepositorySpec, old gitRepositoryStatus, host string) (artifact, error) {
	ctx, cancel := context.WithTimeout(ctx, spec.Timeout)
	defer cancel()
	auth, err := c.auth(ctx, obj.GetNamespace(), spec)
	if err != nil {
		return artifact{}, err
	}
	head, err := remoteHead(ctx, spec.URL, spec.Branch, auth)
	if err != nil {
		return artifact{}, err
	}
	last := old.Artifact
	if last != nil && last.Revision == revisionOf(spec.Branch, head) && c.stored(*last) && equal(old.ObservedIgnore, spec.Ignore) {
		up := *last
		up.URL = artifactURL(host, up.Path) // as source-controller does when its address changed
		return up, nil
	}
	art, err := c.store(ctx, obj, spec, auth, host, last)
	if err != nil {
		return artifact{}, err
	}
	log.Info("Stored artifact", "revision", art.Revision, "digest", art.Digest, "url", art.URL)
	return art, nil
}

// writeStatus replaces the status of obj with st when it differs. A
// conflict is left to the next poll.
func (c *Controller) writeStatus(ctx context.Context, log logr.Logger, obj *unstructured.Unstructured, st gitRepositoryStatus) {
	changed, err := setStatus(obj, st)
	if err != nil {
		log.Error(err, "Failed to encode the status")
		return
	}
	if !changed {
		return
	}
	if ready := readyCondition(st); ready != nil && ready.Status != metav1.ConditionTrue {
		log.Info("Failed to reconcile", "reason", ready.Reason, "message", ready.Message)
	}
	if err := c.Client.Status().Update(ctx, obj); err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) {
		log.Error(err, "Failed to update the status")
	}
}
