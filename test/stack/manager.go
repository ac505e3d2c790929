package stack

import "context"

// manager builds and starts the Backstop manager against the stack, with
// its checks going to the stack's Prometheus and its metrics at s.Metrics.
func (s *Stack) manager(ctx context.Context) error {
	m, err := s.Env.RunManager(ctx, s.Dir, "backstop",
		append([]string{"--prometheus-address=" + s.Prometheus}, s.opts.ManagerArgs...)...)
	if err != nil {
		return err
	}
	s.Metrics = m.Metrics
	s.procs = append(s.procs, m.Process)
	return nil
}
