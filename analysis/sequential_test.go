package analysis

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// seqDocGrid is the grid documented in docs/sequential-test.md. Changing
// seqGrid must change the version of the encoding and the documentation.
var seqDocGrid = []float64{1.25, 1.5, 2, 2.5, 3, 4, 5, 7, 10, 20}

func TestSequentialGridIsDocumented(t *testing.T) {
	if !slices.Equal(seqGrid[:], seqDocGrid) || seqVersion != "v1" {
		t.Fatalf("grid %v version %s; the documentation says %v and v1", seqGrid, seqVersion, seqDocGrid)
	}
}

// seqMustUpdate applies the batches in turn and fails the test on an error.
func seqMustUpdate(t *testing.T, e Evidence, batches ...SequentialBatch) Evidence {
	t.Helper()
	for i, b := range batches {
		var err error
		if e, err = e.Update(b); err != nil {
			t.Fatalf("batch %d %+v: %v", i, b, err)
		}
	}
	return e
}

func seqRepeat(b SequentialBatch, n int) []SequentialBatch {
	out := make([]SequentialBatch, n)
	for i := range out {
		out[i] = b
	}
	return out
}

func TestSequentialEvidence(t *testing.T) {
	tests := []struct {
		name    string
		batches []SequentialBatch
		// The e-value after all batches lies in [min, max].
		min, max float64
		// The number of batches counted.
		counted int
		// fails says whether SequentialFails(alpha 0.05) after all batches.
		fails bool
	}{{
		name: "fresh", min: 1, max: 1,
	}, {
		name:    "same error rate, 10% canary",
		batches: seqRepeat(SequentialBatch{CanaryErrors: 10, CanaryTotal: 1000, PrimaryErrors: 90, PrimaryTotal: 9000}, 20),
		min:     0, max: 0.2, counted: 20,
	}, {
		name:    "same error rate, 50% canary",
		batches: seqRepeat(SequentialBatch{CanaryErrors: 5, CanaryTotal: 500, PrimaryErrors: 5, PrimaryTotal: 500}, 20),
		min:     0, max: 0.2, counted: 20,
	}, {
		name:    "canary 3 times worse, 5% canary",
		batches: seqRepeat(SequentialBatch{CanaryErrors: 3, CanaryTotal: 100, PrimaryErrors: 19, PrimaryTotal: 1900}, 5),
		min:     20, max: math.Inf(1), counted: 5, fails: true,
	}, {
		name:    "canary 10 times worse, one batch",
		batches: []SequentialBatch{{CanaryErrors: 10, CanaryTotal: 100, PrimaryErrors: 19, PrimaryTotal: 1900}},
		min:     20, max: math.Inf(1), counted: 1, fails: true,
	}, {
		name:    "canary errors only",
		batches: []SequentialBatch{{CanaryErrors: 4, CanaryTotal: 50, PrimaryErrors: 0, PrimaryTotal: 950}},
		min:     20, max: math.Inf(1), counted: 1, fails: true,
	}, {
		name:    "no errors",
		batches: seqRepeat(SequentialBatch{CanaryTotal: 1000, PrimaryTotal: 9000}, 5),
		min:     1, max: 1,
	}, {
		name:    "no canary traffic",
		batches: seqRepeat(SequentialBatch{PrimaryErrors: 50, PrimaryTotal: 9000}, 5),
		min:     1, max: 1,
	}, {
		name:    "no primary traffic",
		batches: seqRepeat(SequentialBatch{CanaryErrors: 50, CanaryTotal: 9000}, 5),
		min:     1, max: 1,
	}, {
		name:    "nothing at all",
		batches: seqRepeat(SequentialBatch{}, 5),
		min:     1, max: 1,
	}, {
		name:    "errors that round to zero",
		batches: seqRepeat(SequentialBatch{CanaryErrors: 0.4, CanaryTotal: 10.2, PrimaryErrors: 0.49, PrimaryTotal: 99.7}, 5),
		min:     1, max: 1,
	}, {
		name:    "traffic that rounds to zero",
		batches: seqRepeat(SequentialBatch{CanaryErrors: 0.3, CanaryTotal: 0.4, PrimaryErrors: 7, PrimaryTotal: 99.7}, 5),
		min:     1, max: 1,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := seqMustUpdate(t, Evidence{}, tt.batches...)
			if v := e.EValue(); v < tt.min || v > tt.max {
				t.Errorf("EValue = %g, want in [%g, %g]", v, tt.min, tt.max)
			}
			if e.Batches() != tt.counted {
				t.Errorf("Batches = %d, want %d", e.Batches(), tt.counted)
			}
			if got := SequentialFails(e, 0.05); got != tt.fails {
				t.Errorf("SequentialFails(0.05) = %v, want %v (EValue %g)", got, tt.fails, e.EValue())
			}
		})
	}
}

func TestSequentialSkippedBatchesChangeNothing(t *testing.T) {
	e := seqMustUpdate(t, Evidence{}, SequentialBatch{CanaryErrors: 3, CanaryTotal: 100, PrimaryErrors: 19, PrimaryTotal: 1900})
	for _, b := range []SequentialBatch{
		{CanaryTotal: 1000, PrimaryTotal: 9000},
		{PrimaryErrors: 50, PrimaryTotal: 9000},
		{CanaryErrors: 50, CanaryTotal: 9000},
		{},
		{CanaryErrors: 0.49, CanaryTotal: 3, PrimaryErrors: 0.2, PrimaryTotal: 4},
	} {
		got := seqMustUpdate(t, e, b)
		if got != e {
			t.Errorf("batch %+v changed the evidence from %v to %v", b, e, got)
		}
	}
}

func TestSequentialRoundsCounts(t *testing.T) {
	exact := seqMustUpdate(t, Evidence{}, SequentialBatch{CanaryErrors: 3, CanaryTotal: 100, PrimaryErrors: 19, PrimaryTotal: 1900})
	rounded := seqMustUpdate(t, Evidence{}, SequentialBatch{CanaryErrors: 2.6, CanaryTotal: 99.8, PrimaryErrors: 19.4, PrimaryTotal: 1900.3})
	if exact != rounded {
		t.Errorf("rounded counts gave %v, integer counts %v", rounded, exact)
	}
}

func TestSequentialHandComputed(t *testing.T) {
	// 10 errors in 1000 canary requests, 10 errors in 9000 primary requests:
	// x = 10, n = 20, s = 1000/10000 = 0.1, and
	// EValue = (1/10) * sum_j rho_j^10 / (1 + 0.1*(rho_j - 1))^20.
	e := seqMustUpdate(t, Evidence{}, SequentialBatch{CanaryErrors: 10, CanaryTotal: 1000, PrimaryErrors: 10, PrimaryTotal: 9000})
	want := 0.0
	for _, rho := range seqDocGrid {
		want += math.Pow(rho, 10) / math.Pow(1+0.1*(rho-1), 20) / 10
	}
	if got := e.EValue(); math.Abs(got-want) > 1e-9*want {
		t.Errorf("EValue = %.15g, want %.15g", got, want)
	}
	// The same from the binomial likelihoods with theta(rho) = rho*Tc/(rho*Tc+Tp).
	binom := 0.0
	theta1 := 1000.0 / (1000 + 9000)
	for _, rho := range seqDocGrid {
		theta := rho * 1000 / (rho*1000 + 9000)
		binom += math.Pow(theta/theta1, 10) * math.Pow((1-theta)/(1-theta1), 10) / 10
	}
	if math.Abs(binom-want) > 1e-9*want {
		t.Errorf("binomial form %.15g, closed form %.15g", binom, want)
	}
	t.Logf("EValue after 10/1000 canary vs 10/9000 primary errors: %.6g", want)

	// A second batch multiplies each component's likelihood ratio.
	e = seqMustUpdate(t, e, SequentialBatch{CanaryErrors: 1, CanaryTotal: 500, PrimaryErrors: 4, PrimaryTotal: 1500})
	want = 0.0
	for _, rho := range seqDocGrid {
		want += math.Pow(rho, 10) / math.Pow(1+0.1*(rho-1), 20) * rho / math.Pow(1+0.25*(rho-1), 5) / 10
	}
	if got := e.EValue(); math.Abs(got-want) > 1e-9*want {
		t.Errorf("after a second batch EValue = %.15g, want %.15g", got, want)
	}
	if e.Batches() != 2 {
		t.Errorf("Batches = %d, want 2", e.Batches())
	}
}

// TestSequentialSupermartingale checks, by exact summation, the property the
// validity rests on: the expected likelihood ratio of one batch, given its
// number of errors, is at most 1 when the canary is no worse than the
// primary. It checks it under the Poisson model (x binomial) and under the
// per-request Bernoulli model (x hypergeometric when the error rates are
// equal, Fisher's noncentral hypergeometric when the canary's is lower).
func TestSequentialSupermartingale(t *testing.T) {
	for _, c := range []struct{ tc, tp, n int }{
		{5, 95, 3}, {50, 950, 20}, {10, 10, 15}, {100, 100, 200}, {250, 750, 40}, {30, 70, 60}, {1, 999, 50},
	} {
		s := float64(c.tc) / float64(c.tc+c.tp)
		for _, rho := range seqDocGrid {
			lr := func(x int) float64 { return math.Exp(seqLogLR(rho, float64(x), float64(c.n), s)) }
			expect := func(pmf []float64) float64 {
				sum := 0.0
				for x, p := range pmf {
					sum += p * lr(x)
				}
				return sum
			}
			if got := expect(seqBinomialPMF(c.n, s)); math.Abs(got-1) > 1e-9 {
				t.Errorf("%+v rho %g: E[LR] under Binomial(n, s) = %.12g, want 1", c, rho, got)
			}
			if got := expect(seqBinomialPMF(c.n, 0.8*s)); got > 1 {
				t.Errorf("%+v rho %g: E[LR] under Binomial(n, 0.8*s) = %.12g > 1", c, rho, got)
			}
			for _, psi := range []float64{1, 0.9, 0.5} {
				if c.n > c.tc+c.tp {
					continue
				}
				if got := expect(seqFisherPMF(c.tc, c.tp, c.n, psi)); got > 1+1e-12 {
					t.Errorf("%+v rho %g: E[LR] under the Fisher hypergeometric with odds ratio %g = %.12g > 1", c, rho, psi, got)
				}
			}
		}
	}
}

// seqBinomialPMF is the Binomial(n, p) distribution on 0..n.
func seqBinomialPMF(n int, p float64) []float64 {
	pmf := make([]float64, n+1)
	for x := range pmf {
		pmf[x] = math.Exp(seqLogChoose(n, x) + float64(x)*math.Log(p) + float64(n-x)*math.Log1p(-p))
	}
	return pmf
}

// seqFisherPMF is the distribution on 0..n of the canary's errors given n
// errors in all, when tc canary and tp primary requests fail independently
// with error odds in the ratio psi (canary/primary): Fisher's noncentral
// hypergeometric distribution.
func seqFisherPMF(tc, tp, n int, psi float64) []float64 {
	pmf := make([]float64, n+1)
	logs := make([]float64, n+1)
	m := math.Inf(-1)
	for x := range pmf {
		logs[x] = math.Inf(-1)
		if x <= tc && n-x <= tp {
			logs[x] = seqLogChoose(tc, x) + seqLogChoose(tp, n-x) + float64(x)*math.Log(psi)
		}
		m = math.Max(m, logs[x])
	}
	sum := 0.0
	for x := range pmf {
		pmf[x] = math.Exp(logs[x] - m)
		sum += pmf[x]
	}
	for x := range pmf {
		pmf[x] /= sum
	}
	return pmf
}

func seqLogChoose(n, k int) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return a - b - c
}

func TestSequentialInvalidBatches(t *testing.T) {
	tests := []struct {
		batch SequentialBatch
		want  string
	}{
		{SequentialBatch{CanaryErrors: -1, CanaryTotal: 10, PrimaryTotal: 10}, "CanaryErrors is negative"},
		{SequentialBatch{CanaryTotal: -10, PrimaryTotal: 10}, "CanaryTotal is negative"},
		{SequentialBatch{CanaryTotal: 10, PrimaryErrors: -0.5, PrimaryTotal: 10}, "PrimaryErrors is negative"},
		{SequentialBatch{CanaryTotal: 10, PrimaryTotal: math.Copysign(1e-300, -1)}, "PrimaryTotal is negative"},
		{SequentialBatch{CanaryErrors: math.NaN(), CanaryTotal: 10, PrimaryTotal: 10}, "CanaryErrors is NaN"},
		{SequentialBatch{CanaryTotal: 10, PrimaryTotal: math.NaN()}, "PrimaryTotal is NaN"},
		{SequentialBatch{CanaryTotal: math.Inf(1), PrimaryTotal: 10}, "CanaryTotal is infinite"},
		{SequentialBatch{CanaryTotal: 10, PrimaryErrors: math.Inf(-1), PrimaryTotal: 10}, "PrimaryErrors is infinite"},
		{SequentialBatch{CanaryErrors: 11, CanaryTotal: 10, PrimaryTotal: 10}, "CanaryErrors (11) is greater than CanaryTotal (10)"},
		{SequentialBatch{CanaryTotal: 10, PrimaryErrors: 10.2, PrimaryTotal: 10.1}, "PrimaryErrors (10.2) is greater than PrimaryTotal (10.1)"},
		{SequentialBatch{CanaryTotal: 1e17, PrimaryTotal: 10}, "CanaryTotal is too large"},
	}
	start := seqMustUpdate(t, Evidence{}, SequentialBatch{CanaryErrors: 3, CanaryTotal: 100, PrimaryErrors: 19, PrimaryTotal: 1900})
	for _, tt := range tests {
		got, err := start.Update(tt.batch)
		if err == nil {
			t.Errorf("Update(%+v) succeeded, want an error containing %q", tt.batch, tt.want)
			continue
		}
		// The message names the field first and the value after it.
		msg := strings.NewReplacer(" (-1)", "", " (-10)", "", " (-0.5)", "", " (-1e-300)", "", " (1e+17 > 2^53)", "").Replace(err.Error())
		if !strings.Contains(msg, tt.want) {
			t.Errorf("Update(%+v) = %q, want it to contain %q", tt.batch, err, tt.want)
		}
		if got != start {
			t.Errorf("Update(%+v) returned changed evidence with its error", tt.batch)
		}
	}
}

func TestSequentialEncoding(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	evidences := []Evidence{{}}
	e := Evidence{}
	for range 40 {
		tc := float64(rng.IntN(2000) + 1)
		tp := float64(rng.IntN(20000) + 1)
		e = seqMustUpdate(t, e, SequentialBatch{
			CanaryErrors:  math.Floor(tc * rng.Float64() * 0.05),
			CanaryTotal:   tc,
			PrimaryErrors: math.Floor(tp * rng.Float64() * 0.02),
			PrimaryTotal:  tp,
		})
		evidences = append(evidences, e)
	}
	// Very strong evidence, beyond what a float64 e-value can hold.
	evidences = append(evidences, seqMustUpdate(t, Evidence{}, seqRepeat(SequentialBatch{CanaryErrors: 1e6, CanaryTotal: 1e6, PrimaryErrors: 1, PrimaryTotal: 1e6}, 10)...))
	for _, e := range evidences {
		s := e.String()
		if len(s) > 256 {
			t.Errorf("String() is %d bytes long", len(s))
		}
		for _, r := range s {
			if r <= ' ' || r > '~' {
				t.Errorf("String() = %q holds %q", s, r)
			}
		}
		if !strings.HasPrefix(s, "v1:") {
			t.Errorf("String() = %q, want a v1: prefix", s)
		}
		got, err := ParseEvidence(s)
		if err != nil {
			t.Fatalf("ParseEvidence(%q): %v", s, err)
		}
		if got != e {
			t.Errorf("ParseEvidence(%q) = %v, want %v", s, got, e)
		}
		if a, b := got.EValue(), e.EValue(); a != b && math.Abs(a-b) > 1e-9*math.Abs(b) {
			t.Errorf("EValue after a round trip = %g, want %g", a, b)
		}
	}
	t.Logf("encoding of %d batches: %s", e.Batches(), e)

	fresh, err := ParseEvidence("")
	if err != nil || fresh.EValue() != 1 || fresh.Batches() != 0 {
		t.Errorf(`ParseEvidence("") = %v (EValue %g), %v; want fresh evidence`, fresh, fresh.EValue(), err)
	}
}

func TestSequentialParseMalformed(t *testing.T) {
	good := seqMustUpdate(t, Evidence{}, SequentialBatch{CanaryErrors: 3, CanaryTotal: 100, PrimaryErrors: 19, PrimaryTotal: 1900}).String()
	data := good[strings.LastIndex(good, ":")+1:]
	// The bits of +Inf, then nine zeros.
	inf := "AAAAAAAA8H8" + strings.Repeat("A", len(data)-11)
	for _, s := range []string{
		"v1",
		"v1:",
		"v1:1",
		"v1:1:",
		"x",
		" " + good,
		good + " ",
		good + ":",
		"v2" + good[2:],
		"V1" + good[2:],
		"v1:-1:" + data,
		"v1:+1:" + data,
		"v1:01:" + data,
		"v1:1.5:" + data,
		"v1:a:" + data,
		"v1:99999999999999999999999:" + data,
		"v1:1:" + data[:len(data)-1],
		"v1:1:" + data + "AA",
		"v1:1:" + data + "=",
		"v1:1:" + strings.Replace(data, data[:1], "*", 1),
		"v1:1:" + inf,
		"v1:1:AAAAAAAA-H8" + strings.Repeat("A", len(data)-11), // NaN
	} {
		if e, err := ParseEvidence(s); err == nil {
			t.Errorf("ParseEvidence(%q) = %v, want an error", s, e)
		}
	}
}

func TestSequentialFailsLevels(t *testing.T) {
	// One batch in which x = n = 1 and s = 0.5: EValue = (1/10) sum_j 2*rho_j/(1+rho_j).
	e := seqMustUpdate(t, Evidence{}, SequentialBatch{CanaryErrors: 1, CanaryTotal: 10, PrimaryTotal: 10})
	v := e.EValue()
	for _, tt := range []struct {
		alpha float64
		want  bool
	}{
		{1 / v, true},
		{1 / v * 0.999, false},
		{0.99, true},
		{0.05, false},
		{0, false},
		{1, false},
		{-0.1, false},
		{1.5, false},
		{math.NaN(), false},
		{math.Inf(1), false},
	} {
		if got := SequentialFails(e, tt.alpha); got != tt.want {
			t.Errorf("SequentialFails(EValue %g, alpha %g) = %v, want %v", v, tt.alpha, got, tt.want)
		}
	}
	if !SequentialFails(seqMustUpdate(t, Evidence{}, SequentialBatch{CanaryErrors: 1e6, CanaryTotal: 1e6, PrimaryTotal: 1e6}), 1e-300) {
		t.Errorf("SequentialFails with an infinite e-value = false")
	}
}

// seqSimConfig describes simulated releases.
type seqSimConfig struct {
	seed1, seed2 uint64
	releases     int
	batches      int
	// requests is the mean number of requests per batch, canary and primary
	// together.
	requests float64
	// canaryRate and primaryRate are the per-request error probabilities.
	canaryRate, primaryRate float64
	// alpha is the level of both tests.
	alpha float64
}

// seqSimResult is what seqSimulate measured.
type seqSimResult struct {
	// sequential and naive are the fractions of releases in which the
	// sequential test and the repeated z-test failed at some batch.
	sequential, naive float64
	// firstFail holds, for each release, the batch (1-based) at which the
	// sequential test first failed, or 0 if it never did.
	firstFail []int
}

// seqWeights is the canary's traffic share per batch before random changes:
// 5% for 5 batches, 10% for 5, 25% for 5 and 50% after.
func seqWeight(batch int) float64 {
	switch {
	case batch < 5:
		return 0.05
	case batch < 10:
		return 0.10
	case batch < 15:
		return 0.25
	default:
		return 0.50
	}
}

// seqSimulate runs cfg.releases simulated releases of cfg.batches batches.
// In each batch the number of requests is Poisson-like with mean
// cfg.requests (a rounded normal with the Poisson's variance); the canary's
// share follows seqWeight, except that one batch in five uses a share drawn
// uniformly from [2%, 60%] instead; the canary's requests are binomial (again
// a rounded normal) with that share; and each request fails independently
// with its side's error probability (exact Bernoulli errors). After every
// batch it evaluates the sequential test and, on the cumulative counts, a
// one-sided two-proportion z-test at level cfg.alpha.
func seqSimulate(cfg seqSimConfig) seqSimResult {
	rng := rand.New(rand.NewPCG(cfg.seed1, cfg.seed2))
	zCrit := seqNormalQuantile(1 - cfg.alpha)
	res := seqSimResult{firstFail: make([]int, cfg.releases)}
	naiveFails := 0
	for r := range cfg.releases {
		e := Evidence{}
		var cx, ctc, cy, ctp float64
		naiveFailed := false
		for k := range cfg.batches {
			share := seqWeight(k)
			if rng.IntN(5) == 0 {
				share = 0.02 + 0.58*rng.Float64()
			}
			total := seqRoundedNormal(rng, cfg.requests, math.Sqrt(cfg.requests), math.MaxInt)
			tc := seqRoundedNormal(rng, float64(total)*share, math.Sqrt(float64(total)*share*(1-share)), total)
			tp := total - tc
			x := seqBinomial(rng, tc, cfg.canaryRate)
			y := seqBinomial(rng, tp, cfg.primaryRate)
			var err error
			e, err = e.Update(SequentialBatch{CanaryErrors: float64(x), CanaryTotal: float64(tc), PrimaryErrors: float64(y), PrimaryTotal: float64(tp)})
			if err != nil {
				panic(err)
			}
			if res.firstFail[r] == 0 && SequentialFails(e, cfg.alpha) {
				res.firstFail[r] = k + 1
			}
			cx, ctc, cy, ctp = cx+float64(x), ctc+float64(tc), cy+float64(y), ctp+float64(tp)
			if !naiveFailed && ctc > 0 && ctp > 0 {
				pooled := (cx + cy) / (ctc + ctp)
				se := math.Sqrt(pooled * (1 - pooled) * (1/ctc + 1/ctp))
				if se > 0 && (cx/ctc-cy/ctp)/se > zCrit {
					naiveFailed = true
				}
			}
		}
		if res.firstFail[r] > 0 {
			res.sequential++
		}
		if naiveFailed {
			naiveFails++
		}
	}
	res.sequential /= float64(cfg.releases)
	res.naive = float64(naiveFails) / float64(cfg.releases)
	return res
}

// seqRoundedNormal draws a normal with the given mean and standard
// deviation, rounded and clamped to [0, max].
func seqRoundedNormal(rng *rand.Rand, mean, sd float64, max int) int {
	v := math.Round(mean + sd*rng.NormFloat64())
	if v < 0 {
		return 0
	}
	if v > float64(max) {
		return max
	}
	return int(v)
}

// seqBinomial draws Binomial(n, p) exactly by skipping from one success to
// the next with geometric gaps: O(n*p) work.
func seqBinomial(rng *rand.Rand, n int, p float64) int {
	if p <= 0 || n <= 0 {
		return 0
	}
	if p >= 1 {
		return n
	}
	logQ := math.Log1p(-p)
	count, pos := 0, 0
	for {
		// 1 - Float64() is in (0, 1]; the gap to the next success is >= 1.
		gap := math.Floor(math.Log(1-rng.Float64())/logQ) + 1
		if float64(pos)+gap > float64(n) {
			return count
		}
		pos += int(gap)
		count++
	}
}

// seqNormalQuantile is the standard normal quantile, by bisection on Erfc.
func seqNormalQuantile(p float64) float64 {
	lo, hi := -10.0, 10.0
	for range 200 {
		mid := (lo + hi) / 2
		if 0.5*math.Erfc(-mid/math.Sqrt2) < p {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

// seqSimH0 and seqSimH1 are the simulations quoted in docs/sequential-test.md.
var (
	seqSimH0 = seqSimConfig{seed1: 2024, seed2: 1, releases: 10000, batches: 30, requests: 1000, canaryRate: 0.01, primaryRate: 0.01, alpha: 0.05}
	seqSimH1 = seqSimConfig{seed1: 2024, seed2: 2, releases: 500, batches: 30, requests: 1000, canaryRate: 0.03, primaryRate: 0.01, alpha: 0.05}
)

func TestSequentialFalsePositiveRate(t *testing.T) {
	cfg := seqSimH0
	res := seqSimulate(cfg)
	se := math.Sqrt(cfg.alpha * (1 - cfg.alpha) / float64(cfg.releases))
	t.Logf("%d releases of %d batches under H0 (both error rates %g, %g requests per batch, seed %d,%d):",
		cfg.releases, cfg.batches, cfg.canaryRate, cfg.requests, cfg.seed1, cfg.seed2)
	t.Logf("sequential test false-positive rate %.4f (alpha %g, Monte Carlo standard error at alpha %.4f)", res.sequential, cfg.alpha, se)
	t.Logf("z-test repeated after every batch: false-positive rate %.4f", res.naive)
	if res.sequential > cfg.alpha+3*se {
		t.Errorf("sequential false-positive rate %.4f > alpha %g + 3 standard errors %.4f", res.sequential, cfg.alpha, 3*se)
	}
	if res.naive < 2*cfg.alpha {
		t.Errorf("repeated z-test false-positive rate %.4f, want at least twice alpha %g", res.naive, cfg.alpha)
	}
}

func TestSequentialPower(t *testing.T) {
	cfg := seqSimH1
	res := seqSimulate(cfg)
	// Releases that never fail count as batches+1 for the median.
	first := make([]int, len(res.firstFail))
	for i, k := range res.firstFail {
		if k == 0 {
			k = cfg.batches + 1
		}
		first[i] = k
	}
	slices.Sort(first)
	t.Logf("%d releases of %d batches with canary error rate %g vs primary %g (%g requests per batch, seed %d,%d):",
		cfg.releases, cfg.batches, cfg.canaryRate, cfg.primaryRate, cfg.requests, cfg.seed1, cfg.seed2)
	t.Logf("sequential test failed %.4f of them; median batch of the first failure %d, 90th percentile %d; repeated z-test failed %.4f",
		res.sequential, first[len(first)/2], first[len(first)*9/10], res.naive)
	if res.sequential < 0.9 {
		t.Errorf("power %.4f, want at least 0.9", res.sequential)
	}
}

// TestSequentialScenarios logs the figures of the table in
// docs/sequential-test.md: the fraction of releases failed by each test for
// several volumes of traffic and relative risks, 1000 releases each.
func TestSequentialScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("a table for the documentation")
	}
	t.Logf("requests/batch  rho  sequential  z-test  median batch of first sequential failure")
	for i, requests := range []float64{200, 1000, 5000} {
		for j, rho := range []float64{0.5, 1, 1.5, 2, 3} {
			cfg := seqSimConfig{seed1: 2024, seed2: uint64(100 + 10*i + j), releases: 1000, batches: 30,
				requests: requests, canaryRate: 0.01 * rho, primaryRate: 0.01, alpha: 0.05}
			res := seqSimulate(cfg)
			first := make([]int, len(res.firstFail))
			for k, b := range res.firstFail {
				if b == 0 {
					b = cfg.batches + 1
				}
				first[k] = b
			}
			slices.Sort(first)
			median := "never"
			if m := first[len(first)/2]; m <= cfg.batches {
				median = strconv.Itoa(m)
			}
			t.Logf("%14g  %3g  %10.3f  %6.3f  %s", requests, rho, res.sequential, res.naive, median)
			if rho <= 1 && res.sequential > cfg.alpha+3*math.Sqrt(cfg.alpha*(1-cfg.alpha)/float64(cfg.releases)) {
				t.Errorf("requests %g rho %g: sequential false-positive rate %.4f", requests, rho, res.sequential)
			}
		}
	}
}
