//go:build race

package boltlog_test

const raceEnabled = true
