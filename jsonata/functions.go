package jsonata

import (
	"bytes"
	"encoding/base64"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// builtins is the standard library: name → (parameter names as the reference declares them,
// signature, implementation).
var builtins = map[string]*builtin{}

func def(name, sig string, params []string, fn func(c callCtx, args []any) (any, error)) {
	var s *signature
	if sig != "" {
		s = mustSignature(sig)
	}
	builtins[name] = &builtin{name: name, params: params, signature: s, fn: fn}
}

func arg(args []any, i int) any {
	if i < len(args) {
		return args[i]
	}
	return nil
}

func items(v any) []any {
	if a, ok := v.(*Array); ok {
		return a.Items
	}
	return nil
}

func init() {
	def("sum", "<a<n>:n>", []string{"args"}, func(c callCtx, a []any) (any, error) {
		if arg(a, 0) == nil {
			return nil, nil
		}
		total := 0.0
		for _, v := range items(a[0]) {
			total += v.(float64)
		}
		return total, nil
	})
	def("count", "<a:n>", []string{"args"}, func(c callCtx, a []any) (any, error) {
		if arg(a, 0) == nil {
			return 0.0, nil
		}
		return float64(len(items(a[0]))), nil
	})
	def("max", "<a<n>:n>", []string{"args"}, func(c callCtx, a []any) (any, error) {
		its := items(arg(a, 0))
		if len(its) == 0 {
			return nil, nil
		}
		m := math.Inf(-1)
		for _, v := range its {
			m = math.Max(m, v.(float64))
		}
		return m, nil
	})
	def("min", "<a<n>:n>", []string{"args"}, func(c callCtx, a []any) (any, error) {
		its := items(arg(a, 0))
		if len(its) == 0 {
			return nil, nil
		}
		m := math.Inf(1)
		for _, v := range its {
			m = math.Min(m, v.(float64))
		}
		return m, nil
	})
	def("average", "<a<n>:n>", []string{"args"}, func(c callCtx, a []any) (any, error) {
		its := items(arg(a, 0))
		if len(its) == 0 {
			return nil, nil
		}
		total := 0.0
		for _, v := range its {
			total += v.(float64)
		}
		return total / float64(len(its)), nil
	})
	def("string", "<x-b?:s>", []string{"arg"}, func(c callCtx, a []any) (any, error) {
		if arg(a, 0) == nil {
			return nil, nil
		}
		pretty, _ := arg(a, 1).(bool)
		s, err := toJSONataString(a[0], pretty)
		if err != nil {
			return nil, err
		}
		return s, c.r.checkSize(len(s) / 16)
	})
	def("substring", "<s-nn?:s>", []string{"str", "start", "length"}, func(c callCtx, a []any) (any, error) {
		s, ok := arg(a, 0).(string)
		if !ok {
			return nil, nil
		}
		start, _ := arg(a, 1).(float64)
		length, hasLen := arg(a, 2).(float64)
		return substring(s, start, length, hasLen), nil
	})
	def("substringBefore", "<s-s:s>", []string{"str", "chars"}, func(c callCtx, a []any) (any, error) {
		s, ok := arg(a, 0).(string)
		if !ok {
			return nil, nil
		}
		chars, _ := arg(a, 1).(string)
		if i := strings.Index(s, chars); i > -1 {
			return s[:i], nil
		}
		return s, nil
	})
	def("substringAfter", "<s-s:s>", []string{"str", "chars"}, func(c callCtx, a []any) (any, error) {
		s, ok := arg(a, 0).(string)
		if !ok {
			return nil, nil
		}
		chars, _ := arg(a, 1).(string)
		if i := strings.Index(s, chars); i > -1 {
			return s[i+len(chars):], nil
		}
		return s, nil
	})
	def("lowercase", "<s-:s>", []string{"str"}, func(c callCtx, a []any) (any, error) {
		if s, ok := arg(a, 0).(string); ok {
			return strings.ToLower(s), nil
		}
		return nil, nil
	})
	def("uppercase", "<s-:s>", []string{"str"}, func(c callCtx, a []any) (any, error) {
		if s, ok := arg(a, 0).(string); ok {
			return strings.ToUpper(s), nil
		}
		return nil, nil
	})
	def("length", "<s-:n>", []string{"str"}, func(c callCtx, a []any) (any, error) {
		if s, ok := arg(a, 0).(string); ok {
			return float64(utf8.RuneCountInString(s)), nil
		}
		return nil, nil
	})
	def("trim", "<s-:s>", []string{"str"}, func(c callCtx, a []any) (any, error) {
		s, ok := arg(a, 0).(string)
		if !ok {
			return nil, nil
		}
		return trim(s), nil
	})
	def("pad", "<s-ns?:s>", []string{"str", "width", "char"}, func(c callCtx, a []any) (any, error) {
		s, ok := arg(a, 0).(string)
		if !ok {
			return nil, nil
		}
		width, _ := arg(a, 1).(float64)
		ch, _ := arg(a, 2).(string)
		if ch == "" {
			ch = " "
		}
		width = math.Trunc(width)
		if err := c.r.checkSize(int(math.Min(math.Abs(width), 1e12)) / 16); err != nil {
			return nil, err
		}
		padLen := int(math.Abs(width)) - utf8.RuneCountInString(s)
		if padLen <= 0 {
			return s, nil
		}
		padding := strings.Repeat(ch, padLen)
		if utf8.RuneCountInString(ch) > 1 {
			padding = substring(padding, 0, float64(padLen), true)
		}
		if width > 0 {
			return s + padding, nil
		}
		return padding + s, nil
	})
	def("match", "<s-f<s:o>n?:a<o>>", []string{"str", "regex", "limit"}, fnMatch)
	def("contains", "<s-(sf):b>", []string{"str", "token"}, func(c callCtx, a []any) (any, error) {
		s, ok := arg(a, 0).(string)
		if !ok || arg(a, 1) == nil {
			return nil, nil
		}
		if tok, ok := a[1].(string); ok {
			return strings.Contains(s, tok), nil
		}
		m, err := c.evaluateMatcher(a[1], s)
		if err != nil {
			return nil, err
		}
		return m != nil, nil
	})
	def("replace", "<s-(sf)(sf)n?:s>", []string{"str", "pattern", "replacement", "limit"}, fnReplace)
	def("split", "<s-(sf)n?:a<s>>", []string{"str", "separator", "limit"}, fnSplit)
	def("join", "<a<s>s?:s>", []string{"strs", "separator"}, func(c callCtx, a []any) (any, error) {
		if arg(a, 0) == nil {
			return nil, nil
		}
		sep, _ := arg(a, 1).(string)
		parts := make([]string, 0, len(items(a[0])))
		for _, v := range items(a[0]) {
			parts = append(parts, v.(string))
		}
		s := strings.Join(parts, sep)
		return s, c.r.checkSize(len(s) / 16)
	})
	def("formatNumber", "<n-so?:s>", []string{"value", "picture", "options"}, fnFormatNumber)
	def("formatBase", "<n-n?:s>", []string{"value", "radix"}, func(c callCtx, a []any) (any, error) {
		v, ok := arg(a, 0).(float64)
		if !ok {
			return nil, nil
		}
		v = roundHalfEven(v, 0)
		radix := 10.0
		if r, ok := arg(a, 1).(float64); ok {
			radix = roundHalfEven(r, 0)
		}
		if radix < 2 || radix > 36 {
			return nil, &Error{Code: "D3100", Value: radix}
		}
		if math.Abs(v) < 1<<62 {
			return strconv.FormatInt(int64(v), int(radix)), nil
		}
		return strconv.FormatFloat(v, 'f', 0, 64), nil
	})
	def("formatInteger", "<n-s:s>", []string{"value", "picture"}, fnFormatInteger)
	def("parseInteger", "<s-s:n>", []string{"value", "picture"}, fnParseInteger)
	def("number", "<(nsb)-:n>", []string{"arg"}, func(c callCtx, a []any) (any, error) { return toNumber(arg(a, 0)) })
	def("floor", "<n-:n>", []string{"arg"}, mathFn(math.Floor))
	def("ceil", "<n-:n>", []string{"arg"}, mathFn(math.Ceil))
	def("abs", "<n-:n>", []string{"arg"}, mathFn(math.Abs))
	def("round", "<n-n?:n>", []string{"arg", "precision"}, func(c callCtx, a []any) (any, error) {
		v, ok := arg(a, 0).(float64)
		if !ok {
			return nil, nil
		}
		p, _ := arg(a, 1).(float64)
		return roundHalfEven(v, int(p)), nil
	})
	def("sqrt", "<n-:n>", []string{"arg"}, func(c callCtx, a []any) (any, error) {
		v, ok := arg(a, 0).(float64)
		if !ok {
			return nil, nil
		}
		if v < 0 {
			return nil, &Error{Code: "D3060", Index: 1, Value: v}
		}
		return math.Sqrt(v), nil
	})
	def("power", "<n-n:n>", []string{"arg", "exp"}, func(c callCtx, a []any) (any, error) {
		v, ok := arg(a, 0).(float64)
		if !ok {
			return nil, nil
		}
		e, _ := arg(a, 1).(float64)
		r := math.Pow(v, e)
		if math.IsInf(r, 0) || math.IsNaN(r) {
			return nil, &Error{Code: "D3061", Index: 1, Value: v, Exp: e}
		}
		return r, nil
	})
	def("random", "<:n>", nil, func(c callCtx, a []any) (any, error) { return c.r.random(), nil })
	def("boolean", "<x-:b>", []string{"arg"}, func(c callCtx, a []any) (any, error) { return toBoolean(arg(a, 0)), nil })
	def("not", "<x-:b>", []string{"arg"}, func(c callCtx, a []any) (any, error) {
		b := toBoolean(arg(a, 0))
		if b == nil {
			return nil, nil
		}
		return !b.(bool), nil
	})
	def("map", "<af>", []string{"arr", "func"}, func(c callCtx, a []any) (any, error) {
		if arg(a, 0) == nil {
			return nil, nil
		}
		arr := items(a[0])
		result := newSeq()
		if err := c.r.checkSize(len(arr)); err != nil {
			return nil, err
		}
		for i, v := range arr {
			res, err := c.call(a[1], hofArgs(a[1], v, float64(i), a[0]))
			if err != nil {
				return nil, err
			}
			if res != nil {
				result.push(res)
			}
		}
		return result, nil
	})
	def("filter", "<af>", []string{"arr", "func"}, func(c callCtx, a []any) (any, error) {
		if arg(a, 0) == nil {
			return nil, nil
		}
		result := newSeq()
		for i, v := range items(a[0]) {
			res, err := c.call(a[1], hofArgs(a[1], v, float64(i), a[0]))
			if err != nil {
				return nil, err
			}
			if toBoolean(res) == true {
				result.push(v)
			}
		}
		return result, nil
	})
	def("single", "<af?>", []string{"arr", "func"}, func(c callCtx, a []any) (any, error) {
		if arg(a, 0) == nil {
			return nil, nil
		}
		found := false
		var result any
		for i, v := range items(a[0]) {
			positive := true
			if f := arg(a, 1); f != nil {
				res, err := c.call(f, hofArgs(f, v, float64(i), a[0]))
				if err != nil {
					return nil, err
				}
				positive = toBoolean(res) == true
			}
			if positive {
				if found {
					return nil, &Error{Code: "D3138", Index: i}
				}
				result, found = v, true
			}
		}
		if !found {
			return nil, &Error{Code: "D3139"}
		}
		return result, nil
	})
	def("zip", "<a+>", nil, func(c callCtx, a []any) (any, error) {
		length := math.MaxInt
		for _, v := range a {
			if arr, ok := v.(*Array); ok {
				length = min(length, len(arr.Items))
			} else {
				length = 0
			}
		}
		if len(a) == 0 {
			length = 0
		}
		result := &Array{Items: []any{}}
		for i := 0; i < length; i++ {
			t := &Array{Items: make([]any, len(a))}
			for j, v := range a {
				t.Items[j] = v.(*Array).Items[i]
			}
			result.push(t)
		}
		return result, nil
	})
	def("reduce", "<afj?:j>", []string{"sequence", "func", "init"}, func(c callCtx, a []any) (any, error) {
		if arg(a, 0) == nil {
			return nil, nil
		}
		seq := items(a[0])
		f := a[1].(Callable)
		ar := f.arity()
		if ar < 2 {
			return nil, &Error{Code: "D3050", Index: 1}
		}
		var result any
		index := 0
		if arg(a, 2) == nil && len(seq) > 0 {
			result, index = seq[0], 1
		} else {
			result = arg(a, 2)
		}
		for ; index < len(seq); index++ {
			args := []any{result, seq[index]}
			if ar >= 3 {
				args = append(args, float64(index))
			}
			if ar >= 4 {
				args = append(args, a[0])
			}
			var err error
			if result, err = c.call(f, args); err != nil {
				return nil, err
			}
		}
		return result, nil
	})
	def("sift", "<o-f?:o>", []string{"arg", "func"}, func(c callCtx, a []any) (any, error) {
		o, ok := arg(a, 0).(*Object)
		if !ok {
			return nil, nil
		}
		result := NewObject()
		for _, k := range o.keys {
			res, err := c.call(a[1], hofArgs(a[1], o.get(k), k, o))
			if err != nil {
				return nil, err
			}
			if toBoolean(res) == true {
				result.Set(k, o.get(k))
			}
		}
		if result.Len() == 0 {
			return nil, nil
		}
		return result, nil
	})
	def("keys", "<x-:a<s>>", []string{"arg"}, func(c callCtx, a []any) (any, error) { return keysOf(arg(a, 0)), nil })
	def("lookup", "<x-s:x>", []string{"input", "key"}, func(c callCtx, a []any) (any, error) {
		k, _ := arg(a, 1).(string)
		return lookupField(arg(a, 0), k), nil
	})
	def("append", "<xx:a>", []string{"arg1", "arg2"}, func(c callCtx, a []any) (any, error) {
		res := appendValues(arg(a, 0), arg(a, 1))
		return res, c.r.checkSize(len(items(res)))
	})
	def("exists", "<x:b>", []string{"arg"}, func(c callCtx, a []any) (any, error) { return arg(a, 0) != nil, nil })
	def("spread", "<x-:a<o>>", []string{"arg"}, func(c callCtx, a []any) (any, error) { return spread(arg(a, 0)), nil })
	def("merge", "<a<o>:o>", []string{"arg"}, func(c callCtx, a []any) (any, error) {
		if arg(a, 0) == nil {
			return nil, nil
		}
		result := NewObject()
		for _, v := range items(a[0]) {
			if o, ok := v.(*Object); ok {
				for _, k := range o.keys {
					result.Set(k, o.get(k))
				}
			}
		}
		return result, nil
	})
	def("reverse", "<a:a>", []string{"arr"}, func(c callCtx, a []any) (any, error) {
		arr, ok := arg(a, 0).(*Array)
		if !ok {
			return nil, nil
		}
		if len(arr.Items) <= 1 {
			return arr, nil
		}
		out := &Array{Items: make([]any, len(arr.Items))}
		for i, v := range arr.Items {
			out.Items[len(arr.Items)-1-i] = v
		}
		return out, nil
	})
	def("each", "<o-f:a>", []string{"obj", "func"}, func(c callCtx, a []any) (any, error) {
		result := newSeq()
		o, ok := arg(a, 0).(*Object)
		if !ok {
			return result, nil
		}
		for _, k := range o.keys {
			v, err := c.call(a[1], hofArgs(a[1], o.get(k), k, o))
			if err != nil {
				return nil, err
			}
			if v != nil {
				result.push(v)
			}
		}
		return result, nil
	})
	def("error", "<s?:x>", []string{"message"}, func(c callCtx, a []any) (any, error) {
		msg, _ := arg(a, 0).(string)
		if msg == "" {
			msg = "$error() function evaluated"
		}
		return nil, &Error{Code: "D3137", Message: msg}
	})
	def("assert", "<bs?:x>", []string{"condition", "message"}, func(c callCtx, a []any) (any, error) {
		if b, _ := arg(a, 0).(bool); !b {
			msg, _ := arg(a, 1).(string)
			if msg == "" {
				msg = "$assert() statement failed"
			}
			return nil, &Error{Code: "D3141", Message: msg}
		}
		return nil, nil
	})
	def("type", "<x:s>", []string{"value"}, func(c callCtx, a []any) (any, error) {
		switch arg(a, 0).(type) {
		case nil:
			return nil, nil
		case nullType:
			return "null", nil
		case float64:
			return "number", nil
		case string:
			return "string", nil
		case bool:
			return "boolean", nil
		case *Array:
			return "array", nil
		case Callable:
			return "function", nil
		}
		return "object", nil
	})
	def("sort", "<af?:a>", []string{"arr", "comparator"}, func(c callCtx, a []any) (any, error) {
		arr, ok := arg(a, 0).(*Array)
		if !ok {
			return nil, nil
		}
		if len(arr.Items) <= 1 {
			return arr, nil
		}
		var swap func(x, y any) (bool, error)
		if cmp := arg(a, 1); cmp != nil {
			swap = func(x, y any) (bool, error) {
				res, err := c.call(cmp, []any{x, y})
				if err != nil {
					return false, err
				}
				return toBoolean(res) == true, nil
			}
		} else {
			nums, err := isArrayOfNumbers(arr)
			if err != nil {
				return nil, err
			}
			if !nums && !isArrayOfStrings(arr) {
				return nil, &Error{Code: "D3070", Index: 1}
			}
			swap = func(x, y any) (bool, error) {
				if xs, ok := x.(string); ok {
					return compareJSStrings(xs, y.(string)) > 0, nil
				}
				return x.(float64) > y.(float64), nil
			}
		}
		if err := c.r.checkSize(len(arr.Items)); err != nil {
			return nil, err
		}
		sorted, err := mergeSort(arr.Items, swap)
		if err != nil {
			return nil, err
		}
		return &Array{Items: sorted}, nil
	})
	def("shuffle", "<a:a>", []string{"arr"}, func(c callCtx, a []any) (any, error) {
		arr, ok := arg(a, 0).(*Array)
		if !ok {
			return nil, nil
		}
		if len(arr.Items) <= 1 {
			return arr, nil
		}
		out := make([]any, len(arr.Items))
		for i, v := range arr.Items {
			j := int(math.Floor(c.r.random() * float64(i+1)))
			if i != j {
				out[i] = out[j]
			}
			out[j] = v
		}
		return &Array{Items: out}, nil
	})
	def("distinct", "<x:x>", []string{"arr"}, func(c callCtx, a []any) (any, error) {
		arr, ok := arg(a, 0).(*Array)
		if !ok || len(arr.Items) <= 1 {
			return arg(a, 0), nil
		}
		out := &Array{Items: []any{}, sequence: arr.sequence}
		for _, v := range arr.Items {
			dup := false
			for _, w := range out.Items {
				if deepEqual(v, w) {
					dup = true
					break
				}
			}
			if !dup {
				out.push(v)
			}
		}
		return out, nil
	})
	def("base64encode", "<s-:s>", []string{"str"}, func(c callCtx, a []any) (any, error) {
		s, ok := arg(a, 0).(string)
		if !ok {
			return nil, nil
		}
		units := toUTF16(s)
		b := make([]byte, len(units))
		for i, u := range units {
			b[i] = byte(u)
		}
		return base64.StdEncoding.EncodeToString(b), nil
	})
	def("base64decode", "<s-:s>", []string{"str"}, func(c callCtx, a []any) (any, error) {
		s, ok := arg(a, 0).(string)
		if !ok {
			return nil, nil
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			if b, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "=")); err != nil {
				return "", nil
			}
		}
		r := make([]rune, len(b))
		for i, x := range b {
			r[i] = rune(x)
		}
		return string(r), nil
	})
	def("encodeUrlComponent", "<s-:s>", []string{"str"}, urlFn("encodeUrlComponent", func(s string) (string, bool) { return encodeURI(s, uriUnreservedComponent) }))
	def("encodeUrl", "<s-:s>", []string{"str"}, urlFn("encodeUrl", func(s string) (string, bool) { return encodeURI(s, uriUnreservedFull) }))
	def("decodeUrlComponent", "<s-:s>", []string{"str"}, urlFn("decodeUrlComponent", func(s string) (string, bool) { return decodeURI(s, "") }))
	def("decodeUrl", "<s-:s>", []string{"str"}, urlFn("decodeUrl", func(s string) (string, bool) { return decodeURI(s, ";/?:@&=+$,#") }))
	def("eval", "<sx?:x>", []string{"expr", "focus"}, fnEval)
	def("toMillis", "<s-s?:n>", []string{"timestamp", "picture"}, fnToMillis)
	def("fromMillis", "<n-s?s?:s>", []string{"millis", "picture", "timezone"}, fnFromMillis)
	def("clone", "<(oa)-:o>", []string{"arg"}, func(c callCtx, a []any) (any, error) {
		if arg(a, 0) == nil {
			return nil, nil
		}
		s, err := toJSONataString(a[0], false)
		if err != nil {
			return nil, err
		}
		return DecodeJSON([]byte(s))
	})
	def("now", "<s?s?:s>", []string{"picture", "timezone"}, func(c callCtx, a []any) (any, error) {
		return fnFromMillis(c, []any{float64(c.r.now.UnixMilli()), arg(a, 0), arg(a, 1)})
	})
	def("millis", "<:n>", nil, func(c callCtx, a []any) (any, error) { return float64(c.r.now.UnixMilli()), nil })
}

func mathFn(f func(float64) float64) func(c callCtx, a []any) (any, error) {
	return func(c callCtx, a []any) (any, error) {
		v, ok := arg(a, 0).(float64)
		if !ok {
			return nil, nil
		}
		r := f(v)
		if r == 0 {
			r = 0 // no negative zero
		}
		return r, nil
	}
}

// call applies a function value passed to a built-in (as jsonata-js's closures do: no input).
func (c *callCtx) call(fn any, args []any) (any, error) { return c.r.apply(fn, args, nil, c.env) }

func hofArgs(fn any, a1, a2, a3 any) []any {
	args := []any{a1}
	n := 1
	if f, ok := fn.(Callable); ok {
		n = f.arity()
	}
	if n >= 2 {
		args = append(args, a2)
	}
	if n >= 3 {
		args = append(args, a3)
	}
	return args
}

// toBoolean is $boolean: nil for undefined.
func toBoolean(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case *Array:
		switch len(x.Items) {
		case 0:
			return false
		case 1:
			b := toBoolean(x.Items[0])
			if b == nil {
				return false
			}
			return b
		}
		for _, it := range x.Items {
			if toBoolean(it) == true {
				return true
			}
		}
		return false
	case string:
		return x != ""
	case float64:
		return x != 0 && !math.IsNaN(x)
	case *Object:
		return len(x.keys) > 0
	case bool:
		return x
	case *matchResult:
		return true
	}
	return false
}

func appendValues(a1, a2 any) any {
	if a1 == nil {
		return a2
	}
	if a2 == nil {
		return a1
	}
	left, ok := a1.(*Array)
	if !ok {
		left = newSeq(a1)
	}
	right, ok := a2.(*Array)
	var rightItems []any
	if ok {
		rightItems = right.Items
	} else {
		rightItems = []any{a2}
	}
	out := &Array{Items: make([]any, 0, len(left.Items)+len(rightItems)), sequence: left.sequence,
		keepSingleton: left.keepSingleton, cons: left.cons, outerWrapper: left.outerWrapper, tupleStream: left.tupleStream}
	out.Items = append(out.Items, left.Items...)
	out.Items = append(out.Items, rightItems...)
	return out
}

func keysOf(v any) *Array {
	result := newSeq()
	switch x := v.(type) {
	case *Array:
		seen := map[string]bool{}
		for _, it := range x.Items {
			for _, k := range keysOf(it).Items {
				if !seen[k.(string)] {
					seen[k.(string)] = true
					result.push(k)
				}
			}
		}
	case *Object:
		for _, k := range x.keys {
			result.push(k)
		}
	}
	return result
}

func spread(v any) any {
	switch x := v.(type) {
	case *Array:
		var result any = newSeq()
		for _, it := range x.Items {
			result = appendValues(result, spread(it))
		}
		return result
	case *Object:
		result := newSeq()
		for _, k := range x.keys {
			o := NewObject()
			o.Set(k, x.get(k))
			result.push(o)
		}
		return result
	}
	return v
}

func toNumber(v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case float64:
		return x, nil
	case bool:
		if x {
			return 1.0, nil
		}
		return 0.0, nil
	case string:
		if isDecimalNumber(x) {
			f, err := strconv.ParseFloat(x, 64)
			if err == nil && !math.IsInf(f, 0) {
				return f, nil
			}
		}
		if baseNumber.MatchString(x) {
			base := 16
			switch x[1] {
			case 'o', 'O':
				base = 8
			case 'b', 'B':
				base = 2
			}
			n, err := strconv.ParseUint(x[2:], base, 64)
			if err == nil {
				return float64(n), nil
			}
		}
	}
	return nil, &Error{Code: "D3030", Value: v, Index: 1}
}

// isDecimalNumber matches ^-?[0-9]+(\.[0-9]+)?([Ee][-+]?[0-9]+)?$ without a regex engine.
func isDecimalNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if digits() == 0 {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

var (
	baseNumber = regexp.MustCompile(`^(0[xX][0-9A-Fa-f]+|0[oO][0-7]+|0[bB][0-1]+)$`)
)

// roundHalfEven is $round: round half to even at precision decimal places, done on the decimal
// representation (as the reference shifts the exponent of the number's string form).
func roundHalfEven(v float64, precision int) float64 {
	if precision > 0 && precision <= 15 && math.Abs(v) < 1e15 {
		if r, ok := roundDecimalString(v, precision); ok {
			return r
		}
	}
	return roundByShift(v, precision)
}

// roundByShift is the reference's algorithm: shift the decimal exponent of the number's text form,
// round in binary, correct ties to even, shift back.
func roundByShift(v float64, precision int) float64 {
	shifted := v
	if precision != 0 {
		shifted = shiftDecimal(v, precision)
	}
	result := math.Floor(shifted + 0.5) // JavaScript's Math.round
	if diff := result - shifted; math.Abs(diff) == 0.5 && math.Abs(math.Mod(result, 2)) == 1 {
		result--
	}
	if precision != 0 {
		result = shiftDecimal(result, -precision)
	}
	if result == 0 {
		return 0
	}
	return result
}

// roundDecimalString rounds half to even on the shortest decimal form of v, which is what shifting
// that form's exponent (as the reference does) computes, with one format and one parse.
func roundDecimalString(v float64, precision int) (float64, bool) {
	if math.Abs(v)*math.Pow(10, float64(precision)) >= 1<<52 {
		return 0, false // beyond exact integers the reference's shifted double loses digits: follow it
	}
	var buf [40]byte
	s := strconv.AppendFloat(buf[:0], v, 'f', -1, 64)
	dot := bytes.IndexByte(s, '.')
	if dot < 0 || len(s)-dot-1 <= precision {
		return v, true // already within the precision
	}
	cut := dot + 1 + precision // index of the first dropped digit
	next := s[cut]
	restNonZero := false
	for _, c := range s[cut+1:] {
		if c != '0' {
			restNonZero = true
			break
		}
	}
	// The reference shifts to a binary double and rounds there; where that double can land on the
	// other side of .5 than the decimal digits say, take the reference's path instead.
	frac, _ := strconv.ParseFloat("0."+string(s[cut:]), 64)
	scaled := math.Abs(v) * math.Pow(10, float64(precision))
	spacing := math.Nextafter(scaled, math.Inf(1)) - scaled
	if dist := math.Abs(frac - 0.5); dist != 0 && dist <= 4*spacing {
		return 0, false
	}
	keep := s[:cut]
	last := keep[len(keep)-1]
	if last == '.' {
		last = keep[len(keep)-2]
	}
	up := next > '5' || next == '5' && (restNonZero || (last-'0')%2 == 1)
	digits := []byte(string(keep))
	if up { // add one unit in the last kept place, in decimal, carrying leftwards
		i := len(digits) - 1
		for ; i >= 0; i-- {
			c := digits[i]
			if c == '.' || c == '-' {
				continue
			}
			if c < '9' {
				digits[i]++
				break
			}
			digits[i] = '0'
		}
		if i < 0 || digits[i] == '-' {
			pos := 0
			if digits[0] == '-' {
				pos = 1
			}
			digits = append(digits[:pos], append([]byte{'1'}, digits[pos:]...)...)
		}
	}
	r, err := strconv.ParseFloat(string(digits), 64)
	if err != nil {
		return 0, false
	}
	if r == 0 {
		return 0, true
	}
	return r, true
}

func shiftDecimal(v float64, by int) float64 {
	s := formatNumber(v)
	mant, exp, hasExp := strings.Cut(s, "e")
	e := 0
	if hasExp {
		e, _ = strconv.Atoi(exp)
	}
	f, err := strconv.ParseFloat(mant+"e"+strconv.Itoa(e+by), 64)
	if err != nil && !isRangeErr(err) {
		return v
	}
	return f
}

func substring(s string, start, length float64, hasLen bool) string {
	rs := []rune(s)
	n := float64(len(rs))
	if math.IsNaN(start) {
		start = 0
	}
	start = math.Trunc(start)
	if n+start < 0 {
		start = 0
	}
	begin := start
	if begin < 0 {
		begin = n + begin
	}
	if hasLen {
		if length <= 0 || math.IsNaN(length) {
			return ""
		}
		var end float64
		if start >= 0 {
			end = start + math.Trunc(length)
		} else {
			end = n + start + math.Trunc(length)
		}
		return sliceRunes(rs, begin, end)
	}
	return sliceRunes(rs, begin, n)
}

func sliceRunes(rs []rune, from, to float64) string {
	n := float64(len(rs))
	from = math.Max(0, math.Min(from, n))
	to = math.Max(0, math.Min(to, n))
	if from >= to {
		return ""
	}
	return string(rs[int(from):int(to)])
}

// trim is $trim: runs of space, tab, CR and LF become one space; a leading or trailing one goes.
func trim(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	inRun := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\n', '\r':
			inRun = true
		default:
			if inRun && b.Len() > 0 {
				b.WriteByte(' ')
			}
			inRun = false
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// toJSONataString is $string: strings as they are, functions as "", numbers with 15 significant
// digits, everything else as JSON.
func toJSONataString(v any, pretty bool) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case Callable:
		return "", nil
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return "", &Error{Code: "D3001", Value: x}
		}
	}
	if a, ok := v.(*Array); ok && a.outerWrapper && len(a.Items) > 0 {
		v = a.Items[0]
	}
	var b bytes.Buffer
	indent := ""
	if pretty {
		indent = "  "
	}
	if err := writeStringified(&b, v, indent, ""); err != nil {
		return "", err
	}
	return b.String(), nil
}

func precision15(f float64) float64 {
	if f == math.Trunc(f) {
		return f
	}
	r, _ := strconv.ParseFloat(strconv.FormatFloat(f, 'g', 15, 64), 64)
	return r
}

// writeStringified is JSON.stringify with the reference's replacer (15-digit numbers, functions as "").
func writeStringified(b *bytes.Buffer, v any, indent, cur string) error {
	switch x := v.(type) {
	case nil, nullType:
		b.WriteString("null")
	case Callable:
		b.WriteString(`""`)
	case float64:
		if math.IsInf(x, 0) {
			return &Error{Code: "D1001", Value: x}
		}
		if math.IsNaN(x) {
			b.WriteString("null")
		} else {
			b.WriteString(formatNumber(precision15(x)))
		}
	case bool:
		if x {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case string:
		writeJSONString(b, x)
	case *Array:
		if len(x.Items) == 0 {
			b.WriteString("[]")
			return nil
		}
		next := cur + indent
		b.WriteByte('[')
		for i, e := range x.Items {
			if i > 0 {
				b.WriteByte(',')
			}
			if indent != "" {
				b.WriteString("\n" + next)
			}
			if err := writeStringified(b, e, indent, next); err != nil {
				return err
			}
		}
		if indent != "" {
			b.WriteString("\n" + cur)
		}
		b.WriteByte(']')
	case *Object:
		next := cur + indent
		b.WriteByte('{')
		first := true
		for _, k := range x.keys {
			e := x.get(k)
			if e == nil {
				continue
			}
			if !first {
				b.WriteByte(',')
			}
			first = false
			if indent != "" {
				b.WriteString("\n" + next)
			}
			writeJSONString(b, k)
			b.WriteByte(':')
			if indent != "" {
				b.WriteByte(' ')
			}
			if err := writeStringified(b, e, indent, next); err != nil {
				return err
			}
		}
		if !first && indent != "" {
			b.WriteString("\n" + cur)
		}
		b.WriteByte('}')
	default:
		b.WriteString("null")
	}
	return nil
}

func urlFn(name string, f func(string) (string, bool)) func(c callCtx, a []any) (any, error) {
	return func(c callCtx, a []any) (any, error) {
		s, ok := arg(a, 0).(string)
		if !ok {
			return nil, nil
		}
		out, ok := f(s)
		if !ok {
			return nil, &Error{Code: "D3140", Value: s, FunctionName: name}
		}
		return out, nil
	}
}

const (
	uriUnreservedComponent = "-_.!~*'()"
	uriUnreservedFull      = "-_.!~*'();/?:@&=+$,#"
)

func encodeURI(s string, keep string) (string, bool) {
	var b strings.Builder
	for _, r := range s {
		if r == utf8.RuneError {
			return "", false
		}
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(keep, r)) {
			b.WriteRune(r)
			continue
		}
		var buf [4]byte
		n := utf8.EncodeRune(buf[:], r)
		for _, x := range buf[:n] {
			b.WriteString("%" + strings.ToUpper(strconv.FormatUint(uint64(x)|0x100, 16)[1:]))
		}
	}
	return b.String(), true
}

func decodeURI(s string, reserved string) (string, bool) {
	var out []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			out = append(out, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		if v < 128 && strings.IndexByte(reserved, byte(v)) >= 0 {
			out = append(out, s[i:i+3]...)
		} else {
			out = append(out, byte(v))
		}
		i += 2
	}
	if !utf8.Valid(out) {
		return "", false
	}
	return string(out), true
}

func toUTF16(s string) []uint16 { return utf16.Encode([]rune(s)) }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func fnEval(c callCtx, a []any) (any, error) {
	src, ok := arg(a, 0).(string)
	if !ok {
		return nil, nil
	}
	input := c.input
	if len(a) > 1 && a[1] != nil {
		input = a[1]
		if arr, ok := input.(*Array); ok && !arr.sequence {
			input = &Array{Items: []any{arr}, sequence: true, outerWrapper: true}
		}
	}
	ast, err := parse(src, c.r.deadline) // $eval compiles within the evaluation's time
	if err != nil {
		msg := err.Error()
		if e, ok := err.(*Error); ok {
			e.populate()
			msg = e.Message
		}
		return nil, &Error{Code: "D3120", Value: msg}
	}
	res, err := c.r.evaluate(ast, input, c.env)
	if err != nil {
		msg := err.Error()
		if e, ok := err.(*Error); ok {
			if e.Code == "U1001" || e.Code == "U1002" || e.Code == "U1003" {
				return nil, err // resource limits are not the expression's fault
			}
			e.populate()
			msg = e.Message
		}
		return nil, &Error{Code: "D3121", Value: msg}
	}
	return res, nil
}
