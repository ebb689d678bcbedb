package boltlog

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/ledger"
)

// A damaged page (a flipped bit, a bad copy) makes bbolt panic when a read
// reaches it: it asserts each page's id and type, and trusts the counts and
// offsets in the page's header. The store's reads turn such a panic into a
// *damageError, so that verify can name where the log stops being readable
// and the other tools can say what is wrong instead of crashing.

// damageError is a panic bbolt raised reading a damaged page of the file.
// errors.Is matches ErrDamaged and ledger.ErrCorrupt.
type damageError struct{ msg string }

func (e *damageError) Error() string {
	return "boltlog: log file is damaged: a page cannot be read (bbolt: " + e.msg + ")"
}

func (e *damageError) Unwrap() []error { return []error{ErrDamaged, ledger.ErrCorrupt} }

// guardRead runs fn, one or more reads of the file, and returns a panic
// bbolt raised in it as a *damageError. A memory fault while reading (a
// damaged offset pointing past the file) counts as one too.
func guardRead(fn func() error) (err error) {
	defer catchDamage(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return fn()
}

// GuardRead is guardRead for reads of the file that do not go through the
// Store: the views, which live in the same file and are read through
// DB(). It returns a panic bbolt raised reading a damaged page as an error
// that errors.Is matches with ErrDamaged and ledger.ErrCorrupt; any other
// panic goes on.
func GuardRead(fn func() error) error { return guardRead(fn) }

// view is db.View guarded by guardRead.
func (s *Store) view(fn func(*bbolt.Tx) error) error {
	return guardRead(func() error { return s.db.View(fn) })
}

// catchDamage recovers a panic raised by bbolt's code (or a memory fault)
// into *err. Any other panic, such as one of a callback of ours run inside a
// transaction, is a programming error and goes on.
func catchDamage(err *error) {
	r := recover()
	if r == nil {
		return
	}
	if _, fault := r.(interface{ Addr() uintptr }); !fault && !raisedByBbolt() {
		panic(r)
	}
	*err = &damageError{msg: fmt.Sprint(r)}
}

// raisedByBbolt reports whether the panic being recovered was raised in
// bbolt's code: the first frame under runtime.gopanic that is not the
// runtime's own (panicIndex, sigpanic and the like) is in a bbolt package.
// A deferred function runs on top of the panicking frames, so they are
// still on the stack.
func raisedByBbolt() bool {
	var pcs [64]uintptr
	frames := runtime.CallersFrames(pcs[:runtime.Callers(1, pcs[:])])
	inPanic := false
	for {
		f, more := frames.Next()
		switch {
		case f.Function == "runtime.gopanic":
			inPanic = true
		case inPanic && !strings.HasPrefix(f.Function, "runtime."):
			return strings.HasPrefix(f.Function, "go.etcd.io/bbolt.") || strings.HasPrefix(f.Function, "go.etcd.io/bbolt/")
		}
		if !more {
			return false
		}
	}
}

// isDamage reports whether err is a damaged page.
func isDamage(err error) bool {
	var d *damageError
	return errors.As(err, &d)
}

// damageAt gives a damaged page, in Verify, the sequence it stopped at: a
// *ledger.VerifyError whose reason starts with where. Other errors pass as
// they are.
func damageAt(err error, seq uint64, where string) error {
	if !isDamage(err) {
		return err
	}
	return &ledger.VerifyError{Seq: seq, Reason: where + err.Error(), Err: err}
}
