package analysis

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// This file holds an anytime-valid sequential test of H0 "the canary's
// per-request error rate is no higher than the primary's" against H1 "it is
// higher". docs/sequential-test.md explains the model, the formulas and why
// the test may be evaluated after every batch without inflating the
// false-positive rate.
//
// In short: given n = x + y errors in a batch in which the canary served a
// share s = Tc/(Tc+Tp) of the requests, the canary's error count x is
// Binomial(n, theta(rho)) with theta(rho) = rho*s/(rho*s + 1 - s), where rho
// is the ratio of the canary's error rate to the primary's. The likelihood
// ratio of rho against rho = 1 for that batch is
//
//	LR(rho) = rho^x / (1 + (rho-1)*s)^n
//
// For every fixed rho > 1, the product of these ratios over batches is a
// nonnegative supermartingale whenever the canary is no worse than the
// primary, and so is the mixture sum_j w_j * prod_k LR_k(rho_j) over the
// fixed grid seqGrid with the fixed weights w_j = 1/len(seqGrid). Ville's
// inequality then bounds by alpha the probability that the mixture ever
// reaches 1/alpha.

// seqGrid is the fixed grid of relative risks rho = p_canary/p_primary of
// the alternatives mixed by the test. Each point has prior weight
// 1/len(seqGrid). Changing the grid or the weights changes the meaning of
// encoded evidence: bump seqVersion when doing so.
var seqGrid = [...]float64{1.25, 1.5, 2, 2.5, 3, 4, 5, 7, 10, 20}

// seqGridSize is the number of alternatives mixed by the test.
const seqGridSize = len(seqGrid)

// seqVersion prefixes encoded evidence; it names the grid and the prior.
const seqVersion = "v1"

// seqMaxCount is the largest count Update accepts: above 2^53 a float64 no
// longer holds every integer, and no analysis interval serves that many
// requests.
const seqMaxCount = 1 << 53

// SequentialBatch is what one evaluation saw since the previous one.
type SequentialBatch struct {
	CanaryErrors, CanaryTotal, PrimaryErrors, PrimaryTotal float64
}

// Evidence is the state of the sequential test between evaluations.
//
// The zero value is fresh evidence, with EValue 1. Evidence is a value: Update
// returns a new one and leaves its receiver unchanged.
type Evidence struct {
	// logLR[j] is the log of the product over the counted batches of the
	// likelihood ratios of rho = seqGrid[j] against rho = 1.
	logLR [seqGridSize]float64
	// batches is the number of batches counted (with errors and with traffic
	// on both sides).
	batches int
}

// Update returns the evidence after one more batch. It rejects negative, NaN or infinite counts, and errors greater than totals, with an error saying which.
//
// The counts are rounded to the nearest integer first, since PromQL's
// increase() extrapolates. A batch without errors, or in which the canary or
// the primary served no request, leaves the evidence unchanged and is not
// counted. Counts above 2^53 are rejected too.
func (e Evidence) Update(b SequentialBatch) (Evidence, error) {
	if err := seqCheckBatch(b); err != nil {
		return e, err
	}
	x := math.Round(b.CanaryErrors)
	y := math.Round(b.PrimaryErrors)
	tc := math.Round(b.CanaryTotal)
	tp := math.Round(b.PrimaryTotal)
	n := x + y
	if n == 0 || tc == 0 || tp == 0 {
		return e, nil
	}
	s := tc / (tc + tp)
	next := e
	for j, rho := range seqGrid {
		next.logLR[j] += seqLogLR(rho, x, n, s)
	}
	next.batches++
	return next, nil
}

// seqLogLR is the log of the likelihood ratio of relative risk rho against
// relative risk 1 for a batch with x canary errors out of n errors, in which
// the canary served the share s of the requests:
// x*log(rho) - n*log(1 + (rho-1)*s).
func seqLogLR(rho, x, n, s float64) float64 {
	return x*math.Log(rho) - n*math.Log1p((rho-1)*s)
}

// seqCheckBatch says which count of b, if any, is invalid.
func seqCheckBatch(b SequentialBatch) error {
	counts := []struct {
		name  string
		value float64
	}{
		{"CanaryErrors", b.CanaryErrors},
		{"CanaryTotal", b.CanaryTotal},
		{"PrimaryErrors", b.PrimaryErrors},
		{"PrimaryTotal", b.PrimaryTotal},
	}
	for _, c := range counts {
		switch {
		case math.IsNaN(c.value):
			return fmt.Errorf("sequential batch: %s is NaN", c.name)
		case math.IsInf(c.value, 0):
			return fmt.Errorf("sequential batch: %s is infinite", c.name)
		case c.value < 0:
			return fmt.Errorf("sequential batch: %s is negative (%g)", c.name, c.value)
		case c.value > seqMaxCount:
			return fmt.Errorf("sequential batch: %s is too large (%g > 2^53)", c.name, c.value)
		}
	}
	if b.CanaryErrors > b.CanaryTotal {
		return fmt.Errorf("sequential batch: CanaryErrors (%g) is greater than CanaryTotal (%g)", b.CanaryErrors, b.CanaryTotal)
	}
	if b.PrimaryErrors > b.PrimaryTotal {
		return fmt.Errorf("sequential batch: PrimaryErrors (%g) is greater than PrimaryTotal (%g)", b.PrimaryErrors, b.PrimaryTotal)
	}
	return nil
}

// EValue is the mixture likelihood ratio: the evidence against H0. It starts at 1.
//
// It is +Inf when the evidence is too large for a float64.
func (e Evidence) EValue() float64 {
	// (1/G) * sum_j exp(L_j), computed as exp(m) * (sum_j exp(L_j - m)) / G
	// with m = max_j L_j so that no term overflows.
	m := e.logLR[0]
	for _, l := range e.logLR[1:] {
		m = math.Max(m, l)
	}
	sum := 0.0
	for _, l := range e.logLR {
		sum += math.Exp(l - m)
	}
	return math.Exp(m) * sum / float64(seqGridSize)
}

// Batches is how many batches with errors have been counted.
func (e Evidence) Batches() int {
	return e.batches
}

// String encodes the evidence compactly (at most 256 bytes, printable ASCII, no spaces needed) for status; ParseEvidence reads it back exactly enough that EValue is unchanged to 1e-9 relative. ParseEvidence("") is fresh evidence (EValue 1). A malformed string is an error.
//
// The encoding is "v1:<batches>:<log likelihood ratios>", the ratios being
// the IEEE 754 bits of the float64s, little-endian, in unpadded URL-safe
// base64: at most 130 bytes, and ParseEvidence restores them bit for bit.
func (e Evidence) String() string {
	var raw [8 * seqGridSize]byte
	for j, l := range e.logLR {
		binary.LittleEndian.PutUint64(raw[8*j:], math.Float64bits(l))
	}
	return seqVersion + ":" + strconv.Itoa(e.batches) + ":" + base64.RawURLEncoding.EncodeToString(raw[:])
}

// ParseEvidence reads evidence written by Evidence.String.
func ParseEvidence(s string) (Evidence, error) {
	if s == "" {
		return Evidence{}, nil
	}
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return Evidence{}, fmt.Errorf("evidence %q: want %s:<batches>:<data>", s, seqVersion)
	}
	if parts[0] != seqVersion {
		return Evidence{}, fmt.Errorf("evidence %q: unknown version %q, want %s", s, parts[0], seqVersion)
	}
	var e Evidence
	batches, err := strconv.Atoi(parts[1])
	if err != nil || batches < 0 || parts[1] != strconv.Itoa(batches) {
		return Evidence{}, fmt.Errorf("evidence %q: batches %q is not a nonnegative integer", s, parts[1])
	}
	e.batches = batches
	raw, err := base64.RawURLEncoding.Strict().DecodeString(parts[2])
	if err != nil {
		return Evidence{}, fmt.Errorf("evidence %q: data: %w", s, err)
	}
	if len(raw) != 8*seqGridSize {
		return Evidence{}, fmt.Errorf("evidence %q: data holds %d bytes, want %d", s, len(raw), 8*seqGridSize)
	}
	for j := range e.logLR {
		l := math.Float64frombits(binary.LittleEndian.Uint64(raw[8*j:]))
		if math.IsNaN(l) || math.IsInf(l, 0) {
			return Evidence{}, errors.New("evidence " + strconv.Quote(s) + ": data holds a value that is not finite")
		}
		e.logLR[j] = l
	}
	return e, nil
}

// SequentialFails says whether the evidence rejects H0 at level alpha (EValue >= 1/alpha). alpha must be in (0, 1).
//
// For an alpha outside (0, 1), or NaN, it returns false: a misconfigured level
// never fails a release.
func SequentialFails(e Evidence, alpha float64) bool {
	if !(alpha > 0 && alpha < 1) {
		return false
	}
	return e.EValue() >= 1/alpha
}
