// Package audit verifies a payledger log the way an outside auditor would:
// the hash chain, double-entry postings per currency and per merchant, that
// every invoice's status follows from its events, that the views equal a
// rebuild from the log, and Ed25519-signed checkpoints of the chain's head
// that a third party checks with the public key alone, from the log or from
// an export. It also signs those checkpoints (Checkpointer) and takes
// consistent snapshots of a live log (Snapshot) for backups. docs/audit.md
// describes the checks and the checkpoint format.
package audit
