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

// A wrong type is named by where it is in the body: map keys and list
// indices included, an embedded struct's fields by their JSON names
// (encoding/json's UnmarshalTypeError.Field stops at the struct field, and
// names an embedded struct by its Go name). Before, extra_fields.phone was
// "extra_fields" and a merchant patch's name "merchantRequest.name".
func TestDecodeTypeErrorPath(t *testing.T) {
	type inner struct {
		Tags map[string]int `json:"tags"`
	}
	type req struct {
		Extra map[string]string            `json:"extra_fields"`
		Deep  map[string]map[string]string `json:"deep"`
		List  []inner                      `json:"list"`
		Nums  []int                        `json:"nums"`
		Inner inner                        `json:"inner"`
	}
	tests := []struct {
		body string
		into any
		path string
		msg  string
	}{
		{`{"extra_fields": {"phone": 12345678}}`, &req{}, "extra_fields.phone", "extra_fields.phone must be a string, not a JSON number"},
		{" \n {\"extra_fields\": {\"a\": \"1\", \"b\": true}}", &req{}, "extra_fields.b", "extra_fields.b must be a string, not a JSON bool"},
		{`{"extra_fields": {"\u0070hone": {}}}`, &req{}, "extra_fields.phone", "extra_fields.phone must be a string, not a JSON object"},
		{`{"extra_fields": [1]}`, &req{}, "extra_fields", "extra_fields must be an object, not a JSON array"},
		{`{"extra_fields": "x"}`, &req{}, "extra_fields", "extra_fields must be an object, not a JSON string"},
		{`{"deep": {"x": {"y": 1}}}`, &req{}, "deep.x.y", "deep.x.y must be a string, not a JSON number"},
		{`{"list": [{"tags": {}}, {"tags": {"k": "v"}}]}`, &req{}, "list[1].tags.k", "list[1].tags.k must be an integer, not a JSON string"},
		{`{"nums": [1, 2, "3"]}`, &req{}, "nums[2]", "nums[2] must be an integer, not a JSON string"},
		{`{"inner": {"tags": {"k": 1.5}}}`, &req{}, "inner.tags.k", "inner.tags.k must be an integer, not a JSON number 1.5"},
		{`{"name": 5}`, &merchantPatch{}, "name", "name must be a string, not a JSON number"},
		{`{"amount": 1500}`, &createInvoiceRequest{}, "amount", "amount must be a string, not a JSON number"},
	}
	for _, tc := range tests {
		e, internal := classify(decode([]byte(tc.body), tc.into, false))
		if internal || e.Status != http.StatusBadRequest || len(e.Details) != 1 || e.Details[0].Path != tc.path || e.Details[0].Message != tc.msg {
			t.Errorf("%s: %+v, want %s: %q", tc.body, e, tc.path, tc.msg)
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
