// Command kubectl-backstop is the kubectl plugin for Backstop: installed on
// the PATH, it runs as `kubectl backstop`. It lists Rollouts, follows a
// release with its checks, hooks, revert and Events, promotes, aborts,
// retries and pauses releases, and shows their history. See
// docs/kubectl-backstop.md.
package main

import (
	"context"
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/clock"
)

func main() {
	os.Exit(Execute(context.Background(), Options{
		Streams: genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr},
		Clock:   clock.RealClock{},
	}, os.Args[1:]))
}
