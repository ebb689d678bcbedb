// Package faults is payledger's fault-injection suite: it runs real
// `payledger serve` processes and in-process nodes on loopback, kills them
// with SIGKILL under HTTP load, takes NATS and a webhook receiver away and
// brings them back, fills the disk under the data directory, and sends
// signed requests with skewed clocks and replays; after each fault it checks
// that no acknowledged invoice is lost, the log verifies, the stream equals
// the log, and every webhook arrives signed. The package holds only tests;
// docs/reliability.md describes them and the counts of the last run.
//
// `go test ./faults/` (with or without -short) runs the reduced profile;
// PAYLEDGER_FAULTS=full runs the full counts.
package faults
