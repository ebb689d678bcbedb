package projections

import (
	"encoding/json"
	"fmt"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger"
)

// decodeData decodes a known event type's data into its struct from the
// commands catalogue. It returns nil, nil for an unknown type (ignored, for
// forward compatibility) and ErrMalformedEvent for data that do not decode.
func decodeData(e *ledger.Event) (any, error) {
	var v any
	switch e.Type {
	case commands.TypeMerchantRegistered:
		v = new(commands.MerchantRegistered)
	case commands.TypeMerchantSettings:
		v = new(commands.MerchantSettingsChanged)
	case commands.TypeAPIKeyIssued:
		v = new(commands.APIKeyIssued)
	case commands.TypeAPIKeyRevoked:
		v = new(commands.APIKeyRevoked)
	case commands.TypeSigningSecretRotated:
		v = new(commands.SigningSecretRotated)
	case commands.TypeRateSet:
		v = new(commands.RateSet)
	case commands.TypeInvoiceCreated:
		v = new(commands.InvoiceCreated)
	case commands.TypeInvoiceCancelled:
		v = new(commands.InvoiceCancelled)
	case commands.TypeInvoiceExpired:
		v = new(commands.InvoiceExpired)
	case commands.TypeInvoicePaid:
		v = new(commands.InvoicePaid)
	case commands.TypePaymentCreated:
		v = new(commands.PaymentCreated)
	case commands.TypePaymentConfirmed, commands.TypePaymentRejected,
		commands.TypePaymentCancelled, commands.TypePaymentFailed:
		v = new(commands.PaymentStatusChanged)
	case commands.TypePaymentProcessed:
		v = new(commands.PaymentProcessed)
	case commands.TypeWidgetCreated:
		v = new(commands.WidgetCreated)
	case commands.TypeWidgetStatusChanged, commands.TypeWidgetExpired:
		v = new(commands.WidgetStatusChanged)
	default:
		return nil, nil
	}
	if err := json.Unmarshal(e.Data, v); err != nil {
		return nil, fmt.Errorf("%w: %s data: %v", ErrMalformedEvent, e.Type, err)
	}
	return v, nil
}
