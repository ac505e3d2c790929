package fluxsource

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"

	"backstop.dev/backstop/test/gittest"
)

// TestWriteArchive archives a commit fetched from a real git server and
// reads the tarball back as kustomize-controller would.
func TestWriteArchive(t *testing.T) {
	srv := gittest.NewServer(t, gittest.Options{Username: "u", Password: "p"})
	srv.CreateRepo(t, "fleet", "main")
	w := srv.Clone(t, "fleet")
	for p, c := range map[string]string{
		"apps/demo/kustomization.yaml": "resources: [cm.yaml]\n",
		"apps/demo/cm.yaml":            "kind: ConfigMap\n",
		"bin/run.sh":                   "#!/bin/sh\n",
		".gitignore":                   "*.tmp\n",
		".github/workflows/ci.yaml":    "on: push\n",
		"docs/logo.png":                "png",
	} {
		w.Write(t, p, c)
	}
	if err := os.Chmod(filepath.Join(w.Dir, "bin", "run.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	w.Commit(t, "Add the fleet")
	w.Push(t)
	commit, err := fetchCommit(context.Background(), srv.URL("fleet"), "main", &githttp.BasicAuth{Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	ignoreDocs := "docs/\n# a comment\n"

	tests := []struct {
		name   string
		ignore *string
		want   map[string]int64 // name → mode
	}{{
		name: "default ignore patterns",
		want: map[string]int64{
			"apps": dirMode, "apps/demo": dirMode, "apps/demo/cm.yaml": fileMode, "apps/demo/kustomization.yaml": fileMode,
			"bin": dirMode, "bin/run.sh": exeMode, "docs": dirMode,
		},
	}, {
		name:   "spec.ignore replaces the defaults but not the VCS patterns",
		ignore: &ignoreDocs,
		want: map[string]int64{
			".github": dirMode, ".github/workflows": dirMode, ".github/workflows/ci.yaml": fileMode,
			"apps": dirMode, "apps/demo": dirMode, "apps/demo/cm.yaml": fileMode, "apps/demo/kustomization.yaml": fileMode,
			"bin": dirMode, "bin/run.sh": exeMode,
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "a.tar.gz")
			digest, size, err := writeArchive(commit, ignoreMatcher(tt.ignore), file)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(b)
			if want := "sha256:" + hex.EncodeToString(sum[:]); digest != want || size != int64(len(b)) {
				t.Errorf("digest %s size %d, want %s %d", digest, size, want, len(b))
			}
			got := readTar(t, file)
			if len(got) != len(tt.want) {
				t.Errorf("entries %v, want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(tt.want)))
			}
			for name, mode := range tt.want {
				if got[name] != mode {
					t.Errorf("%s: mode %o, want %o", name, got[name], mode)
				}
			}
			// The same commit archives to the same bytes.
			again, _, err := writeArchive(commit, ignoreMatcher(tt.ignore), file)
			if err != nil || again != digest {
				t.Errorf("archiving again gave %s (%v), want %s", again, err, digest)
			}
		})
	}
}

// readTar returns the entries of a tar.gz, name → mode, checking that
// their owners and times are normalised.
func readTar(t *testing.T, file string) map[string]int64 {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	got := map[string]int64{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.ModTime.Unix() != 0 {
			t.Errorf("%s: header not normalised: %+v", h.Name, h)
		}
		got[h.Name] = h.Mode
	}
}
