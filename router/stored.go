package router

import (
	"encoding/json"
	"hash/fnv"
	"strconv"
	"sync"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Stored remembers, for each generated route at its generation, the wanted
// spec it was last found to hold, so a route is not dry-run at every look.
// A wanted spec differs from the stored one by the defaults the API server
// fills in; telling the two apart takes a dry-run update, a round trip for
// every look at every route. Once a dry run, an equal spec or the write
// itself has shown that a wanted spec is what the route holds, that holds
// until the route's spec changes: its generation is part of the key. (Not
// its resourceVersion, which every status write of the gateway moves.)
//
// The zero value is ready for use, and it is safe for concurrent use.
type Stored struct {
	mu   sync.Mutex
	seen map[string]string
}

// maxStored bounds the memory; past it, everything is forgotten at once (at
// about 100 bytes an entry, a few MiB).
const maxStored = 1 << 16

// specHash identifies a wanted spec; empty when it cannot be encoded, which
// is never remembered. It is taken before a write, which decodes the
// server's answer into the object and the slices its spec shares.
func specHash(spec any) string {
	b, err := json.Marshal(spec)
	if err != nil {
		return ""
	}
	h := fnv.New64a()
	h.Write(b)
	return strconv.FormatUint(h.Sum64(), 36)
}

// storedKey names a route at its generation; empty when either is unknown.
func storedKey(obj client.Object) string {
	if obj.GetUID() == "" || obj.GetGeneration() == 0 {
		return ""
	}
	return string(obj.GetUID()) + "/" + strconv.FormatInt(obj.GetGeneration(), 10)
}

// known returns the hash of the wanted spec obj, at its generation, was
// last found to hold.
func (s *Stored) known(obj client.Object) (string, bool) {
	key := storedKey(obj)
	if s == nil || key == "" {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	hash, ok := s.seen[key]
	return hash, ok
}

// remember records that obj, at its generation, holds the spec of hash.
func (s *Stored) remember(obj client.Object, hash string) {
	key := storedKey(obj)
	if s == nil || key == "" || hash == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil || len(s.seen) >= maxStored {
		s.seen = map[string]string{}
	}
	s.seen[key] = hash
}

// hash is specHash, skipped without a memory.
func (s *Stored) hash(spec any) string {
	if s == nil {
		return ""
	}
	return specHash(spec)
}
