//go:build !linux

package projections

import (
	"errors"
	"os"
)

// preallocate is not available here: the preallocator turns itself off.
func preallocate(*os.File, int64, int64) error {
	return errors.ErrUnsupported
}
