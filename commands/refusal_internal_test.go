package commands

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"strings"
	"testing"

	"github.com/payledger/payledger/ledger"
)

// TestRefusal: what Service.repeated looks a request key up for. A
// business rejection, wrapped or not, and the log's conflicts are; the
// context's end, the log's own failures, an error of no kind known and
// the answer ErrRepeated are not.
func TestRefusal(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("invoice x (success): %w", ErrInvoiceNotPayable), true},
		{fmt.Errorf("invoice x has 100 payments: %w", ErrTooManyPayments), true},
		{&ValidationError{Fields: []FieldError{{Path: "amount"}}}, true},
		{fmt.Errorf("method %q: %w", "x", ErrNoGateway), true},
		{fmt.Errorf("%w: %w", ErrConflict, ledger.ErrVersionConflict), true},
		{&ledger.ConflictError{Stream: "s"}, true},
		{&ledger.ClaimError{Key: "k", Holder: "s"}, true},
		{context.Canceled, false},
		{fmt.Errorf("load invoice-x: %w", context.DeadlineExceeded), false},
		{errors.Join(fmt.Errorf("invoice x: %w", ErrNotFound), context.Canceled), false},
		{fmt.Errorf("load invoice-x: %w", ledger.ErrClosed), false},
		{fmt.Errorf("create invoice: %w", ledger.ErrFailed), false},
		{fmt.Errorf("load invoice-x: %w", ledger.ErrCorrupt), false},
		{ledger.ErrStorageFull, false},
		{errors.New("gateway sandbox: assign details: unreachable"), false},
		{&RepeatedError{Stream: "payment-x"}, false},
	} {
		if got := refusal(tc.err); got != tc.want {
			t.Errorf("refusal(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestRefusalsComplete: refusals holds every business rejection declared
// in errors.go (ErrRepeated aside), so a new one is looked up too.
func TestRefusalsComplete(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.VAR {
			continue
		}
		for _, sp := range g.Specs {
			for _, n := range sp.(*ast.ValueSpec).Names {
				if strings.HasPrefix(n.Name, "Err") && n.Name != "ErrRepeated" {
					names = append(names, n.Name)
				}
			}
		}
	}
	if len(names) != len(refusals) {
		t.Fatalf("errors.go declares %d business rejections (%v), refusals holds %d", len(names), names, len(refusals))
	}
	seen := map[error]bool{}
	for _, r := range refusals {
		if seen[r] {
			t.Errorf("refusals holds %v twice", r)
		}
		seen[r] = true
	}
}
