package fluxsource

import (
	"context"
	"fmt"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"
)

// remoteHead returns the commit hash the branch of the repository at url
// points to, asking the server for its refs (git ls-remote).
func remoteHead(ctx context.Context, url, branch string, auth transport.AuthMethod) (string, error) {
	remote := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: git.DefaultRemoteName, URLs: []string{url}})
	refs, err := remote.ListContext(ctx, &git.ListOptions{Auth: auth})
	if err != nil {
		return "", fmt.Errorf("failed to checkout and determine revision: unable to list remote for '%s': %w", url, err)
	}
	name := plumbing.NewBranchReferenceName(branch)
	for _, r := range refs {
		if r.Name() == name {
			return r.Hash().String(), nil
		}
	}
	return "", fmt.Errorf("failed to checkout and determine revision: couldn't find remote ref %q", name.String())
}

// fetchCommit clones the branch's head, one commit deep, into memory and
// returns its commit.
func fetchCommit(ctx context.Context, url, branch string, auth transport.AuthMethod) (*object.Commit, error) {
	name := plumbing.NewBranchReferenceName(branch)
	repo, err := git.CloneContext(ctx, memory.NewStorage(), nil, &git.CloneOptions{
		URL:           url,
		Auth:          auth,
		ReferenceName: name,
		SingleBranch:  true,
		Depth:         1,
		NoCheckout:    true,
		Tags:          git.NoTags,
	})
	if err != nil {
		return nil, fmt.Errorf("failed to checkout and determine revision: unable to clone '%s': %w", url, err)
	}
	ref, err := repo.Reference(name, true)
	if err != nil {
		return nil, fmt.Errorf("failed to checkout and determine revision: %w", err)
	}
	return repo.CommitObject(ref.Hash())
}
