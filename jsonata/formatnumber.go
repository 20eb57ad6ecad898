package jsonata

import (
	"math"
	"strconv"
	"strings"
)

// $formatNumber: XPath F&O 3.1 format-number, ported from jsonata-js.

type numberPicture struct {
	prefix, suffix, activePart, mantissaPart, integerPart, fractionalPart, subpicture string
	exponentPart                                                                      *string
}

type numberPictureVars struct {
	integerGroupingPositions    []int
	regularGrouping             int
	minimumIntegerPartSize      int
	scalingFactor               int
	prefix, suffix, picture     string
	fractionalGroupingPositions []int
	minimumFractionalPartSize   int
	maximumFractionalPartSize   int
	minimumExponentSize         int
}

func runeIndex(s []rune, sub []rune, from int) int {
	if len(sub) == 0 {
		return -1
	}
	for i := max(from, 0); i+len(sub) <= len(s); i++ {
		match := true
		for j := range sub {
			if s[i+j] != sub[j] {
				match = false
				break
			}
		}
		if match {
			return i
		}
	}
	return -1
}

func runeLastIndex(s []rune, sub []rune) int {
	for i := len(s) - len(sub); i >= 0; i-- {
		if string(s[i:i+len(sub)]) == string(sub) {
			return i
		}
	}
	return -1
}

func fnFormatNumber(c callCtx, a []any) (any, error) {
	value, ok := arg(a, 0).(float64)
	if !ok {
		return nil, nil
	}
	picture, _ := arg(a, 1).(string)
	props := map[string]string{
		"decimal-separator": ".", "grouping-separator": ",", "exponent-separator": "e", "infinity": "Infinity",
		"minus-sign": "-", "NaN": "NaN", "percent": "%", "per-mille": "\u2030", "zero-digit": "0", "digit": "#",
		"pattern-separator": ";",
	}
	if o, ok := arg(a, 2).(*Object); ok {
		for _, k := range o.keys {
			if s, ok := o.get(k).(string); ok {
				props[k] = s
			}
		}
	}
	zero := []rune(props["zero-digit"])[0]
	var family []rune
	for i := rune(0); i < 10; i++ {
		family = append(family, zero+i)
	}
	isDigit := func(r rune) bool { return r >= zero && r < zero+10 }
	first := func(s string) rune {
		rs := []rune(s)
		if len(rs) == 0 {
			return -1
		}
		return rs[0]
	}
	decSep, expSep, grpSep, digit, patSep := first(props["decimal-separator"]), first(props["exponent-separator"]),
		first(props["grouping-separator"]), first(props["digit"]), first(props["pattern-separator"])
	percent, permille := first(props["percent"]), first(props["per-mille"])
	isActive := func(r rune) bool {
		return isDigit(r) || r == decSep || r == expSep || r == grpSep || r == digit || r == patSep
	}
	subPictures := strings.Split(picture, props["pattern-separator"])
	if len(subPictures) > 2 {
		return nil, &Error{Code: "D3080"}
	}
	split := func(sub string) numberPicture {
		rs := []rune(sub)
		prefix := ""
		for i, ch := range rs {
			if isActive(ch) && ch != expSep {
				prefix = string(rs[:i])
				break
			}
		}
		suffix := ""
		for i := len(rs) - 1; i >= 0; i-- {
			if isActive(rs[i]) && rs[i] != expSep {
				suffix = string(rs[i+1:])
				break
			}
		}
		pl, sl := len([]rune(prefix)), len([]rune(suffix))
		active := string(rs[pl : len(rs)-sl])
		ar := []rune(active)
		var mantissa string
		var exponent *string
		expPos := runeIndex(rs, []rune{expSep}, pl)
		if expPos == -1 || expPos > len(rs)-sl {
			mantissa = active
		} else {
			mantissa = string(ar[:min(expPos, len(ar))])
			e := ""
			if expPos+1 <= len(ar) {
				e = string(ar[expPos+1:])
			}
			exponent = &e
		}
		mr := []rune(mantissa)
		var integer, fractional string
		if dp := runeIndex(mr, []rune{decSep}, 0); dp == -1 {
			integer, fractional = mantissa, suffix
		} else {
			integer, fractional = string(mr[:dp]), string(mr[dp+1:])
		}
		return numberPicture{prefix: prefix, suffix: suffix, activePart: active, mantissaPart: mantissa,
			exponentPart: exponent, integerPart: integer, fractionalPart: fractional, subpicture: sub}
	}
	validate := func(p numberPicture) error {
		var code string
		sp := []rune(p.subpicture)
		count := func(r rune) int {
			n := 0
			for _, x := range sp {
				if x == r {
					n++
				}
			}
			return n
		}
		decimalPos := runeIndex(sp, []rune{decSep}, 0)
		if count(decSep) > 1 {
			code = "D3081"
		}
		if count(percent) > 1 {
			code = "D3082"
		}
		if count(permille) > 1 {
			code = "D3083"
		}
		if count(percent) > 0 && count(permille) > 0 {
			code = "D3084"
		}
		valid := false
		for _, ch := range p.mantissaPart {
			if isDigit(ch) || ch == digit {
				valid = true
				break
			}
		}
		if !valid {
			code = "D3085"
		}
		for _, ch := range p.activePart {
			if !isActive(ch) {
				code = "D3086"
			}
		}
		if decimalPos != -1 {
			if (decimalPos > 0 && sp[decimalPos-1] == grpSep) || (decimalPos+1 < len(sp) && sp[decimalPos+1] == grpSep) {
				code = "D3087"
			}
		} else if ir := []rune(p.integerPart); len(ir) > 0 && ir[len(ir)-1] == grpSep {
			code = "D3088"
		}
		if runeIndex(sp, []rune{grpSep, grpSep}, 0) != -1 {
			code = "D3089"
		}
		ir := []rune(p.integerPart)
		if od := runeIndex(ir, []rune{digit}, 0); od != -1 {
			for _, ch := range ir[:od] {
				if isDigit(ch) {
					code = "D3090"
				}
			}
		}
		fr := []rune(p.fractionalPart)
		if od := runeLastIndex(fr, []rune{digit}); od != -1 {
			for _, ch := range fr[od:] {
				if isDigit(ch) {
					code = "D3091"
				}
			}
		}
		if p.exponentPart != nil {
			if len(*p.exponentPart) > 0 && (count(percent) > 0 || count(permille) > 0) {
				code = "D3092"
			}
			bad := len(*p.exponentPart) == 0
			for _, ch := range *p.exponentPart {
				if !isDigit(ch) {
					bad = true
				}
			}
			if bad {
				code = "D3093"
			}
		}
		if code != "" {
			return &Error{Code: code}
		}
		return nil
	}
	analyse := func(p numberPicture) numberPictureVars {
		groupingPositions := func(part string, toLeft bool) []int {
			var positions []int
			pr := []rune(part)
			ir := []rune(p.integerPart)
			gp := runeIndex(pr, []rune{grpSep}, 0)
			for gp != -1 {
				var seg []rune
				if toLeft {
					seg = pr[:gp]
				} else {
					seg = pr[gp:]
				}
				n := 0
				for _, ch := range seg {
					if isDigit(ch) || ch == digit {
						n++
					}
				}
				positions = append(positions, n)
				gp = runeIndex(ir, []rune{grpSep}, gp+1)
			}
			return positions
		}
		intPositions := groupingPositions(p.integerPart, false)
		regular := func(idx []int) int {
			if len(idx) == 0 {
				return 0
			}
			gcd := func(a, b int) int {
				for b != 0 {
					a, b = b, a%b
				}
				return a
			}
			f := idx[0]
			for _, v := range idx[1:] {
				f = gcd(f, v)
			}
			for i := 1; i <= len(idx); i++ {
				found := false
				for _, v := range idx {
					if v == i*f {
						found = true
					}
				}
				if !found {
					return 0
				}
			}
			return f
		}
		v := numberPictureVars{integerGroupingPositions: intPositions, regularGrouping: regular(intPositions),
			fractionalGroupingPositions: groupingPositions(p.fractionalPart, true), prefix: p.prefix, suffix: p.suffix, picture: p.subpicture}
		for _, ch := range p.integerPart {
			if isDigit(ch) {
				v.minimumIntegerPartSize++
			}
		}
		v.scalingFactor = v.minimumIntegerPartSize
		for _, ch := range p.fractionalPart {
			if isDigit(ch) {
				v.minimumFractionalPartSize++
			}
			if isDigit(ch) || ch == digit {
				v.maximumFractionalPartSize++
			}
		}
		exp := p.exponentPart != nil
		if v.minimumIntegerPartSize == 0 && v.maximumFractionalPartSize == 0 {
			if exp {
				v.minimumFractionalPartSize, v.maximumFractionalPartSize = 1, 1
			} else {
				v.minimumIntegerPartSize = 1
			}
		}
		if exp && v.minimumIntegerPartSize == 0 && strings.ContainsRune(p.integerPart, digit) {
			v.minimumIntegerPartSize = 1
		}
		if v.minimumIntegerPartSize == 0 && v.minimumFractionalPartSize == 0 {
			v.minimumFractionalPartSize = 1
		}
		if exp {
			for _, ch := range *p.exponentPart {
				if isDigit(ch) {
					v.minimumExponentSize++
				}
			}
		}
		return v
	}
	var vars []numberPictureVars
	for _, sp := range subPictures {
		p := split(sp)
		if err := validate(p); err != nil {
			return nil, err
		}
		vars = append(vars, analyse(p))
	}
	minus := props["minus-sign"]
	if len(vars) == 1 {
		neg := vars[0]
		neg.prefix = minus + neg.prefix
		vars = append(vars, neg)
	}
	pic := vars[0]
	if value < 0 {
		pic = vars[1]
	}
	adjusted := value
	if strings.ContainsRune(pic.picture, percent) {
		adjusted = value * 100
	} else if strings.ContainsRune(pic.picture, permille) {
		adjusted = value * 1000
	}
	mantissa := adjusted
	var exponent *int
	if pic.minimumExponentSize != 0 {
		maxM := math.Pow(10, float64(pic.scalingFactor))
		minM := math.Pow(10, float64(pic.scalingFactor-1))
		e := 0
		if mantissa != 0 {
			for math.Abs(mantissa) < minM {
				mantissa *= 10
				e--
			}
			for math.Abs(mantissa) > maxM {
				mantissa /= 10
				e++
			}
		}
		exponent = &e
	}
	rounded := roundHalfEven(mantissa, pic.maximumFractionalPartSize)
	makeString := func(v float64, dp int) string {
		s := toFixed(math.Abs(v), dp)
		if zero != '0' {
			rs := []rune(s)
			for i, r := range rs {
				if r >= '0' && r <= '9' {
					rs[i] = family[r-'0']
				}
			}
			s = string(rs)
		}
		return s
	}
	ds := props["decimal-separator"]
	str := []rune(makeString(rounded, pic.maximumFractionalPartSize))
	if dp := runeIndex(str, []rune{'.'}, 0); dp == -1 {
		str = append(str, []rune(ds)...)
	} else {
		str = []rune(strings.Replace(string(str), ".", ds, 1))
	}
	for len(str) > 0 && str[0] == zero {
		str = str[1:]
	}
	for len(str) > 0 && str[len(str)-1] == zero {
		str = str[:len(str)-1]
	}
	decimalPos := runeIndex(str, []rune(ds), 0)
	if padLeft := pic.minimumIntegerPartSize - decimalPos; padLeft > 0 {
		str = append([]rune(strings.Repeat(string(zero), padLeft)), str...)
	}
	decimalPos = runeIndex(str, []rune(ds), 0)
	if padRight := pic.minimumFractionalPartSize - (len(str) - decimalPos - 1); padRight > 0 {
		str = append(str, []rune(strings.Repeat(string(zero), padRight))...)
	}
	decimalPos = runeIndex(str, []rune(ds), 0)
	gs := []rune(props["grouping-separator"])
	insert := func(s []rune, at int, what []rune) []rune {
		out := make([]rune, 0, len(s)+len(what))
		out = append(out, s[:at]...)
		out = append(out, what...)
		return append(out, s[at:]...)
	}
	if pic.regularGrouping > 0 {
		groups := (decimalPos - 1) / pic.regularGrouping
		for g := 1; g <= groups; g++ {
			str = insert(str, decimalPos-g*pic.regularGrouping, gs)
		}
	} else {
		for _, pos := range pic.integerGroupingPositions {
			at := decimalPos - pos
			if at < 0 {
				at = 0
			}
			str = insert(str, at, gs)
			decimalPos++
		}
	}
	decimalPos = runeIndex(str, []rune(ds), 0)
	for _, pos := range pic.fractionalGroupingPositions {
		at := pos + decimalPos + 1
		if at > len(str) {
			at = len(str)
		}
		str = insert(str, at, gs)
	}
	decimalPos = runeIndex(str, []rune(ds), 0)
	if !strings.Contains(pic.picture, ds) || decimalPos == len(str)-1 {
		str = str[:len(str)-1]
	}
	out := string(str)
	if exponent != nil {
		es := makeString(float64(*exponent), 0)
		if pad := pic.minimumExponentSize - len([]rune(es)); pad > 0 {
			es = strings.Repeat(string(zero), pad) + es
		}
		sign := ""
		if *exponent < 0 {
			sign = minus
		}
		out += props["exponent-separator"] + sign + es
	}
	return pic.prefix + out + pic.suffix, nil
}

// toFixed is Number.prototype.toFixed.
func toFixed(v float64, dp int) string {
	if v >= 1e21 {
		return formatNumber(v)
	}
	return strconv.FormatFloat(v, 'f', dp, 64)
}
