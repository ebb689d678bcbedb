package boltlog_test

import (
	"os"
	"testing"
)

// cleanups run after every test and benchmark of the package (for fixtures
// shared between benchmarks, such as the 1M-event log).
var cleanups []func()

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		crashChild()
		return
	}
	code := m.Run()
	for _, f := range cleanups {
		f()
	}
	os.Exit(code)
}
