package jsonata

import (
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
)

type sigParam struct {
	regex        string
	typ          string
	array        bool
	context      bool
	contextRegex *regexp.Regexp
	subtype      string
}

type signature struct {
	definition string
	params     []*sigParam
	re         *regexp.Regexp
	// plans caches, per pattern of argument types (e.g. "sn"), which arguments each parameter
	// took; the regex runs once per distinct pattern instead of once per call.
	plans sync.Map // string -> []string (the submatches), or nil for "no match"
	last  atomic.Pointer[plan]
}

type plan struct {
	pattern string
	match   []string
}

var arraySignatureMapping = map[string]string{"a": "arrays", "b": "booleans", "f": "functions", "n": "numbers", "o": "objects", "s": "strings"}

func parseSignature(s string) (*signature, error) {
	runes := []rune(s)
	position := 1
	var params []*sigParam
	param := &sigParam{}
	prev := param
	next := func() {
		params = append(params, param)
		prev = param
		param = &sigParam{}
	}
	findClosing := func(start int, open, close rune) int {
		depth := 1
		p := start
		for p < len(runes) {
			p++
			if p >= len(runes) {
				break
			}
			c := runes[p]
			if c == close {
				depth--
				if depth == 0 {
					break
				}
			} else if c == open {
				depth++
			}
		}
		return p
	}
	for position < len(runes) {
		sym := runes[position]
		if sym == ':' {
			break
		}
		switch sym {
		case 's', 'n', 'b', 'l', 'o':
			param.regex = "[" + string(sym) + "m]"
			param.typ = string(sym)
			next()
		case 'a':
			param.regex = "[asnblfom]"
			param.typ = "a"
			param.array = true
			next()
		case 'f':
			param.regex = "f"
			param.typ = "f"
			next()
		case 'j':
			param.regex = "[asnblom]"
			param.typ = "j"
			next()
		case 'x':
			param.regex = "[asnblfom]"
			param.typ = "x"
			next()
		case '-':
			prev.context = true
			prev.contextRegex = regexp.MustCompile(prev.regex)
			prev.regex += "?"
		case '?', '+':
			prev.regex += string(sym)
		case '(':
			end := findClosing(position, '(', ')')
			choice := string(runes[position+1 : min(end, len(runes))])
			if strings.Contains(choice, "<") {
				return nil, &Error{Code: "S0402", Value: choice, offset: position}
			}
			param.regex = "[" + choice + "m]"
			param.typ = "(" + choice + ")"
			position = end
			next()
		case '<':
			if prev.typ == "a" || prev.typ == "f" {
				end := findClosing(position, '<', '>')
				prev.subtype = string(runes[position+1 : min(end, len(runes))])
				position = end
			} else {
				return nil, &Error{Code: "S0401", Value: prev.typ, offset: position}
			}
		}
		position++
	}
	var sb strings.Builder
	sb.WriteString("^")
	for _, p := range params {
		sb.WriteString("(" + p.regex + ")")
	}
	sb.WriteString("$")
	re, err := regexp.Compile(sb.String())
	if err != nil {
		return nil, &Error{Code: "S0401", Value: s}
	}
	return &signature{definition: s, params: params, re: re}, nil
}

func sigSymbol(v any) byte {
	switch v.(type) {
	case Callable:
		return 'f'
	case string:
		return 's'
	case float64:
		return 'n'
	case bool:
		return 'b'
	case nullType:
		return 'l'
	case *Array:
		return 'a'
	case *Object:
		return 'o'
	default:
		return 'm'
	}
}

func (s *signature) validate(args []any, context any) ([]any, error) {
	var buf [8]byte
	supplied := buf[:0]
	for _, a := range args {
		supplied = append(supplied, sigSymbol(a))
	}
	var m []string
	if p := s.last.Load(); p != nil && p.pattern == string(supplied) {
		m = p.match // a function is usually called with the same argument types again
	} else if cached, ok := s.plans.Load(string(supplied)); ok {
		m, _ = cached.([]string)
		s.last.Store(&plan{pattern: string(supplied), match: m})
	} else {
		m = s.re.FindStringSubmatch(string(supplied))
		s.plans.Store(string(supplied), m)
		s.last.Store(&plan{pattern: string(supplied), match: m})
	}
	if m == nil {
		return nil, s.validationError(args, string(supplied))
	}
	// validated stays nil while the output equals args position by position, so the common call
	// (arguments as given) allocates nothing.
	var validated []any
	n := 0
	emit := func(v any) {
		if validated == nil && n < len(args) && sameValue(args[n], v) {
			n++
			return
		}
		if validated == nil {
			validated = make([]any, n, len(s.params)+1)
			copy(validated, args[:n])
		}
		validated = append(validated, v)
		n++
	}
	argIndex := 0
	for i, p := range s.params {
		var arg any
		if argIndex < len(args) {
			arg = args[argIndex]
		}
		match := m[i+1]
		if match == "" {
			if p.context && p.contextRegex != nil {
				ct := sigSymbol(context)
				if p.contextRegex.MatchString(string(ct)) {
					emit(context)
				} else {
					return nil, &Error{Code: "T0411", Value: context, Index: argIndex + 1}
				}
			} else {
				emit(arg)
				argIndex++
			}
			continue
		}
		for _, single := range match {
			if argIndex < len(args) {
				arg = args[argIndex]
			} else {
				arg = nil
			}
			if p.typ == "a" {
				if single == 'm' {
					arg = nil
				} else {
					ok := true
					if p.subtype != "" {
						if single != 'a' && match != p.subtype {
							ok = false
						} else if single == 'a' {
							arr := arg.(*Array)
							if len(arr.Items) > 0 {
								it := sigSymbol(arr.Items[0])
								if string(it) != p.subtype[:1] {
									ok = false
								} else {
									for _, v := range arr.Items {
										if sigSymbol(v) != it {
											ok = false
											break
										}
									}
								}
							}
						}
					}
					if !ok {
						return nil, &Error{Code: "T0412", Value: arg, Index: argIndex + 1, Type: arraySignatureMapping[p.subtype]}
					}
					if single != 'a' {
						arg = newSeqArray(arg)
					}
				}
			}
			emit(arg)
			argIndex++
		}
	}
	if validated == nil {
		return args[:n], nil
	}
	return validated, nil
}

// sameValue reports whether two argument values are the very same value. Every engine value is
// comparable (scalars, or pointers to arrays, objects and functions).
func sameValue(a, b any) bool { return a == b }

// newSeqArray wraps a single value as a plain array (what JavaScript's [arg] is).
func newSeqArray(v any) *Array { return &Array{Items: []any{v}} }

func (s *signature) validationError(args []any, supplied string) error {
	pattern := "^"
	goodTo := 0
	for _, p := range s.params {
		pattern += p.regex
		re := regexp.MustCompile(pattern)
		loc := re.FindStringIndex(supplied)
		if loc == nil {
			var v any
			if goodTo < len(args) {
				v = args[goodTo]
			}
			return &Error{Code: "T0410", Value: v, Index: goodTo + 1}
		}
		goodTo = loc[1]
	}
	var v any
	if goodTo < len(args) {
		v = args[goodTo]
	}
	return &Error{Code: "T0410", Value: v, Index: goodTo + 1}
}
