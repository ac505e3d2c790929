// Command demo-app serves the demo application of package
// backstop.dev/backstop/test/app until SIGTERM or SIGINT, then drains the
// requests in flight and exits.
//
//	demo-app --version=v3 --listen=10.244.0.5:8080 --error-rate=0.3 --latency=200ms
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"backstop.dev/backstop/test/app"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	fs := flag.NewFlagSet("demo-app", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors and usage are printed once, below
	cfg, err := app.ParseFlags(fs, os.Args[1:], os.Getenv)
	if err != nil {
		fs.SetOutput(os.Stderr)
		if errors.Is(err, flag.ErrHelp) {
			fs.Usage()
			return
		}
		fmt.Fprintln(os.Stderr, "demo-app:", err)
		fs.Usage()
		os.Exit(2)
	}
	cfg.Log = log

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := app.Run(ctx, cfg); err != nil {
		log.Error("Stopped with an error", "err", err)
		os.Exit(1)
	}
}
