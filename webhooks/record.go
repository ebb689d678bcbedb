package webhooks

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"
)

// Delivery statuses.
const (
	StatusPending   = "pending"   // waiting for its next attempt (or for an earlier delivery of its resource)
	StatusDelivered = "delivered" // a 2xx answered an attempt
	StatusFailed    = "failed"    // gave up after MaxAttempts, or the target is disabled or refused
)

// Delivery kinds.
const (
	KindWebhook   = "webhook"    // POST of the resource's GET body to the callback or webhook URL
	KindStatusURL = "status_url" // seed 001's GET to an e-invoice's status_url on its final status
)

// Reasons a delivery failed.
const (
	ReasonGaveUp         = "gave_up"         // MaxAttempts attempts failed
	ReasonTargetDisabled = "target_disabled" // the target answered 410 Gone (now or before)
	ReasonTargetRefused  = "target_refused"  // the URL is not https (SSRF policy)
)

// Delivery is one webhook to one target, and what became of it. It is what
// merchants list (Attempts nil) and get (with its attempts).
type Delivery struct {
	ID            string          `json:"id"`         // the event id; + "-status" for a status_url call
	WebhookID     string          `json:"webhook_id"` // the event id, sent as webhook-id every time
	Kind          string          `json:"kind"`       // webhook or status_url
	EventType     string          `json:"event_type"`
	EventSeq      uint64          `json:"event_seq"`
	MerchantID    string          `json:"merchant_id"`
	Resource      string          `json:"resource"`    // invoice or payment
	ResourceID    string          `json:"resource_id"` // the invoice id, or the payment's seed 002 id
	Status        string          `json:"status"`      // pending, delivered, failed
	FailReason    string          `json:"fail_reason,omitempty"`
	Method        string          `json:"method"` // POST or GET
	URL           string          `json:"url"`
	Body          json.RawMessage `json:"body,omitempty"` // the resource as of the event
	CreatedAt     time.Time       `json:"created_at"`     // the event's time
	AttemptCount  int             `json:"attempt_count"`
	NextAttemptAt *time.Time      `json:"next_attempt_at"` // null unless pending
	LastAttemptAt *time.Time      `json:"last_attempt_at"`
	LastStatus    int             `json:"last_status_code,omitempty"`
	LastError     string          `json:"last_error,omitempty"`
	DeliveredAt   *time.Time      `json:"delivered_at"`
	FailedAt      *time.Time      `json:"failed_at"`
	Redeliveries  int             `json:"redeliveries"`
	Attempts      []Attempt       `json:"attempts,omitempty"` // only from Delivery
}

// Attempt is one recorded attempt of a delivery.
type Attempt struct {
	N          int       `json:"n"` // 1 for the first, counting across redeliveries
	At         time.Time `json:"at"`
	StatusCode int       `json:"status_code"` // 0: no response
	LatencyMS  float64   `json:"latency_ms"`
	Error      string    `json:"error,omitempty"`
	Redelivery bool      `json:"redelivery,omitempty"` // the first attempt after a redelivery request
}

// record is a delivery as stored: the public fields and what the
// dispatcher needs besides.
type record struct {
	Delivery
	Key     string `json:"key"`     // the resource queue it waits in
	Host    string `json:"host"`    // host:port, the per-host concurrency key
	Round   int    `json:"round"`   // attempts since creation or the last redelivery
	Due     int64  `json:"due"`     // unix nanos of its w_due entry; 0: none
	Redeliv bool   `json:"redeliv"` // the next attempt is the first of a redelivery
}

// Attempt and disabled-target records (w_attempts, w_disabled): a version
// byte, then JSON. Persisted: bump, never reuse. Delivery records are
// binary (codec.go).
const recordV1 byte = 1

func encodeRecord(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(b)+1)
	out = append(out, recordV1)
	return append(out, b...), nil
}

func decodeRecord(raw []byte, v any) error {
	if len(raw) == 0 {
		return fmt.Errorf("%w: empty record", ErrCorrupt)
	}
	if raw[0] != recordV1 {
		return fmt.Errorf("%w: record version %d", ErrUnsupportedVersion, raw[0])
	}
	if err := json.Unmarshal(raw[1:], v); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return nil
}

// dkey is a delivery's key: its event's sequence (8 bytes, big-endian) and
// its kind (1 byte), so deliveries sort in event order.
type dkey [9]byte

const (
	kindByteWebhook byte = 'w'
	kindByteStatus  byte = 's'
)

func makeKey(seq uint64, kind byte) dkey {
	var k dkey
	binary.BigEndian.PutUint64(k[:8], seq)
	k[8] = kind
	return k
}

func (k dkey) seq() uint64 { return binary.BigEndian.Uint64(k[:8]) }

// sortTime maps a time to 8 bytes that sort like it.
func sortTime(t time.Time) uint64 { return uint64(t.UnixNano()) ^ (1 << 63) }

func timePtr(t time.Time) *time.Time {
	t = t.UTC()
	return &t
}
