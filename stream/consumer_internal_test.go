package stream

import (
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// TestTakeUpRetries: a "consumer closed" answer is retried for as long as
// the caller waits, and does not use up the bound of the other answers a
// closing can cause, which a lasting fault such as a store that cannot be
// made causes too; anything else is not retried.
func TestTakeUpRetries(t *testing.T) {
	closing := func(code jetstream.ErrorCode, desc string) error {
		return fmt.Errorf("%w: %w", errClosing, &jetstream.APIError{Code: 500, ErrorCode: code, Description: desc})
	}
	closed := closing(jetstream.JSErrCodeConsumerCreate, "consumer closed")
	store := closing(jetstream.JSErrCodeConsumerCreate, "error creating store for consumer: open o.dat: no space left on device")
	exists := closing(jetstream.JSErrCodeConsumerAlreadyExists, "consumer already exists")
	other := &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeBadRequest, Description: "bad request"}

	var r takeUpRetries
	for i := range 1000 {
		if !r.again(closed) {
			t.Fatalf("consumer closed, answer %d: not retried", i+1)
		}
	}
	// The others' bound is whole after any number of "consumer closed".
	for i := 1; i < closingAttempts; i++ {
		err := store
		if i%2 == 0 {
			err = exists
		}
		if !r.again(err) {
			t.Fatalf("answer %d of the others: not retried, want %d attempts", i, closingAttempts)
		}
		if !r.again(closed) {
			t.Fatal("consumer closed between the others: not retried")
		}
	}
	if r.again(store) {
		t.Fatalf("retried after %d attempts of the others", closingAttempts)
	}
	if !r.again(closed) {
		t.Fatal("consumer closed after the others' bound: not retried")
	}
	for _, err := range []error{other, errors.New("connection refused")} {
		var fresh takeUpRetries
		if fresh.again(err) {
			t.Errorf("%v: retried", err)
		}
	}
}
