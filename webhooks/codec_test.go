package webhooks

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
)

func sampleRecord() record {
	now := time.Date(2026, 2, 25, 12, 0, 0, 123456789, time.UTC)
	next := now.Add(time.Minute)
	return record{Delivery: Delivery{
		ID: "01JN2Z7Q8R3W4X5Y6Z7A8B9C0D-status", WebhookID: "01JN2Z7Q8R3W4X5Y6Z7A8B9C0D", Kind: KindStatusURL,
		EventType: "invoice.paid", EventSeq: 1 << 40, MerchantID: "m1", Resource: "invoice", ResourceID: "a1b2",
		Status: StatusPending, Method: "GET", URL: "https://shop.example/status?x=1", CreatedAt: now,
		AttemptCount: 3, NextAttemptAt: &next, LastAttemptAt: &now, LastStatus: 503, LastError: "HTTP 503",
		Redeliveries: 2,
	}, Key: "status:invoice-a1b2", Host: "shop.example", Round: 3, Due: next.UnixNano(), Redeliv: true}
}

func TestRecordCodecRoundTrip(t *testing.T) {
	for _, r := range []record{sampleRecord(), {Delivery: Delivery{CreatedAt: time.Unix(0, 1).UTC()}}} {
		var got record
		if err := decodeDelivery(appendRecord(nil, &r), &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
		}
	}
	raw := appendRecord(nil, ptr(sampleRecord()))
	for i := range len(raw) - 1 {
		var got record
		if err := decodeDelivery(raw[:i], &got); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated at %d: %v", i, err)
		}
	}
	raw[0] = 9
	var got record
	if err := decodeDelivery(raw, &got); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("unknown version: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

// FuzzDecodeDelivery: any bytes decode or fail with a named error, never
// panic; what decodes re-encodes to bytes that decode to the same record
// and encode to themselves again, and are no longer than the input. Not
// to the input's bytes: the decoder takes varints longer than they need
// be (as binary.Uvarint does) and any last byte but 1 for Redeliv false,
// which appendRecord writes in their shortest form and as 0.
func FuzzDecodeDelivery(f *testing.F) {
	f.Add(appendRecord(nil, ptr(sampleRecord())))
	f.Add([]byte{recordBinV1})
	f.Fuzz(func(t *testing.T, raw []byte) {
		var r record
		err := decodeDelivery(raw, &r)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("unnamed error: %v", err)
			}
			return
		}
		enc := appendRecord(nil, &r)
		if len(enc) > len(raw) {
			t.Fatalf("re-encoded in %d bytes, from %d", len(enc), len(raw))
		}
		var again record
		if err := decodeDelivery(enc, &again); err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("re-encode: %v\n%+v\n%+v", err, again, r)
		}
		if b := appendRecord(nil, &again); !bytes.Equal(b, enc) {
			t.Fatalf("the encoding is not stable:\n%x\n%x", enc, b)
		}
	})
}
