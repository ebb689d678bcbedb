// Package webhooks delivers merchants' webhooks: for every invoice and
// payment status change in the event log it records a delivery (seed 003's
// or seed 002's GET body as of that event, or seed 001's status_url GET),
// signs it as Standard Webhooks, attempts it with retries for about three
// days, records every attempt, and lets merchants list, inspect and
// redeliver deliveries.
//
// A Dispatcher keeps its state in its own bbolt file (webhooks.db): its own
// copy of the projections' views, built event by event so that each body is
// the resource as of its event; the deliveries and their attempts; and the
// checkpoint, committed in the same transaction as the deliveries an event
// made, so a restart neither loses nor duplicates one. Events come from a
// Source: the log itself (FromLog, in-process) or the JetStream event stream
// through a durable consumer (FromStream, in a separate worker process).
// docs/webhooks.md describes the schedule, the ordering rule and how
// merchants verify signatures.
package webhooks
