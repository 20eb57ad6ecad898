package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// A single-pass JSON scanner for envelopes: it validates the whole body once and hands out
// members as raw slices, so a 1 KB payload is scanned once and stored as the literal it arrived
// as, instead of being decoded, validated and re-encoded (encoding/json did that five times).

var errSyntax = errors.New("malformed JSON")

func syntaxError(b []byte, i int, what string) error {
	return fmt.Errorf("%w: %s at offset %d", errSyntax, what, i)
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue validates the JSON value starting at b[i] and returns the offset just after it.
func skipValue(b []byte, i int, depth int) (int, error) {
	if depth > 1000 {
		return 0, syntaxError(b, i, "nesting too deep")
	}
	i = skipWS(b, i)
	if i >= len(b) {
		return 0, syntaxError(b, i, "unexpected end")
	}
	switch c := b[i]; {
	case c == '"':
		return skipString(b, i)
	case c == '{':
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1, nil
		}
		for {
			i = skipWS(b, i)
			if i >= len(b) || b[i] != '"' {
				return 0, syntaxError(b, i, "expected a key")
			}
			var err error
			if i, err = skipString(b, i); err != nil {
				return 0, err
			}
			i = skipWS(b, i)
			if i >= len(b) || b[i] != ':' {
				return 0, syntaxError(b, i, "expected ':'")
			}
			if i, err = skipValue(b, i+1, depth+1); err != nil {
				return 0, err
			}
			i = skipWS(b, i)
			if i < len(b) && b[i] == ',' {
				i++
				continue
			}
			if i < len(b) && b[i] == '}' {
				return i + 1, nil
			}
			return 0, syntaxError(b, i, "expected ',' or '}'")
		}
	case c == '[':
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, nil
		}
		for {
			var err error
			if i, err = skipValue(b, i, depth+1); err != nil {
				return 0, err
			}
			i = skipWS(b, i)
			if i < len(b) && b[i] == ',' {
				i++
				continue
			}
			if i < len(b) && b[i] == ']' {
				return i + 1, nil
			}
			return 0, syntaxError(b, i, "expected ',' or ']'")
		}
	case c == '-' || c >= '0' && c <= '9':
		return skipNumber(b, i)
	case c == 't':
		return skipWord(b, i, "true")
	case c == 'f':
		return skipWord(b, i, "false")
	case c == 'n':
		return skipWord(b, i, "null")
	}
	return 0, syntaxError(b, i, "unexpected character")
}

func skipWord(b []byte, i int, w string) (int, error) {
	if len(b)-i < len(w) || string(b[i:i+len(w)]) != w {
		return 0, syntaxError(b, i, "expected "+w)
	}
	return i + len(w), nil
}

func skipNumber(b []byte, i int) (int, error) {
	start := i
	if b[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	intStart := i
	if n := digits(); n == 0 || n > 1 && b[intStart] == '0' {
		return 0, syntaxError(b, start, "malformed number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return 0, syntaxError(b, start, "malformed number")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return 0, syntaxError(b, start, "malformed number")
		}
	}
	return i, nil
}

// skipString validates a string literal starting at b[i] (the quote) and returns the offset after it.
func skipString(b []byte, i int) (int, error) {
	i++
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return i + 1, nil
		case c == '\\':
			if i+1 >= len(b) {
				return 0, syntaxError(b, i, "unterminated escape")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if len(b)-i < 6 || !isHex4(b[i+2:i+6]) {
					return 0, syntaxError(b, i, "malformed \\u escape")
				}
				i += 6
			default:
				return 0, syntaxError(b, i, "invalid escape")
			}
		case c < 0x20:
			return 0, syntaxError(b, i, "control character in a string")
		case c < utf8.RuneSelf:
			i++
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n == 1 {
				return 0, syntaxError(b, i, "invalid UTF-8")
			}
			i += n
		}
	}
	return 0, syntaxError(b, i, "unterminated string")
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// eachMember calls fn for every member of the object literal obj (already validated).
func eachMember(obj []byte, fn func(key string, raw []byte) error) error {
	i := skipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return errors.New("not an object")
	}
	i = skipWS(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return nil
	}
	for {
		i = skipWS(obj, i)
		kEnd, err := skipString(obj, i)
		if err != nil {
			return err
		}
		key, err := decodeString(obj[i:kEnd])
		if err != nil {
			return err
		}
		i = skipWS(obj, kEnd) + 1 // ':'
		vStart := skipWS(obj, i)
		vEnd, err := skipValue(obj, vStart, 0)
		if err != nil {
			return err
		}
		if err := fn(key, obj[vStart:vEnd]); err != nil {
			return err
		}
		i = skipWS(obj, vEnd)
		if i < len(obj) && obj[i] == ',' {
			i++
			continue
		}
		return nil
	}
}

// eachElement calls fn for every element of the array literal arr (already validated).
func eachElement(arr []byte, fn func(raw []byte) error) error {
	i := skipWS(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return errors.New("not an array")
	}
	i = skipWS(arr, i+1)
	if i < len(arr) && arr[i] == ']' {
		return nil
	}
	for {
		vStart := skipWS(arr, i)
		vEnd, err := skipValue(arr, vStart, 0)
		if err != nil {
			return err
		}
		if err := fn(arr[vStart:vEnd]); err != nil {
			return err
		}
		i = skipWS(arr, vEnd)
		if i < len(arr) && arr[i] == ',' {
			i++
			continue
		}
		return nil
	}
}

// decodeString decodes a validated string literal; the common case has no escapes.
func decodeString(lit []byte) (string, error) {
	inner := lit[1 : len(lit)-1]
	for _, c := range inner {
		if c == '\\' {
			var s string
			err := json.Unmarshal(lit, &s)
			return s, err
		}
	}
	return string(inner), nil
}
