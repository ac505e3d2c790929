package revert

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// packs lists the packfiles of the cached clones under dir.
func packs(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*", "objects", "pack", "*.pack"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// deploy pushes a commit moving the app to version, as a person would.
func (f *fixture) deploy(t *testing.T, version string) string {
	t.Helper()
	f.w.Pull(t)
	f.w.Write(t, manifest, deployment(2, version))
	sha := f.w.Commit(t, "Deploy app "+version)
	f.w.Push(t)
	return sha
}

func TestCacheSecondRevertFetchesOnlyWhatIsNew(t *testing.T) {
	f := newFixture(t)
	c := &Cache{Dir: t.TempDir()}
	r := &Reverter{Cache: c}
	revert(t, r, f.request(f.bad))
	if got := packs(t, c.Dir); len(got) != 1 {
		t.Fatalf("after the first revert the cache holds packs %v, want one clone with one pack", got)
	}

	bad := f.deploy(t, "v3")
	res := revert(t, r, f.request(bad))

	if head := f.git(t, "rev-parse", "main"); head != res.SHA {
		t.Fatalf("main = %s, want the second revert %s", head, res.SHA)
	}
	if got := f.git(t, "show", "main:"+manifest) + "\n"; got != deployment(2, "v1") {
		t.Errorf("manifest after both reverts:\n%s", got)
	}
	// The second fetch added a small pack to the same clone rather than
	// cloning again.
	if got := packs(t, c.Dir); len(got) != 2 {
		t.Errorf("after the second revert the cache holds packs %v, want the clone's first pack and one fetched since", got)
	}
	if c.Size() == 0 {
		t.Error("Size() = 0 with a clone kept")
	}
}

func TestCacheRemakesABrokenClone(t *testing.T) {
	f := newFixture(t)
	c := &Cache{Dir: t.TempDir()}
	r := &Reverter{Cache: c}
	revert(t, r, f.request(f.bad))

	// Lose the clone's objects but keep its refs, as a disk filling up
	// during a fetch might.
	for _, p := range packs(t, c.Dir) {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	bad := f.deploy(t, "v3")
	res := revert(t, r, f.request(bad))

	if head := f.git(t, "rev-parse", "main"); head != res.SHA {
		t.Fatalf("main = %s, want the revert %s", head, res.SHA)
	}
}

func TestCacheBound(t *testing.T) {
	f := newFixture(t)
	f.s.CreateRepo(t, "other", "main")
	w := f.s.Clone(t, "other")
	w.Write(t, manifest, deployment(1, "v1"))
	w.Commit(t, "Deploy other v1")
	w.Write(t, manifest, deployment(1, "v2"))
	otherBad := w.Commit(t, "Deploy other v2")
	w.Push(t)
	other := f.request(otherBad)
	other.URL = f.s.URL("other")

	tests := []struct {
		name     string
		maxBytes func(one int64) int64
		want     int // clones kept after reverting in both repositories
	}{
		{"both fit", func(one int64) int64 { return 4 * one }, 2},
		{"one fits: the least recently used goes", func(one int64) int64 { return one + one/2 }, 1},
		{"none fits: each goes after its revert", func(int64) int64 { return 1 }, 0},
	}
	// one is the size of a clone of the fixture's repository.
	probe := &Cache{Dir: t.TempDir()}
	if _, err := (&Reverter{Cache: probe}).Revert(t.Context(), f.request(f.bad)); err != nil {
		t.Fatal(err)
	}
	one := probe.Size()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Cache{Dir: t.TempDir(), MaxBytes: tt.maxBytes(one)}
			r := &Reverter{Cache: c}
			// The fixture's revert is already on main: the second call finds it.
			revert(t, r, f.request(f.bad))
			revert(t, r, other)

			entries, err := os.ReadDir(c.Dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != tt.want {
				t.Fatalf("the cache holds %d clones, want %d", len(entries), tt.want)
			}
			if tt.want == 1 && entries[0].Name() != filepath.Base(c.dirFor(other.URL)) {
				t.Errorf("the cache kept %s, want the clone used last (%s)", entries[0].Name(), filepath.Base(c.dirFor(other.URL)))
			}
		})
	}
}

func TestNoCacheLeavesNothingBehind(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	f := newFixture(t)
	revert(t, &Reverter{}, f.request(f.bad))
	entries, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "backstop-revert-") {
			t.Errorf("temporary clone %s left behind", e.Name())
		}
	}
}
