package api

import (
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"

	"github.com/payledger/payledger/ledger"
)

// A commit that failed for lack of space is a 503 with Retry-After, not a
// 500: the client should try again later, and nothing was recorded.
func TestStorageFullIs503(t *testing.T) {
	err := fmt.Errorf("create invoice: %w", fmt.Errorf("%w: commit append: %w", ledger.ErrStorageFull, syscall.ENOSPC))
	e, internal := classify(err)
	if internal || e.Status != http.StatusServiceUnavailable || e.Code != CodeStorageFull || e.RetryAfter <= 0 {
		t.Fatalf("classify(storage full) = %+v (internal %v)", e, internal)
	}
}

// A commit whose outcome is unknown (ledger.ErrFailed) is a 503 that says
// so, even when the disk was full: "nothing was recorded" would not be true.
func TestFailedLogIs503(t *testing.T) {
	err := fmt.Errorf("create invoice: %w", fmt.Errorf("%w: commit failed after it became visible (%w)", ledger.ErrFailed, syscall.ENOSPC))
	e, internal := classify(err)
	if internal || e.Status != http.StatusServiceUnavailable || e.Code != CodeUnavailable || !strings.Contains(e.Message, "could not confirm") {
		t.Fatalf("classify(failed log) = %+v (internal %v)", e, internal)
	}
}
