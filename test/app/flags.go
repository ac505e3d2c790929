package app

import (
	"flag"
	"fmt"
	"strconv"
	"time"
)

// Defaults of the command line. The faults are those of a faulty version;
// healthy versions ignore them.
const (
	DefaultListen    = ":8080"
	DefaultErrorRate = 0.3
	DefaultLatency   = 200 * time.Millisecond
)

// EnvPrefix starts the name of each environment variable ParseFlags reads:
// APP_VERSION, APP_LISTEN, APP_ERROR_RATE, APP_ERROR_EVERY, APP_LATENCY and
// APP_SEED.
const EnvPrefix = "APP_"

// ParseFlags defines the application's flags on fs, parses args and returns
// the Config. Each flag's default comes from its environment variable
// (--error-rate from APP_ERROR_RATE, and so on) when getenv returns one, and
// otherwise from the Default constants; a flag given in args wins over both.
//
//	--version      v1, v2 or v3 (required)
//	--listen       address to listen on, such as $(POD_IP):8080
//	--error-rate   share of requests a faulty version answers 500
//	--error-every  answer exactly every Nth request 500 instead (0: off)
//	--latency      latency a faulty version adds to every request
//	--seed         seed of the error RNG (0: random)
func ParseFlags(fs *flag.FlagSet, args []string, getenv func(string) string) (Config, error) {
	cfg := Config{
		Listen: DefaultListen,
		Faults: Faults{ErrorRate: DefaultErrorRate, Latency: DefaultLatency},
	}
	env := func(name string, parse func(string) error) error {
		v := getenv(EnvPrefix + name)
		if v == "" {
			return nil
		}
		if err := parse(v); err != nil {
			return fmt.Errorf("environment variable %s%s=%q: %w", EnvPrefix, name, v, err)
		}
		return nil
	}
	err := firstError(
		env("VERSION", func(v string) error { cfg.Version = v; return nil }),
		env("LISTEN", func(v string) error { cfg.Listen = v; return nil }),
		env("ERROR_RATE", func(v string) (err error) { cfg.Faults.ErrorRate, err = strconv.ParseFloat(v, 64); return err }),
		env("ERROR_EVERY", func(v string) (err error) { cfg.Faults.ErrorEvery, err = strconv.Atoi(v); return err }),
		env("LATENCY", func(v string) (err error) { cfg.Faults.Latency, err = time.ParseDuration(v); return err }),
		env("SEED", func(v string) (err error) { cfg.Seed, err = strconv.ParseUint(v, 10, 64); return err }),
	)
	if err != nil {
		return Config{}, err
	}

	fs.StringVar(&cfg.Version, "version", cfg.Version, "version to serve as: v1 and v2 are healthy, v3 is faulty (env APP_VERSION; required)")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address to listen on, such as the pod IP and :8080 (env APP_LISTEN)")
	fs.Float64Var(&cfg.Faults.ErrorRate, "error-rate", cfg.Faults.ErrorRate, "share of requests, 0 to 1, a faulty version answers 500 (env APP_ERROR_RATE)")
	fs.IntVar(&cfg.Faults.ErrorEvery, "error-every", cfg.Faults.ErrorEvery, "if positive, a faulty version answers exactly every Nth request 500 instead of using --error-rate (env APP_ERROR_EVERY)")
	fs.DurationVar(&cfg.Faults.Latency, "latency", cfg.Faults.Latency, "latency a faulty version adds to every request (env APP_LATENCY)")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the RNG behind --error-rate; 0 seeds it at random (env APP_SEED)")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", DefaultShutdownTimeout, "how long to wait for requests in flight after SIGTERM")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.Version == "" {
		return Config{}, fmt.Errorf("--version (or %sVERSION) is required", EnvPrefix)
	}
	if _, ok := Faulty(cfg.Version); !ok {
		return Config{}, fmt.Errorf("unknown version %q: want v1, v2 or v3", cfg.Version)
	}
	if err := cfg.Faults.validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
