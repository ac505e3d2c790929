// Package revert_test measures a Git revert in a large repository: a
// synthetic history of 50,000 commits over 20,000 files, served by a real
// git smart-HTTP server (test/gittest). It times package revert's clone +
// revert + push against the git CLI doing the same (git clone
// --single-branch, git revert, git push), and a second revert on the cached
// clone, and prints both times, their ratio and the peak memory.
//
//	make bench-revert
//
// The targets: at most 1.5 times the git CLI, and under a second with the
// cached clone. Figures, not assertions: a shared machine makes timed
// assertions flaky.
package revert_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing/object"

	"backstop.dev/backstop/revert"
	"backstop.dev/backstop/test/gittest"
)

const (
	commits  = 50_000
	files    = 20_000
	manifest = "apps/app/deployment.yaml"
)

func BenchmarkRevertLargeRepository(b *testing.B) {
	srv := gittest.NewServer(b, gittest.Options{})
	start := time.Now()
	srv.CreateRepo(b, "gogit", "main")
	bad := synthesize(b, srv.Dir("gogit"))
	gittest.Git(b, srv.Dir("gogit"), "repack", "-adq")
	srv.CreateRepo(b, "cli", "main")
	if out, err := exec.Command("cp", "-a", srv.Dir("gogit")+"/.", srv.Dir("cli")).CombinedOutput(); err != nil {
		b.Fatalf("copying the repository: %v\n%s", err, out)
	}
	b.Logf("built a repository of %d commits and %d files in %s", commits, files, time.Since(start).Round(time.Millisecond))

	// The git CLI: clone, revert, push.
	work := filepath.Join(b.TempDir(), "cli")
	cliStart := time.Now()
	cloneRSS := gitRSS(b, "", "clone", "-q", "--single-branch", "--branch", "main", srv.URL("cli"), work)
	gitRSS(b, work, "revert", "--no-edit", bad)
	gitRSS(b, work, "push", "-q", "origin", "main")
	cli := time.Since(cliStart)

	// Package revert, with an empty cache.
	cache := &revert.Cache{Dir: b.TempDir()}
	r := &revert.Reverter{Cache: cache}
	peak := watchHeap()
	b.ResetTimer()
	goStart := time.Now()
	res := mustRevert(b, r, srv.URL("gogit"), bad, "first")
	cold := time.Since(goStart)

	// A second bad commit lands; the cached clone fetches only it.
	again := commitOnBare(b, srv.Dir("gogit"), "registry.example/shop/app:v3")
	warmStart := time.Now()
	mustRevert(b, r, srv.URL("gogit"), again, "second")
	warm := time.Since(warmStart)
	b.StopTimer()
	heap := peak()

	var self syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	fmt.Printf("revert in %d commits × %d files (revert %.10s)\n", commits, files, res.SHA)
	fmt.Printf("  git CLI clone+revert+push:   %8.2fs  (clone peak RSS %d MiB)\n", cli.Seconds(), cloneRSS>>10)
	fmt.Printf("  backstop clone+revert+push:  %8.2fs  ratio %.2f× (target ≤ 1.5×)\n", cold.Seconds(), cold.Seconds()/cli.Seconds())
	fmt.Printf("  backstop on the cached clone:%8.3fs  (target < 1s)\n", warm.Seconds())
	fmt.Printf("  backstop peak Go heap %d MiB, process peak RSS %d MiB, cache %d MiB on disk\n",
		heap>>20, self.Maxrss>>10, cache.Size()>>20)
	b.ReportMetric(cli.Seconds(), "git-s")
	b.ReportMetric(cold.Seconds(), "backstop-s")
	b.ReportMetric(cold.Seconds()/cli.Seconds(), "ratio")
	b.ReportMetric(warm.Seconds(), "cached-s")
	b.ReportMetric(float64(heap>>20), "heap-MiB")
}

func mustRevert(b *testing.B, r *revert.Reverter, url, sha, name string) revert.Result {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := r.Revert(ctx, revert.Request{
		URL: url, Branch: "main", Commits: []string{sha},
		Release: "bench/app@" + name, Rollout: "bench/app", Reason: "benchmark",
		Author: object.Signature{Name: "Backstop", Email: "backstop@example.com"},
	})
	if err != nil {
		b.Fatalf("the %s revert: %v", name, err)
	}
	if res.Already || len(res.Conflict) > 0 {
		b.Fatalf("the %s revert: %+v", name, res)
	}
	return res
}

// synthesize fills the bare repository dir with the history through git
// fast-import: a first commit of files files and the app's manifest, then
// commits-2 commits changing one file each, a minute apart, and last the
// commit moving the app to a bad image, whose SHA it returns.
func synthesize(b *testing.B, dir string) string {
	b.Helper()
	cmd := gitCmd(dir, "fast-import", "--quiet", "--export-marks="+filepath.Join(dir, "marks"))
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(in, 1<<20)
	when := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	commit := func(mark int, msg string, changes func()) {
		fmt.Fprintf(w, "commit refs/heads/main\nmark :%d\ncommitter Person <person@example.com> %d +0000\ndata %d\n%s\n", mark, when, len(msg), msg)
		if mark > 1 {
			fmt.Fprintf(w, "from :%d\n", mark-1)
		}
		changes()
		fmt.Fprintln(w)
		when += 60
	}
	inline := func(path, content string) {
		fmt.Fprintf(w, "M 100644 inline %s\ndata %d\n%s\n", path, len(content), content)
	}
	commit(1, "Add everything", func() {
		for i := range files {
			inline(filePath(i), fileContent(i, 0))
		}
		inline(manifest, deployment("registry.example/shop/app:v1"))
	})
	for n := 2; n < commits; n++ {
		commit(n, fmt.Sprintf("Change file %d", n%files), func() { inline(filePath(n%files), fileContent(n%files, n)) })
	}
	commit(commits, "Deploy app v2", func() { inline(manifest, deployment("registry.example/shop/app:v2")) })
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		b.Fatalf("git fast-import: %v", err)
	}
	return gittest.Git(b, dir, "rev-parse", "main")
}

// commitOnBare commits a change of the app's image onto main in the bare
// repository dir, as a person's push would, and returns its SHA.
func commitOnBare(b *testing.B, dir, image string) string {
	b.Helper()
	cmd := gitCmd(dir, "fast-import", "--quiet")
	msg := "Deploy " + image
	cmd.Stdin = io.MultiReader(
		strings.NewReader(fmt.Sprintf("commit refs/heads/main\ncommitter Person <person@example.com> %d +0000\ndata %d\n%s\nfrom refs/heads/main^0\n",
			time.Now().Unix(), len(msg), msg)),
		strings.NewReader(fmt.Sprintf("M 100644 inline %s\ndata %d\n%s\n\n", manifest, len(deployment(image)), deployment(image))))
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("git fast-import: %v\n%s", err, out)
	}
	return gittest.Git(b, dir, "rev-parse", "main")
}

func filePath(i int) string { return fmt.Sprintf("services/s%03d/config-%05d.yaml", i/100, i) }

func fileContent(i, version int) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-%05d\ndata:\n  version: \"%d\"\n  owner: team-%d\n  note: a line of text that makes the file look like a real one\n", i, version, i%17)
}

func deployment(image string) string {
	return "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\nspec:\n  template:\n    spec:\n      containers:\n      - name: app\n        image: " + image + "\n"
}

// gitCmd is the git CLI on dir, hermetic as gittest.Git runs it.
func gitCmd(dir string, args ...string) *exec.Cmd {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	home, _ := os.MkdirTemp("", "bench-home-")
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "LC_ALL=C", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Person", "GIT_AUTHOR_EMAIL=person@example.com", "GIT_COMMITTER_NAME=Person", "GIT_COMMITTER_EMAIL=person@example.com",
		"GIT_TERMINAL_PROMPT=0"}
	return cmd
}

// gitRSS runs the git CLI and returns its peak resident set in KiB.
func gitRSS(b *testing.B, dir string, args ...string) int64 {
	b.Helper()
	cmd := gitCmd(dir, args...)
	if dir == "" {
		cmd.Dir = ""
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("git %v: %v\n%s", args, err, out)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss
	}
	return 0
}

// watchHeap samples the Go heap until the returned function is called,
// which returns the largest sample.
func watchHeap() func() uint64 {
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() uint64 {
		close(stop)
		wg.Wait()
		return peak.Load()
	}
}
