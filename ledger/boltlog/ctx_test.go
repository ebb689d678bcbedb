package boltlog_test

import "context"

var errCanceled = context.Canceled

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}
