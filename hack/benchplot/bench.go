package main

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// marker starts the JSON of a figures line.
const marker = "BENCH {"

// results are the figures of every BENCH line read, by kind.
type results struct {
	revert   []revertSize
	reaction intervals
	scale    []scaleSize
	// skipped counts the lines of kinds this tool does not draw, by kind.
	skipped map[string]int
}

// revertLine is {"kind":"revert","sizes":[...]}, printed by
// test/bench/revert.
type revertLine struct {
	Sizes []revertSize `json:"sizes"`
}

// revertSize is one repository size of the revert benchmark.
type revertSize struct {
	Commits  int        `json:"commits"`
	Files    int        `json:"files"`
	Git      revertSide `json:"git"`
	Backstop revertSide `json:"backstop"`
}

// revertSide is one tool's reverts: in a fresh clone and in a cached one.
type revertSide struct {
	Cold   revertRun `json:"cold"`
	Cached revertRun `json:"cached"`
}

// revertRun is one revert: its time, the largest resident set of one
// process, the largest sum over the git CLI's processes at once, and the
// largest Go heap.
type revertRun struct {
	Seconds    float64 `json:"seconds"`
	PeakRSSMiB float64 `json:"peakRSSMiB"`
	AllRSSMiB  float64 `json:"allRSSMiB"`
	HeapMiB    float64 `json:"heapMiB"`
}

// reactionLine is {"kind":"reaction", ...} with the intervals either as
// "rounds", one object per round keyed by interval name, or as
// "intervalsMs", one list per interval name; both in milliseconds. It
// also reads "perRound", a list of rounds each with "msFromOnset": the
// moments of a round in milliseconds from the breach, drawn in the order
// of their medians. "rounds" may be a count instead, which is ignored.
type reactionLine struct {
	Rounds      json.RawMessage `json:"rounds"`
	IntervalsMs intervals       `json:"intervalsMs"`
	PerRound    []struct {
		MsFromOnset intervals `json:"msFromOnset"`
	} `json:"perRound"`
}

// intervals are values by name, the names in the order first seen.
type intervals struct {
	names  []string
	values map[string][]float64
}

func (iv *intervals) add(name string, v ...float64) {
	if iv.values == nil {
		iv.values = map[string][]float64{}
	}
	if _, ok := iv.values[name]; !ok {
		iv.names = append(iv.names, name)
	}
	iv.values[name] = append(iv.values[name], v...)
}

func (iv *intervals) merge(o intervals) {
	for _, n := range o.names {
		iv.add(n, o.values[n]...)
	}
}

// UnmarshalJSON reads an object whose values are numbers or lists of
// numbers, keeping the order of its keys.
func (iv *intervals) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("want an object of interval names")
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		name := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		var one float64
		var many []float64
		if err := json.Unmarshal(raw, &one); err == nil {
			iv.add(name, one)
		} else if err := json.Unmarshal(raw, &many); err == nil {
			iv.add(name, many...)
		} else {
			return fmt.Errorf("interval %q: want milliseconds, a number or a list of numbers", name)
		}
	}
	return nil
}

// scaleLine is {"kind":"scale","sizes":[...]} ("results" is read as
// "sizes"), or one size with its fields at the top level.
type scaleLine struct {
	scaleSize
	Sizes   []scaleSize `json:"sizes"`
	Results []scaleSize `json:"results"`
}

// scaleSize is one size of the scale benchmark. "size" is read as
// "rollouts", and step lags in seconds as step lags in milliseconds; a
// size with an "error" is left out.
type scaleSize struct {
	Rollouts             int     `json:"rollouts"`
	RSSPeakMiB           float64 `json:"rssPeakMiB"`
	CPUSeconds           float64 `json:"cpuSeconds"`
	StepLagP50Ms         float64 `json:"stepLagP50Ms"`
	StepLagP99Ms         float64 `json:"stepLagP99Ms"`
	APIRequestsPerSecond float64 `json:"apiRequestsPerSecond"`
	PromQueriesPerSecond float64 `json:"promQueriesPerSecond"`

	Size              int     `json:"size"`
	StepLagP50Seconds float64 `json:"stepLagP50Seconds"`
	StepLagP99Seconds float64 `json:"stepLagP99Seconds"`
	Error             string  `json:"error"`
}

// normal fills the fields of scaleSize from their other spellings, and
// says whether the size has figures.
func (s *scaleSize) normal() bool {
	if s.Rollouts == 0 {
		s.Rollouts = s.Size
	}
	if s.StepLagP50Ms == 0 {
		s.StepLagP50Ms = s.StepLagP50Seconds * 1000
	}
	if s.StepLagP99Ms == 0 {
		s.StepLagP99Ms = s.StepLagP99Seconds * 1000
	}
	return s.Rollouts > 0 && s.Error == ""
}

// moments are intervals measured from one start: their names are ordered
// by their medians.
func moments(iv intervals) intervals {
	med := map[string]float64{}
	for _, n := range iv.names {
		med[n] = median(iv.values[n])
	}
	names := slices.Clone(iv.names)
	slices.SortStableFunc(names, func(a, b string) int { return cmp.Compare(med[a], med[b]) })
	return intervals{names: names, values: iv.values}
}

// read adds the BENCH lines of r, named name in errors, to res. A line
// holds "BENCH " and a JSON object anywhere in it, so benchmark output
// around it does no harm.
func (res *results) read(name string, r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		i := strings.Index(sc.Text(), marker)
		if i < 0 {
			continue
		}
		if err := res.add(sc.Text()[i+len(marker)-1:]); err != nil {
			return fmt.Errorf("%s:%d: %w", name, n, err)
		}
	}
	return sc.Err()
}

// add decodes one BENCH object, ignoring what follows it on the line.
func (res *results) add(text string) error {
	var raw json.RawMessage
	if err := json.NewDecoder(strings.NewReader(text)).Decode(&raw); err != nil {
		return err
	}
	var head struct {
		Kind  string `json:"kind"`
		Bench string `json:"bench"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return err
	}
	kind := cmp.Or(head.Kind, head.Bench)
	switch kind {
	case "revert":
		var l revertLine
		if err := json.Unmarshal(raw, &l); err != nil {
			return fmt.Errorf("a revert line: %w", err)
		}
		res.revert = append(res.revert, l.Sizes...)
	case "reaction":
		var l reactionLine
		if err := json.Unmarshal(raw, &l); err != nil {
			return fmt.Errorf("a reaction line: %w", err)
		}
		var rounds []intervals
		if t := bytes.TrimSpace(l.Rounds); len(t) > 0 && t[0] == '[' {
			if err := json.Unmarshal(t, &rounds); err != nil {
				return fmt.Errorf("a reaction line: %w", err)
			}
		}
		for _, r := range rounds {
			res.reaction.merge(r)
		}
		res.reaction.merge(l.IntervalsMs)
		if len(l.IntervalsMs.names) == 0 {
			// Only moments from the onset: drawn as the intervals between
			// them.
			var fromOnset intervals
			for _, r := range l.PerRound {
				fromOnset.merge(r.MsFromOnset)
			}
			res.reaction.merge(moments(fromOnset))
		}
	case "scale":
		var l scaleLine
		if err := json.Unmarshal(raw, &l); err != nil {
			return fmt.Errorf("a scale line: %w", err)
		}
		for _, s := range append(append([]scaleSize{l.scaleSize}, l.Sizes...), l.Results...) {
			if s.normal() {
				res.scale = append(res.scale, s)
			}
		}
	case "":
		return errors.New(`a BENCH line without "kind"`)
	default:
		if res.skipped == nil {
			res.skipped = map[string]int{}
		}
		res.skipped[kind]++
	}
	return nil
}
