package console

import (
	"strings"
	"time"
)

// diffLine is one line of a comparison: Op is " " (both), "-" (only the older), "+" (only the newer).
type diffLine struct {
	Op, Text string
}

// maxDiffLines bounds each side of a comparison: the longest-common-subsequence table is
// quadratic, so two 2,000-line configurations cost 4 M cells at most.
const maxDiffLines = 2000

// lineDiff compares two texts line by line (longest common subsequence).
func lineDiff(older, newer string) ([]diffLine, string) {
	a, b := strings.Split(older, "\n"), strings.Split(newer, "\n")
	if len(a) > maxDiffLines || len(b) > maxDiffLines {
		return nil, "the configurations are too long to compare here (over 2,000 lines)"
	}
	// lcs[i][j] is the common subsequence length of a[i:] and b[j:].
	lcs := make([][]int32, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int32, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	out := make([]diffLine, 0, max(len(a), len(b)))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] == b[j]:
			out = append(out, diffLine{" ", a[i]})
			i, j = i+1, j+1
		case lcs[i+1][j] >= lcs[i][j+1]:
			out = append(out, diffLine{"-", a[i]})
			i++
		default:
			out = append(out, diffLine{"+", b[j]})
			j++
		}
	}
	for ; i < len(a); i++ {
		out = append(out, diffLine{"-", a[i]})
	}
	for ; j < len(b); j++ {
		out = append(out, diffLine{"+", b[j]})
	}
	return out, ""
}

// shortTime shows an API timestamp as minutes in UTC.
func shortTime(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}
