package console

import (
	"fmt"
	"time"
)

// Charts are drawn on the server as SVG: one stacked bar per time bucket, a segment per level.
// The page needs no script or chart library to show them, and the CSP stays strict.

const (
	chartWidth  = 720.0
	chartHeight = 140.0
	axisHeight  = 18.0
)

type chart struct {
	Label   string
	Problem string
	Total   int64
	Max     int64
	Bars    []bar
	Ticks   []tick
	Width   float64
	Height  float64
	Legend  []string
}

type bar struct {
	X, W     float64
	Segments []segment
	Title    string
}

type segment struct {
	Y, H  float64
	Level string
}

type tick struct {
	X     float64
	Label string
}

// chartLevels are stacked bottom up.
var chartLevels = []string{"success", "warning", "error", "skipped"}

type bucket struct {
	Timestamp string `json:"timestamp"`
	Success   int64  `json:"success_count"`
	Error     int64  `json:"error_count"`
	Warning   int64  `json:"warning_count"`
	Skipped   int64  `json:"skipped_count"`
	Total     int64  `json:"total_count"`
}

func (b bucket) count(level string) int64 {
	switch level {
	case "success":
		return b.Success
	case "warning":
		return b.Warning
	case "error":
		return b.Error
	}
	return b.Skipped
}

// seriesChart lays out a time-series answer.
func seriesChart(label string, a *answer) chart {
	ch := chart{Label: label, Width: chartWidth, Height: chartHeight + axisHeight, Legend: chartLevels}
	if !a.OK() {
		ch.Problem = a.Problem()
		return ch
	}
	var ts struct {
		Buckets []bucket `json:"buckets"`
	}
	if err := a.decode(&ts); err != nil {
		ch.Problem = err.Error()
		return ch
	}
	return layout(ch, ts.Buckets)
}

func layout(ch chart, buckets []bucket) chart {
	for _, b := range buckets {
		ch.Max = max(ch.Max, b.Success+b.Warning+b.Error+b.Skipped)
		ch.Total += b.Success + b.Warning + b.Error + b.Skipped
	}
	if len(buckets) == 0 {
		return ch
	}
	step := chartWidth / float64(len(buckets))
	every := max(1, len(buckets)/6)
	for i, b := range buckets {
		x := float64(i) * step
		br := bar{X: x + step*0.1, W: step * 0.8}
		y := chartHeight
		var parts []string
		for _, level := range chartLevels {
			n := b.count(level)
			if n == 0 || ch.Max == 0 {
				continue
			}
			hgt := float64(n) / float64(ch.Max) * (chartHeight - 4)
			y -= hgt
			br.Segments = append(br.Segments, segment{Y: y, H: hgt, Level: level})
			parts = append(parts, fmt.Sprintf("%d %s", n, level))
		}
		when := b.Timestamp
		if t, err := time.Parse(time.RFC3339, b.Timestamp); err == nil {
			when = t.UTC().Format("Jan 2 15:04")
		}
		br.Title = when
		for _, p := range parts {
			br.Title += ", " + p
		}
		ch.Bars = append(ch.Bars, br)
		if i%every == 0 && x < chartWidth-70 {
			if t, err := time.Parse(time.RFC3339, b.Timestamp); err == nil {
				ch.Ticks = append(ch.Ticks, tick{X: x, Label: t.UTC().Format("Jan 2 15:04")})
			}
		}
	}
	return ch
}
