package fluxsource

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Header modes of the archive, as source-controller's
// (github.com/fluxcd/pkg/artifact/storage).
const (
	dirMode  = 0o750
	fileMode = 0o600
	exeMode  = 0o700
)

// Ignore patterns of github.com/fluxcd/pkg/sourceignore: the VCS ones
// always, the default ones unless spec.ignore replaces them.
const (
	excludeVCS     = ".git/,.gitignore,.gitmodules,.gitattributes"
	excludeDefault = "*.jpg,*.jpeg,*.gif,*.png,*.wmv,*.flv,*.tar.gz,*.zip," +
		".github/,.circleci/,.travis.yml,.gitlab-ci.yml,appveyor.yml,.drone.yml,cloudbuild.yaml,codeship-services.yml,codeship-steps.yml," +
		"**/.goreleaser.yml,**/.sops.yaml,**/.flux.yaml"
)

// storageError is a failure to write the artifact, rather than to read Git.
type storageError struct {
	reason string
	err    error
}

func (e *storageError) Error() string { return e.err.Error() }
func (e *storageError) Unwrap() error { return e.err }

// artifactURL is the URL of the artifact at rel (slash-separated, relative
// to ArtifactDir) on host.
func artifactURL(host, rel string) string {
	return "http://" + host + "/" + strings.TrimLeft(rel, "/")
}

// stored reports whether the artifact's file is in ArtifactDir.
func (c *Controller) stored(a artifact) bool {
	fi, err := os.Lstat(filepath.Join(c.ArtifactDir, filepath.FromSlash(a.Path)))
	return err == nil && fi.Mode().IsRegular()
}

// store fetches the branch's head, archives its tree into ArtifactDir and
// returns the artifact, removing the older artifacts of obj but last.
func (c *Controller) store(ctx context.Context, obj *unstructured.Unstructured, spec gitRepositorySpec, auth transport.AuthMethod, host string, last *artifact) (artifact, error) {
	commit, err := fetchCommit(ctx, spec.URL, spec.Branch, auth)
	if err != nil {
		return artifact{}, err
	}
	hash := commit.Hash.String()
	rel := path.Join(kindDir, obj.GetNamespace(), obj.GetName(), hash+".tar.gz")
	dir := filepath.Join(c.ArtifactDir, filepath.FromSlash(path.Dir(rel)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return artifact{}, &storageError{"DirectoryCreationFailed", fmt.Errorf("failed to create artifact directory: %w", err)}
	}
	digest, size, err := writeArchive(commit, ignoreMatcher(spec.Ignore), filepath.Join(c.ArtifactDir, filepath.FromSlash(rel)))
	if err != nil {
		return artifact{}, &storageError{reasonArchiveFailed, fmt.Errorf("unable to archive artifact to storage: %w", err)}
	}
	keep := map[string]bool{path.Base(rel): true}
	if last != nil && path.Dir(last.Path) == path.Dir(rel) {
		keep[path.Base(last.Path)] = true
	}
	removeAllBut(dir, keep)
	return artifact{
		Path:           rel,
		URL:            artifactURL(host, rel),
		Revision:       revisionOf(spec.Branch, hash),
		Digest:         digest,
		LastUpdateTime: metav1.Now(),
		Size:           &size,
	}, nil
}

// ignoreMatcher matches the paths left out of the archive.
func ignoreMatcher(ignore *string) gitignore.Matcher {
	var ps []gitignore.Pattern
	for _, p := range strings.Split(excludeVCS, ",") {
		ps = append(ps, gitignore.ParsePattern(p, nil))
	}
	if ignore == nil {
		for _, p := range strings.Split(excludeDefault, ",") {
			ps = append(ps, gitignore.ParsePattern(p, nil))
		}
	} else {
		for _, line := range strings.Split(*ignore, "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				ps = append(ps, gitignore.ParsePattern(line, nil))
			}
		}
	}
	return gitignore.NewMatcher(ps)
}

// writeArchive writes the tree of commit as a tar.gz to file, atomically,
// and returns its digest ("sha256:<hex>") and size. Directories and regular
// and executable files are archived; symlinks and submodules are not, as
// in source-controller.
func writeArchive(commit *object.Commit, ignore gitignore.Matcher, file string) (digest string, size int64, err error) {
	tree, err := commit.Tree()
	if err != nil {
		return "", 0, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".tmp-*.tar.gz")
	if err != nil {
		return "", 0, err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	counter := &countWriter{}
	gz := gzip.NewWriter(io.MultiWriter(tmp, h, counter))
	tw := tar.NewWriter(gz)
	walker := object.NewTreeWalker(tree, true, nil)
	defer walker.Close()
	for {
		name, entry, err := walker.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", 0, err
		}
		isDir := entry.Mode == filemode.Dir
		if ignore.Match(strings.Split(name, "/"), isDir) {
			continue
		}
		if err := writeEntry(tw, tree, name, entry, isDir); err != nil {
			return "", 0, fmt.Errorf("%s: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return "", 0, err
	}
	if err := gz.Close(); err != nil {
		return "", 0, err
	}
	if err := tmp.Close(); err != nil {
		return "", 0, err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", 0, err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return "", 0, err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), counter.n, nil
}

// writeEntry writes one tree entry to tw.
func writeEntry(tw *tar.Writer, tree *object.Tree, name string, entry object.TreeEntry, isDir bool) error {
	if isDir {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: dirMode})
	}
	mode := int64(fileMode)
	switch entry.Mode {
	case filemode.Regular, filemode.Deprecated:
	case filemode.Executable:
		mode = exeMode
	default: // symlinks, submodules
		return nil
	}
	f, err := tree.TreeEntryFile(&entry)
	if err != nil {
		return err
	}
	r, err := f.Reader()
	if err != nil {
		return err
	}
	defer r.Close()
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: f.Size}); err != nil {
		return err
	}
	_, err = io.Copy(tw, r)
	return err
}

// countWriter counts the bytes written.
type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

// removeAllBut removes the files of dir not named in keep.
func removeAllBut(dir string, keep map[string]bool) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !keep[e.Name()] {
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// collectGarbage removes the artifacts of GitRepository objects that are
// gone; live holds "<namespace>/<name>" of those that are not.
func (c *Controller) collectGarbage(live map[string]bool) {
	root := filepath.Join(c.ArtifactDir, kindDir)
	namespaces, _ := os.ReadDir(root)
	for _, ns := range namespaces {
		names, _ := os.ReadDir(filepath.Join(root, ns.Name()))
		for _, n := range names {
			if !live[filepath.Join(ns.Name(), n.Name())] {
				_ = os.RemoveAll(filepath.Join(root, ns.Name(), n.Name()))
				c.Log.Info("Removed the artifacts of a deleted GitRepository", "gitrepository", ns.Name()+"/"+n.Name())
			}
		}
	}
}
