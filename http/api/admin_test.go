package api

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/keyring"
)

// TestRotateSecretConcurrent: many rotations of one merchant's signing
// secret at once, against the real log. Each caller gets its own version,
// and the hash each rotation event records is the hash of the secret its
// caller was shown, so webhooks signed with a version verify with the
// secret shown for it.
func TestRotateSecretConcurrent(t *testing.T) {
	h := newHarness(t)
	m := h.newMerchant(`{"name": "rotating"}`)
	const n = 24
	rs := h.concurrently(n, func(int) resp {
		return h.admin("POST", "/admin/v1/merchants/"+m.ID+"/secret/rotate", "")
	})
	shown := map[int]string{} // version -> secret shown
	for i, r := range rs {
		var b struct {
			Version int    `json:"version"`
			Secret  string `json:"signing_secret"`
		}
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &b) != nil {
			t.Fatalf("rotation %d: %d %s", i, r.Status, r.Body)
		}
		if _, dup := shown[b.Version]; dup {
			t.Errorf("version %d shown twice", b.Version)
		}
		shown[b.Version] = b.Secret
	}
	evs, err := h.store.ReadStream(context.Background(), commands.StreamID(commands.StreamMerchant, m.ID), 1)
	if err != nil {
		t.Fatal(err)
	}
	recorded := 0
	for _, e := range evs {
		if e.Type != commands.TypeSigningSecretRotated {
			continue
		}
		var d commands.SigningSecretRotated
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatal(err)
		}
		if d.Version == 1 {
			continue // the registration's
		}
		recorded++
		secret, ok := shown[d.Version]
		if !ok {
			t.Errorf("version %d recorded but shown to no caller", d.Version)
			continue
		}
		if keyring.SecretHash(secret) != d.SecretHash {
			t.Errorf("version %d: recorded hash is not the hash of the secret shown", d.Version)
		}
		if secret != h.kr.SigningSecret(m.ID, d.Version) {
			t.Errorf("version %d: shown secret is not the version's", d.Version)
		}
	}
	if recorded != n {
		t.Errorf("%d rotations recorded, want %d", recorded, n)
	}
}
