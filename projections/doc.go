// Package projections builds payledger's read models from the event log:
// invoice, payment, widget and merchant views, the per-merchant list and
// lookup indexes the API pages through, double-entry balances, and the due
// index the expiry scheduler reads. Every view lives in a bbolt bucket named
// "v_..." next to the log and is maintained by Projector inside the log's own
// write transaction, so a view is never behind the log (read-your-writes) and
// its checkpoint commits with it. Rebuild replays a log into a fresh file with
// identical results, and Compare proves it.
package projections
