package jsonata

import (
	"errors"
	"math"
	"strings"
	"time"

	"github.com/dlclark/regexp2/v2"
)

// Regular expressions use github.com/dlclark/regexp2 in ECMAScript mode: JSONata users write
// JavaScript regexes (lookaround, backreferences), which Go's RE2 cannot run. Its backtracking
// is bounded by a match timeout per match, so a catastrophic pattern fails with U1002 instead of
// stalling the evaluation.

// RegexMatchTimeout bounds one regex match.
var RegexMatchTimeout = 200 * time.Millisecond

type regexLiteral struct {
	source string
	flags  string
	re     *regexp2.Regexp
}

func compileRegexLiteral(pattern, flags string, pos int) (*regexLiteral, error) {
	opts := regexp2.ECMAScript
	if strings.Contains(flags, "i") {
		opts |= regexp2.IgnoreCase
	}
	if strings.Contains(flags, "m") {
		opts |= regexp2.Multiline
	}
	re, err := regexp2.Compile(pattern, opts)
	if err != nil {
		return nil, &Error{Code: "S0303", Position: pos, Value: err.Error()}
	}
	re.MatchTimeout = RegexMatchTimeout
	return &regexLiteral{source: pattern, flags: flags, re: re}, nil
}

// matchResult is what a matcher returns for one match (the reference's {match, start, end, groups, next}).
type matchResult struct {
	match  string
	start  int
	end    int
	groups []any
	next   func() (*matchResult, error)
}

func (r *run) applyRegex(m *regexMatcher, args []any) (any, error) {
	s, _ := arg(args, 0).(string)
	from := 0
	if f, ok := arg(args, 1).(float64); ok {
		from = int(f)
	}
	res, err := r.regexExec(m, []rune(s), from)
	if err != nil || res == nil {
		return nil, err
	}
	return res, nil
}

func (r *run) regexExec(m *regexMatcher, runes []rune, from int) (*matchResult, error) {
	if from > len(runes) {
		return nil, nil
	}
	re := m.lit.re
	if !r.deadline.IsZero() {
		// A match never runs past the evaluation's deadline: the per-match timeout alone let
		// many medium-slow matches add up far beyond it.
		left := time.Until(r.deadline)
		if left <= 0 {
			return nil, &Error{Code: "U1002", Value: "time limit exceeded"}
		}
		if left < re.MatchTimeout {
			bounded := *re // a shallow copy shares the compiled program; only the timeout differs
			bounded.MatchTimeout = left
			re = &bounded
		}
	}
	match, err := re.FindRunesMatchStartingAt(runes, from)
	if err != nil {
		return nil, &Error{Code: "U1002", Value: "regular expression /" + m.lit.source + "/ " + err.Error()}
	}
	if match == nil {
		return nil, nil
	}
	start := match.RuneIndex
	end := start + match.RuneLength
	res := &matchResult{match: string(runes[start:end]), start: start, end: end, groups: []any{}}
	for _, g := range match.Groups()[1:] {
		if len(g.Captures) == 0 {
			res.groups = append(res.groups, nil)
		} else {
			res.groups = append(res.groups, g.String())
		}
	}
	lastIndex := end
	if match.RuneLength == 0 {
		lastIndex = end // the reference's lastIndex stays; the next match check rejects empty matches
	}
	res.next = func() (*matchResult, error) {
		if lastIndex >= len(runes) {
			return nil, nil
		}
		nxt, err := r.regexExec(m, runes, lastIndex)
		if err != nil {
			return nil, err
		}
		if nxt != nil && nxt.match == "" {
			return nil, &Error{Code: "D1004", Position: m.position, Value: m.lit.source}
		}
		return nxt, nil
	}
	if err := r.enter(); err != nil {
		return nil, err
	}
	r.depth--
	return res, nil
}

// evaluateMatcher applies a matcher function (a regex or a user function with the same contract).
func (c *callCtx) evaluateMatcher(matcher any, s string) (*matchResult, error) {
	res, err := c.r.apply(matcher, []any{s}, nil, c.env)
	if err != nil {
		return nil, err
	}
	return c.toMatch(res)
}

func (c *callCtx) toMatch(res any) (*matchResult, error) {
	switch x := res.(type) {
	case nil:
		return nil, nil
	case *matchResult:
		return x, nil
	case *Object:
		start, okStart := x.get("start").(float64)
		end, okEnd := x.get("end").(float64)
		groups, okGroups := x.get("groups").(*Array)
		next, okNext := x.get("next").(Callable)
		if !okStart && !okEnd && !okGroups && !okNext {
			return nil, &Error{Code: "T1010"}
		}
		mr := &matchResult{start: int(start), end: int(end)}
		mr.match, _ = x.get("match").(string)
		if okGroups {
			mr.groups = groups.Items
		}
		mr.next = func() (*matchResult, error) {
			if !okNext {
				return nil, nil
			}
			nr, err := c.r.apply(next, nil, nil, c.env)
			if err != nil {
				return nil, err
			}
			return c.toMatch(nr)
		}
		return mr, nil
	}
	return nil, &Error{Code: "T1010"}
}

func fnMatch(c callCtx, a []any) (any, error) {
	s, ok := arg(a, 0).(string)
	if !ok {
		return nil, nil
	}
	limit, hasLimit := arg(a, 2).(float64)
	if hasLimit && limit < 0 {
		return nil, &Error{Code: "D3040", Value: limit, Index: 3}
	}
	result := newSeq()
	if hasLimit && limit == 0 {
		return result, nil
	}
	m, err := c.evaluateMatcher(a[1], s)
	if err != nil {
		return nil, err
	}
	count := 0.0
	for m != nil && (!hasLimit || count < limit) {
		o := NewObject()
		o.Set("match", m.match)
		o.Set("index", float64(m.start))
		o.Set("groups", &Array{Items: m.groups})
		result.push(o)
		if m, err = m.next(); err != nil {
			return nil, err
		}
		count++
	}
	return result, nil
}

func fnReplace(c callCtx, a []any) (any, error) {
	s, ok := arg(a, 0).(string)
	if !ok {
		return nil, nil
	}
	pattern := arg(a, 1)
	if pattern == "" {
		return nil, &Error{Code: "D3010", Value: pattern, Index: 2}
	}
	limit, hasLimit := arg(a, 3).(float64)
	if hasLimit && limit < 0 {
		return nil, &Error{Code: "D3011", Value: limit, Index: 4}
	}
	replacement := arg(a, 2)
	if hasLimit && limit == 0 {
		return s, nil
	}
	var sb strings.Builder
	count := 0.0
	if ps, ok := pattern.(string); ok {
		rs, _ := replacement.(string)
		pos := 0
		for {
			i := strings.Index(s[pos:], ps)
			if i < 0 || (hasLimit && count >= limit) {
				break
			}
			sb.WriteString(s[pos : pos+i])
			sb.WriteString(rs)
			pos += i + len(ps)
			count++
			if err := c.r.checkSize(sb.Len() / 16); err != nil {
				return nil, err
			}
		}
		sb.WriteString(s[pos:])
		return sb.String(), nil
	}
	runes := []rune(s)
	m, err := c.evaluateMatcher(pattern, s)
	if err != nil {
		return nil, err
	}
	if m == nil {
		return s, nil
	}
	pos := 0
	for m != nil && (!hasLimit || count < limit) {
		sb.WriteString(sliceRunes(runes, float64(pos), float64(m.start)))
		var with any
		if rs, ok := replacement.(string); ok {
			with = substituteGroups(rs, m)
		} else {
			mo := NewObject()
			mo.Set("match", m.match)
			mo.Set("index", float64(m.start))
			mo.Set("groups", &Array{Items: m.groups})
			if with, err = c.call(replacement, []any{mo}); err != nil {
				return nil, err
			}
		}
		ws, ok := with.(string)
		if !ok {
			return nil, &Error{Code: "D3012", Value: with}
		}
		sb.WriteString(ws)
		if err := c.r.checkSize(sb.Len() / 16); err != nil {
			return nil, err
		}
		pos = m.start + len([]rune(m.match))
		count++
		if m, err = m.next(); err != nil {
			return nil, err
		}
	}
	sb.WriteString(sliceRunes(runes, float64(pos), float64(len(runes))))
	return sb.String(), nil
}

// substituteGroups expands $0, $1… and $$ in a replacement string, as the reference does.
func substituteGroups(repl string, m *matchResult) string {
	var sb strings.Builder
	position := 0
	index := strings.IndexByte(repl, '$')
	for index != -1 && position < len(repl) {
		sb.WriteString(repl[position:index])
		position = index + 1
		var dollar byte
		if position < len(repl) {
			dollar = repl[position]
		}
		switch {
		case dollar == '$':
			sb.WriteByte('$')
			position++
		case dollar == '0':
			sb.WriteString(m.match)
			position++
		default:
			maxDigits := 1
			if len(m.groups) > 0 {
				maxDigits = int(math.Floor(math.Log10(float64(len(m.groups))))) + 1
			}
			idx, n := parseLeadingInt(repl[position:], maxDigits)
			if maxDigits > 1 && idx > len(m.groups) {
				idx, n = parseLeadingInt(repl[position:], maxDigits-1)
			}
			if n > 0 {
				if len(m.groups) > 0 && idx >= 1 && idx <= len(m.groups) {
					if g, ok := m.groups[idx-1].(string); ok {
						sb.WriteString(g)
					}
				}
				position += len(itoa(idx))
			} else {
				sb.WriteByte('$')
			}
		}
		next := strings.IndexByte(repl[min(position, len(repl)):], '$')
		if next == -1 {
			index = -1
		} else {
			index = position + next
		}
	}
	if position < len(repl) {
		sb.WriteString(repl[position:])
	}
	return sb.String()
}

func parseLeadingInt(s string, maxDigits int) (int, int) {
	n, v := 0, 0
	for n < len(s) && n < maxDigits && s[n] >= '0' && s[n] <= '9' {
		v = v*10 + int(s[n]-'0')
		n++
	}
	return v, n
}

func fnSplit(c callCtx, a []any) (any, error) {
	s, ok := arg(a, 0).(string)
	if !ok {
		return nil, nil
	}
	limit, hasLimit := arg(a, 2).(float64)
	if hasLimit && limit < 0 {
		return nil, &Error{Code: "D3020", Value: limit, Index: 3}
	}
	result := &Array{Items: []any{}}
	if hasLimit && limit == 0 {
		return result, nil
	}
	if sep, ok := arg(a, 1).(string); ok {
		var parts []string
		if sep == "" {
			for _, r := range s {
				parts = append(parts, string(r))
			}
		} else {
			parts = strings.Split(s, sep)
		}
		for i, p := range parts {
			if hasLimit && float64(i) >= math.Trunc(limit) { // String.prototype.split truncates its limit
				break
			}
			result.push(p)
		}
		return result, c.r.checkSize(len(result.Items))
	}
	runes := []rune(s)
	m, err := c.evaluateMatcher(a[1], s)
	if err != nil {
		return nil, err
	}
	if m == nil {
		result.push(s)
		return result, nil
	}
	start := 0
	count := 0.0
	for m != nil && (!hasLimit || count < limit) {
		result.push(sliceRunes(runes, float64(start), float64(m.start)))
		start = m.end
		if m, err = m.next(); err != nil {
			return nil, err
		}
		count++
	}
	if !hasLimit || count < limit {
		result.push(sliceRunes(runes, float64(start), float64(len(runes))))
	}
	return result, nil
}

var errNoMatch = errors.New("no match")
