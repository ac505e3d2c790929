package source

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"backstop.dev/backstop/revert"
)

// Credentials are the Git credentials of a source, as the Secret keys
// revert.Auth reads.
type Credentials struct {
	// Data holds only the keys revert.Auth reads: username, password,
	// token, identity and known_hosts. Empty when the source names no
	// credentials or none match it (a public repository).
	Data map[string][]byte
	// Insecure says the GitOps tool skips the SSH server's host key check
	// for this repository (Argo CD's "insecure" or "insecureIgnoreHostKey"
	// on an SSH URL). Argo CD's "insecure" on an HTTPS URL skips TLS
	// verification instead, which is not carried here.
	Insecure bool
	// From names where the credentials were read, for messages, such as
	// `Secret argocd/repo-123`; never their values.
	From string
}

// Argo CD's repository Secrets and SSH known hosts, in its namespace.
const (
	// ArgoSecretTypeLabel marks Argo CD's repository Secrets.
	ArgoSecretTypeLabel = "argocd.argoproj.io/secret-type"
	// ArgoSecretTypeRepository: the credentials of one repository, whose
	// "url" is the repository's URL.
	ArgoSecretTypeRepository = "repository"
	// ArgoSecretTypeRepoCreds: a credential template, whose "url" is a
	// prefix of the repositories it serves.
	ArgoSecretTypeRepoCreds = "repo-creds"
	// ArgoSecretTypeRepositoryWrite and ArgoSecretTypeRepoWriteCreds are
	// their counterparts for pushing (Argo CD's source hydrator).
	ArgoSecretTypeRepositoryWrite = "repository-write"
	ArgoSecretTypeRepoWriteCreds  = "repo-write-creds"
	// ArgoKnownHostsConfigMap holds, under ArgoKnownHostsKey, the SSH
	// known hosts Argo CD checks servers against.
	ArgoKnownHostsConfigMap = "argocd-ssh-known-hosts-cm"
	ArgoKnownHostsKey       = "ssh_known_hosts"
)

// ErrUnsupportedCredentials says the source's credentials are of a kind
// Backstop cannot push with, such as a GitHub App's.
var ErrUnsupportedCredentials = errors.New("unsupported Git credentials")

// Keys of the GitOps tools' Secrets beyond those revert.Auth reads.
const (
	keyBearerToken = "bearerToken" // Flux, and Argo CD 3 (HTTP bearer token)

	keyArgoURL                   = "url"
	keyArgoProject               = "project"
	keyArgoSSHPrivateKey         = "sshPrivateKey"
	keyArgoInsecure              = "insecure"
	keyArgoInsecureIgnoreHostKey = "insecureIgnoreHostKey"
)

type credentialKind struct{ key, what string }

// unsupportedKinds are the credentials the GitOps tools know and Backstop
// does not, in the order Argo CD tries them: each key, with what it is.
var unsupportedKinds = []credentialKind{
	{"githubAppPrivateKey", "GitHub App credentials"},
	{"gcpServiceAccountKey", "a Google Cloud service account key"},
	{"useAzureWorkloadIdentity", "Azure workload identity"},
	{"tlsClientCertData", "a TLS client certificate"},
}

// ReadCredentials reads the Git credentials of src.
//
// For a source from the Rollout or from Flux, they are the keys of the
// Secret src names ("bearerToken" as Flux reads it); a source that
// names no Secret has none. For a source from Argo CD they are found the way
// Argo CD finds them, in its namespace (src.ArgoCDNamespace, default
// "argocd"): the repository Secret whose "url" is src.URL (scoped to the
// Application's project, or to none), or, when it has no credentials, the
// credential template ("repo-creds") with the longest "url" prefix of
// src.URL. Write credentials ("repository-write", "repo-write-creds") come
// first, since Backstop pushes. For SSH, the known hosts come from Argo CD's
// ConfigMap argocd-ssh-known-hosts-cm. No match means no credentials; but a
// Secret the Rollout or Flux names must exist.
//
// It lists Secrets with a label selector, so reader should not be a cache
// that would watch every Secret in the cluster. Errors and From name
// Secrets, ConfigMaps and keys, never values.
func ReadCredentials(ctx context.Context, reader client.Reader, src *Source) (Credentials, error) {
	if src.Tool == ToolArgoCD {
		return argoCredentials(ctx, reader, src)
	}
	if src.SecretName == "" {
		return Credentials{}, nil
	}
	key := types.NamespacedName{Namespace: src.SecretNamespace, Name: src.SecretName}
	from := "Secret " + key.String()
	var secret corev1.Secret
	switch err := reader.Get(ctx, key, &secret); {
	case apierrors.IsNotFound(err):
		return Credentials{}, fmt.Errorf("%s, with the Git credentials of %s, was not found", from, src.From)
	case err != nil:
		return Credentials{}, fmt.Errorf("reading the Git credentials in %s: %w", from, err)
	}
	data, err := secretRefData(from, src.URL, secret.Data)
	if err != nil {
		return Credentials{}, err
	}
	return Credentials{Data: data, From: from}, nil
}

// secretRefData keeps the keys revert.Auth reads from a Secret in Backstop's
// or Flux's format; Flux's "bearerToken" is sent as a bearer token, as Flux
// sends it.
func secretRefData(from, repoURL string, data map[string][]byte) (map[string][]byte, error) {
	keys := []string{revert.SecretUsername, revert.SecretPassword, revert.SecretToken, revert.SecretIdentity, revert.SecretKnownHosts}
	if !revert.IsSSH(repoURL) {
		keys = append(keys, revert.SecretBearerToken)
	}
	out := pick(data, keys...)
	if len(out[revert.SecretBearerToken]) > 0 && len(out[revert.SecretPassword]) > 0 {
		return nil, bothSet(from, revert.SecretPassword, revert.SecretBearerToken)
	}
	if !hasAny(out, revert.SecretPassword, revert.SecretToken, revert.SecretBearerToken, revert.SecretIdentity) {
		if err := unsupported(from, data); err != nil {
			return nil, err
		}
	}
	return nilIfEmpty(out), nil
}

func argoCredentials(ctx context.Context, reader client.Reader, src *Source) (Credentials, error) {
	ns := cmp.Or(src.ArgoCDNamespace, "argocd")
	secrets, err := argoSecrets(ctx, reader, ns)
	if err != nil {
		return Credentials{}, err
	}
	// Backstop pushes: write credentials, where Argo CD has them, come
	// before those it reads with.
	for _, kinds := range [][2]string{
		{ArgoSecretTypeRepositoryWrite, ArgoSecretTypeRepoWriteCreds},
		{ArgoSecretTypeRepository, ArgoSecretTypeRepoCreds},
	} {
		repo := argoRepository(secrets[kinds[0]], src.URL, cmp.Or(src.ArgoCDProject, "default"))
		creds := repo
		if repo == nil || !argoHasCredentials(repo.Data) {
			// As Argo CD does, a repository Secret without credentials
			// takes them from the best template, and keeps its settings.
			creds = argoTemplate(secrets[kinds[1]], src.URL)
		}
		if creds == nil {
			continue
		}
		return argoRead(ctx, reader, src.URL, repo, creds)
	}
	return Credentials{}, nil
}

// argoSecrets lists Argo CD's repository Secrets in ns by type, sorted by
// name, in one request.
func argoSecrets(ctx context.Context, reader client.Reader, ns string) (map[string][]corev1.Secret, error) {
	req, err := labels.NewRequirement(ArgoSecretTypeLabel, selection.In, []string{
		ArgoSecretTypeRepository, ArgoSecretTypeRepoCreds, ArgoSecretTypeRepositoryWrite, ArgoSecretTypeRepoWriteCreds,
	})
	if err != nil {
		return nil, err
	}
	var list corev1.SecretList
	if err := reader.List(ctx, &list, client.InNamespace(ns), client.MatchingLabelsSelector{Selector: labels.NewSelector().Add(*req)}); err != nil {
		return nil, fmt.Errorf("listing Argo CD's repository Secrets in namespace %s: %w", ns, err)
	}
	slices.SortFunc(list.Items, func(a, b corev1.Secret) int { return strings.Compare(a.Name, b.Name) })
	byType := map[string][]corev1.Secret{}
	for _, s := range list.Items {
		if s.DeletionTimestamp == nil {
			byType[s.Labels[ArgoSecretTypeLabel]] = append(byType[s.Labels[ArgoSecretTypeLabel]], s)
		}
	}
	return byType, nil
}

// argoRepository finds the repository Secret of repoURL as Argo CD does: one
// scoped to the Application's project, else one scoped to no project.
func argoRepository(secrets []corev1.Secret, repoURL, project string) *corev1.Secret {
	var unscoped *corev1.Secret
	for i := range secrets {
		s := &secrets[i]
		if !argoSameURL(string(s.Data[keyArgoURL]), repoURL) {
			continue
		}
		switch scope := string(s.Data[keyArgoProject]); {
		case scope == project:
			return s
		case scope == "" && unscoped == nil:
			unscoped = s
		}
	}
	return unscoped
}

// argoTemplate finds the credential template of repoURL as Argo CD does:
// the one whose normalized "url" is the longest prefix of the normalized
// repoURL; the first by name among equals.
func argoTemplate(secrets []corev1.Secret, repoURL string) *corev1.Secret {
	var best *corev1.Secret
	longest := 0
	repo := argoNormalize(repoURL)
	for i := range secrets {
		prefix := argoNormalize(string(secrets[i].Data[keyArgoURL]))
		if prefix != "" && strings.HasPrefix(repo, prefix) && len(prefix) > longest {
			best, longest = &secrets[i], len(prefix)
		}
	}
	return best
}

// argoHasCredentials says whether an Argo CD repository Secret holds
// credentials of its own, as Argo CD decides it.
func argoHasCredentials(data map[string][]byte) bool {
	if hasAny(data, revert.SecretUsername, revert.SecretPassword, keyArgoSSHPrivateKey, keyBearerToken) {
		return true
	}
	return slices.ContainsFunc(unsupportedKinds, func(kind credentialKind) bool { return present(data, kind.key) })
}

// argoRead turns the Argo CD Secret creds into Credentials for repoURL, with
// the settings of the repository Secret repo (nil when there is none) and,
// for SSH, Argo CD's known hosts.
func argoRead(ctx context.Context, reader client.Reader, repoURL string, repo, creds *corev1.Secret) (Credentials, error) {
	from := "Secret " + creds.Namespace + "/" + creds.Name
	c := Credentials{From: from}
	ssh := revert.IsSSH(repoURL)
	if repo != nil && ssh {
		for _, key := range []string{keyArgoInsecure, keyArgoInsecureIgnoreHostKey} {
			v := strings.TrimSpace(string(repo.Data[key]))
			if v == "" {
				continue
			}
			on, err := strconv.ParseBool(v)
			if err != nil {
				return Credentials{}, fmt.Errorf("the %q of Secret %s/%s is not true or false", key, repo.Namespace, repo.Name)
			}
			c.Insecure = c.Insecure || on
		}
	}
	data := creds.Data
	c.Data = map[string][]byte{}
	switch pass, bearer := data[revert.SecretPassword], data[keyBearerToken]; {
	case ssh && len(data[keyArgoSSHPrivateKey]) > 0:
		c.Data[revert.SecretIdentity] = data[keyArgoSSHPrivateKey]
	case !ssh && len(pass) > 0 && len(bearer) > 0:
		return Credentials{}, bothSet(from, revert.SecretPassword, keyBearerToken)
	case !ssh && len(pass) > 0 && len(data[revert.SecretUsername]) > 0:
		c.Data[revert.SecretUsername], c.Data[revert.SecretPassword] = data[revert.SecretUsername], pass
	case !ssh && len(pass) > 0:
		// Argo CD sends a password without a user name as is: a token.
		c.Data[revert.SecretToken] = pass
	case !ssh && len(bearer) > 0:
		c.Data[revert.SecretBearerToken] = bearer
	default:
		if err := unsupported(from, data); err != nil {
			return Credentials{}, err
		}
	}
	if ssh && len(c.Data) > 0 && !c.Insecure {
		hosts, err := argoKnownHosts(ctx, reader, creds.Namespace)
		if err != nil {
			return Credentials{}, err
		}
		if len(hosts) > 0 {
			c.Data[revert.SecretKnownHosts] = hosts
			c.From += " and ConfigMap " + creds.Namespace + "/" + ArgoKnownHostsConfigMap
		}
	}
	c.Data = nilIfEmpty(c.Data)
	return c, nil
}

// argoKnownHosts reads Argo CD's SSH known hosts in ns; none when the
// ConfigMap is missing.
func argoKnownHosts(ctx context.Context, reader client.Reader, ns string) ([]byte, error) {
	var cm corev1.ConfigMap
	switch err := reader.Get(ctx, types.NamespacedName{Namespace: ns, Name: ArgoKnownHostsConfigMap}, &cm); {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading Argo CD's SSH known hosts in ConfigMap %s/%s: %w", ns, ArgoKnownHostsConfigMap, err)
	}
	return []byte(cm.Data[ArgoKnownHostsKey]), nil
}

// unsupported returns an ErrUnsupportedCredentials error when data, read
// from the Secret from, holds credentials Backstop cannot use.
func unsupported(from string, data map[string][]byte) error {
	for _, kind := range unsupportedKinds {
		if present(data, kind.key) {
			return fmt.Errorf("%w: %s holds %s (%q), which Backstop cannot push with; "+
				"name a Secret with a token or an SSH key that may push in spec.revert.source.secretRef",
				ErrUnsupportedCredentials, from, kind.what, kind.key)
		}
	}
	return nil
}

func bothSet(from, a, b string) error {
	return fmt.Errorf("the Git credentials in %s set both %q and %q: keep one", from, a, b)
}

// present says whether a Secret key is set: non-empty, and not "false" for
// Argo CD's boolean useAzureWorkloadIdentity.
func present(data map[string][]byte, key string) bool {
	v := strings.TrimSpace(string(data[key]))
	if key == "useAzureWorkloadIdentity" {
		on, _ := strconv.ParseBool(v)
		return on
	}
	return v != ""
}

func hasAny(data map[string][]byte, keys ...string) bool {
	for _, k := range keys {
		if len(data[k]) > 0 {
			return true
		}
	}
	return false
}

func pick(data map[string][]byte, keys ...string) map[string][]byte {
	out := map[string][]byte{}
	for _, k := range keys {
		if len(data[k]) > 0 {
			out[k] = data[k]
		}
	}
	return out
}

func nilIfEmpty(m map[string][]byte) map[string][]byte {
	if len(m) == 0 {
		return nil
	}
	return m
}

// argoSSHURL is how Argo CD recognizes SSH URLs: user@host..., with or
// without ssh://.
var argoSSHURL = regexp.MustCompile(`^(ssh://)?([^/:]*?)@[^@]+$`)

// argoNormalize normalizes a repository URL as Argo CD does to compare
// them: lower case, without a trailing .git, with scp-like SSH URLs
// (git@host:org/repo) written as git@host/org/repo. It returns "" for a URL
// that does not parse.
func argoNormalize(u string) string {
	u = strings.ToLower(strings.TrimSpace(u))
	if argoSSHURL.MatchString(u) && !strings.HasPrefix(u, "ssh://") {
		u = "ssh://" + strings.Replace(u, ":", "/", 1)
	}
	parsed, err := url.Parse(strings.TrimSuffix(u, ".git"))
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(parsed.String(), "ssh://")
}

// argoSameURL says whether two URLs name the same repository for Argo CD,
// a trailing slash aside.
func argoSameURL(a, b string) bool {
	norm := func(u string) string {
		return strings.TrimSuffix(argoNormalize(strings.TrimSuffix(strings.TrimSpace(u), "/")), "/")
	}
	na := norm(a)
	return na != "" && na == norm(b)
}
