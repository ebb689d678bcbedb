package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/payledger/payledger/ledger"
)

// Event types and streams this package appends. Persisted: never rename or
// reuse one (docs/audit.md).
const (
	// TypeCheckpointSigned is a signed checkpoint of the log's head: data CheckpointSigned.
	TypeCheckpointSigned = "checkpoint.signed"
	// StreamCheckpoints holds every checkpoint, in order.
	StreamCheckpoints = "checkpoints"
)

// MaxCheckpointLag is how long before the time of the checkpoint.signed
// event that records it a checkpoint may have been signed; it may not be
// signed after it. The Checkpointer gives both the same time, so any other
// difference means the event was not written as the node records its
// checkpoints (a clock set wrong, or a signature made elsewhere and
// appended later); the minute leaves room for a signer that takes its time.
const MaxCheckpointLag = time.Minute

// checkpointDomain starts every signed message, so that a checkpoint
// signature can never be taken for a signature over anything else, and a
// later message format gets a new name.
const checkpointDomain = "payledger-checkpoint-v1"

// CheckpointSigned is the data of a checkpoint.signed event: the node's
// Ed25519 signature over the log's head (Seq, Hash) as it was when signed.
// The event itself comes later in the log than Seq, so each checkpoint is
// covered by the next.
type CheckpointSigned struct {
	Seq       uint64      `json:"seq"`        // the signed head's sequence
	Hash      ledger.Hash `json:"hash"`       // the hash of the event at Seq, 64 hex digits
	PublicKey string      `json:"public_key"` // the signer's Ed25519 public key, 64 hex digits
	Signature string      `json:"signature"`  // Ed25519 over CheckpointMessage(Seq, Hash), 128 hex digits
	SignedAt  time.Time   `json:"signed_at"`  // when it was signed: the recording event's time, or at most MaxCheckpointLag before it
}

// CheckpointMessage is the exact message a checkpoint signs:
//
//	payledger-checkpoint-v1 LF <seq in decimal> LF <hash in 64 lower-case hex digits>
//
// Every field has one spelling, so a signature is valid for exactly one
// (sequence, hash).
func CheckpointMessage(seq uint64, h ledger.Hash) []byte {
	b := make([]byte, 0, len(checkpointDomain)+1+20+1+64)
	b = append(b, checkpointDomain...)
	b = append(b, '\n')
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, '\n')
	return hex.AppendEncode(b, h[:])
}

// SignCheckpoint signs head with key.
func SignCheckpoint(key ed25519.PrivateKey, head ledger.Head, at time.Time) CheckpointSigned {
	pub := key.Public().(ed25519.PublicKey)
	return CheckpointSigned{
		Seq:       head.Seq,
		Hash:      head.Hash,
		PublicKey: hex.EncodeToString(pub),
		Signature: hex.EncodeToString(ed25519.Sign(key, CheckpointMessage(head.Seq, head.Hash))),
		SignedAt:  at.UTC(),
	}
}

// Key returns the public key the checkpoint names.
// Errors: ErrBadKey.
func (c *CheckpointSigned) Key() (ed25519.PublicKey, error) {
	return ParsePublicKey(c.PublicKey)
}

// Verify checks the signature over (Seq, Hash) with pub. It does not check
// that the chain has Hash at Seq: that needs the log (Run does it).
// Errors: ErrCheckpoint.
func (c *CheckpointSigned) Verify(pub ed25519.PublicKey) error {
	sig, err := hex.DecodeString(c.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize || hex.EncodeToString(sig) != c.Signature {
		return fmt.Errorf("%w: signature is not %d lower-case hex digits", ErrCheckpoint, 2*ed25519.SignatureSize)
	}
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, CheckpointMessage(c.Seq, c.Hash), sig) {
		return fmt.Errorf("%w: signature does not verify with key %x", ErrCheckpoint, []byte(pub))
	}
	return nil
}

// DecodeCheckpoint reads the data of a checkpoint.signed event strictly:
// no unknown fields, hex in lower case, a public key of the right size.
// Errors: ErrCheckpoint.
func DecodeCheckpoint(data []byte) (CheckpointSigned, error) {
	var raw struct {
		Seq       uint64    `json:"seq"`
		Hash      string    `json:"hash"`
		PublicKey string    `json:"public_key"`
		Signature string    `json:"signature"`
		SignedAt  time.Time `json:"signed_at"`
	}
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(&raw); err != nil {
		return CheckpointSigned{}, fmt.Errorf("%w: data: %v", ErrCheckpoint, err)
	}
	if d.More() {
		return CheckpointSigned{}, fmt.Errorf("%w: data: trailing bytes", ErrCheckpoint)
	}
	h, err := ledger.ParseHash(raw.Hash)
	if err != nil || h.String() != raw.Hash {
		return CheckpointSigned{}, fmt.Errorf("%w: hash must be 64 lower-case hex digits", ErrCheckpoint)
	}
	pub, err := ParsePublicKey(raw.PublicKey)
	if err != nil || hex.EncodeToString(pub) != raw.PublicKey {
		return CheckpointSigned{}, fmt.Errorf("%w: public_key must be %d lower-case hex digits", ErrCheckpoint, 2*ed25519.PublicKeySize)
	}
	if raw.SignedAt.IsZero() {
		return CheckpointSigned{}, fmt.Errorf("%w: no signed_at", ErrCheckpoint)
	}
	return CheckpointSigned{Seq: raw.Seq, Hash: h, PublicKey: raw.PublicKey, Signature: raw.Signature, SignedAt: raw.SignedAt}, nil
}
