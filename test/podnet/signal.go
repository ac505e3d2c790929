package podnet

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// CleanupOnSignal makes SIGINT (Ctrl-C) and SIGTERM take the networks down
// (see Network.Down: their processes, namespaces, links and bridges) before
// the program dies of the signal as it would have without the handler.
// Deferred functions do not run on a signal, so a program that defers Down
// calls this too. The returned function removes the handler.
//
// A program killed with SIGKILL leaves the namespaces behind; its sandboxed
// processes die with it, and the next Up or Down with the same names removes
// the rest.
func CleanupOnSignal(nets ...*Network) (stop func()) {
	sigs := make(chan os.Signal, 1)
	quit := make(chan struct{})
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		select {
		case <-quit:
			return
		case sig := <-sigs:
			for _, n := range nets {
				if err := n.Down(); err != nil {
					fmt.Fprintf(os.Stderr, "podnet: taking network %s down on %s: %v\n", n.Name, sig, err)
				}
			}
			signal.Reset(sig)
			_ = syscall.Kill(os.Getpid(), sig.(syscall.Signal))
			time.Sleep(time.Second)
			os.Exit(128 + int(sig.(syscall.Signal)))
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			signal.Stop(sigs)
			close(quit)
		})
	}
}
