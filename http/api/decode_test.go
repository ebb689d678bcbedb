package api

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// checkKeys' refusals, each naming the key's path; and what it lets through
// for the decoder to judge.
func TestCheckKeys(t *testing.T) {
	type inner struct {
		Name string            `json:"name"`
		Tags map[string]string `json:"tags"`
	}
	type req struct {
		Amount string  `json:"amount"`
		Inner  inner   `json:"inner"`
		List   []inner `json:"list"`
	}
	many := make([]string, 40)
	for i := range many {
		many[i] = fmt.Sprintf(`"k%d": "v"`, i)
	}
	refused := []struct{ name, body, path, typ string }{
		{"top-level twice", `{"amount": "1", "amount": "2"}`, "amount", "duplicate"},
		{"twice through an escape", `{"amount": "1", "\u0061mount": "2"}`, "amount", "duplicate"},
		{"nested twice", `{"inner": {"name": "a", "name": "b"}}`, "inner.name", "duplicate"},
		{"map key twice", `{"inner": {"tags": {"x": "1", "x": "2"}}}`, "inner.tags.x", "duplicate"},
		{"twice in a list item", `{"list": [{"name": "a"}, {"name": "b", "name": "c"}]}`, "list.name", "duplicate"},
		{"twice past many keys", `{"inner": {"tags": {` + strings.Join(many, ", ") + `, "k3": "again"}}}`, "inner.tags.k3", "duplicate"},
		{"empty key twice", `{"": 1, "": 2}`, "body", "duplicate"},
		{"capitals", `{"AMOUNT": "1"}`, "AMOUNT", "extra_forbidden"},
		{"nested capital", `{"inner": {"Name": "a"}}`, "inner.Name", "extra_forbidden"},
	}
	for _, tc := range refused {
		err := checkKeys([]byte(tc.body), reflect.TypeFor[*req]())
		e, internal := classify(err)
		if err == nil || internal || e.Status != http.StatusBadRequest || len(e.Details) != 1 ||
			e.Details[0].Path != tc.path || e.Details[0].Type != tc.typ {
			t.Errorf("%s: %v (%+v), want a 400 %s at %s", tc.name, err, e, tc.typ, tc.path)
		}
	}
	passed := []struct{ name, body string }{
		{"ordinary", `{"amount": "1", "inner": {"name": "a", "tags": {"A": "1", "a": "2"}}, "list": [{"name": "x"}, {"name": "x"}]}`},
		{"unknown key (the decoder's)", `{"email": "x"}`},
		{"invalid JSON (the decoder's)", `{"amount": "1" "inner"`},
		{"unterminated string", `{"amount": "1`},
		{"garbage in a list", `{"list": [00`},
		{"deeper than the decoder allows", `{"inner": ` + strings.Repeat("[", 20_000) + strings.Repeat("]", 20_000) + `}`},
	}
	for _, tc := range passed {
		if err := checkKeys([]byte(tc.body), reflect.TypeFor[*req]()); err != nil {
			t.Errorf("%s: %v, want nil", tc.name, err)
		}
	}
}

// checkKeys runs on every request with a body: an ordinary one costs it no
// allocation beyond the type's (cached) field table.
func TestCheckKeysAllocations(t *testing.T) {
	body := []byte(seed003Request)
	typ := reflect.TypeFor[*createInvoiceRequest]()
	if err := checkKeys(body, typ); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = checkKeys(body, typ) }); n > 1 {
		t.Errorf("%.0f allocations a call, want at most 1", n)
	}
}
