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
		path := te.Field
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
// values with their own UnmarshalJSON, are free. Invalid JSON passes: the
// decoder names what is wrong with it.
func checkKeys(body []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := walkValue(dec, t, ""); !errors.Is(err, errNotJSON) {
		return err
	}
	return nil
}

// errNotJSON stops checkKeys' walk at invalid JSON, which is the decoder's
// to name.
var errNotJSON = errors.New("invalid JSON")

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// walkValue checks the next value of dec, which decodes into t (nil: free).
func walkValue(dec *json.Decoder, t reflect.Type, path string) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && (t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType)) {
		t = nil
	}
	tok, err := dec.Token()
	if err != nil {
		return errNotJSON
	}
	switch tok {
	case json.Delim('{'):
		return walkObject(dec, t, path)
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for dec.More() {
			if err := walkValue(dec, elem, path); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil { // ']'
			return errNotJSON
		}
	}
	return nil
}

func walkObject(dec *json.Decoder, t reflect.Type, path string) error {
	var fields map[string]reflect.Type // nil: any key
	var elem reflect.Type
	switch {
	case t == nil:
	case t.Kind() == reflect.Struct:
		fields = jsonFields(t)
	case t.Kind() == reflect.Map:
		elem = t.Elem()
	}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return errNotJSON
		}
		key, _ := tok.(string)
		p := key
		if path != "" {
			p = path + "." + key
		}
		if p == "" {
			p = "body" // the empty key: name something
		}
		if seen[key] {
			return badField(p, "duplicate", fmt.Sprintf("%q is given twice", p))
		}
		seen[key] = true
		vt := elem
		if fields != nil {
			ft, ok := fields[key]
			if !ok {
				for name := range fields {
					if strings.EqualFold(name, key) {
						return badField(p, "extra_forbidden", fmt.Sprintf("%q is not a field of this request (field names are case-sensitive: %q)", p, name))
					}
				}
				// Unknown: DisallowUnknownFields names it.
			}
			vt = ft
		}
		if err := walkValue(dec, vt, p); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return errNotJSON
	}
	return nil
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
