package api

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/http"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

func testSealer(t testing.TB) *sealer {
	t.Helper()
	b, ok := newHarness(t).srv.idem.(*boltIdem)
	if !ok {
		t.Fatal("the harness's idempotency store is not the bbolt one")
	}
	return b.seal
}

// TestIdempotencyRecordTampered: every byte of a stored record is
// authenticated. Before version 2 the created time, fingerprint and status
// lay outside the sealing: an edited status or fingerprint decoded.
func TestIdempotencyRecordTampered(t *testing.T) {
	s := testSealer(t)
	id := idemID("merchant/m-1", "key-1")
	rec := &idemRecord{Created: seedTime, Status: http.StatusCreated, ContentType: "application/json", Body: []byte(`{"invoice_id":"x"}`)}
	copy(rec.Fingerprint[:], bytes.Repeat([]byte{7}, 32))
	raw := s.encode(id, rec)
	got, err := s.decode(id, raw)
	if err != nil || got.Status != rec.Status || got.Fingerprint != rec.Fingerprint || !got.Created.Equal(rec.Created) ||
		got.ContentType != rec.ContentType || !bytes.Equal(got.Body, rec.Body) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for _, c := range []struct {
		name string
		at   int
	}{
		{"version", 0}, {"created time", 8}, {"fingerprint", 20}, {"status", 42},
		{"nonce", 50}, {"sealed content type", idemHead + 3}, {"tag", len(raw) - 1},
	} {
		bad := bytes.Clone(raw)
		bad[c.at] ^= 1
		if r, err := s.decode(id, bad); !errors.Is(err, ErrIdempotencyRecord) {
			t.Errorf("%s edited (byte %d): %+v, %v; want ErrIdempotencyRecord", c.name, c.at, r, err)
		}
	}
	if r, err := s.decode(idemID("merchant/m-2", "key-1"), raw); !errors.Is(err, ErrIdempotencyRecord) {
		t.Errorf("under another id: %+v, %v", r, err)
	}
	for _, n := range []int{0, 1, idemHead, len(raw) - 1} {
		if r, err := s.decode(id, raw[:n]); !errors.Is(err, ErrIdempotencyRecord) {
			t.Errorf("truncated to %d: %+v, %v", n, r, err)
		}
	}
}

// sealV1 writes a record as builds before version 2 did: the head in the
// clear, only the id as additional data.
func sealV1(s *sealer, id []byte, rec *idemRecord) []byte {
	return sealV1Nonce(s, id, rec, make([]byte, idemNonceLen))
}

// sealV1Nonce is sealV1 with a given nonce.
func sealV1Nonce(s *sealer, id []byte, rec *idemRecord, nonce []byte) []byte {
	plain := binary.BigEndian.AppendUint16(nil, uint16(len(rec.ContentType)))
	plain = append(append(plain, rec.ContentType...), rec.Body...)
	out := []byte{1}
	out = binary.BigEndian.AppendUint64(out, uint64(rec.Created.UnixMilli()))
	out = append(out, rec.Fingerprint[:]...)
	out = binary.BigEndian.AppendUint16(out, uint16(rec.Status))
	out = append(out, nonce...)
	return s.aead.Seal(out, nonce, plain, id)
}

// TestIdempotencyRecordEditedInFile edits the stored record of a created
// invoice in idempotency.db: its status, its fingerprint, its created time.
// None is replayed as stored: each retry is decided again, and
// create-invoice's request key answers it with the invoice the first
// attempt made (201, replayed), which is stored afresh. Before version 2 the
// edited status was replayed (200) and the edited fingerprint answered 409
// IDEMPOTENCY_KEY_REUSED. Last, the record is rewritten in version 1's
// layout, as an older build left it: that one is replayed as stored.
func TestIdempotencyRecordEditedInFile(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	b, ok := h.srv.idem.(*boltIdem)
	if !ok {
		t.Fatalf("idempotency store %T, want the bbolt one", h.srv.idem)
	}
	body := `{"amount": "15.00", "currency_code": "UAH", "external_id": "edited-1"}`
	send := func() resp {
		return h.do(req{method: "POST", path: "/api/v1/create-invoice", body: body,
			header: map[string]string{"X-Api-Key": m.Key, "Idempotency-Key": "edit-me"}})
	}
	first := send()
	if first.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", first.Status, first.Body)
	}
	invoiceID := first.JSON(t)["invoice_id"]
	id := idemID("merchant/"+m.ID, "edit-me")
	edit := func(f func(raw []byte) []byte) {
		t.Helper()
		err := b.db.Update(func(tx *bbolt.Tx) error {
			bk := tx.Bucket(bucketIdem)
			raw := bk.Get(id)
			if raw == nil {
				return errors.New("no record")
			}
			return bk.Put(id, f(bytes.Clone(raw)))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	edits := []struct {
		name string
		f    func(raw []byte) []byte
	}{
		{"status 201 -> 200", func(raw []byte) []byte { binary.BigEndian.PutUint16(raw[41:43], http.StatusOK); return raw }},
		{"fingerprint", func(raw []byte) []byte { raw[9] ^= 0xff; return raw }},
		{"created time", func(raw []byte) []byte {
			binary.BigEndian.PutUint64(raw[1:9], uint64(seedTime.Add(time.Hour).UnixMilli()))
			return raw
		}},
		{"version 1 layout", func(raw []byte) []byte {
			rec, err := b.seal.decode(id, raw)
			if err != nil {
				t.Fatalf("stored record: %v", err)
			}
			return sealV1(b.seal, id, rec)
		}},
	}
	for _, e := range edits {
		edit(e.f)
		r := send()
		if r.Status != http.StatusCreated || r.JSON(t)["invoice_id"] != invoiceID || r.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("%s edited: %d %v %s; want 201 replaying invoice %v", e.name, r.Status, r.Header, r.Body, invoiceID)
		}
	}
	l := h.api(m, "GET", "/api/v1/invoices", "")
	if n := l.JSON(t)["page_details"].(map[string]any)["total_objects"]; n != float64(1) {
		t.Errorf("%v invoices, want 1: %s", n, l.Body)
	}
}

// FuzzIdempotencyRecord feeds the decoder arbitrary records, as found and
// sealed afresh from the input's bytes (so the layout after the sealing is
// reached too): it never panics, what decodes re-encodes (with its nonce)
// to the same bytes, and a sealed record with any one byte changed does
// not decode.
func FuzzIdempotencyRecord(f *testing.F) {
	s := testSealer(f)
	id := idemID("merchant/m-1", "key-1")
	rec := &idemRecord{Created: seedTime, Status: http.StatusCreated, ContentType: "application/json", Body: []byte(`{"a":1}`)}
	f.Add(s.encode(id, rec), 0, byte(0))
	f.Add(sealV1(s, id, rec), 42, byte(1))
	f.Add([]byte{}, 0, byte(0))
	f.Add(append([]byte{2}, make([]byte, idemHead+2)...), 3, byte(0x80))
	f.Fuzz(func(t *testing.T, raw []byte, at int, flip byte) {
		check := func(raw []byte) bool {
			r, err := s.decode(id, raw)
			if err != nil {
				if !errors.Is(err, ErrIdempotencyRecord) {
					t.Fatalf("error %v, want ErrIdempotencyRecord", err)
				}
				return false
			}
			again := s.seal(id, r, raw[idemAuthHead:idemHead])
			if raw[0] == idemRecordV1 {
				again = sealV1Nonce(s, id, r, raw[idemAuthHead:idemHead])
			}
			if !bytes.Equal(again, raw) {
				t.Fatalf("re-encoded differently:\n%x\n%x", raw, again)
			}
			return true
		}
		check(raw)
		if len(raw) < idemHead {
			return
		}
		// The input's bytes after the head, sealed as the plaintext.
		sealed := append(bytes.Clone(raw[:idemHead]), raw[idemHead:]...)
		sealed[0] = idemRecordVersion
		sealed = s.aead.Seal(sealed[:idemHead], sealed[idemAuthHead:idemHead], raw[idemHead:], idemAD(id, sealed[:idemAuthHead]))
		opened := check(sealed)
		plain := raw[idemHead:]
		if want := len(plain) >= 2 && len(plain) >= 2+int(binary.BigEndian.Uint16(plain)); opened != want {
			t.Fatalf("sealed record decodes: %v, want %v", opened, want)
		}
		if flip != 0 {
			bad := bytes.Clone(sealed)
			bad[uint(at)%uint(len(bad))] ^= flip
			if check(bad) {
				t.Fatalf("byte %d changed by %#x still decodes", uint(at)%uint(len(bad)), flip)
			}
		}
	})
}

// downgradeRecords rewrites every stored record in version 1's layout:
// idempotency.db as a build before version 2 left it.
func (h *harness) downgradeRecords(t *testing.T) {
	t.Helper()
	b := h.srv.idem.(*boltIdem)
	err := b.db.Update(func(tx *bbolt.Tx) error {
		bk := tx.Bucket(bucketIdem)
		type kv struct{ k, v []byte }
		var all []kv
		if err := bk.ForEach(func(k, v []byte) error {
			rec, err := b.seal.decode(k, v)
			if err != nil {
				return err
			}
			all = append(all, kv{bytes.Clone(k), sealV1(b.seal, k, rec)})
			return nil
		}); err != nil {
			return err
		}
		for _, e := range all {
			if err := bk.Put(e.k, e.v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestIdempotencyV1RecordsReplayedAfterUpgrade retries, across the upgrade
// to version 2 records, requests that have no request key of their own: a
// merchant PATCH, a widget status change and a sandbox process. Each is
// replayed from its version 1 record and appends nothing. Read as absent,
// the PATCH was applied again over a later one (commission back to 5), the
// status change disabled the widget again, and the process answered 409.
func TestIdempotencyV1RecordsReplayedAfterUpgrade(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	admin := func(method, path, key, body string) resp {
		return h.do(req{method: method, path: path, body: body,
			header: map[string]string{"Authorization": "Bearer " + testAdminToken, "Idempotency-Key": key}})
	}
	merchant := func(path, key, body string) resp {
		return h.do(req{method: "POST", path: path, body: body,
			header: map[string]string{"X-Api-Key": m.Key, "Idempotency-Key": key}})
	}
	mpath := "/admin/v1/merchants/" + m.ID
	if r := admin("PATCH", mpath, "p-1", `{"commission_percent": "5"}`); r.Status != http.StatusOK {
		t.Fatalf("patch 1: %d %s", r.Status, r.Body)
	}
	if r := admin("PATCH", mpath, "p-2", `{"commission_percent": "3"}`); r.Status != http.StatusOK {
		t.Fatalf("patch 2: %d %s", r.Status, r.Body)
	}
	wid, _ := h.api(m, "POST", "/api/v1/widgets", `{"type": "single", "fiat_currency": "UAH", "fiat_amount": "10.00"}`).JSON(t)["external_id"].(string)
	wpath := "/api/v1/widgets/" + wid + "/status"
	if r := merchant(wpath, "s-1", `{"status": "disabled"}`); r.Status != http.StatusOK {
		t.Fatalf("disable: %d %s", r.Status, r.Body)
	}
	if r := merchant(wpath, "s-2", `{"status": "active"}`); r.Status != http.StatusOK {
		t.Fatalf("enable: %d %s", r.Status, r.Body)
	}
	inv := h.api(m, "POST", "/api/v1/create-invoice", seed003Request).JSON(t)["invoice_id"].(string)
	pid := h.api(m, "POST", "/api/v1/invoices/"+inv+"/payments", `{"method": "visamaster.uah"}`).JSON(t)["id"].(string)
	ppath := "/admin/v1/payments/" + pid + "/process"
	processed := admin("POST", ppath, "proc-1", "")
	if processed.Status != http.StatusOK {
		t.Fatalf("process: %d %s", processed.Status, processed.Body)
	}

	h.downgradeRecords(t)
	head := h.head()
	for _, r := range []struct {
		name string
		got  resp
		want int
	}{
		{"patch p-1", admin("PATCH", mpath, "p-1", `{"commission_percent": "5"}`), http.StatusOK},
		{"widget status s-1", merchant(wpath, "s-1", `{"status": "disabled"}`), http.StatusOK},
		{"process proc-1", admin("POST", ppath, "proc-1", ""), processed.Status},
	} {
		if r.got.Status != r.want || r.got.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("%s retried after the upgrade: %d replayed=%q %s; want %d replayed", r.name, r.got.Status, r.got.Header.Get("Idempotent-Replayed"), r.got.Body, r.want)
		}
	}
	if h.head() != head {
		t.Errorf("the retries appended %d events", h.head()-head)
	}
	if got := h.admin("GET", mpath, "").JSON(t)["commission_percent"]; got != "3" {
		t.Errorf("commission %v after the retry, want 3 (p-2's)", got)
	}
	if got := h.api(m, "GET", "/api/v1/widgets/"+wid, "").JSON(t)["status"]; got != "active" {
		t.Errorf("widget %v after the retry, want active (s-2's)", got)
	}
}

// TestIdempotencyV1RecordDatedAhead: a version 1 record's time is not
// authenticated, so one edited to a time after now must not answer for
// ever; an unedited one answers until its ttl, and a version 2 record
// dated after now (a clock stepped back) still answers.
func TestIdempotencyV1RecordDatedAhead(t *testing.T) {
	h := newHarness(t)
	b := h.srv.idem.(*boltIdem)
	id := idemID("merchant/m-1", "ahead")
	ttl := 24 * time.Hour
	store := func(raw []byte) {
		t.Helper()
		if err := b.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketIdem).Put(id, raw) }); err != nil {
			t.Fatal(err)
		}
	}
	rec := &idemRecord{Created: seedTime, Status: http.StatusOK, ContentType: "application/json", Body: []byte(`{}`)}
	for _, c := range []struct {
		name    string
		raw     []byte
		now     time.Time
		answers bool
	}{
		{"version 1, within its ttl", sealV1(b.seal, id, rec), seedTime.Add(time.Hour), true},
		{"version 1, past its ttl", sealV1(b.seal, id, rec), seedTime.Add(ttl), false},
		{"version 1 dated ten years ahead, a year on", sealV1(b.seal, id, &idemRecord{Created: seedTime.AddDate(10, 0, 0), Status: http.StatusOK}), seedTime.AddDate(1, 0, 0), false},
		{"version 2 dated a minute ahead", b.seal.encode(id, &idemRecord{Created: seedTime.Add(time.Minute), Status: http.StatusOK}), seedTime, true},
	} {
		store(c.raw)
		_, ok, err := b.get(id, c.now, ttl)
		if err != nil || ok != c.answers {
			t.Errorf("%s: answers %v (%v), want %v", c.name, ok, err, c.answers)
		}
	}
}
