package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/watch"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// Exit codes of status --watch.
const (
	exitRolledBack = 1
	exitTimeout    = 2
)

// rewatchPause is the least time between two watches of a Rollout, so a
// server that keeps closing them is not asked in a tight loop.
const rewatchPause = time.Second

func newStatusCommand(o *Options) *cobra.Command {
	var (
		follow  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show where a Rollout's release stands; --watch follows it to its end",
		Long: `Show a Rollout's release: its phase and the Ready condition's message, the
strategy, the running step and every step of the plan (✓ passed, → running,
✗ where a rollback stopped it), the traffic split, each check's last value
against its bound (FAILURES counts failed evaluations against the number
that fails the release, failureLimit + 1), the hooks' answers, the state
of the Git revert after a rollback, and the Rollout's last 8 Events.

With --watch it follows the release until it ends. On a terminal the view
is redrawn in place at every change; otherwise it prints one line per
change: the time, phase, step, canary weight and the newest Event. A
Rollout already Idle, Succeeded or RolledBack ends it at once. It exits
with:

  0  the Rollout is Idle or Succeeded
  1  the release was rolled back (the reason is printed), or an error
  2  --timeout passed first`,
		Example: `  kubectl backstop status app
  kubectl backstop status app --watch --timeout 30m`,
		Args: oneName,
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout != 0 && !follow {
				return &usageError{errors.New("--timeout applies only with --watch")}
			}
			if timeout < 0 {
				return &usageError{errors.New("--timeout must not be negative")}
			}
			k, err := o.connect()
			if err != nil {
				return err
			}
			s := &statusRun{o: o, k: k, name: args[0]}
			if !follow {
				return s.once(cmd.Context())
			}
			isTerminal := o.IsTerminal
			if isTerminal == nil {
				isTerminal = writesToTerminal
			}
			s.terminal = isTerminal(o.Streams.Out)
			return s.watch(cmd.Context(), timeout)
		},
	}
	cmd.Flags().BoolVarP(&follow, "watch", "w", false, "Follow the release until it ends (see the exit codes above).")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "With --watch, give up after this long with exit code 2; 0 waits as long as the release runs.")
	return cmd
}

// writesToTerminal says whether w is a terminal.
func writesToTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// statusRun is one run of `status`: the Rollout and its Events as last
// seen, and what was last shown.
type statusRun struct {
	o        *Options
	k        *kube
	name     string
	terminal bool

	ro       *backstopv1.Rollout
	events   map[string]eventsv1.Event
	eventsRV string
	// eventsDenied says the Events could not be read; they are left out.
	eventsDenied bool
	shown        string
}

func (s *statusRun) once(ctx context.Context) error {
	if err := s.load(ctx); err != nil {
		return err
	}
	fmt.Fprint(s.o.Streams.Out, statusView(s.ro, s.eventList(), s.o.Clock.Now()))
	return nil
}

// load reads the Rollout and its Events afresh.
func (s *statusRun) load(ctx context.Context) error {
	ro, err := s.k.getRollout(ctx, s.name)
	if err != nil {
		return err
	}
	s.ro = ro
	s.events = map[string]eventsv1.Event{}
	list, err := s.k.listEvents(ctx, ro)
	switch {
	case err == nil:
		for _, e := range list.Items {
			s.events[e.Name] = e
		}
		s.eventsRV = list.ResourceVersion
	case apierrors.IsForbidden(err):
		if !s.eventsDenied {
			fmt.Fprintf(s.o.Streams.ErrOut, "Events left out: you may not list events in namespace %q: %s\n", ro.Namespace, serverMessage(err))
		}
		s.eventsDenied = true
	default:
		return fmt.Errorf("listing the Events of rollout %q: %w", s.name, err)
	}
	return nil
}

// eventList is the Events as last seen, nil when they cannot be read.
func (s *statusRun) eventList() []eventsv1.Event {
	if s.eventsDenied {
		return nil
	}
	out := make([]eventsv1.Event, 0, len(s.events))
	for _, e := range s.events {
		out = append(out, e)
	}
	return out
}

// watch follows the Rollout and its Events until the release ends, the
// timeout passes or an error occurs. A watch the server ends is started
// again from a fresh read.
func (s *statusRun) watch(ctx context.Context, timeout time.Duration) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	for {
		started := time.Now()
		if err := s.load(ctx); err != nil {
			return s.stopped(ctx, err, timeout)
		}
		s.show()
		if ended(s.ro.Status.Phase) {
			return s.finish()
		}
		done, err := s.follow(ctx)
		if err != nil {
			return s.stopped(ctx, err, timeout)
		}
		if done {
			return s.finish()
		}
		if wait := rewatchPause - time.Since(started); wait > 0 {
			select {
			case <-ctx.Done():
				return s.stopped(ctx, ctx.Err(), timeout)
			case <-time.After(wait):
			}
		}
	}
}

// follow shows every change the watches report. It returns done when the
// release has ended, and neither done nor an error when a watch closed.
func (s *statusRun) follow(ctx context.Context) (done bool, err error) {
	rw, err := s.k.watchRollout(ctx, s.name, s.ro.ResourceVersion)
	if err != nil {
		return false, err
	}
	defer rw.Stop()
	var eventCh <-chan watch.Event
	if !s.eventsDenied {
		ew, err := s.k.watchEvents(ctx, s.ro, s.eventsRV)
		if err != nil {
			return false, fmt.Errorf("watching the Events of rollout %q: %w", s.name, err)
		}
		defer ew.Stop()
		eventCh = ew.ResultChan()
	}
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case ev, ok := <-rw.ResultChan():
			if !ok || ev.Type == watch.Error {
				return false, nil
			}
			switch ev.Type {
			case watch.Deleted:
				return false, fmt.Errorf("rollout %q was deleted", s.name)
			case watch.Added, watch.Modified:
				if ro, isRollout := ev.Object.(*backstopv1.Rollout); isRollout {
					s.ro = ro
				}
			}
		case ev, ok := <-eventCh:
			if !ok || ev.Type == watch.Error {
				return false, nil
			}
			if e, isEvent := ev.Object.(*eventsv1.Event); isEvent {
				switch ev.Type {
				case watch.Added, watch.Modified:
					s.events[e.Name] = *e
				case watch.Deleted:
					delete(s.events, e.Name)
				}
			}
		}
		s.show()
		if ended(s.ro.Status.Phase) {
			return true, nil
		}
	}
}

// show writes the view when it changed: redrawn in place on a terminal,
// one line otherwise.
func (s *statusRun) show() {
	now := s.o.Clock.Now()
	events := s.eventList()
	if s.terminal {
		if view := statusView(s.ro, events, now); view != s.shown {
			fmt.Fprint(s.o.Streams.Out, redraw(view))
			s.shown = view
		}
		return
	}
	if summary := watchSummary(s.ro, events); summary != s.shown {
		fmt.Fprint(s.o.Streams.Out, watchLine(s.ro, events, now))
		s.shown = summary
	}
}

// finish gives the exit of a release that ended.
func (s *statusRun) finish() error {
	if s.ro.Status.Phase == backstopv1.PhaseRolledBack {
		return &exitError{code: exitRolledBack, message: fmt.Sprintf("rollout %q was rolled back: %s", s.name, rollbackReason(s.ro))}
	}
	return nil
}

// stopped turns the error that ended a watch into the plugin's exit: the
// timeout's code when the time is up.
func (s *statusRun) stopped(ctx context.Context, err error, timeout time.Duration) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		phase := "not yet read"
		if s.ro != nil {
			phase = phaseName(s.ro.Status.Phase)
		}
		return &exitError{code: exitTimeout, message: fmt.Sprintf("timed out after %s: rollout %q is still %s", timeout, s.name, phase)}
	}
	return err
}
