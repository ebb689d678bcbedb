package stream

import (
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// TestRetryTakeUp: a "consumer closed" answer is retried for as long as
// the caller waits; the other answers a closing can cause, which a lasting
// fault such as a store that cannot be made causes too, only a bounded
// number of times; anything else not at all.
func TestRetryTakeUp(t *testing.T) {
	closing := func(code jetstream.ErrorCode, desc string) error {
		return fmt.Errorf("%w: %w", errClosing, &jetstream.APIError{Code: 500, ErrorCode: code, Description: desc})
	}
	closed := closing(jetstream.JSErrCodeConsumerCreate, "consumer closed")
	store := closing(jetstream.JSErrCodeConsumerCreate, "error creating store for consumer: open o.dat: no space left on device")
	exists := closing(jetstream.JSErrCodeConsumerAlreadyExists, "consumer already exists")
	other := &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeBadRequest, Description: "bad request"}
	for _, c := range []struct {
		name    string
		err     error
		attempt int
		want    bool
	}{
		{"closed, first", closed, 1, true},
		{"closed, long after", closed, 1000, true},
		{"store, first", store, 1, true},
		{"store, last retried", store, closingAttempts - 1, true},
		{"store, bound reached", store, closingAttempts, false},
		{"exists, bound reached", exists, closingAttempts, false},
		{"another API error", other, 1, false},
		{"not an API error", errors.New("connection refused"), 1, false},
	} {
		if got := retryTakeUp(c.err, c.attempt); got != c.want {
			t.Errorf("%s (attempt %d): retry %v, want %v", c.name, c.attempt, got, c.want)
		}
	}
}
