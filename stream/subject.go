package stream

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// Subject scheme (docs/streams.md):
//
//	<prefix>.<merchant>.<event type tokens...>
//	payledger.events.01J9Z3....invoice.created
//
// The merchant is one token; an event without a merchant uses "_". The event
// type keeps its dots, so "invoice.created" is two tokens and
// "payledger.events.<merchant>.invoice.>" selects one resource.

// noMerchant is the merchant token of events that belong to no merchant.
const noMerchant = "_"

// maxToken bounds one escaped token; longer ones are replaced by a digest so
// that no event can make a subject too long to publish.
const maxToken = 128

// Subject returns the subject an event of this merchant and type is
// published on, under prefix (DefaultSubjectPrefix when empty).
func Subject(prefix, merchant, eventType string) string {
	if prefix == "" {
		prefix = DefaultSubjectPrefix
	}
	var b strings.Builder
	b.Grow(len(prefix) + len(merchant) + len(eventType) + 2)
	b.WriteString(prefix)
	b.WriteByte('.')
	if merchant == "" {
		b.WriteString(noMerchant)
	} else {
		writeToken(&b, merchant)
	}
	if eventType == "" {
		b.WriteString("._")
		return b.String()
	}
	for tok := range strings.SplitSeq(eventType, ".") {
		b.WriteByte('.')
		writeToken(&b, tok)
	}
	return b.String()
}

// Filter returns a subject filter under prefix (DefaultSubjectPrefix when
// empty) for one merchant ("*" for every merchant, "" for events without
// one) and an event type pattern whose "*" and ">" tokens are wildcards
// ("" for every type). Other tokens are escaped as Subject escapes them:
//
//	Filter("", "m-1", "invoice.>")   payledger.events.m-1.invoice.>
//	Filter("", "*", "payment.*")     payledger.events.*.payment.*
//	Filter("", "m-1", "")            payledger.events.m-1.>
func Filter(prefix, merchant, types string) string {
	if prefix == "" {
		prefix = DefaultSubjectPrefix
	}
	var b strings.Builder
	b.WriteString(prefix)
	b.WriteByte('.')
	switch merchant {
	case "*":
		b.WriteByte('*')
	case "":
		b.WriteString(noMerchant)
	default:
		writeToken(&b, merchant)
	}
	if types == "" {
		types = ">"
	}
	for tok := range strings.SplitSeq(types, ".") {
		b.WriteByte('.')
		if tok == "*" || tok == ">" {
			b.WriteString(tok)
		} else {
			writeToken(&b, tok)
		}
	}
	return b.String()
}

// Token escapes one subject token. It is injective: bytes that NATS does not
// allow in a token ('.', '*', '>', white space, control characters), '%'
// and '~' become %XX, the literal token "_" (which stands for "no merchant")
// becomes %5F, and an empty token becomes "_". A token whose escaped form
// would exceed 128 bytes becomes "~" and the first 32 hex digits of its
// SHA-256.
func Token(s string) string {
	var b strings.Builder
	writeToken(&b, s)
	return b.String()
}

func writeToken(b *strings.Builder, s string) {
	switch s {
	case "":
		b.WriteString("_")
		return
	case "_":
		b.WriteString("%5F")
		return
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if escapeByte(s[i]) {
			n += 2
		}
	}
	if len(s)+n > maxToken {
		sum := sha256.Sum256([]byte(s))
		b.WriteByte('~')
		b.WriteString(hex.EncodeToString(sum[:16]))
		return
	}
	if n == 0 {
		b.WriteString(s)
		return
	}
	const hexDigits = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if escapeByte(c) {
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
			continue
		}
		b.WriteByte(c)
	}
}

func escapeByte(c byte) bool {
	return c <= ' ' || c == 0x7f || c == '.' || c == '*' || c == '>' || c == '%' || c == '~'
}

// CheckFilter checks that filter, a subject with NATS wildcards, can match
// an event subject under prefix (DefaultSubjectPrefix when empty): that it
// overlaps "<prefix>.*.>", a merchant token and at least one more under the
// stream's subjects "<prefix>.>". A consumer on any other filter would wait
// for ever for a message that cannot come.
//
// Errors: ErrFilter, naming the stream's subjects.
func CheckFilter(prefix, filter string) error {
	if prefix == "" {
		prefix = DefaultSubjectPrefix
	}
	all := prefix + ".>"
	if !server.IsValidSubject(filter) {
		return fmt.Errorf("%w: %q is not a valid subject filter (event subjects are under %s)", ErrFilter, filter, all)
	}
	// Every event subject has a merchant token and at least one more
	// (Subject): "<prefix>.m-1" or "<prefix>.*" name none.
	if !server.SubjectsCollide(filter, prefix+".*.>") {
		return fmt.Errorf("%w: %q (event subjects are under %s)", ErrFilter, filter, all)
	}
	return nil
}
