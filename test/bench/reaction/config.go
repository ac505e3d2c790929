package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/common/model"
	"sigs.k8s.io/yaml"

	"backstop.dev/backstop/test/stack"
)

// managerCounts are the manager's counts of check evaluations, queries
// sent to Prometheus and queries answered from its cache.
func managerCounts(ctx context.Context, s *stack.Stack) (map[string]float64, error) {
	m, err := s.ScrapeManager(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for key, name := range map[string]string{
		"evaluations":         "backstop_analysis_evaluations_total",
		"queriesSent":         "backstop_prometheus_queries_total",
		"queriesDeduplicated": "backstop_prometheus_queries_deduplicated_total",
	} {
		out[key], _ = m.Value(name, nil)
	}
	return out, nil
}

// config is what the configuration says about reaction time.
type config struct {
	scrapeInterval time.Duration // Prometheus' global scrape_interval
	checkInterval  time.Duration // the Rollout's spec.analysis.interval
	throttle       time.Duration // traefik's providers throttle
	canaryWeight   int32         // the canary's weight at the first step
}

// configuration reads the scrape interval from the running Prometheus.
func configuration(ctx context.Context, prometheus string) (config, error) {
	cfg := config{throttle: stack.GatewayThrottle}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, prometheus+"/api/v1/status/config", nil)
	if err != nil {
		return cfg, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return cfg, err
	}
	defer resp.Body.Close()
	var status struct {
		Data struct {
			YAML string `json:"yaml"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&status); err != nil {
		return cfg, fmt.Errorf("reading Prometheus' configuration: %w", err)
	}
	type scrape struct {
		ScrapeInterval string `json:"scrape_interval"`
	}
	var pc struct {
		Global        scrape   `json:"global"`
		ScrapeConfigs []scrape `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal([]byte(status.Data.YAML), &pc); err != nil {
		return cfg, fmt.Errorf("parsing Prometheus' configuration: %w", err)
	}
	// The slowest job's interval; Prometheus fills in the global one for
	// a job that sets none.
	for _, sc := range append(pc.ScrapeConfigs, pc.Global) {
		if sc.ScrapeInterval == "" {
			continue
		}
		every, err := model.ParseDuration(sc.ScrapeInterval)
		if err != nil {
			return cfg, fmt.Errorf("Prometheus' scrape interval %q: %w", sc.ScrapeInterval, err)
		}
		cfg.scrapeInterval = max(cfg.scrapeInterval, time.Duration(every))
	}
	if cfg.scrapeInterval == 0 {
		return cfg, errors.New("prometheus' configuration has no scrape interval")
	}
	return cfg, nil
}
