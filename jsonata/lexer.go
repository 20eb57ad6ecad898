package jsonata

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
)

// The lexer and parser follow jsonata-js 2.2.2 (MIT, © IBM Corp.) closely, so that error codes and
// positions match the reference engine. Positions count UTF-16 code units, as JavaScript does.

var operators = map[string]int{
	".": 75, "[": 80, "]": 0, "{": 70, "}": 0, "(": 80, ")": 0, ",": 0, "@": 80, "#": 80, ";": 80,
	":": 80, "?": 20, "+": 50, "-": 50, "*": 60, "/": 60, "%": 60, "|": 20, "=": 40, "<": 40, ">": 40,
	"^": 40, "**": 60, "..": 20, ":=": 10, "!=": 40, "<=": 40, ">=": 40, "~>": 40, "?:": 40, "??": 40,
	"and": 30, "or": 25, "in": 40, "&": 50, "!": 0, "~": 0,
}

var escapes = map[rune]string{'"': "\"", '\\': "\\", '/': "/", 'b': "\b", 'f': "\f", 'n': "\n", 'r': "\r", 't': "\t"}

type token struct {
	typ      string // name, variable, operator, string, number, value, regex
	value    any
	position int
}

type lexer struct {
	src    []uint16 // UTF-16, like a JavaScript string
	pos    int
	length int
}

func newLexer(s string) *lexer {
	u := utf16.Encode([]rune(s))
	return &lexer{src: u, length: len(u)}
}

func (l *lexer) at(i int) rune {
	if i < 0 || i >= l.length {
		return 0
	}
	return rune(l.src[i])
}

func (l *lexer) substr(from, to int) string {
	if to > l.length {
		to = l.length
	}
	if from >= to {
		return ""
	}
	return string(utf16.Decode(l.src[from:to]))
}

func isWS(c rune) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' }

// numberAt returns the number literal starting at i, matching the reference's
// /^-?(0|([1-9][0-9]*))(\.[0-9]+)?([Ee][-+]?[0-9]+)?/ without copying the rest of the source:
// matching a regex against the remaining text for every token made compiling quadratic.
func (l *lexer) numberAt(i int) string {
	start := i
	digit := func(p int) bool { c := l.at(p); return c >= '0' && c <= '9' }
	digits := func(p int) int {
		for digit(p) {
			p++
		}
		return p
	}
	if l.at(i) == '-' {
		i++
	}
	switch {
	case l.at(i) == '0':
		i++
	case digit(i):
		i = digits(i)
	default:
		return ""
	}
	if l.at(i) == '.' && digit(i+1) {
		i = digits(i + 1)
	}
	if c := l.at(i); c == 'e' || c == 'E' {
		j := i + 1
		if c := l.at(j); c == '+' || c == '-' {
			j++
		}
		if digit(j) {
			i = digits(j)
		}
	}
	return l.substr(start, i)
}

func (l *lexer) scanRegex() (*regexLiteral, error) {
	start := l.pos
	depth := 0
	isClosingSlash := func(p int) bool {
		if l.at(p) == '/' && depth == 0 {
			bs := 0
			for l.at(p-(bs+1)) == '\\' {
				bs++
			}
			return bs%2 == 0
		}
		return false
	}
	for l.pos < l.length {
		c := l.at(l.pos)
		if isClosingSlash(l.pos) {
			pattern := l.substr(start, l.pos)
			if pattern == "" {
				return nil, &Error{Code: "S0301", Position: l.pos}
			}
			l.pos++
			fstart := l.pos
			for c = l.at(l.pos); c == 'i' || c == 'm'; c = l.at(l.pos) {
				l.pos++
			}
			return compileRegexLiteral(pattern, l.substr(fstart, l.pos), l.pos)
		}
		if (c == '(' || c == '[' || c == '{') && l.at(l.pos-1) != '\\' {
			depth++
		}
		if (c == ')' || c == ']' || c == '}') && l.at(l.pos-1) != '\\' {
			depth--
		}
		l.pos++
	}
	return nil, &Error{Code: "S0302", Position: l.pos}
}

// next returns the next token, or nil at the end. prefix is true where an operator, not a
// regex, is expected after '/'.
func (l *lexer) next(prefix bool) (*token, error) {
	if l.pos >= l.length {
		return nil, nil
	}
	c := l.at(l.pos)
	for {
		for l.pos < l.length && isWS(c) {
			l.pos++
			c = l.at(l.pos)
		}
		if c != '/' || l.at(l.pos+1) != '*' {
			break
		}
		// A comment; looping rather than recursing keeps many comments off the stack.
		commentStart := l.pos
		l.pos += 2
		c = l.at(l.pos)
		for !(c == '*' && l.at(l.pos+1) == '/') {
			l.pos++
			c = l.at(l.pos)
			if l.pos >= l.length {
				return nil, &Error{Code: "S0106", Position: commentStart}
			}
		}
		l.pos += 2
		c = l.at(l.pos)
		if l.pos >= l.length {
			return nil, nil
		}
	}
	create := func(typ string, v any) *token { return &token{typ: typ, value: v, position: l.pos} }
	if !prefix && c == '/' {
		l.pos++
		re, err := l.scanRegex()
		if err != nil {
			return nil, err
		}
		return create("regex", re), nil
	}
	two := string([]rune{c, l.at(l.pos + 1)})
	switch two {
	case "..", ":=", "!=", ">=", "<=", "**", "~>", "?:", "??":
		l.pos += 2
		return create("operator", two), nil
	}
	if _, ok := operators[string(c)]; ok && l.pos < l.length {
		l.pos++
		return create("operator", string(c)), nil
	}
	if c == '"' || c == '\'' {
		quote := c
		l.pos++
		var sb strings.Builder
		var units []uint16
		flush := func() {
			if len(units) > 0 {
				sb.WriteString(string(utf16.Decode(units)))
				units = units[:0]
			}
		}
		for l.pos < l.length {
			c = l.at(l.pos)
			if c == '\\' {
				l.pos++
				c = l.at(l.pos)
				if e, ok := escapes[c]; ok {
					flush()
					sb.WriteString(e)
				} else if c == 'u' {
					oct := l.substr(l.pos+1, l.pos+5)
					if len(oct) == 4 && isHex(oct) {
						cp, _ := strconv.ParseUint(oct, 16, 32)
						units = append(units, uint16(cp)) // surrogate pairs join on flush
						l.pos += 4
					} else {
						return nil, &Error{Code: "S0104", Position: l.pos}
					}
				} else {
					return nil, &Error{Code: "S0103", Position: l.pos, Token: string(c)}
				}
			} else if c == quote {
				flush()
				l.pos++
				return create("string", sb.String()), nil
			} else {
				units = append(units, uint16(c))
			}
			l.pos++
		}
		return nil, &Error{Code: "S0101", Position: l.pos}
	}
	if m := l.numberAt(l.pos); m != "" {
		num, err := strconv.ParseFloat(m, 64)
		if err == nil && !math.IsInf(num, 0) && !math.IsNaN(num) {
			l.pos += len(m)
			return create("number", num), nil
		}
		return nil, &Error{Code: "S0102", Position: l.pos, Token: m}
	}
	if c == '`' {
		l.pos++
		end := -1
		for i := l.pos; i < l.length; i++ {
			if l.at(i) == '`' {
				end = i
				break
			}
		}
		if end != -1 {
			name := l.substr(l.pos, end)
			l.pos = end + 1
			return create("name", name), nil
		}
		l.pos = l.length
		return nil, &Error{Code: "S0105", Position: l.pos}
	}
	i := l.pos
	for {
		ch := l.at(i)
		_, isOp := operators[string(ch)]
		if i == l.length || isWS(ch) || isOp {
			if l.at(l.pos) == '$' {
				name := l.substr(l.pos+1, i)
				l.pos = i
				return create("variable", name), nil
			}
			name := l.substr(l.pos, i)
			l.pos = i
			switch name {
			case "or", "in", "and":
				return create("operator", name), nil
			case "true":
				return create("value", true), nil
			case "false":
				return create("value", false), nil
			case "null":
				return create("value", Null), nil
			default:
				if l.pos == l.length && name == "" {
					return nil, nil
				}
				return create("name", name), nil
			}
		}
		i++
	}
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}
