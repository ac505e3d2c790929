// Command benchplot draws the figures of Backstop's benchmarks as PNG
// pictures. It reads the output of the benchmarks, from the files named on
// the command line or from standard input, and uses the lines that hold
// "BENCH " and a JSON object; the rest of the output is ignored:
//
//	go run . -out ../../docs/benchmarks < ../../bench.out
//
// Every object has a "kind". Three kinds are drawn; other fields are
// ignored, and a kind seen on several lines (a benchmark run several
// times) is drawn from all of them, a dot per run and a line through the
// medians.
//
// "revert" (test/bench/revert) gives revert-time.png and
// revert-memory.png, by commits:
//
//	{"kind": "revert", "sizes": [{"commits": 1000, "files": 20000,
//	  "git":      {"cold":   {"seconds": 2.8, "peakRSSMiB": 17.4, "allRSSMiB": 24.9},
//	               "cached": {"seconds": 0.2, "peakRSSMiB": 16.7, "allRSSMiB": 28.6}},
//	  "backstop": {"cold":   {"seconds": 0.55, "peakRSSMiB": 46.3, "heapMiB": 29.6},
//	               "cached": {"seconds": 0.15, "peakRSSMiB": 27.5, "heapMiB": 12.8}}}]}
//
// "reaction" gives reaction.png, a box per interval over the rounds. The
// intervals are in milliseconds, keyed by name, the names drawn in the
// order they first appear; either one object per round, or one list per
// interval:
//
//	{"kind": "reaction", "rounds": [{"detect": 2100, "trafficToStable": 40}, ...]}
//	{"kind": "reaction", "intervalsMs": {"detect": [2100, 1900], "trafficToStable": [40, 55]}}
//
// "scale" gives scale-memory.png (peak RSS) and scale-step-lag.png (p50
// and p99) by Rollouts, from a list of sizes or from one size per line with
// the same fields at the top level:
//
//	{"kind": "scale", "sizes": [{"rollouts": 100, "rssPeakMiB": 80,
//	  "cpuSeconds": 12.5, "stepLagP50Ms": 35, "stepLagP99Ms": 240,
//	  "apiRequestsPerSecond": 18, "promQueriesPerSecond": 6.5}]}
//
// Other spellings are read too: "bench" for "kind"; for reaction,
// "perRound": [{"msFromOnset": {...}}, ...], moments of each round from
// the breach, drawn in the order of their medians ("rounds" may then be a
// count); for scale, "results" for "sizes", "size" for "rollouts",
// "stepLagP50Seconds" and "stepLagP99Seconds", and a size with an "error"
// is left out.
//
// A kind without figures draws nothing, so a run of one benchmark leaves
// the pictures of the others as they are.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
)

func main() {
	out := flag.String("out", ".", "folder to write the PNG files to")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: benchplot [-out DIR] [FILE...]\n\nDraws the BENCH lines of benchmark output (the files, or standard input) as PNG files.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	written, err := run(*out, flag.Args(), os.Stdin, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchplot: %v\n", err)
		os.Exit(1)
	}
	for _, w := range written {
		fmt.Println(w)
	}
}

// run reads the files (stdin when there are none), draws every kind with
// figures into dir and returns the paths written. Notes on what was not
// drawn go to log.
func run(dir string, files []string, stdin io.Reader, log io.Writer) ([]string, error) {
	var res results
	if len(files) == 0 {
		if err := res.read("standard input", stdin); err != nil {
			return nil, err
		}
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		err = res.read(name, f)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	for _, k := range slices.Sorted(maps.Keys(res.skipped)) {
		fmt.Fprintf(log, "benchplot: skipped %d line(s) of kind %q\n", res.skipped[k], k)
	}

	plots := map[string]*plot.Plot{}
	draw := func(kind string, has bool, f func() (map[string]*plot.Plot, error)) error {
		if !has {
			fmt.Fprintf(log, "benchplot: no %s figures\n", kind)
			return nil
		}
		ps, err := f()
		if err != nil {
			return fmt.Errorf("drawing the %s figures: %w", kind, err)
		}
		for _, name := range slices.Sorted(maps.Keys(ps)) {
			p := ps[name]
			if p == nil {
				fmt.Fprintf(log, "benchplot: nothing to draw in %s\n", name)
				continue
			}
			plots[name] = p
		}
		return nil
	}
	if err := errors.Join(
		draw("revert", len(res.revert) > 0, func() (map[string]*plot.Plot, error) { return revertPlots(res.revert) }),
		draw("reaction", len(res.reaction.names) > 0, func() (map[string]*plot.Plot, error) { return reactionPlot(res.reaction) }),
		draw("scale", len(res.scale) > 0, func() (map[string]*plot.Plot, error) { return scalePlots(res.scale) }),
	); err != nil {
		return nil, err
	}
	if len(plots) == 0 {
		return nil, errors.New("no BENCH line with figures to draw")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var written []string
	for _, name := range slices.Sorted(maps.Keys(plots)) {
		if err := savePNG(plots[name], dir, name); err != nil {
			return written, fmt.Errorf("writing %s: %w", name, err)
		}
		written = append(written, filepath.Join(dir, name))
	}
	return written, nil
}
