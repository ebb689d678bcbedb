// Package ledger defines payledger's event envelope: the immutable, hash-chained
// record every state change is written as, its canonical binary encoding, and the
// verification of a chain of records. It holds no storage: the durable bbolt log
// lives in ledger/boltlog, and anything that reads events (projections, the NATS
// relay, auditors) depends only on the types here.
package ledger
