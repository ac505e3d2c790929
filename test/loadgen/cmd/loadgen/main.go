// Command loadgen sends steady traffic to a URL with package
// backstop.dev/backstop/test/loadgen and prints, every second, which
// versions answered and how many answers were 5xx; at the end it prints the
// totals, the first time each version was seen and the last 5xx.
//
//	loadgen --url=http://127.0.0.1:8000/ --host=app.demo --rate=20 --duration=5m
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"backstop.dev/backstop/test/loadgen"
)

func main() {
	var cfg loadgen.Config
	var allow string
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.StringVar(&cfg.URL, "url", "", "URL to request; its host must be in 127.0.0.0/8, in --allow, or localhost (required)")
	fs.StringVar(&cfg.Host, "host", "", "Host header to send, for a gateway that routes by host")
	fs.Float64Var(&cfg.Rate, "rate", 10, "requests per second")
	fs.IntVar(&cfg.Concurrency, "concurrency", loadgen.DefaultConcurrency, "most requests in flight")
	fs.DurationVar(&cfg.Duration, "duration", 0, "stop after this long (0: until interrupted or --count)")
	fs.IntVar(&cfg.Count, "count", 0, "stop after this many requests (0: no limit)")
	fs.DurationVar(&cfg.Timeout, "timeout", loadgen.DefaultTimeout, "timeout of each request")
	fs.StringVar(&allow, "allow", "", "a CIDR range, besides 127.0.0.0/8, that traffic may go to")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		os.Exit(2)
	}
	if allow != "" {
		p, err := netip.ParsePrefix(allow)
		if err != nil {
			fail(fmt.Errorf("--allow: %w", err))
		}
		cfg.Allow = p
	}
	g, err := loadgen.New(cfg)
	if err != nil {
		fail(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()

	// A second is printed once its requests can no longer be in flight.
	printed := time.Time{}
	printUpTo := func(before time.Time) {
		for _, s := range g.Seconds() {
			if s.Start.After(printed) && s.Start.Add(time.Second).Before(before) {
				printSecond(os.Stdout, s)
				printed = s.Start
			}
		}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for running := true; running; {
		select {
		case <-tick.C:
			printUpTo(time.Now().Add(-cfg.Timeout))
		case err = <-done:
			running = false
		}
	}
	printUpTo(time.Now().Add(time.Hour))
	printTotals(os.Stdout, g)
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "loadgen:", err)
	os.Exit(1)
}

func printSecond(w io.Writer, s loadgen.Second) {
	fmt.Fprintf(w, "%s  requests=%d  %s  5xx=%d  failed=%d\n",
		s.Start.Format(time.TimeOnly), s.Requests, versions(s.ByVersion), s.Errors5xx, s.Failures)
}

func printTotals(w io.Writer, g *loadgen.Generator) {
	t := g.Totals()
	fmt.Fprintf(w, "total  requests=%d  %s  5xx=%d  failed=%d  skipped=%d\n",
		t.Requests, versions(t.ByVersion), t.Errors5xx, t.Failures, t.Skipped)
	for _, v := range slices.Sorted(maps.Keys(t.ByVersion)) {
		if first, ok := g.FirstSeen(v); ok {
			fmt.Fprintf(w, "first seen  %s  %s\n", displayVersion(v), first.Format(time.TimeOnly+".000"))
		}
	}
	if last, ok := g.Last5xx(); ok {
		fmt.Fprintf(w, "last 5xx  %s\n", last.Format(time.TimeOnly+".000"))
	}
}

func versions(by map[string]int) string {
	var parts []string
	for _, v := range slices.Sorted(maps.Keys(by)) {
		parts = append(parts, fmt.Sprintf("%s=%d", displayVersion(v), by[v]))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

func displayVersion(v string) string {
	if v == "" {
		return "(none)"
	}
	return v
}
