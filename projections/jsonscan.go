package projections

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"time"
	"unicode/utf8"
)

// lexer is a strict JSON reader for the fast path of event decoding. It
// handles exactly the plain, well-formed data json.Marshal writes for the
// commands' event structs; on anything else (escapes it would have to
// interpret, a key that only case-folds to a field, a repeated composite
// field, a type mismatch, bad syntax) it gives up, and the caller decodes
// with encoding/json instead, whose result (and error) is then the answer.
// So where the fast path succeeds it is exactly encoding/json, only faster:
// fast_test.go checks that on generated and fuzzed data.
type lexer struct {
	b  []byte
	i  int
	ok bool   // false once the lexer gave up
	c  *cache // nil: no interning
}

func newLexer(b []byte) *lexer { return &lexer{b: b, ok: true} }

func (l *lexer) fail() bool {
	l.ok = false
	return false
}

func (l *lexer) ws() {
	for l.i < len(l.b) {
		switch l.b[l.i] {
		case ' ', '\t', '\n', '\r':
			l.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte (0 at the end).
func (l *lexer) peek() byte {
	l.ws()
	if l.i >= len(l.b) {
		return 0
	}
	return l.b[l.i]
}

// end checks that only whitespace is left.
func (l *lexer) end() bool {
	l.ws()
	if l.i != len(l.b) {
		return l.fail()
	}
	return l.ok
}

func (l *lexer) lit(s string) bool {
	if !bytes.HasPrefix(l.b[l.i:], []byte(s)) {
		return l.fail()
	}
	l.i += len(s)
	return true
}

// null consumes a null if one is next.
func (l *lexer) null() bool {
	if l.peek() == 'n' {
		return l.lit("null")
	}
	return false
}

// rawString consumes a string and returns it with its quotes, and whether it
// can be used as is (no escapes, valid UTF-8).
func (l *lexer) rawString() (tok []byte, plain bool) {
	if l.peek() != '"' {
		l.fail()
		return nil, false
	}
	start := l.i
	rest := l.b[l.i+1:]
	q := bytes.IndexByte(rest, '"')
	if q < 0 {
		l.fail()
		return nil, false
	}
	seg := rest[:q]
	if bytes.IndexByte(seg, '\\') >= 0 {
		return l.escapedString(start)
	}
	// No escapes: check for control characters (refused) and non-ASCII
	// (then the UTF-8 must be valid) eight bytes at a time.
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	ascii := true
	i := 0
	for ; i+8 <= len(seg); i += 8 {
		w := binary.LittleEndian.Uint64(seg[i:])
		if (w-ones*0x20)&^w&highs != 0 || w&highs != 0 {
			break
		}
	}
	for ; i < len(seg); i++ {
		switch c := seg[i]; {
		case c < 0x20:
			l.fail()
			return nil, false
		case c >= 0x80:
			ascii = false
		}
	}
	l.i += q + 2
	tok = l.b[start:l.i]
	return tok, ascii || utf8.Valid(seg)
}

// escapedString is rawString's path for a string with backslashes.
func (l *lexer) escapedString(start int) ([]byte, bool) {
	l.i = start + 1
	for l.i < len(l.b) {
		c := l.b[l.i]
		switch {
		case c == '"':
			l.i++
			return l.b[start:l.i], false
		case c < 0x20:
			l.fail()
			return nil, false
		case c == '\\':
			l.i++
			if l.i >= len(l.b) {
				l.fail()
				return nil, false
			}
			switch l.b[l.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				l.i++
			case 'u':
				if l.i+5 > len(l.b) {
					l.fail()
					return nil, false
				}
				for _, h := range l.b[l.i+1 : l.i+5] {
					if !isHex(h) {
						l.fail()
						return nil, false
					}
				}
				l.i += 5
			default:
				l.fail()
				return nil, false
			}
		default:
			l.i++
		}
	}
	l.fail()
	return nil, false
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// number consumes a JSON number and returns its text.
func (l *lexer) number() []byte {
	l.ws()
	start := l.i
	b := l.b
	i := l.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	default:
		l.fail()
		return nil
	}
	if i < len(b) && b[i] == '.' {
		i++
		j := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		if i == j {
			l.fail()
			return nil
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		if i == j {
			l.fail()
			return nil
		}
	}
	l.i = i
	return b[start:i]
}

// str decodes a string into *s; null leaves it as is.
func (l *lexer) str(s *string) bool {
	if l.null() {
		return true
	}
	tok, plain := l.rawString()
	if !l.ok {
		return false
	}
	if plain {
		*s = string(tok[1 : len(tok)-1])
		return true
	}
	// Escapes or invalid UTF-8: encoding/json's own rules, for this string.
	if err := json.Unmarshal(tok, s); err != nil {
		return l.fail()
	}
	return true
}

// istr is str for a field whose values repeat (merchant ids, currencies,
// URLs): with a cache, equal values share one string.
func (l *lexer) istr(s *string) bool {
	if l.c == nil || l.peek() != '"' {
		return l.str(s)
	}
	tok, plain := l.rawString()
	if !l.ok {
		return false
	}
	if !plain {
		if err := json.Unmarshal(tok, s); err != nil {
			return l.fail()
		}
		return true
	}
	*s = l.c.intern(tok[1 : len(tok)-1])
	return true
}

// num decodes a decimal exactly as decimal.Decimal.UnmarshalJSON does (a
// string or a number; null leaves it as is), into a num.
func (l *lexer) num(n *num) bool {
	var tok []byte
	switch l.peek() {
	case 'n':
		return l.null()
	case '"':
		tok, _ = l.rawString()
	default:
		tok = l.number()
	}
	if !l.ok {
		return false
	}
	v, ok := parseNum(tok)
	if !ok {
		return l.fail()
	}
	*n = v
	return true
}

// tm decodes a time exactly as time.Time.UnmarshalJSON does.
func (l *lexer) tm(t *time.Time) bool {
	if l.null() {
		return true
	}
	tok, _ := l.rawString()
	if !l.ok || t.UnmarshalJSON(tok) != nil {
		return l.fail()
	}
	return true
}

func (l *lexer) boolean(b *bool) bool {
	switch l.peek() {
	case 'n':
		return l.null()
	case 't':
		*b = true
		return l.lit("true")
	case 'f':
		*b = false
		return l.lit("false")
	}
	return l.fail()
}

// array calls elem for each element of an array; null is an empty array
// for which null reports true.
func (l *lexer) array(elem func() bool) (null bool) {
	if l.null() {
		return true
	}
	if l.peek() != '[' {
		l.fail()
		return false
	}
	l.i++
	if l.peek() == ']' {
		l.i++
		return false
	}
	for l.ok {
		if !elem() {
			l.fail()
			return false
		}
		switch l.peek() {
		case ',':
			l.i++
		case ']':
			l.i++
			return false
		default:
			l.fail()
			return false
		}
	}
	return false
}

// strings decodes an array of strings (null: nil). A null element gives up.
func (l *lexer) strings(s *[]string) bool {
	out := []string{}
	null := l.array(func() bool {
		if l.peek() == 'n' {
			return l.fail()
		}
		var e string
		ok := l.str(&e)
		out = append(out, e)
		return ok
	})
	if !l.ok {
		return false
	}
	if null {
		*s = nil
	} else {
		*s = out
	}
	return true
}

// object calls field with each key (unescaped keys only); field consumes the
// value. A null object calls nothing.
func (l *lexer) object(field func(key []byte) bool) bool {
	if l.null() {
		return true
	}
	if l.peek() != '{' {
		return l.fail()
	}
	l.i++
	if l.peek() == '}' {
		l.i++
		return true
	}
	for l.ok {
		tok, plain := l.rawString()
		if !l.ok || !plain {
			return l.fail()
		}
		if l.peek() != ':' {
			return l.fail()
		}
		l.i++
		if !field(tok[1 : len(tok)-1]) {
			return l.fail()
		}
		switch l.peek() {
		case ',':
			l.i++
		case '}':
			l.i++
			return true
		default:
			return l.fail()
		}
	}
	return false
}

// stringMap decodes an object of strings into *m as encoding/json does
// (null: nil; entries are added to an existing map). A null value gives up.
func (l *lexer) stringMap(m *map[string]string) bool {
	if l.null() {
		*m = nil
		return true
	}
	return l.object(func(k []byte) bool {
		if l.peek() == 'n' {
			return l.fail()
		}
		var v string
		if !l.str(&v) {
			return false
		}
		if *m == nil {
			*m = make(map[string]string)
		}
		(*m)[string(k)] = v
		return true
	})
}

// skip consumes any value, checking its syntax.
func (l *lexer) skip(depth int) bool {
	if depth > 64 {
		return l.fail()
	}
	switch c := l.peek(); {
	case c == '"':
		l.rawString()
	case c == '{':
		return l.object(func([]byte) bool { return l.skip(depth + 1) })
	case c == '[':
		l.array(func() bool { return l.skip(depth + 1) })
	case c == 't':
		return l.lit("true")
	case c == 'f':
		return l.lit("false")
	case c == 'n':
		return l.lit("null")
	default:
		l.number()
	}
	return l.ok
}

// unknown skips the value of a key the struct does not have, giving up when
// the key matches one of known but for case: encoding/json would fill it.
func (l *lexer) unknown(key []byte, known []string) bool {
	for _, k := range known {
		if bytes.EqualFold(key, []byte(k)) {
			return l.fail()
		}
	}
	return l.skip(0)
}
