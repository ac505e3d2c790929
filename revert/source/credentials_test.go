package source_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"backstop.dev/backstop/revert"
	"backstop.dev/backstop/revert/source"
	"backstop.dev/backstop/test/testenv"
)

// Every credential value in these tests contains secretMark, so a test can
// tell that no message shows one.
const secretMark = "s3cret"

// sshKeys returns a PEM private key and a known_hosts line for
// git.example.com.
func sshKeys(t *testing.T) (identity, knownHosts string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block)), "git.example.com " + string(ssh.MarshalAuthorizedKey(sshPub))
}

// secret is a Secret with string data; typ, when set, makes it one of
// Argo CD's repository Secrets.
func secret(name, typ string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string][]byte{}}
	if typ != "" {
		s.Labels = map[string]string{source.ArgoSecretTypeLabel: typ}
	}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

func knownHostsConfigMap(hosts string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: source.ArgoKnownHostsConfigMap},
		Data: map[string]string{source.ArgoKnownHostsKey: hosts}}
}

// createIn creates objs in namespace ns.
func createIn(t *testing.T, ns string, objs ...client.Object) {
	t.Helper()
	for _, obj := range objs {
		obj.SetNamespace(ns)
		if err := env.Client.Create(context.Background(), obj); err != nil {
			t.Fatal(err)
		}
	}
}

func argoSource(ns, url, project string) *source.Source {
	return &source.Source{Tool: source.ToolArgoCD, URL: url, ArgoCDNamespace: ns, ArgoCDProject: project, From: "Application " + ns + "/shop"}
}

// TestReadCredentials reads credentials as each GitOps tool keeps them, and
// checks that revert.Auth accepts what it returns.
func TestReadCredentials(t *testing.T) {
	identity, knownHosts := sshKeys(t)
	const (
		httpsURL = "https://git.example.com/org/shop.git"
		sshURL   = "ssh://git@git.example.com/org/shop"
	)
	userPass := func(user string) map[string]string {
		return map[string]string{"username": user, "password": secretMark + "-" + user}
	}
	withURL := func(url string, data map[string]string) map[string]string {
		out := maps.Clone(data)
		out["url"] = url
		return out
	}
	cases := []struct {
		name    string
		objects []client.Object
		// src is the source read, in the case's namespace.
		src func(ns string) *source.Source
		// want is the result; "{ns}" in From stands for the namespace.
		want     map[string]string
		insecure bool
		from     string
		wantErr  string
		// wantIs, when set, is an error the returned one must wrap.
		wantIs error
		// authErr, when set, is the error revert.Auth must return for
		// the result; otherwise it must accept it.
		authErr error
	}{{
		name:    "Flux secretRef with a bearer token",
		objects: []client.Object{secret("fleet-auth", "", map[string]string{"bearerToken": secretMark + "-bearer", "ca.crt": "cert"})},
		src: func(ns string) *source.Source {
			return &source.Source{Tool: source.ToolFlux, URL: httpsURL, SecretNamespace: ns, SecretName: "fleet-auth", From: "Kustomization " + ns + "/apps"}
		},
		want: map[string]string{"bearerToken": secretMark + "-bearer"},
		from: "Secret {ns}/fleet-auth",
	}, {
		name: "Flux secretRef over SSH",
		objects: []client.Object{secret("fleet-ssh", "", map[string]string{
			"identity": identity, "identity.pub": "ssh-ed25519 AAAA", "known_hosts": knownHosts})},
		src: func(ns string) *source.Source {
			return &source.Source{Tool: source.ToolFlux, URL: sshURL, SecretNamespace: ns, SecretName: "fleet-ssh", From: "Kustomization " + ns + "/apps"}
		},
		want: map[string]string{"identity": identity, "known_hosts": knownHosts},
		from: "Secret {ns}/fleet-ssh",
	}, {
		name:    "Flux secretRef with both a password and a bearer token",
		objects: []client.Object{secret("fleet-both", "", map[string]string{"username": "u", "password": secretMark + "-p", "bearerToken": secretMark + "-b"})},
		src: func(ns string) *source.Source {
			return &source.Source{Tool: source.ToolFlux, URL: httpsURL, SecretNamespace: ns, SecretName: "fleet-both", From: "Kustomization " + ns + "/apps"}
		},
		wantErr: `the Git credentials in Secret {ns}/fleet-both set both "password" and "bearerToken": keep one`,
	}, {
		name: "Flux secretRef with GitHub App credentials",
		objects: []client.Object{secret("fleet-app", "", map[string]string{
			"githubAppID": "1", "githubAppInstallationID": "2", "githubAppPrivateKey": secretMark + "-app-key"})},
		src: func(ns string) *source.Source {
			return &source.Source{Tool: source.ToolFlux, URL: httpsURL, SecretNamespace: ns, SecretName: "fleet-app", From: "Kustomization " + ns + "/apps"}
		},
		wantErr: `Secret {ns}/fleet-app holds GitHub App credentials ("githubAppPrivateKey"), which Backstop cannot push with`,
		wantIs:  source.ErrUnsupportedCredentials,
	}, {
		name:    "Rollout secretRef keeps only the keys revert.Auth reads",
		objects: []client.Object{secret("mine", "", map[string]string{"username": "bot", "password": secretMark + "-pw", "note": "x"})},
		src: func(ns string) *source.Source {
			return &source.Source{Tool: source.ToolRollout, URL: httpsURL, SecretNamespace: ns, SecretName: "mine", From: "Rollout " + ns + "/app"}
		},
		want: map[string]string{"username": "bot", "password": secretMark + "-pw"},
		from: "Secret {ns}/mine",
	}, {
		name: "Rollout secretRef naming a missing Secret",
		src: func(ns string) *source.Source {
			return &source.Source{Tool: source.ToolRollout, URL: httpsURL, SecretNamespace: ns, SecretName: "gone", From: "Rollout " + ns + "/app"}
		},
		wantErr: "Secret {ns}/gone, with the Git credentials of Rollout {ns}/app, was not found",
	}, {
		name: "a source naming no Secret has no credentials",
		src: func(ns string) *source.Source {
			return &source.Source{Tool: source.ToolFlux, URL: httpsURL, From: "Kustomization " + ns + "/apps"}
		},
	}, {
		name: "Argo CD repository with the same URL up to .git, a trailing slash and the host's case",
		objects: []client.Object{
			secret("repo-shop", source.ArgoSecretTypeRepository, withURL("https://Git.Example.COM/org/shop/", userPass("shop"))),
			secret("repo-shop-other", source.ArgoSecretTypeRepository, withURL("https://git.example.com/org/shop-other.git", userPass("other"))),
		},
		src:  func(ns string) *source.Source { return argoSource(ns, httpsURL, "default") },
		want: userPass("shop"),
		from: "Secret {ns}/repo-shop",
	}, {
		name: "Argo CD repository in scp-like SSH form matches an ssh:// URL, with known hosts from the ConfigMap",
		objects: []client.Object{
			secret("repo-ssh", source.ArgoSecretTypeRepository, map[string]string{"url": "git@git.example.com:org/shop.git", "sshPrivateKey": identity}),
			knownHostsConfigMap(knownHosts),
		},
		src:  func(ns string) *source.Source { return argoSource(ns, sshURL, "default") },
		want: map[string]string{"identity": identity, "known_hosts": knownHosts},
		from: "Secret {ns}/repo-ssh and ConfigMap {ns}/argocd-ssh-known-hosts-cm",
	}, {
		name: "Argo CD SSH repository without the known hosts ConfigMap",
		objects: []client.Object{
			secret("repo-ssh", source.ArgoSecretTypeRepository, map[string]string{"url": sshURL, "sshPrivateKey": identity}),
		},
		src:     func(ns string) *source.Source { return argoSource(ns, sshURL, "default") },
		want:    map[string]string{"identity": identity},
		from:    "Secret {ns}/repo-ssh",
		authErr: revert.ErrNoKnownHosts,
	}, {
		name: "Argo CD insecure repository skips the known hosts, with credentials from a template",
		objects: []client.Object{
			secret("repo-ssh", source.ArgoSecretTypeRepository, map[string]string{"url": sshURL, "insecure": "true"}),
			secret("creds-ssh", source.ArgoSecretTypeRepoCreds, map[string]string{"url": "git@git.example.com:org", "sshPrivateKey": identity}),
			knownHostsConfigMap("other.example.com ssh-ed25519 AAAA"),
		},
		src:      func(ns string) *source.Source { return argoSource(ns, sshURL, "default") },
		want:     map[string]string{"identity": identity},
		insecure: true,
		from:     "Secret {ns}/creds-ssh",
	}, {
		name: "Argo CD insecure on an HTTPS repository is not a host key setting",
		objects: []client.Object{
			secret("repo-shop", source.ArgoSecretTypeRepository, withURL(httpsURL, map[string]string{"password": secretMark + "-token", "insecure": "true"})),
		},
		src:  func(ns string) *source.Source { return argoSource(ns, httpsURL, "default") },
		want: map[string]string{"token": secretMark + "-token"},
		from: "Secret {ns}/repo-shop",
	}, {
		name: "Argo CD insecure that is not a boolean",
		objects: []client.Object{
			secret("repo-ssh", source.ArgoSecretTypeRepository, map[string]string{"url": sshURL, "sshPrivateKey": identity, "insecureIgnoreHostKey": "yes please"}),
		},
		src:     func(ns string) *source.Source { return argoSource(ns, sshURL, "default") },
		wantErr: `the "insecureIgnoreHostKey" of Secret {ns}/repo-ssh is not true or false`,
	}, {
		name: "Argo CD credential templates: the longest prefix wins",
		objects: []client.Object{
			secret("creds-host", source.ArgoSecretTypeRepoCreds, withURL("https://git.example.com", userPass("host"))),
			secret("creds-org", source.ArgoSecretTypeRepoCreds, withURL("https://GIT.example.com/org/", userPass("org"))),
			secret("creds-longer", source.ArgoSecretTypeRepoCreds, withURL("https://git.example.com/org/shop-other", userPass("longer"))),
			secret("repo-other", source.ArgoSecretTypeRepository, withURL("https://git.example.com/org/other.git", userPass("other"))),
		},
		src:  func(ns string) *source.Source { return argoSource(ns, httpsURL, "default") },
		want: userPass("org"),
		from: "Secret {ns}/creds-org",
	}, {
		name: "Argo CD repository with credentials beats the templates",
		objects: []client.Object{
			secret("creds-org", source.ArgoSecretTypeRepoCreds, withURL("https://git.example.com/org", userPass("org"))),
			secret("repo-shop", source.ArgoSecretTypeRepository, withURL(httpsURL, userPass("shop"))),
		},
		src:  func(ns string) *source.Source { return argoSource(ns, httpsURL, "default") },
		want: userPass("shop"),
		from: "Secret {ns}/repo-shop",
	}, {
		name: "Argo CD repository scoped to the Application's project beats an unscoped one",
		objects: []client.Object{
			secret("repo-a", source.ArgoSecretTypeRepository, withURL(httpsURL, map[string]string{"project": "team-a", "username": "a", "password": secretMark + "-a"})),
			secret("repo-b", source.ArgoSecretTypeRepository, withURL(httpsURL, map[string]string{"project": "team-b", "username": "b", "password": secretMark + "-b"})),
			secret("repo-any", source.ArgoSecretTypeRepository, withURL(httpsURL, userPass("any"))),
		},
		src:  func(ns string) *source.Source { return argoSource(ns, httpsURL, "team-a") },
		want: map[string]string{"username": "a", "password": secretMark + "-a"},
		from: "Secret {ns}/repo-a",
	}, {
		name: "Argo CD repository scoped to another project does not apply",
		objects: []client.Object{
			secret("repo-b", source.ArgoSecretTypeRepository, withURL(httpsURL, map[string]string{"project": "team-b", "username": "b", "password": secretMark + "-b"})),
			secret("repo-any", source.ArgoSecretTypeRepository, withURL(httpsURL, userPass("any"))),
		},
		src:  func(ns string) *source.Source { return argoSource(ns, httpsURL, "team-a") },
		want: userPass("any"),
		from: "Secret {ns}/repo-any",
	}, {
		name: "Argo CD write credentials come before read credentials",
		objects: []client.Object{
			secret("repo-shop", source.ArgoSecretTypeRepository, withURL(httpsURL, userPass("reader"))),
			secret("write-org", source.ArgoSecretTypeRepoWriteCreds, withURL("https://git.example.com/org", userPass("writer"))),
		},
		src:  func(ns string) *source.Source { return argoSource(ns, httpsURL, "default") },
		want: userPass("writer"),
		from: "Secret {ns}/write-org",
	}, {
		name: "Argo CD bearer token",
		objects: []client.Object{
			secret("repo-shop", source.ArgoSecretTypeRepository, withURL(httpsURL, map[string]string{"bearerToken": secretMark + "-bearer"})),
		},
		src:  func(ns string) *source.Source { return argoSource(ns, httpsURL, "default") },
		want: map[string]string{"bearerToken": secretMark + "-bearer"},
		from: "Secret {ns}/repo-shop",
	}, {
		name: "Argo CD GitHub App credentials are not supported",
		objects: []client.Object{
			secret("creds-app", source.ArgoSecretTypeRepoCreds, map[string]string{"url": "https://git.example.com/org",
				"githubAppID": "1", "githubAppInstallationID": "2", "githubAppPrivateKey": secretMark + "-app-key"}),
		},
		src:     func(ns string) *source.Source { return argoSource(ns, httpsURL, "default") },
		wantErr: `Secret {ns}/creds-app holds GitHub App credentials ("githubAppPrivateKey"), which Backstop cannot push with`,
		wantIs:  source.ErrUnsupportedCredentials,
	}, {
		name: "Argo CD with nothing for the repository: no credentials",
		objects: []client.Object{
			secret("repo-other", source.ArgoSecretTypeRepository, withURL("https://git.example.com/org/shop-other.git", userPass("other"))),
			secret("creds-elsewhere", source.ArgoSecretTypeRepoCreds, withURL("https://git.example.com/team", userPass("team"))),
			secret("unlabelled", "", withURL(httpsURL, userPass("unlabelled"))),
			secret("cluster", "cluster", withURL(httpsURL, userPass("cluster"))),
		},
		src: func(ns string) *source.Source { return argoSource(ns, httpsURL, "default") },
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t)
			createIn(t, ns, tc.objects...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			src := tc.src(ns)
			got, err := source.ReadCredentials(ctx, env.Client, src)
			expand := func(s string) string { return strings.ReplaceAll(s, "{ns}", ns) }
			if err != nil {
				assertNoValues(t, err.Error(), identity)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), expand(tc.wantErr)) {
					t.Fatalf("ReadCredentials: %v, %+v; want an error containing %q", err, got, expand(tc.wantErr))
				}
				if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
					t.Errorf("ReadCredentials: %v; want an error that is %v", err, tc.wantIs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			assertNoValues(t, got.From, identity)
			gotData := map[string]string{}
			for k, v := range got.Data {
				gotData[k] = string(v)
			}
			if !maps.Equal(gotData, tc.want) || got.Insecure != tc.insecure || got.From != expand(tc.from) {
				t.Errorf("ReadCredentials:\n got data %v, insecure %v, from %q\nwant data %v, insecure %v, from %q",
					gotData, got.Insecure, got.From, tc.want, tc.insecure, expand(tc.from))
			}
			_, err = revert.Auth(src.URL, got.Data, got.Insecure)
			switch {
			case tc.authErr == nil && err != nil:
				t.Errorf("revert.Auth refused the credentials: %v", err)
			case tc.authErr != nil && !errors.Is(err, tc.authErr):
				t.Errorf("revert.Auth: %v; want %v", err, tc.authErr)
			}
		})
	}
}

// assertNoValues fails the test when msg shows a credential.
func assertNoValues(t *testing.T, msg, identity string) {
	t.Helper()
	if strings.Contains(msg, secretMark) || strings.Contains(msg, "PRIVATE KEY") || strings.Contains(msg, identity) {
		t.Errorf("a credential shows in %q", msg)
	}
}

// TestReadCredentialsRBAC reads credentials as users with only some of the
// rights the manager is given: the rights it is given are enough, and a
// refusal is an error that names what was refused.
func TestReadCredentialsRBAC(t *testing.T) {
	identity, knownHosts := sshKeys(t)
	const sshURL = "git@git.example.com:org/shop.git"
	secretsRule := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list"}}
	configMapsRule := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}
	cases := []struct {
		name    string
		rules   []rbacv1.PolicyRule
		tool    string
		wantErr string
	}{{
		name:  "the manager's rights read Argo CD's credentials and known hosts",
		rules: []rbacv1.PolicyRule{secretsRule, configMapsRule},
		tool:  source.ToolArgoCD,
	}, {
		name:  "the manager's rights read a Flux Secret",
		rules: []rbacv1.PolicyRule{secretsRule, configMapsRule},
		tool:  source.ToolFlux,
	}, {
		name:    "no right to list Secrets",
		tool:    source.ToolArgoCD,
		wantErr: "listing Argo CD's repository Secrets in namespace {ns}: ",
	}, {
		name:    "no right to read the known hosts",
		rules:   []rbacv1.PolicyRule{secretsRule},
		tool:    source.ToolArgoCD,
		wantErr: "reading Argo CD's SSH known hosts in ConfigMap {ns}/argocd-ssh-known-hosts-cm: ",
	}, {
		name:    "no right to read a Flux Secret",
		tool:    source.ToolFlux,
		wantErr: "reading the Git credentials in Secret {ns}/fleet-ssh: ",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			ns := env.Namespace(t)
			createIn(t, ns,
				secret("repo-ssh", source.ArgoSecretTypeRepository, map[string]string{"url": sshURL, "sshPrivateKey": identity}),
				secret("fleet-ssh", "", map[string]string{"identity": identity, "known_hosts": knownHosts}),
				knownHostsConfigMap(knownHosts))
			user := "reader-" + ns
			if len(tc.rules) > 0 {
				createIn(t, ns,
					&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "reader"}, Rules: tc.rules},
					&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "reader"},
						RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "reader"},
						Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}}})
			}
			cfg := rest.CopyConfig(env.Config)
			cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
			c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
			if err != nil {
				t.Fatal(err)
			}
			src := argoSource(ns, sshURL, "default")
			if tc.tool == source.ToolFlux {
				src = &source.Source{Tool: source.ToolFlux, URL: sshURL, SecretNamespace: ns, SecretName: "fleet-ssh", From: "Kustomization " + ns + "/apps"}
			}
			wantErr := strings.ReplaceAll(tc.wantErr, "{ns}", ns)
			var got source.Credentials
			// The apiserver applies new RBAC rules within moments.
			testenv.Eventually(t, "ReadCredentials gives the expected result", func() bool {
				got, err = source.ReadCredentials(ctx, c, src)
				if wantErr == "" {
					return err == nil
				}
				return err != nil && strings.Contains(err.Error(), wantErr)
			})
			if wantErr != "" {
				if !apierrors.IsForbidden(err) {
					t.Errorf("ReadCredentials: %v; want a Forbidden error", err)
				}
				assertNoValues(t, err.Error(), identity)
				return
			}
			if string(got.Data["identity"]) != identity || string(got.Data["known_hosts"]) != knownHosts {
				t.Errorf("ReadCredentials: got keys %v from %q; want identity and known_hosts", slices.Sorted(maps.Keys(got.Data)), got.From)
			}
		})
	}
}
