package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
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
