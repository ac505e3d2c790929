package main

import (
	"cmp"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The size of every picture, in pixels at dpi.
const (
	widthPx  = 800
	heightPx = 500
	dpi      = 96
	// margin is the white space around a plot.
	margin = 4 * vg.Millimeter
)

// series is one line of a plot: a value per x, several when the benchmark
// ran several times.
type series struct {
	name   string
	points plotter.XYs
}

// linePlot draws each series as its points and a line through the median
// at each x; nil when no series has a point.
func linePlot(title, xLabel, yLabel string, logX, logY bool, ss []series) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.XOffs = vg.Points(8)
	p.Add(plotter.NewGrid())
	var xs []float64
	if !slices.ContainsFunc(ss, func(s series) bool { return len(s.points) > 0 }) {
		return nil, nil
	}
	for i, s := range ss {
		if len(s.points) == 0 {
			continue
		}
		med := medians(s.points)
		line, err := plotter.NewLine(med)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		line.Color = plotutil.Color(i)
		line.Dashes = plotutil.Dashes(i)
		line.Width = vg.Points(1.5)
		dots, err := plotter.NewScatter(s.points)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		dots.Color = plotutil.Color(i)
		dots.Shape = plotutil.Shape(i)
		dots.Radius = vg.Points(3)
		p.Add(line, dots)
		p.Legend.Add(s.name, line, dots)
		for _, m := range med {
			xs = append(xs, m.X)
		}
	}
	if logX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = valueTicks(xs)
	}
	setY(p, logY, legendRoom)
	return p, nil
}

// legendRoom is the part of a line plot's height kept free above the
// data for the legend.
const legendRoom = 0.3

// setY sets the y axis: from 0, or on a log scale from the decade below
// the data, with room of the plot's height above the data.
func setY(p *plot.Plot, logY bool, room float64) {
	lo, hi := p.Y.Min, p.Y.Max
	if !logY {
		ticks := linearTicks(hi / (1 - room))
		p.Y.Min, p.Y.Max = 0, ticks[len(ticks)-1].Value
		p.Y.Tick.Marker = ticks
		return
	}
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = logTicks{}
	p.Y.Min = math.Pow(10, math.Floor(math.Log10(lo)))
	decades := math.Log10(hi / p.Y.Min)
	p.Y.Max = hi * math.Pow(10, decades*room/(1-room))
}

// medians is the median y at each x of pts, sorted by x.
func medians(pts plotter.XYs) plotter.XYs {
	byX := map[float64][]float64{}
	for _, pt := range pts {
		byX[pt.X] = append(byX[pt.X], pt.Y)
	}
	var out plotter.XYs
	for x, ys := range byX {
		out = append(out, plotter.XY{X: x, Y: median(ys)})
	}
	slices.SortFunc(out, func(a, b plotter.XY) int { return cmp.Compare(a.X, b.X) })
	return out
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// valueTicks labels the x values that have data: 1000 as "1k", 50000 as
// "50k".
func valueTicks(xs []float64) plot.ConstantTicks {
	slices.Sort(xs)
	xs = slices.Compact(xs)
	var ticks plot.ConstantTicks
	for _, x := range xs {
		ticks = append(ticks, plot.Tick{Value: x, Label: short(x)})
	}
	return ticks
}

func short(x float64) string {
	switch {
	case x >= 1e6 && math.Mod(x, 1e5) == 0:
		return strconv.FormatFloat(x/1e6, 'f', -1, 64) + "M"
	case x >= 1e3 && math.Mod(x, 100) == 0:
		return strconv.FormatFloat(x/1e3, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(x, 'f', -1, 64)
}

// linearTicks labels 0 to at least hi in at most six steps of 1, 2, 2.5
// or 5 times a power of ten.
func linearTicks(hi float64) plot.ConstantTicks {
	if hi <= 0 {
		hi = 1
	}
	var step float64
	for e := math.Floor(math.Log10(hi / 6)); step == 0; e++ {
		for _, m := range []float64{1, 2, 2.5, 5} {
			if v := m * math.Pow(10, e); hi/v <= 6 {
				step = v
				break
			}
		}
	}
	var ticks plot.ConstantTicks
	for i := 0.0; ; i++ {
		v := i * step
		ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', 6, 64)})
		if v >= hi {
			return ticks
		}
	}
}

// logTicks marks a log axis at every 1, 2 and 5 times a power of ten, and
// labels them; across more than three decades only the powers of ten are
// labelled. (plot.LogTicks leaves out the decades below 1.)
type logTicks struct{}

// Ticks returns the ticks between lo and hi.
func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	first, last := int(math.Floor(math.Log10(lo))), int(math.Ceil(math.Log10(hi)))
	var ticks []plot.Tick
	for e := first; e <= last; e++ {
		for i := 1; i < 10; i++ {
			v := float64(i) * math.Pow10(e)
			if v < lo*(1-1e-9) || v > hi*(1+1e-9) {
				continue
			}
			t := plot.Tick{Value: v}
			if i == 1 || (last-first <= 3 && (i == 2 || i == 5)) {
				t.Label = strconv.FormatFloat(v, 'g', -1, 64)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

// spansDecades says whether positive values differ by more than a factor
// of limit, so a log axis reads better than a linear one.
func spansDecades(limit float64, vs ...float64) bool {
	lo, hi := math.Inf(1), 0.0
	for _, v := range vs {
		if v <= 0 {
			return false
		}
		lo, hi = min(lo, v), max(hi, v)
	}
	return len(vs) > 0 && hi/lo > limit
}

// revertPlots draws the revert benchmark: time and memory by commits.
func revertPlots(rs []revertSize) (map[string]*plot.Plot, error) {
	pick := func(name string, f func(revertSize) float64) series {
		s := series{name: name}
		for _, r := range rs {
			if v := f(r); v > 0 {
				s.points = append(s.points, plotter.XY{X: float64(r.Commits), Y: v})
			}
		}
		return s
	}
	logX := spansDecades(5, commitsOf(rs)...)
	timePlot, err := linePlot("Revert time by repository size (20,000 files)", "commits", "seconds", logX, true, []series{
		pick("git CLI: clone, revert, push", func(r revertSize) float64 { return r.Git.Cold.Seconds }),
		pick("Backstop: clone, revert, push", func(r revertSize) float64 { return r.Backstop.Cold.Seconds }),
		pick("git CLI: pull, revert, push", func(r revertSize) float64 { return r.Git.Cached.Seconds }),
		pick("Backstop on the cached clone", func(r revertSize) float64 { return r.Backstop.Cached.Seconds }),
	})
	if err != nil {
		return nil, err
	}
	gitAll := func(r revertRun) float64 { return max(r.AllRSSMiB, r.PeakRSSMiB) }
	memPlot, err := linePlot("Revert peak memory by repository size (20,000 files)", "commits", "MiB resident", logX, false, []series{
		pick("git CLI: clone, revert, push (all processes)", func(r revertSize) float64 { return gitAll(r.Git.Cold) }),
		pick("Backstop: clone, revert, push (process)", func(r revertSize) float64 { return r.Backstop.Cold.PeakRSSMiB }),
		pick("git CLI: pull, revert, push (all processes)", func(r revertSize) float64 { return gitAll(r.Git.Cached) }),
		pick("Backstop on the cached clone (process)", func(r revertSize) float64 { return r.Backstop.Cached.PeakRSSMiB }),
	})
	if err != nil {
		return nil, err
	}
	return map[string]*plot.Plot{"revert-time.png": timePlot, "revert-memory.png": memPlot}, nil
}

func commitsOf(rs []revertSize) []float64 {
	var v []float64
	for _, r := range rs {
		v = append(v, float64(r.Commits))
	}
	return v
}

// reactionPlot draws a box per interval over its rounds, and each round
// as a dot.
func reactionPlot(iv intervals) (map[string]*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Reaction time"
	p.Y.Label.Text = "milliseconds"
	p.Add(plotter.NewGrid())
	var all []float64
	for _, n := range iv.names {
		all = append(all, iv.values[n]...)
	}
	logY := spansDecades(50, all...)
	for i, n := range iv.names {
		vs := iv.values[n]
		box, err := plotter.NewBoxPlot(vg.Points(30), float64(i), plotter.Values(vs))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		box.FillColor = color.RGBA{R: 0xdd, G: 0xe6, B: 0xf2, A: 0xff}
		pts := make(plotter.XYs, len(vs))
		for j, v := range vs {
			pts[j] = plotter.XY{X: float64(i), Y: v}
		}
		dots, err := plotter.NewScatter(pts)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		dots.Color = plotutil.Color(0)
		dots.Radius = vg.Points(2)
		p.Add(box, dots)
	}
	p.NominalX(iv.names...)
	if len(iv.names) > 5 {
		p.X.Tick.Label.Rotation = math.Pi / 6
		p.X.Tick.Label.XAlign = draw.XRight
		p.X.Tick.Label.YAlign = draw.YTop
	}
	p.X.Label.Text = fmt.Sprintf("interval (%d rounds)", maxRounds(iv))
	setY(p, logY, 0.05)
	return map[string]*plot.Plot{"reaction.png": p}, nil
}

func maxRounds(iv intervals) int {
	n := 0
	for _, v := range iv.values {
		n = max(n, len(v))
	}
	return n
}

// scalePlots draws the scale benchmark: memory and step lag by Rollouts.
func scalePlots(ss []scaleSize) (map[string]*plot.Plot, error) {
	pick := func(name string, f func(scaleSize) float64) series {
		s := series{name: name}
		for _, r := range ss {
			if v := f(r); v > 0 {
				s.points = append(s.points, plotter.XY{X: float64(r.Rollouts), Y: v})
			}
		}
		return s
	}
	var rollouts []float64
	for _, s := range ss {
		rollouts = append(rollouts, float64(s.Rollouts))
	}
	logX := spansDecades(5, rollouts...)
	mem, err := linePlot("Manager peak memory by Rollouts", "Rollouts", "MiB resident", logX, false, []series{
		pick("peak RSS", func(s scaleSize) float64 { return s.RSSPeakMiB }),
	})
	if err != nil {
		return nil, err
	}
	var lags []float64
	for _, s := range ss {
		lags = append(lags, s.StepLagP50Ms, s.StepLagP99Ms)
	}
	lag, err := linePlot("Step lag by Rollouts", "Rollouts", "milliseconds", logX, spansDecades(50, lags...), []series{
		pick("p50", func(s scaleSize) float64 { return s.StepLagP50Ms }),
		pick("p99", func(s scaleSize) float64 { return s.StepLagP99Ms }),
	})
	if err != nil {
		return nil, err
	}
	return map[string]*plot.Plot{"scale-memory.png": mem, "scale-step-lag.png": lag}, nil
}

// savePNG writes p to dir/name as a widthPx × heightPx PNG.
func savePNG(p *plot.Plot, dir, name string) error {
	c := vgimg.NewWith(
		vgimg.UseWH(vg.Length(widthPx)*vg.Inch/dpi, vg.Length(heightPx)*vg.Inch/dpi),
		vgimg.UseDPI(dpi),
		vgimg.UseBackgroundColor(color.White),
	)
	p.Draw(draw.Crop(draw.New(c), margin, -margin, margin, -margin))
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
