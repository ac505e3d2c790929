package revert

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// Defaults of a Cache.
const (
	// DefaultCacheBytes bounds the disk a Cache uses when MaxBytes is 0.
	DefaultCacheBytes = 2 << 30
	// objectCacheBytes bounds the decoded objects kept in memory per open
	// clone.
	objectCacheBytes = 32 * cache.MiByte
)

// Cache keeps one bare, single-branch clone per repository on disk between
// reverts, so a second revert in the same repository fetches only what is
// new. A revert holds its repository's clone alone; reverts in different
// repositories run side by side.
//
// Clones are full-depth: a revert walks the history between the stable and
// the failed source revisions, and looks for its own earlier commit in the
// last historyLimit commits, which a shallow clone cannot promise to hold.
// The disk used is bounded by MaxBytes: after each revert, the clones used
// least recently are removed until the rest fit, and a clone that alone
// exceeds the bound is removed once its revert is done. A clone that fails
// in a way the network and the credentials do not explain is removed and
// made again once.
//
// Dir belongs to one process: two managers must not share it.
type Cache struct {
	// Dir holds the clones, one folder per repository URL.
	Dir string
	// MaxBytes bounds the disk used by the clones; DefaultCacheBytes if 0.
	MaxBytes int64

	mu    sync.Mutex
	repos map[string]*clone
}

// clone is one cached repository.
type clone struct {
	mu       sync.Mutex // held by the revert using it
	dir      string
	lastUsed time.Time
	size     int64
	busy     bool
}

// open returns the repository for url with its remote origin set to url,
// and the function that must be called when the revert is done. Without a
// Cache the clone is made in a temporary directory, removed by done.
func (c *Cache) open(url string) (*git.Repository, func(), error) {
	if c == nil {
		dir, err := os.MkdirTemp("", "backstop-revert-")
		if err != nil {
			return nil, nil, err
		}
		repo, err := openClone(dir, url)
		if err != nil {
			os.RemoveAll(dir)
			return nil, nil, err
		}
		return repo, func() { os.RemoveAll(dir) }, nil
	}
	cl := c.take(url)
	repo, err := openClone(cl.dir, url)
	if err != nil {
		// A clone left broken, by a crash say: start again.
		if rmErr := os.RemoveAll(cl.dir); rmErr != nil {
			c.give(cl)
			return nil, nil, fmt.Errorf("removing the broken clone: %w", rmErr)
		}
		if repo, err = openClone(cl.dir, url); err != nil {
			c.give(cl)
			return nil, nil, err
		}
	}
	return repo, func() { c.give(cl) }, nil
}

// reset removes the clone of url and makes an empty one, for a revert that
// found its clone unusable. It must be called between open and done.
func (c *Cache) reset(url string) (*git.Repository, error) {
	dir := c.dirFor(url)
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	return openClone(dir, url)
}

// dirFor is the folder of url's clone: a hash of the URL without
// credentials, so no credential is ever part of a path.
func (c *Cache) dirFor(url string) string {
	if c == nil {
		return ""
	}
	sum := sha256.Sum256([]byte(Scrub(url)))
	return filepath.Join(c.Dir, hex.EncodeToString(sum[:12]))
}

// take waits for url's clone and marks it busy.
func (c *Cache) take(url string) *clone {
	c.mu.Lock()
	if c.repos == nil {
		c.repos = map[string]*clone{}
	}
	dir := c.dirFor(url)
	cl := c.repos[dir]
	if cl == nil {
		cl = &clone{dir: dir}
		c.repos[dir] = cl
	}
	cl.busy = true
	c.mu.Unlock()
	cl.mu.Lock()
	return cl
}

// give hands the clone back, measures it and evicts clones beyond the bound.
func (c *Cache) give(cl *clone) {
	size := dirSize(cl.dir)
	c.mu.Lock()
	defer c.mu.Unlock()
	cl.size, cl.lastUsed, cl.busy = size, time.Now(), false
	cl.mu.Unlock()
	c.evict()
}

// evict removes idle clones, least recently used first, until the rest fit
// in MaxBytes. c.mu is held.
func (c *Cache) evict() {
	limit := c.MaxBytes
	if limit <= 0 {
		limit = DefaultCacheBytes
	}
	var total int64
	var idle []*clone
	for _, cl := range c.repos {
		total += cl.size
		if !cl.busy {
			idle = append(idle, cl)
		}
	}
	sort.Slice(idle, func(i, j int) bool { return idle[i].lastUsed.Before(idle[j].lastUsed) })
	for _, cl := range idle {
		if total <= limit {
			return
		}
		if !cl.mu.TryLock() {
			continue
		}
		if os.RemoveAll(cl.dir) == nil {
			total -= cl.size
			delete(c.repos, cl.dir)
		}
		cl.mu.Unlock()
	}
}

// Size is the disk the cached clones use, as last measured.
func (c *Cache) Size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var total int64
	for _, cl := range c.repos {
		total += cl.size
	}
	return total
}

// openClone opens the bare repository in dir, making it if need be, with
// the remote origin pointing at url.
func openClone(dir, url string) (*git.Repository, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	st := filesystem.NewStorageWithOptions(osfs.New(dir), cache.NewObjectLRU(objectCacheBytes),
		filesystem.Options{ExclusiveAccess: true})
	repo, err := git.Open(st, nil)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		repo, err = git.Init(st, nil)
	}
	if err != nil {
		return nil, err
	}
	if err := repo.DeleteRemote(remoteName); err != nil && !errors.Is(err, git.ErrRemoteNotFound) {
		return nil, err
	}
	if _, err := repo.CreateRemote(&config.RemoteConfig{Name: remoteName, URLs: []string{url}}); err != nil {
		return nil, err
	}
	return repo, nil
}

// dirSize is the size of the files under dir.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// cloneBroken says whether a failed revert may be the clone's fault rather
// than the server's, the network's, the credentials' or the request's: a
// fetch that failed for no such reason, or an object missing after a fetch.
// Then the clone is made again.
func cloneBroken(err error) bool {
	var netErr net.Error
	var fe *fetchError
	switch {
	case errors.Is(err, plumbing.ErrObjectNotFound):
		return true
	case !errors.As(err, &fe),
		errors.Is(err, context.Canceled),
		errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &netErr),
		errors.Is(err, transport.ErrAuthenticationRequired),
		errors.Is(err, transport.ErrAuthorizationFailed),
		errors.Is(err, transport.ErrRepositoryNotFound),
		errors.Is(err, transport.ErrInvalidAuthMethod),
		errors.Is(err, errBranchNotFound):
		return false
	}
	return true
}
