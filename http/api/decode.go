package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
)

// decode strictly decodes a request body into v: one JSON object, no
// unknown fields, every type as declared. An empty body decodes as {} when
// emptyOK, else it is refused. Every refusal is a 400 VALIDATION_ERROR whose
// detail names the field (or "body" for what concerns the whole body).
func decode(body []byte, v any, emptyOK bool) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		if emptyOK {
			return nil
		}
		return badBody("missing", "body is required: a JSON object")
	}
	if trimmed[0] != '{' {
		return badBody("model_type", "body must be a JSON object")
	}
	if err := checkKeys(body, reflect.TypeOf(v)); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err, body)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badBody("json_invalid", "body must hold exactly one JSON value")
	}
	return nil
}

func badBody(typ, msg string) error {
	return newError(CodeValidation, msg, Detail{Path: "body", Type: typ, Message: msg})
}

func badField(path, typ, msg string) *apiError {
	return newError(CodeValidation, msg, Detail{Path: path, Type: typ, Message: msg})
}

// decodeError names the field of a json decoding error.
func decodeError(err error, body []byte) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return badBody("json_invalid", fmt.Sprintf("body is not valid JSON at byte %d: %s", se.Offset, se.Error()))
	case errors.As(err, &te):
		// te.Field names struct fields only (an embedded struct by its Go
		// name), not map keys or list indices: name the value the error
		// came from in the body, when its kind is what the error says.
		path := te.Field
		if p, kind, ok := valueAt(body, te.Offset-1); ok && strings.HasPrefix(te.Value+" ", kind+" ") {
			path = p
		}
		if path == "" {
			path = "body"
		}
		return badField(path, jsonTypeName(te.Type.Kind().String())+"_type",
			fmt.Sprintf("%s must be %s, not a JSON %s", path, describeType(te.Type.Kind().String(), te.Type.String()), te.Value))
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return badBody("json_invalid", fmt.Sprintf("body is not valid JSON: it ends early (%d bytes)", len(body)))
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		path := name
		if path == "" {
			path = "body"
		}
		return badField(path, "extra_forbidden", fmt.Sprintf("%q is not a field of this request", name))
	}
	var fe *fieldDecodeError
	if errors.As(err, &fe) {
		return badField(fe.path, fe.typ, fe.msg)
	}
	return badBody("json_invalid", "body is not valid JSON: "+strings.TrimPrefix(msg, "json: "))
}

// valueAt finds the value of body that byte at lies in (an
// UnmarshalTypeError's Offset-1: the decoder reads into the bad value before
// it errs) and returns its path, object keys joined by dots and list
// indices in brackets ("extra_fields.phone", "currencies[2]"; "" for the
// body itself), and its JSON kind ("object", "array", "string", "number",
// "bool", "null"). ok is false when no value holds at.
func valueAt(body []byte, at int64) (path, kind string, ok bool) {
	type level struct {
		list  bool
		index int    // list: the current element's
		key   string // object: the current member's
		inKey bool   // object: a key comes next
	}
	var stack []level
	done := func() { // the current member or element is read
		if len(stack) > 0 {
			top := &stack[len(stack)-1]
			top.index++
			top.inKey = !top.list
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil || start > at {
			return "", "", false
		}
		d, delim := tok.(json.Delim)
		switch {
		case delim && (d == '}' || d == ']'):
			stack = stack[:len(stack)-1]
			done()
			continue
		case len(stack) > 0 && stack[len(stack)-1].inKey:
			stack[len(stack)-1].key, stack[len(stack)-1].inKey = tok.(string), false
			continue
		}
		if at < dec.InputOffset() {
			var b strings.Builder
			for i, l := range stack {
				switch {
				case l.list:
					fmt.Fprintf(&b, "[%d]", l.index)
				case i > 0:
					b.WriteString("." + l.key)
				default:
					b.WriteString(l.key)
				}
			}
			return b.String(), jsonKind(tok), true
		}
		if delim {
			stack = append(stack, level{list: d == '[', inKey: d == '{'})
			continue
		}
		done()
	}
}

// jsonKind names the JSON kind of a token: what an UnmarshalTypeError's
// Value starts with.
func jsonKind(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			return "array"
		}
		return "object"
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "bool"
	}
	return "null"
}

// fieldDecodeError is returned by a field's own UnmarshalJSON to name itself.
type fieldDecodeError struct{ path, typ, msg string }

func (e *fieldDecodeError) Error() string { return e.path + ": " + e.msg }

func jsonTypeName(kind string) string {
	switch kind {
	case "string":
		return "string"
	case "bool":
		return "bool"
	case "slice", "array":
		return "list"
	case "map", "struct":
		return "dict"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "int"
	case "float32", "float64":
		return "float"
	}
	return "value"
}

func describeType(kind, name string) string {
	switch jsonTypeName(kind) {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "list":
		return "a list"
	case "dict":
		return "an object"
	case "int":
		return "an integer"
	case "float":
		return "a number"
	}
	return "a " + name
}

// checkKeys refuses the objects encoding/json lets pass silently: a key given
// twice (it keeps the last, where a proxy or log in front of us may read the
// first), and a key that names a field only when case is ignored ("AMOUNT"
// for "amount"). t is what the body decodes into; the keys of maps, and of
// values with their own UnmarshalJSON, are free. Invalid JSON passes (unless
// a refusal comes before what is wrong with it): the decoder names it. It scans the bytes itself, allocating
// nothing for an ordinary body: it runs on every request with one.
func checkKeys(body []byte, t reflect.Type) error {
	k := keyScan{b: body}
	if err := k.value(t); !errors.Is(err, errNotJSON) {
		return err
	}
	return nil
}

// errNotJSON stops checkKeys' scan at invalid JSON, which is the decoder's
// to name.
var errNotJSON = errors.New("invalid JSON")

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// keyScan walks JSON text, keeping the keys that lead to where it is (for
// error paths).
type keyScan struct {
	b     []byte
	i     int
	path  [][]byte
	depth int
}

// maxDepth bounds the nesting keyScan follows (encoding/json refuses more
// than 10,000 levels too): deeper bodies are left to the decoder to refuse.
const maxDepth = 10_000

func (k *keyScan) ws() {
	for k.i < len(k.b) && (k.b[k.i] == ' ' || k.b[k.i] == '\t' || k.b[k.i] == '\n' || k.b[k.i] == '\r') {
		k.i++
	}
}

// value scans one value, which decodes into t (nil: anything).
func (k *keyScan) value(t reflect.Type) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && (t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType)) {
		t = nil
	}
	k.ws()
	if k.i >= len(k.b) {
		return errNotJSON
	}
	switch k.b[k.i] {
	case '{', '[':
		if k.depth++; k.depth > maxDepth {
			return errNotJSON
		}
		defer func() { k.depth-- }()
		if k.b[k.i] == '{' {
			k.i++
			return k.object(t)
		}
		k.i++
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		return k.array(elem)
	case '"':
		_, _, err := k.str()
		return err
	}
	// A number or literal: its syntax is the decoder's to check.
	start := k.i
	for k.i < len(k.b) && strings.IndexByte(",]} \t\n\r", k.b[k.i]) < 0 {
		k.i++
	}
	if k.i == start {
		return errNotJSON
	}
	return nil
}

func (k *keyScan) array(elem reflect.Type) error {
	k.ws()
	if k.i < len(k.b) && k.b[k.i] == ']' {
		k.i++
		return nil
	}
	for {
		if err := k.value(elem); err != nil {
			return err
		}
		if done, err := k.after(']'); done || err != nil {
			return err
		}
	}
}

// after scans what follows a member of an object or array: a comma (more
// follow), or end, which closes it (done).
func (k *keyScan) after(end byte) (done bool, err error) {
	k.ws()
	switch {
	case k.i >= len(k.b):
		return false, errNotJSON
	case k.b[k.i] == ',':
		k.i++
		return false, nil
	case k.b[k.i] == end:
		k.i++
		return true, nil
	}
	return false, errNotJSON
}

// manyKeys is where object stops comparing each key with every earlier one
// and keeps a map.
const manyKeys = 32

func (k *keyScan) object(t reflect.Type) error {
	var fields map[string]reflect.Type // nil: any key
	var elem reflect.Type
	switch {
	case t == nil:
	case t.Kind() == reflect.Struct:
		fields = jsonFields(t)
	case t.Kind() == reflect.Map:
		elem = t.Elem()
	}
	var small [16][]byte
	seen := small[:0]
	var seenMap map[string]bool
	k.ws()
	if k.i < len(k.b) && k.b[k.i] == '}' {
		k.i++
		return nil
	}
	for {
		k.ws()
		if k.i >= len(k.b) || k.b[k.i] != '"' {
			return errNotJSON
		}
		raw, escaped, err := k.str()
		if err != nil {
			return err
		}
		key := raw
		if escaped {
			var u string
			if json.Unmarshal(k.b[k.i-len(raw)-2:k.i], &u) != nil {
				return errNotJSON
			}
			key = []byte(u)
		}
		dup := false
		if seenMap != nil {
			dup = seenMap[string(key)]
			seenMap[string(key)] = true
		} else {
			for _, s := range seen {
				dup = dup || bytes.Equal(s, key)
			}
			if seen = append(seen, key); len(seen) > manyKeys {
				seenMap = make(map[string]bool, 2*manyKeys)
				for _, s := range seen {
					seenMap[string(s)] = true
				}
			}
		}
		if dup {
			p := k.pathTo(key)
			return badField(p, "duplicate", fmt.Sprintf("%q is given twice", p))
		}
		vt := elem
		if fields != nil {
			ft, ok := fields[string(key)]
			if !ok {
				for name := range fields {
					if strings.EqualFold(name, string(key)) {
						p := k.pathTo(key)
						return badField(p, "extra_forbidden", fmt.Sprintf("%q is not a field of this request (field names are case-sensitive: %q)", p, name))
					}
				}
				// Unknown: DisallowUnknownFields names it.
			}
			vt = ft
		}
		k.ws()
		if k.i >= len(k.b) || k.b[k.i] != ':' {
			return errNotJSON
		}
		k.i++
		k.path = append(k.path, key)
		err = k.value(vt)
		k.path = k.path[:len(k.path)-1]
		if err != nil {
			return err
		}
		if done, err := k.after('}'); done || err != nil {
			return err
		}
	}
}

// str scans a string at k.i and returns its raw contents and whether they
// hold escapes.
func (k *keyScan) str() (raw []byte, escaped bool, err error) {
	start := k.i + 1
	for i := start; i < len(k.b); i++ {
		switch k.b[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			k.i = i + 1
			return k.b[start:i], escaped, nil
		}
	}
	return nil, false, errNotJSON
}

// pathTo names key under the keys leading to it, for a refusal.
func (k *keyScan) pathTo(key []byte) string {
	p := string(bytes.Join(append(k.path[:len(k.path):len(k.path)], key), []byte(".")))
	if p == "" {
		p = "body" // the empty key: name something
	}
	return p
}

// jsonFieldsCache holds jsonFields' answers by struct type.
var jsonFieldsCache sync.Map

// jsonFields maps the JSON names of a struct's fields (embedded structs'
// included, as encoding/json flattens them) to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := jsonFieldsCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := make(map[string]reflect.Type)
	addJSONFields(t, m)
	jsonFieldsCache.Store(t, m)
	return m
}

func addJSONFields(t reflect.Type, m map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				addJSONFields(ft, m)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if _, ok := m[name]; !ok {
			m[name] = f.Type
		}
	}
}
