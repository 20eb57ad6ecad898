package jsonata

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Date/time pictures and integer formats (XPath F&O 3.1 §9.8, as jsonata-js implements them).

var (
	few       = []string{"Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine", "Ten", "Eleven", "Twelve", "Thirteen", "Fourteen", "Fifteen", "Sixteen", "Seventeen", "Eighteen", "Nineteen"}
	ordinals  = []string{"Zeroth", "First", "Second", "Third", "Fourth", "Fifth", "Sixth", "Seventh", "Eighth", "Ninth", "Tenth", "Eleventh", "Twelfth", "Thirteenth", "Fourteenth", "Fifteenth", "Sixteenth", "Seventeenth", "Eighteenth", "Nineteenth"}
	decades   = []string{"Twenty", "Thirty", "Forty", "Fifty", "Sixty", "Seventy", "Eighty", "Ninety", "Hundred"}
	magnitude = []string{"Thousand", "Million", "Billion", "Trillion"}
	dayNames  = []string{"", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}
	monthName = []string{"January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"}
)

func numberToWords(value float64, ordinal bool) string {
	var lookup func(num float64, prev, ord bool) string
	lookup = func(num float64, prev, ord bool) string {
		words := ""
		switch {
		case num <= 19:
			if prev {
				words = " and "
			}
			if ord {
				words += ordinals[int(num)]
			} else {
				words += few[int(num)]
			}
		case num < 100:
			tens := int(num / 10)
			rem := math.Mod(num, 10)
			if prev {
				words = " and "
			}
			words += decades[tens-2]
			if rem > 0 {
				words += "-" + lookup(rem, false, ord)
			} else if ord {
				words = words[:len(words)-1] + "ieth"
			}
		case num < 1000:
			hundreds := int(num / 100)
			rem := math.Mod(num, 100)
			if prev {
				words = ", "
			}
			words += few[hundreds] + " Hundred"
			if rem > 0 {
				words += lookup(rem, true, ord)
			} else if ord {
				words += "th"
			}
		default:
			mag := int(math.Floor(math.Log10(num) / 3))
			if mag > len(magnitude) {
				mag = len(magnitude)
			}
			factor := math.Pow(10, float64(mag*3))
			mant := math.Floor(num / factor)
			rem := num - mant*factor
			if prev {
				words = ", "
			}
			words += lookup(mant, false, false) + " " + magnitude[mag-1]
			if rem > 0 {
				words += lookup(rem, true, ord)
			} else if ord {
				words += "th"
			}
		}
		return words
	}
	return lookup(value, false, ordinal)
}

var wordValues = func() map[string]float64 {
	m := map[string]float64{}
	for i, w := range few {
		m[strings.ToLower(w)] = float64(i)
	}
	for i, w := range ordinals {
		m[strings.ToLower(w)] = float64(i)
	}
	for i, w := range decades {
		lw := strings.ToLower(w)
		m[lw] = float64((i + 2) * 10)
		m[lw[:len(lw)-1]+"ieth"] = m[lw]
	}
	m["hundredth"] = 100
	for i, w := range magnitude {
		lw := strings.ToLower(w)
		v := math.Pow(10, float64((i+1)*3))
		m[lw] = v
		m[lw+"th"] = v
	}
	return m
}()

var wordSplit = regexp.MustCompile(`,\s|\sand\s|[\s\\-]`)

func wordsToNumber(text string) float64 {
	segs := []float64{0}
	for _, part := range wordSplit.Split(text, -1) {
		value, ok := wordValues[part]
		if !ok {
			value = math.NaN()
		}
		if value < 100 || math.IsNaN(value) {
			top := segs[len(segs)-1]
			segs = segs[:len(segs)-1]
			if top >= 1000 {
				segs = append(segs, top)
				top = 0
			}
			segs = append(segs, top+value)
		} else {
			top := segs[len(segs)-1]
			segs[len(segs)-1] = top * value
		}
	}
	total := 0.0
	for _, s := range segs {
		total += s
	}
	return total
}

var romanNumerals = []struct {
	v float64
	s string
}{{1000, "m"}, {900, "cm"}, {500, "d"}, {400, "cd"}, {100, "c"}, {90, "xc"}, {50, "l"}, {40, "xl"}, {10, "x"}, {9, "ix"}, {5, "v"}, {4, "iv"}, {1, "i"}}

func decimalToRoman(v float64) string {
	var sb strings.Builder
	for v > 0 {
		for _, n := range romanNumerals {
			if v >= n.v {
				sb.WriteString(n.s)
				v -= n.v
				break
			}
		}
	}
	return sb.String()
}

var romanValues = map[rune]float64{'M': 1000, 'D': 500, 'C': 100, 'L': 50, 'X': 10, 'V': 5, 'I': 1}

func romanToDecimal(s string) float64 {
	dec, mx := 0.0, 1.0
	rs := []rune(s)
	for i := len(rs) - 1; i >= 0; i-- {
		v := romanValues[rs[i]]
		if v < mx {
			dec -= v
		} else {
			mx = v
			dec += v
		}
	}
	return dec
}

func decimalToLetters(v float64, a rune) string {
	var letters []rune
	for v > 0 {
		letters = append([]rune{rune(int(math.Mod(v-1, 26))) + a}, letters...)
		v = math.Floor((v - 1) / 26)
	}
	return string(letters)
}

func lettersToDecimal(s string, a rune) float64 {
	rs := []rune(s)
	dec := 0.0
	for i := range rs {
		dec += float64(rs[len(rs)-i-1]-a+1) * math.Pow(26, float64(i))
	}
	return dec
}

type separator struct {
	position  int
	character string
}

type integerFormat struct {
	primary         string // decimal, letters, roman, words, sequence
	caseMode        string // upper, lower, title
	ordinal         bool
	zeroCode        rune
	mandatoryDigits int
	optionalDigits  int
	regular         bool
	regularSep      separator
	separators      []separator
	token           string
	parseWidth      int
}

var decimalGroups = []rune{0x30, 0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6, 0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10}

func analyseIntegerPicture(picture string) (*integerFormat, error) {
	f := &integerFormat{primary: "decimal", caseMode: "lower"}
	primary := picture
	if semi := strings.LastIndex(picture, ";"); semi != -1 {
		primary = picture[:semi]
		if mod := picture[semi+1:]; strings.HasPrefix(mod, "o") {
			f.ordinal = true
		}
	}
	switch primary {
	case "A":
		f.caseMode, f.primary = "upper", "letters"
	case "a":
		f.primary = "letters"
	case "I":
		f.caseMode, f.primary = "upper", "roman"
	case "i":
		f.primary = "roman"
	case "W":
		f.caseMode, f.primary = "upper", "words"
	case "Ww":
		f.caseMode, f.primary = "title", "words"
	case "w":
		f.primary = "words"
	default:
		var zero rune = -1
		mandatory, optional, sepPos := 0, 0, 0
		var seps []separator
		rs := []rune(primary)
		for i := len(rs) - 1; i >= 0; i-- {
			cp := rs[i]
			digit := false
			for _, g := range decimalGroups {
				if cp >= g && cp <= g+9 {
					digit = true
					mandatory++
					sepPos++
					if zero == -1 {
						zero = g
					} else if g != zero {
						return nil, &Error{Code: "D3131"}
					}
					break
				}
			}
			if !digit {
				if cp == '#' {
					sepPos++
					optional++
				} else {
					seps = append(seps, separator{position: sepPos, character: string(cp)})
				}
			}
		}
		if mandatory > 0 {
			f.primary = "decimal"
			f.zeroCode = zero
			f.mandatoryDigits = mandatory
			f.optionalDigits = optional
			if reg := regularRepeat(seps); reg > 0 {
				f.regular = true
				f.regularSep = separator{position: reg, character: seps[0].character}
			} else {
				f.separators = seps
			}
		} else {
			f.primary = "sequence"
			f.token = primary
		}
	}
	return f, nil
}

func regularRepeat(seps []separator) int {
	if len(seps) == 0 {
		return 0
	}
	for _, s := range seps[1:] {
		if s.character != seps[0].character {
			return 0
		}
	}
	gcd := func(a, b int) int {
		for b != 0 {
			a, b = b, a%b
		}
		return a
	}
	factor := seps[0].position
	for _, s := range seps[1:] {
		factor = gcd(factor, s.position)
	}
	for i := 1; i <= len(seps); i++ {
		found := false
		for _, s := range seps {
			if s.position == i*factor {
				found = true
				break
			}
		}
		if !found {
			return 0
		}
	}
	return factor
}

func formatIntegerWith(value float64, f *integerFormat) (string, error) {
	negative := value < 0
	value = math.Abs(value)
	var out string
	switch f.primary {
	case "letters":
		a := 'a'
		if f.caseMode == "upper" {
			a = 'A'
		}
		out = decimalToLetters(value, a)
	case "roman":
		out = decimalToRoman(value)
		if f.caseMode == "upper" {
			out = strings.ToUpper(out)
		}
	case "words":
		out = numberToWords(value, f.ordinal)
		if f.caseMode == "upper" {
			out = strings.ToUpper(out)
		} else if f.caseMode == "lower" {
			out = strings.ToLower(out)
		}
	case "decimal":
		out = strconv.FormatFloat(value, 'f', -1, 64)
		if value >= 1e21 {
			out = formatNumber(value)
		}
		if pad := f.mandatoryDigits - utf8.RuneCountInString(out); pad > 0 {
			out = strings.Repeat("0", pad) + out
		}
		if f.zeroCode != '0' {
			rs := []rune(out)
			for i, r := range rs {
				rs[i] = r + f.zeroCode - '0'
			}
			out = string(rs)
		}
		if f.regular {
			rs := []rune(out)
			n := (len(rs) - 1) / f.regularSep.position
			for ii := n; ii > 0; ii-- {
				rs = []rune(out)
				pos := len(rs) - ii*f.regularSep.position
				out = string(rs[:pos]) + f.regularSep.character + string(rs[pos:])
			}
		} else {
			for i := len(f.separators) - 1; i >= 0; i-- {
				s := f.separators[i]
				rs := []rune(out)
				pos := len(rs) - s.position
				if pos < 0 {
					pos = 0
				}
				out = string(rs[:pos]) + s.character + string(rs[pos:])
			}
		}
		if f.ordinal {
			rs := []rune(out)
			last := rs[len(rs)-1]
			suffix := map[rune]string{'1': "st", '2': "nd", '3': "rd"}[last]
			if suffix == "" || (len(rs) > 1 && rs[len(rs)-2] == '1') {
				suffix = "th"
			}
			out += suffix
		}
	case "sequence":
		return "", &Error{Code: "D3130", Value: f.token}
	}
	if negative {
		out = "-" + out
	}
	return out, nil
}

func fnFormatInteger(c callCtx, a []any) (any, error) {
	v, ok := arg(a, 0).(float64)
	if !ok {
		return nil, nil
	}
	pic, _ := arg(a, 1).(string)
	f, err := analyseIntegerPicture(pic)
	if err != nil {
		return nil, err
	}
	return formatIntegerWith(math.Floor(v), f)
}

func fnParseInteger(c callCtx, a []any) (any, error) {
	v, ok := arg(a, 0).(string)
	if !ok {
		return nil, nil
	}
	pic, _ := arg(a, 1).(string)
	f, err := analyseIntegerPicture(pic)
	if err != nil {
		return nil, err
	}
	m, err := integerMatcher(f)
	if err != nil {
		return nil, err
	}
	return m.parse(v), nil
}

type partMatcher struct {
	regex     string
	parse     func(string) float64
	component byte
}

func integerMatcher(f *integerFormat) (*partMatcher, error) {
	upper := f.caseMode == "upper"
	switch f.primary {
	case "letters":
		a := 'a'
		re := "[a-z]+"
		if upper {
			a, re = 'A', "[A-Z]+"
		}
		return &partMatcher{regex: re, parse: func(s string) float64 { return lettersToDecimal(s, a) }}, nil
	case "roman":
		re := "[mdclxvi]+"
		if upper {
			re = "[MDCLXVI]+"
		}
		return &partMatcher{regex: re, parse: func(s string) float64 { return romanToDecimal(strings.ToUpper(s)) }}, nil
	case "words":
		keys := make([]string, 0, len(wordValues)+2)
		for k := range wordValues {
			keys = append(keys, k)
		}
		// longest first, so alternation prefers whole words
		sortByLenDesc(keys)
		keys = append(keys, "and", `[\-, ]`)
		return &partMatcher{regex: "(?:" + strings.Join(keys, "|") + ")+", parse: func(s string) float64 { return wordsToNumber(strings.ToLower(s)) }}, nil
	case "decimal":
		re := "[0-9]"
		if f.parseWidth > 0 {
			re += "{" + strconv.Itoa(f.parseWidth) + "}"
		} else {
			re += "+"
		}
		if f.ordinal {
			re += "(?:th|st|nd|rd)"
		}
		return &partMatcher{regex: re, parse: func(s string) float64 {
			digits := s
			if f.ordinal && len(digits) >= 2 {
				digits = digits[:len(digits)-2]
			}
			if f.regular {
				digits = strings.ReplaceAll(digits, ",", "")
			} else {
				for _, sep := range f.separators {
					digits = strings.ReplaceAll(digits, sep.character, "")
				}
			}
			if f.zeroCode != '0' {
				rs := []rune(digits)
				for i, r := range rs {
					rs[i] = r - f.zeroCode + '0'
				}
				digits = string(rs)
			}
			return parseIntPrefix(digits)
		}}, nil
	}
	return nil, &Error{Code: "D3130", Value: f.token}
}

func sortByLenDesc(ss []string) {
	for i := 1; i < len(ss); i++ {
		for j := i; j > 0 && (len(ss[j]) > len(ss[j-1]) || len(ss[j]) == len(ss[j-1]) && ss[j] < ss[j-1]); j-- {
			ss[j], ss[j-1] = ss[j-1], ss[j]
		}
	}
}

// parseIntPrefix is JavaScript's parseInt(s, 10): the leading integer, NaN without one.
func parseIntPrefix(s string) float64 {
	s = strings.TrimSpace(s)
	end := 0
	if end < len(s) && (s[end] == '-' || s[end] == '+') {
		end++
	}
	start := end
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	if end == start {
		return math.NaN()
	}
	f, _ := strconv.ParseFloat(s[:end], 64)
	return f
}

type width struct {
	min, max       int
	hasMin, hasMax bool
}

type pictureMarker struct {
	literal       bool
	value         string
	component     byte
	width         *width
	presentation1 string
	presentation2 string
	ordinal       bool
	names         string
	integerFormat *integerFormat
	n             int
}

var defaultPresentation = map[byte]string{'Y': "1", 'M': "1", 'D': "1", 'd': "1", 'F': "n", 'W': "1", 'w': "1", 'X': "1", 'x': "1", 'H': "1", 'h': "1", 'P': "n", 'm': "01", 's': "01", 'f': "1", 'Z': "01:01", 'z': "01:01", 'C': "n", 'E': "n"}

var spaces = regexp.MustCompile(`\s+`)

func analyseDateTimePicture(picture string) ([]*pictureMarker, error) {
	var spec []*pictureMarker
	addLiteral := func(start, end int) {
		if end > start {
			spec = append(spec, &pictureMarker{literal: true, value: strings.ReplaceAll(picture[start:end], "]]", "]")})
		}
	}
	start, pos := 0, 0
	for pos < len(picture) {
		if picture[pos] == '[' {
			if pos+1 < len(picture) && picture[pos+1] == '[' {
				addLiteral(start, pos)
				spec = append(spec, &pictureMarker{literal: true, value: "["})
				pos += 2
				start = pos
				continue
			}
			addLiteral(start, pos)
			start = pos
			end := strings.IndexByte(picture[start:], ']')
			if end == -1 {
				return nil, &Error{Code: "D3135"}
			}
			pos = start + end
			marker := spaces.ReplaceAllString(picture[start+1:pos], "")
			def := &pictureMarker{}
			if marker != "" {
				def.component = marker[0]
			}
			var presMod string
			if comma := strings.LastIndex(marker, ","); comma != -1 {
				widthMod := marker[comma+1:]
				w := &width{}
				minS, maxS, hasDash := strings.Cut(widthMod, "-")
				if minS != "*" {
					if v := parseIntPrefix(minS); !math.IsNaN(v) {
						w.min, w.hasMin = int(v), true
					}
				}
				if hasDash && maxS != "*" {
					if v := parseIntPrefix(maxS); !math.IsNaN(v) {
						w.max, w.hasMax = int(v), true
					}
				}
				def.width = w
				presMod = marker[1:comma]
			} else if len(marker) > 0 {
				presMod = marker[1:]
			}
			switch {
			case len(presMod) == 1:
				def.presentation1 = presMod
			case len(presMod) > 1:
				last := presMod[len(presMod)-1]
				if strings.IndexByte("atco", last) != -1 {
					def.presentation2 = string(last)
					if last == 'o' {
						def.ordinal = true
					}
					def.presentation1 = presMod[:len(presMod)-1]
				} else {
					def.presentation1 = presMod
				}
			default:
				p, ok := defaultPresentation[def.component]
				if !ok {
					return nil, &Error{Code: "D3132", Value: string(def.component)}
				}
				def.presentation1 = p
			}
			if def.presentation1[0] == 'n' {
				def.names = "lower"
			} else if def.presentation1[0] == 'N' {
				if len(def.presentation1) > 1 && def.presentation1[1] == 'n' {
					def.names = "title"
				} else {
					def.names = "upper"
				}
			} else if strings.IndexByte("YMDdFWwXxHhmsf", def.component) != -1 {
				ip := def.presentation1
				if def.presentation2 != "" {
					ip += ";" + def.presentation2
				}
				f, err := analyseIntegerPicture(ip)
				if err != nil {
					return nil, err
				}
				def.integerFormat = f
				if def.width != nil && def.width.hasMin && f.mandatoryDigits < def.width.min {
					f.mandatoryDigits = def.width.min
				}
				if def.component == 'Y' {
					def.n = -1
					if def.width != nil && def.width.hasMax {
						def.n = def.width.max
						f.mandatoryDigits = def.n
					} else if w := f.mandatoryDigits + f.optionalDigits; w >= 2 {
						def.n = w
					}
				}
				if len(spec) > 0 {
					if prev := spec[len(spec)-1]; prev.integerFormat != nil {
						prev.integerFormat.parseWidth = prev.integerFormat.mandatoryDigits
					}
				}
			}
			if def.component == 'Z' || def.component == 'z' {
				f, err := analyseIntegerPicture(def.presentation1)
				if err != nil {
					return nil, err
				}
				def.integerFormat = f
			}
			spec = append(spec, def)
			start = pos + 1
		}
		pos++
	}
	addLiteral(start, pos)
	return spec, nil
}

const millisInADay = 86400000

func utcMillis(year, month int, day, h, m, s, ms float64) float64 {
	t := time.Date(year, time.Month(month+1), 1, 0, 0, 0, 0, time.UTC)
	return float64(t.UnixMilli()) + (day-1)*millisInADay + h*3600000 + m*60000 + s*1000 + ms
}

func startOfFirstWeek(year, month int) float64 {
	jan1 := utcMillis(year, month, 1, 0, 0, 0, 0)
	dow := int(time.UnixMilli(int64(jan1)).UTC().Weekday())
	if dow == 0 {
		dow = 7
	}
	if dow > 4 {
		return jan1 + float64(8-dow)*millisInADay
	}
	return jan1 - float64(dow-1)*millisInADay
}

func normYM(year, month int) (int, int) {
	for month > 11 {
		month -= 12
		year++
	}
	for month < 0 {
		month += 12
		year--
	}
	return year, month
}

func deltaWeeks(start, end float64) float64 { return (end-start)/(millisInADay*7) + 1 }

func dateFragment(t time.Time, component byte) any {
	switch component {
	case 'Y':
		return float64(t.Year())
	case 'M':
		return float64(t.Month())
	case 'D':
		return float64(t.Day())
	case 'd':
		today := utcMillis(t.Year(), int(t.Month())-1, float64(t.Day()), 0, 0, 0, 0)
		first := utcMillis(t.Year(), 0, 1, 0, 0, 0, 0)
		return (today-first)/millisInADay + 1
	case 'F':
		d := int(t.Weekday())
		if d == 0 {
			d = 7
		}
		return float64(d)
	case 'W':
		y := t.Year()
		start := startOfFirstWeek(y, 0)
		today := utcMillis(y, int(t.Month())-1, float64(t.Day()), 0, 0, 0, 0)
		week := deltaWeeks(start, today)
		if week > 52 {
			if today >= startOfFirstWeek(y+1, 0) {
				week = 1
			}
		} else if week < 1 {
			week = deltaWeeks(startOfFirstWeek(y-1, 0), today)
		}
		return math.Floor(week)
	case 'w':
		y, m := t.Year(), int(t.Month())-1
		start := startOfFirstWeek(y, m)
		today := utcMillis(y, m, float64(t.Day()), 0, 0, 0, 0)
		week := deltaWeeks(start, today)
		if week > 4 {
			ny, nm := normYM(y, m+1)
			if today >= startOfFirstWeek(ny, nm) {
				week = 1
			}
		} else if week < 1 {
			py, pm := normYM(y, m-1)
			week = deltaWeeks(startOfFirstWeek(py, pm), today)
		}
		return math.Floor(week)
	case 'X':
		y := t.Year()
		now := float64(t.UnixMilli())
		if now < startOfFirstWeek(y, 0) {
			return float64(y - 1)
		} else if now >= startOfFirstWeek(y+1, 0) {
			return float64(y + 1)
		}
		return float64(y)
	case 'x':
		y, m := t.Year(), int(t.Month())-1
		now := float64(t.UnixMilli())
		ny, nm := normYM(y, m+1)
		if now < startOfFirstWeek(y, m) {
			_, pm := normYM(y, m-1)
			return float64(pm + 1)
		} else if now >= startOfFirstWeek(ny, nm) {
			return float64(nm + 1)
		}
		return float64(m + 1)
	case 'H':
		return float64(t.Hour())
	case 'h':
		h := t.Hour() % 12
		if h == 0 {
			h = 12
		}
		return float64(h)
	case 'P':
		if t.Hour() >= 12 {
			return "pm"
		}
		return "am"
	case 'm':
		return float64(t.Minute())
	case 's':
		return float64(t.Second())
	case 'f':
		return float64(t.Nanosecond() / 1e6)
	case 'C', 'E':
		return "ISO"
	}
	return nil
}

var iso8601Spec []*pictureMarker

// pictureCache keeps analysed pictures: mappings format with a handful of constant pictures.
// Analysed pictures are never modified after analysis, so sharing them is safe.
var (
	pictureCache     sync.Map
	pictureCacheSize atomic.Int64
)

const maxCachedPictures = 1024

func init() {
	s, err := analyseDateTimePicture("[Y0001]-[M01]-[D01]T[H01]:[m01]:[s01].[f001][Z01:01t]")
	if err != nil {
		panic(err)
	}
	iso8601Spec = s
}

func formatDateTime(millis float64, picture any, timezone any) (string, error) {
	offsetHours, offsetMinutes := 0, 0
	if tz, ok := timezone.(string); ok {
		off := parseIntPrefix(tz)
		if !math.IsNaN(off) {
			offsetHours = int(math.Floor(off / 100))
			offsetMinutes = int(math.Mod(off, 100))
		}
	}
	spec := iso8601Spec
	if p, ok := picture.(string); ok {
		if cached, ok := pictureCache.Load(p); ok {
			spec = cached.([]*pictureMarker)
		} else {
			var err error
			if spec, err = analyseDateTimePicture(p); err != nil {
				return "", err
			}
			if pictureCacheSize.Add(1) <= maxCachedPictures { // pictures built from data must not grow it without bound
				pictureCache.Store(p, spec)
			}
		}
	}
	offsetMillis := float64((60*offsetHours + offsetMinutes) * 60 * 1000)
	t := time.UnixMilli(int64(millis + offsetMillis)).UTC()
	var sb strings.Builder
	for _, part := range spec {
		if part.literal {
			sb.WriteString(part.value)
			continue
		}
		s, err := formatComponent(t, part, offsetHours, offsetMinutes)
		if err != nil {
			return "", err
		}
		sb.WriteString(s)
	}
	return sb.String(), nil
}

func formatComponent(t time.Time, m *pictureMarker, offH, offM int) (string, error) {
	v := dateFragment(t, m.component)
	switch {
	case strings.IndexByte("YMDdFWwXxHhms", m.component) != -1:
		n, _ := v.(float64)
		if m.component == 'Y' && m.n != -1 {
			n = math.Mod(n, math.Pow(10, float64(m.n)))
		}
		if m.names != "" {
			var name string
			switch m.component {
			case 'M', 'x':
				name = monthName[int(n)-1]
			case 'F':
				name = dayNames[int(n)]
			default:
				return "", &Error{Code: "D3133", Value: string(m.component)}
			}
			if m.names == "upper" {
				name = strings.ToUpper(name)
			} else if m.names == "lower" {
				name = strings.ToLower(name)
			}
			if m.width != nil && m.width.hasMax && utf8.RuneCountInString(name) > m.width.max {
				name = string([]rune(name)[:m.width.max])
			}
			return name, nil
		}
		return formatIntegerWith(n, m.integerFormat)
	case m.component == 'f':
		return formatIntegerWith(v.(float64), m.integerFormat)
	case m.component == 'Z' || m.component == 'z':
		offset := offH*100 + offM
		var s string
		var err error
		if m.integerFormat.regular {
			s, err = formatIntegerWith(float64(offset), m.integerFormat)
		} else {
			switch nd := m.integerFormat.mandatoryDigits; {
			case nd == 1 || nd == 2:
				s, err = formatIntegerWith(float64(offH), m.integerFormat)
				if offM != 0 {
					mm, _ := formatIntegerWith(float64(offM), &integerFormat{primary: "decimal", zeroCode: '0', mandatoryDigits: 2})
					s += ":" + mm
				}
			case nd == 3 || nd == 4:
				s, err = formatIntegerWith(float64(offset), m.integerFormat)
			default:
				return "", &Error{Code: "D3134", Value: float64(nd)}
			}
		}
		if err != nil {
			return "", err
		}
		if offset >= 0 {
			s = "+" + s
		}
		if m.component == 'z' {
			s = "GMT" + s
		}
		if offset == 0 && m.presentation2 == "t" {
			s = "Z"
		}
		return s, nil
	case m.component == 'P':
		s, _ := v.(string)
		if m.names == "upper" {
			s = strings.ToUpper(s)
		}
		return s, nil
	}
	s, _ := v.(string)
	return s, nil
}

func fnFromMillis(c callCtx, a []any) (any, error) {
	ms, ok := arg(a, 0).(float64)
	if !ok {
		return nil, nil
	}
	return formatDateTime(ms, arg(a, 1), arg(a, 2))
}

var iso8601 = regexp.MustCompile(`^\d{4}(-[01]\d)?(-[0-3]\d)?(T[0-2]\d:[0-5]\d:[0-5]\d)?(\.\d+)?([+-][0-2]\d:?[0-5]\d|Z)?$`)

func fnToMillis(c callCtx, a []any) (any, error) {
	ts, ok := arg(a, 0).(string)
	if !ok {
		return nil, nil
	}
	if pic, ok := arg(a, 1).(string); ok {
		return parseDateTime(c, ts, pic)
	}
	if !iso8601.MatchString(ts) {
		return nil, &Error{Code: "D3110", Value: ts}
	}
	return parseISO(ts), nil
}

// parseISO is Date.parse for the forms the ISO regex admits; times without an offset are UTC.
func parseISO(ts string) any {
	layouts := []string{"2006-01-02T15:04:05.999999999Z07:00", "2006-01-02T15:04:05.999999999Z0700", "2006-01-02T15:04:05.999999999", "2006-01-02", "2006-01", "2006"}
	for _, l := range layouts {
		if t, err := time.Parse(l, ts); err == nil {
			return float64(t.UnixMilli())
		}
	}
	return math.NaN()
}

func parseDateTime(c callCtx, ts, picture string) (any, error) {
	spec, err := analyseDateTimePicture(picture)
	if err != nil {
		return nil, err
	}
	var parts []*partMatcher
	for _, part := range spec {
		pm, err := datePartMatcher(part)
		if err != nil {
			return nil, err
		}
		parts = append(parts, pm)
	}
	var sb strings.Builder
	sb.WriteString("(?i)^")
	for _, p := range parts {
		sb.WriteString("(" + p.regex + ")")
	}
	sb.WriteString("$")
	re, err := regexp.Compile(sb.String())
	if err != nil {
		return nil, &Error{Code: "D3136"}
	}
	info := re.FindStringSubmatch(ts)
	if info == nil {
		return nil, nil
	}
	components := map[byte]float64{}
	for i := 1; i < len(info); i++ {
		if p := parts[i-1]; p.parse != nil {
			components[p.component] = p.parse(info[i])
		}
	}
	if len(components) == 0 {
		return nil, nil
	}
	has := func(k byte) bool { _, ok := components[k]; return ok }
	mask := 0
	shift := func(bit bool) {
		mask <<= 1
		if bit {
			mask++
		}
	}
	isType := func(t int) bool { return (^t&mask) == 0 && (t&mask) != 0 }
	for _, p := range "YXMxWwdD" {
		shift(has(byte(p)))
	}
	dateA := isType(161)
	dateB := !dateA && isType(130)
	dateC := isType(84)
	dateD := !dateC && isType(72)
	mask = 0
	for _, p := range "PHhmsf" {
		shift(has(byte(p)))
	}
	timeA := isType(23)
	timeB := !timeA && isType(47)
	dateComps := "YMD"
	switch {
	case dateB:
		dateComps = "YD"
	case dateC:
		dateComps = "XxwF"
	case dateD:
		dateComps = "XWF"
	}
	timeComps := "Hmsf"
	if timeB {
		timeComps = "Phmsf"
	}
	now := c.r.now.UTC()
	startSpecified, endSpecified := false, false
	for _, p := range dateComps + timeComps {
		k := byte(p)
		if !has(k) {
			if startSpecified {
				if strings.IndexByte("MDd", k) != -1 {
					components[k] = 1
				} else {
					components[k] = 0
				}
				endSpecified = true
			} else {
				f, _ := dateFragment(now, k).(float64)
				components[k] = f
			}
		} else {
			startSpecified = true
			if endSpecified {
				return nil, &Error{Code: "D3136"}
			}
		}
	}
	if components['M'] > 0 {
		components['M']--
	} else {
		components['M'] = 0
	}
	if dateB {
		first := utcMillis(int(components['Y']), 0, 1, 0, 0, 0, 0)
		d := time.UnixMilli(int64(first + (components['d']-1)*millisInADay)).UTC()
		components['M'] = float64(d.Month() - 1)
		components['D'] = float64(d.Day())
	}
	if dateC || dateD {
		return nil, &Error{Code: "D3136"}
	}
	if timeB {
		h := components['h']
		if h == 12 {
			h = 0
		}
		components['H'] = h
		if components['P'] == 1 {
			components['H'] += 12
		}
	}
	for _, v := range components {
		if math.IsNaN(v) {
			return math.NaN(), nil
		}
	}
	y, mo := normYM(int(components['Y']), int(components['M']))
	millis := utcMillis(y, mo, components['D'], components['H'], components['m'], components['s'], components['f'])
	if z := components['Z']; z != 0 {
		millis -= z * 60 * 1000
	} else if z := components['z']; z != 0 {
		millis -= z * 60 * 1000
	}
	return millis, nil
}

var regexMeta = regexp.MustCompile(`[.*+?^${}()|[\]\\]`)

func datePartMatcher(part *pictureMarker) (*partMatcher, error) {
	if part.literal {
		return &partMatcher{regex: regexMeta.ReplaceAllString(part.value, `\$0`)}, nil
	}
	res := &partMatcher{component: part.component}
	switch {
	case part.component == 'Z' || part.component == 'z':
		var sep *separator
		if part.integerFormat.regular {
			sep = &part.integerFormat.regularSep
		}
		re := ""
		if part.component == 'z' {
			re = "GMT"
		}
		re += "[-+][0-9]+"
		if sep != nil {
			re += regexp.QuoteMeta(sep.character) + "[0-9]+"
		}
		res.regex = re
		comp := part.component
		res.parse = func(v string) float64 {
			if comp == 'z' {
				v = v[3:]
			}
			var h, m float64
			if sep != nil {
				i := strings.Index(v, sep.character)
				h = parseIntPrefix(v[:i])
				m = parseIntPrefix(v[i+len(sep.character):])
			} else if len(v)-1 <= 2 {
				h = parseIntPrefix(v)
			} else {
				h = parseIntPrefix(v[:3])
				m = parseIntPrefix(v[3:])
			}
			return h*60 + m
		}
	case part.component == 'f':
		res.regex = "[0-9]+"
		res.parse = func(v string) float64 {
			if len(v) > 3 {
				v = v[:3]
			}
			f, _ := strconv.ParseFloat("0."+v, 64)
			return f * 1000
		}
	case part.integerFormat != nil:
		m, err := integerMatcher(part.integerFormat)
		if err != nil {
			return nil, err
		}
		m.component = part.component
		return m, nil
	default:
		res.regex = "[a-zA-Z]+"
		lookup := map[string]float64{}
		switch part.component {
		case 'M', 'x':
			for i, n := range monthName {
				if part.width != nil && part.width.hasMax && part.width.max < len(n) {
					n = n[:part.width.max]
				}
				lookup[n] = float64(i + 1)
			}
		case 'F':
			for i, n := range dayNames[1:] {
				if part.width != nil && part.width.hasMax && part.width.max < len(n) {
					n = n[:part.width.max]
				}
				lookup[n] = float64(i + 1)
			}
		case 'P':
			lookup = map[string]float64{"am": 0, "AM": 0, "pm": 1, "PM": 1}
		default:
			return nil, &Error{Code: "D3133", Value: string(part.component)}
		}
		res.parse = func(v string) float64 {
			if f, ok := lookup[v]; ok {
				return f
			}
			return math.NaN()
		}
	}
	return res, nil
}
