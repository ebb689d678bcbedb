package webhooks

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/url"
	"strings"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger"
)

// Event types that make deliveries.
var (
	invoiceTypes = map[string]bool{
		commands.TypeInvoiceCreated: true, commands.TypeInvoiceCancelled: true,
		commands.TypeInvoiceExpired: true, commands.TypeInvoicePaid: true,
	}
	// finalInvoiceTypes call an e-invoice's status_url.
	finalInvoiceTypes = map[string]bool{
		commands.TypeInvoiceCancelled: true, commands.TypeInvoiceExpired: true, commands.TypeInvoicePaid: true,
	}
	paymentTypes = map[string]bool{
		commands.TypePaymentCreated: true, commands.TypePaymentConfirmed: true, commands.TypePaymentProcessed: true,
		commands.TypePaymentRejected: true, commands.TypePaymentCancelled: true, commands.TypePaymentFailed: true,
	}
)

const merchantStreamPrefix = commands.StreamMerchant + "-"

// ingestResult is what one ingest transaction changed besides the database.
type ingestResult struct {
	checkpoint uint64
	merchants  map[string]bool // merchants whose settings or secrets changed
}

// dropSigner notes that merchant id's view changed: its cached signer goes
// once the transaction commits.
func (r *ingestResult) dropSigner(id string) {
	if r.merchants == nil {
		r.merchants = make(map[string]bool)
	}
	r.merchants[id] = true
}

// ingestTx applies events in one transaction: each goes through the
// dispatcher's projector, then makes its deliveries from the views as they
// stand right after it, and the checkpoint moves past it. Events at or
// below the checkpoint only reach the projector (which skips those it has);
// an event past checkpoint+1 is ErrSequenceGap.
//
// Consecutive events on distinct streams are applied to the projector
// together (one flush): a view then holds exactly its own stream's event, so
// reading after the group is reading as of each event. A merchant's event
// starts a new group, because later events' targets depend on it.
func (d *Dispatcher) ingestTx(w *wtx, events []ledger.Event) (ingestResult, error) {
	meta := w.tx.Bucket(bMeta)
	res := ingestResult{checkpoint: u64(meta.Get(keyCheckpoint))}
	group := make([]ledger.Event, 0, len(events))
	inGroup := make(map[string]bool, len(events))
	flush := func() error {
		if len(group) == 0 {
			return nil
		}
		if err := d.proj.Apply(w.tx, group); err != nil {
			return fmt.Errorf("project sequence %d..%d: %w", group[0].Seq, group[len(group)-1].Seq, err)
		}
		for i := range group {
			if err := d.enqueue(w, &group[i], &res); err != nil {
				return fmt.Errorf("sequence %d (%s): %w", group[i].Seq, group[i].Type, err)
			}
		}
		group = group[:0]
		clear(inGroup)
		return nil
	}
	for i := range events {
		e := &events[i]
		if e.Seq <= res.checkpoint {
			// Delivered before; the projector may still lack it (its
			// views were rebuilt after a format change).
			if err := flush(); err != nil {
				return res, err
			}
			if err := d.proj.Apply(w.tx, events[i:i+1]); err != nil {
				return res, fmt.Errorf("project sequence %d: %w", e.Seq, err)
			}
			// A merchant's view moved (views catching up): a signer
			// cached from it while it was behind is stale.
			if id, ok := strings.CutPrefix(e.Stream, merchantStreamPrefix); ok {
				res.dropSigner(id)
			}
			continue
		}
		if e.Seq != res.checkpoint+1 {
			return res, fmt.Errorf("%w: sequence %d after checkpoint %d", ErrSequenceGap, e.Seq, res.checkpoint)
		}
		isMerchant := strings.HasPrefix(e.Stream, merchantStreamPrefix)
		if inGroup[e.Stream] || (isMerchant && len(group) > 0) {
			if err := flush(); err != nil {
				return res, err
			}
		}
		group = append(group, *e)
		inGroup[e.Stream] = true
		res.checkpoint = e.Seq
	}
	if err := flush(); err != nil {
		return res, err
	}
	if err := w.flush(); err != nil {
		return res, err
	}
	return res, meta.Put(keyCheckpoint, be64(res.checkpoint))
}

func (d *Dispatcher) inShard(merchant string) bool {
	if d.cfg.ShardCount <= 1 {
		return true
	}
	h := fnv.New32a()
	h.Write([]byte(merchant))
	return int(h.Sum32()%uint32(d.cfg.ShardCount)) == d.cfg.ShardIndex
}

// enqueue makes the deliveries of one event, reading the views as of it.
func (d *Dispatcher) enqueue(w *wtx, e *ledger.Event, res *ingestResult) error {
	switch {
	case invoiceTypes[e.Type]:
		return d.enqueueInvoice(w, e)
	case paymentTypes[e.Type]:
		return d.enqueuePayment(w, e)
	case strings.HasPrefix(e.Stream, merchantStreamPrefix):
		id := strings.TrimPrefix(e.Stream, merchantStreamPrefix)
		delete(w.merchantURL, id)
		res.dropSigner(id)
		if e.Type == commands.TypeMerchantSettings {
			var ch commands.MerchantSettingsChanged
			if err := json.Unmarshal(e.Data, &ch); err != nil {
				return fmt.Errorf("%w: %v", ErrCorrupt, err)
			}
			if ch.WebhookURL != nil {
				// A new URL is the merchant's answer to a 410: try again.
				return w.enableMerchant(id)
			}
		}
	}
	return nil
}

func (d *Dispatcher) target(w *wtx, callbackURL, merchantID string) (string, error) {
	if callbackURL != "" {
		return callbackURL, nil
	}
	if u, ok := w.merchantURL[merchantID]; ok {
		return u, nil
	}
	m, ok, err := merchantView(w.tx, merchantID)
	if err != nil || !ok {
		return "", err
	}
	if w.merchantURL == nil {
		w.merchantURL = make(map[string]string)
	}
	w.merchantURL[merchantID] = m.WebhookURL
	return m.WebhookURL, nil
}

func (d *Dispatcher) enqueueInvoice(w *wtx, e *ledger.Event) error {
	id := strings.TrimPrefix(e.Stream, commands.StreamInvoice+"-")
	inv, ok, err := invoiceView(w.tx, id)
	if err != nil || !ok || !d.inShard(inv.MerchantID) {
		return err
	}
	target, err := d.target(w, inv.CallbackURL, inv.MerchantID)
	if err != nil {
		return err
	}
	base := record{Delivery: Delivery{
		WebhookID: e.ID.String(), EventType: e.Type, EventSeq: e.Seq, MerchantID: inv.MerchantID,
		Resource: "invoice", ResourceID: inv.InvoiceID, CreatedAt: e.Time.UTC(),
	}}
	if target != "" {
		body, err := json.Marshal(inv.Body(d.cfg.BaseURL + "/pay/" + inv.InvoiceID))
		if err != nil {
			return err
		}
		r := base
		r.ID, r.Kind, r.Method, r.URL, r.Body = e.ID.String(), KindWebhook, "POST", target, body
		r.Key, r.Host = e.Stream, hostOf(target)
		if err := w.insert(makeKey(e.Seq, kindByteWebhook), &r, e.ID.String()); err != nil {
			return err
		}
	}
	if finalInvoiceTypes[e.Type] && inv.StatusURL != "" {
		r := base
		r.ID, r.Kind, r.Method = e.ID.String()+statusSuffix, KindStatusURL, "GET"
		r.URL = statusURL(inv.StatusURL, map[string]string{
			"status": inv.Status, "payment_id": inv.PaymentID, "tracking": inv.Tracking, "invoice_id": inv.InvoiceID,
		})
		r.Key, r.Host = "status:"+e.Stream, hostOf(r.URL)
		if err := w.insert(makeKey(e.Seq, kindByteStatus), &r, e.ID.String()); err != nil {
			return err
		}
	}
	return nil
}

func (d *Dispatcher) enqueuePayment(w *wtx, e *ledger.Event) error {
	p, ok, err := paymentView(w.tx, e.Stream)
	if err != nil || !ok || !d.inShard(p.MerchantID) {
		return err
	}
	callback := ""
	if inv, ok, err := invoiceView(w.tx, p.InvoiceID); err != nil {
		return err
	} else if ok {
		callback = inv.CallbackURL
	}
	target, err := d.target(w, callback, p.MerchantID)
	if err != nil || target == "" {
		return err
	}
	body, err := json.Marshal(p.Body())
	if err != nil {
		return err
	}
	r := record{Delivery: Delivery{
		ID: e.ID.String(), WebhookID: e.ID.String(), Kind: KindWebhook, EventType: e.Type, EventSeq: e.Seq,
		MerchantID: p.MerchantID, Resource: "payment", ResourceID: p.ID, Method: "POST", URL: target,
		Body: body, CreatedAt: e.Time.UTC(),
	}, Key: e.Stream, Host: hostOf(target)}
	return w.insert(makeKey(e.Seq, kindByteWebhook), &r, e.ID.String())
}

// statusSuffix marks the id of a status_url delivery.
const statusSuffix = "-status"

// statusURL adds the e-invoice's final status to its status_url's query.
func statusURL(raw string, params map[string]string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	q := u.Query()
	for k, v := range params {
		if v != "" {
			q.Set(k, v)
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Host)
}
