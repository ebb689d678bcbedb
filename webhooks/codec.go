package webhooks

import (
	"encoding/binary"
	"fmt"
	"time"
)

// A delivery record (w_deliveries) is binary: it is read and rewritten on
// every attempt, and JSON cost a quarter of the dispatcher's CPU. Layout,
// after the version byte: the strings as uvarint length + bytes, the
// numbers as uvarints, times as varint Unix nanoseconds (0: null), in the
// order of appendRecord. Persisted: change it only with a new version.
const recordBinV1 byte = 1

func appendRecord(b []byte, r *record) []byte {
	b = append(b, recordBinV1)
	for _, s := range [...]string{r.ID, r.WebhookID, r.Kind, r.EventType, r.MerchantID, r.Resource, r.ResourceID,
		r.Status, r.FailReason, r.Method, r.URL, r.LastError, r.Key, r.Host} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	for _, n := range [...]uint64{r.EventSeq, uint64(r.AttemptCount), uint64(r.LastStatus), uint64(r.Redeliveries), uint64(r.Round)} {
		b = binary.AppendUvarint(b, n)
	}
	b = binary.AppendVarint(b, r.Due)
	b = binary.AppendVarint(b, r.CreatedAt.UnixNano())
	for _, t := range [...]*time.Time{r.NextAttemptAt, r.LastAttemptAt, r.DeliveredAt, r.FailedAt} {
		var n int64
		if t != nil {
			n = t.UnixNano()
		}
		b = binary.AppendVarint(b, n)
	}
	if r.Redeliv {
		return append(b, 1)
	}
	return append(b, 0)
}

type recordReader struct {
	b   []byte
	err error
}

func (rd *recordReader) str() string {
	n, k := binary.Uvarint(rd.b)
	if k <= 0 || uint64(len(rd.b)-k) < n {
		rd.fail()
		return ""
	}
	s := string(rd.b[k : k+int(n)])
	rd.b = rd.b[k+int(n):]
	return s
}

func (rd *recordReader) uvarint() uint64 {
	n, k := binary.Uvarint(rd.b)
	if k <= 0 {
		rd.fail()
		return 0
	}
	rd.b = rd.b[k:]
	return n
}

func (rd *recordReader) varint() int64 {
	n, k := binary.Varint(rd.b)
	if k <= 0 {
		rd.fail()
		return 0
	}
	rd.b = rd.b[k:]
	return n
}

func (rd *recordReader) time() *time.Time {
	n := rd.varint()
	if n == 0 {
		return nil
	}
	t := time.Unix(0, n).UTC()
	return &t
}

func (rd *recordReader) fail() {
	if rd.err == nil {
		rd.err = fmt.Errorf("%w: truncated delivery record", ErrCorrupt)
	}
	rd.b = nil
}

func decodeDelivery(raw []byte, r *record) error {
	if len(raw) == 0 {
		return fmt.Errorf("%w: empty delivery record", ErrCorrupt)
	}
	if raw[0] != recordBinV1 {
		return fmt.Errorf("%w: delivery record version %d", ErrUnsupportedVersion, raw[0])
	}
	rd := &recordReader{b: raw[1:]}
	for _, p := range [...]*string{&r.ID, &r.WebhookID, &r.Kind, &r.EventType, &r.MerchantID, &r.Resource, &r.ResourceID,
		&r.Status, &r.FailReason, &r.Method, &r.URL, &r.LastError, &r.Key, &r.Host} {
		*p = rd.str()
	}
	r.EventSeq = rd.uvarint()
	r.AttemptCount = int(rd.uvarint())
	r.LastStatus = int(rd.uvarint())
	r.Redeliveries = int(rd.uvarint())
	r.Round = int(rd.uvarint())
	r.Due = rd.varint()
	r.CreatedAt = time.Unix(0, rd.varint()).UTC()
	r.NextAttemptAt, r.LastAttemptAt, r.DeliveredAt, r.FailedAt = rd.time(), rd.time(), rd.time(), rd.time()
	if rd.err == nil && len(rd.b) != 1 {
		return fmt.Errorf("%w: delivery record of bad length", ErrCorrupt)
	}
	if rd.err != nil {
		return rd.err
	}
	r.Redeliv = rd.b[0] == 1
	return nil
}
