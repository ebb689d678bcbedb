// Package proccpu reads how much CPU time this process has used, for the
// load tool and the benchmarks that report CPU per request or per event:
// a figure a busy machine distorts much less than wall time.
package proccpu
