package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RevertMode is how Backstop hands the revert to the source repository.
// +kubebuilder:validation:Enum=Push;Branch;Disabled
type RevertMode string

const (
	// RevertPush commits the revert onto the source branch, so the GitOps
	// tool applies it without a person.
	RevertPush RevertMode = "Push"
	// RevertBranch pushes the revert to a branch of its own
	// (backstop/revert/<namespace>-<name>-<revision>) for review.
	RevertBranch RevertMode = "Branch"
	// RevertDisabled rolls traffic back and leaves Git alone.
	RevertDisabled RevertMode = "Disabled"
)

// RevertSpec configures the Git revert that follows a rollback.
type RevertSpec struct {
	// Mode of the revert.
	// +optional
	// +kubebuilder:default=Push
	Mode RevertMode `json:"mode,omitempty"`

	// Source is the repository the target's manifests come from. Without it
	// Backstop discovers the source from the target's Flux Kustomization or
	// Argo CD Application.
	// +optional
	Source *GitSource `json:"source,omitempty"`

	// Author of the revert commit. Without it the manager's default author
	// is used.
	// +optional
	Author *GitAuthor `json:"author,omitempty"`

	// Signing signs the revert commit.
	// +optional
	Signing *SigningSpec `json:"signing,omitempty"`

	// InsecureSkipHostKeyVerification accepts any host key from an SSH
	// source whose credentials hold no known_hosts. Off by default: such a
	// source is refused (RevertFailed), because whoever answers in the
	// server's place could read the repository and take the push. A
	// known_hosts in the credentials is always checked.
	// +optional
	InsecureSkipHostKeyVerification bool `json:"insecureSkipHostKeyVerification,omitempty"`
}

// GitSource is a branch of a Git repository and the folder the manifests of
// the target live in.
type GitSource struct {
	// URL of the repository: https://, http://, ssh:// or scp-like
	// (git@host:org/repo.git).
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^((https?|ssh)://[^\s]+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+)$`
	URL string `json:"url"`

	// Branch the GitOps tool follows: a valid Git branch name (see
	// git check-ref-format), such as main or release/1.2.
	// +optional
	// +kubebuilder:default=main
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9._/-]*$`
	// +kubebuilder:validation:XValidation:rule="!self.contains('..') && !self.contains('//') && !self.contains('/.') && !self.endsWith('/') && !self.endsWith('.') && !self.split('/').exists(p, p.endsWith('.lock'))",message="branch is not a valid Git branch name"
	Branch string `json:"branch,omitempty"`

	// Path of the folder with the target's manifests, relative to the
	// repository root. Only commits touching it are reverted.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/') && !self.split('/').exists(p, p == '..')",message="path is relative to the repository root and must not contain '..'"
	Path string `json:"path,omitempty"`

	// SecretRef names a Secret in the Rollout's namespace with credentials.
	// For HTTPS: "username" and "password"; or "token" (sent as the
	// basic-auth password, with the username "git" unless "username" is
	// set); or "bearerToken" (sent as "Authorization: Bearer"). For SSH:
	// "identity" (a private key), "password" (its passphrase, when it is
	// encrypted) and "known_hosts" (see insecureSkipHostKeyVerification).
	// +optional
	SecretRef *LocalObjectReference `json:"secretRef,omitempty"`
}

// GitAuthor is the author of a commit.
type GitAuthor struct {
	// Name of the author.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Name string `json:"name"`

	// Email of the author.
	// +required
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[^\s<>]+@[^\s<>]+$`
	Email string `json:"email"`
}

// SigningSpec signs commits.
type SigningSpec struct {
	// Format of the signature.
	// +optional
	// +kubebuilder:default=OpenPGP
	// +kubebuilder:validation:Enum=OpenPGP;SSH
	Format string `json:"format,omitempty"`

	// SecretRef names a Secret in the Rollout's namespace with the key:
	// for OpenPGP "git.asc" (an armored private key), for SSH "identity"
	// (an OpenSSH or PEM private key: ed25519, ECDSA or RSA); and
	// "passphrase" when the key is encrypted.
	// +required
	SecretRef LocalObjectReference `json:"secretRef"`
}

// RevertedCommit is a commit a revert undoes.
type RevertedCommit struct {
	// Commit is the full SHA.
	// +required
	// +kubebuilder:validation:MaxLength=64
	Commit string `json:"commit"`

	// Reason says why the commit was taken: it changed the target's
	// folder between the stable and the failed source revisions, or (with
	// no revisions known) the line it added that shows the failed
	// version, such as `apps/app/deployment.yaml: "image: shop/app:v2"`.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Reason string `json:"reason,omitempty"`
}

// RevertState is how far the revert of a rollback has come.
// +kubebuilder:validation:Enum=Pending;Pushed;Conflict;Failed;Skipped
type RevertState string

const (
	// RevertPending: the revert is due and not yet pushed; it is retried.
	RevertPending RevertState = "Pending"
	// RevertPushed: the revert commit is on the remote.
	RevertPushed RevertState = "Pushed"
	// RevertConflict: a later commit conflicts; the attempt was pushed to a
	// side branch and a person must finish it.
	RevertConflict RevertState = "Conflict"
	// RevertFailed: the revert cannot be made (for example bad credentials);
	// the message says why.
	RevertFailed RevertState = "Failed"
	// RevertSkipped: nothing to revert, or the mode is Disabled.
	RevertSkipped RevertState = "Skipped"
)

// RevertStatus is the state of the Git revert of the last rollback.
type RevertStatus struct {
	// State of the revert.
	// +optional
	State RevertState `json:"state,omitempty"`

	// Release is the failed release the revert undoes, as
	// namespace/name@revision; the revert commit carries it in its
	// Backstop-Release trailer.
	// +optional
	Release string `json:"release,omitempty"`

	// Repository the revert goes to, without credentials.
	// +optional
	Repository string `json:"repository,omitempty"`

	// Branch the revert was pushed to.
	// +optional
	Branch string `json:"branch,omitempty"`

	// Reverted are the commits reverted, newest first, and why each was
	// taken; at most 64 are listed, the commit message names them all.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Reverted []RevertedCommit `json:"reverted,omitempty"`

	// Commit is the revert commit.
	// +optional
	Commit string `json:"commit,omitempty"`

	// ConflictingFiles lists the files a three-way merge could not resolve
	// (at most 64; the attempt's commit names them all).
	// +optional
	// +kubebuilder:validation:MaxItems=64
	ConflictingFiles []string `json:"conflictingFiles,omitempty"`

	// Message explains the state.
	// +optional
	Message string `json:"message,omitempty"`

	// Attempts counts the tries of the last run of the revert (each
	// clones or fetches, builds the revert and pushes it); a run gives up
	// after 5 and is run again later while the Rollout stays RolledBack.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`

	// LastAttemptTime is when the revert was last tried.
	// +optional
	LastAttemptTime *metav1.Time `json:"lastAttemptTime,omitempty"`
}
