package lambdatest

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	verrors "github.com/pb33f/libopenapi-validator/errors"
)

// specJSON is Lambda's OpenAPI 3.1.0 document (version 1.8.3), byte for byte
// as saved in the shared reference directory.
//
//go:embed testdata/lambda-openapi.json
var specJSON []byte

// SpecSHA256 is the SHA-256 of the embedded document, the same file as
// reference/lambda-openapi.json.
const SpecSHA256 = "e848f3e22b533929474c8661561ba271b16eeffbc0d4c2697b6b45b2fc4ceb8f"

// Spec returns a copy of Lambda's OpenAPI document.
func Spec() []byte { return bytes.Clone(specJSON) }

// Validator checks HTTP requests and responses against Lambda's OpenAPI
// document with libopenapi-validator, whose JSON Schema engine implements
// draft 2020-12 as OpenAPI 3.1 uses it (const, anyOf, pattern, integer).
//
// It checks each message twice. First against a strict reading of the
// document, in which every object schema that lists its properties and
// says nothing of others refuses others (additionalProperties: false):
// Lambda's request schemas do not forbid unknown fields, and whether Lambda
// ignores or refuses them is not documented, so the fake refuses them and
// a field such as "quantity" or "image_id" never goes unnoticed. Then,
// when the strict reading fails, against the document as published, to say
// which of the two the message breaks.
type Validator struct {
	mu     sync.Mutex // the validators are not documented as safe for concurrent use
	strict validator.Validator
	plain  validator.Validator
}

var (
	sharedOnce sync.Once
	shared     *Validator
	sharedErr  error
)

// NewValidator returns the validator of the embedded document. Building it
// compiles every schema, so it is built once per process and shared.
func NewValidator() (*Validator, error) {
	sharedOnce.Do(func() { shared, sharedErr = buildValidator() })
	return shared, sharedErr
}

func buildValidator() (*Validator, error) {
	strictSpec, err := strictDocument(specJSON)
	if err != nil {
		return nil, err
	}
	plain, err := newValidator(specJSON)
	if err != nil {
		return nil, err
	}
	strict, err := newValidator(strictSpec)
	if err != nil {
		return nil, err
	}
	return &Validator{strict: strict, plain: plain}, nil
}

func newValidator(spec []byte) (validator.Validator, error) {
	doc, err := libopenapi.NewDocument(spec)
	if err != nil {
		return nil, fmt.Errorf("lambdatest: parsing the OpenAPI document: %w", err)
	}
	// Format assertions make "date-time" and friends binding, as the
	// document's readers would expect.
	v, errs := validator.NewValidator(doc, config.WithFormatAssertions())
	if len(errs) > 0 {
		return nil, fmt.Errorf("lambdatest: building the validator: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		return nil, fmt.Errorf("lambdatest: the OpenAPI document is invalid: %s", describe(verrs))
	}
	return v, nil
}

// strictDocument adds additionalProperties: false to every object schema
// that declares properties and leaves additionalProperties unsaid. Examples
// are left alone: they are data, not schemas.
func strictDocument(spec []byte) ([]byte, error) {
	var doc any
	if err := json.Unmarshal(spec, &doc); err != nil {
		return nil, fmt.Errorf("lambdatest: %w", err)
	}
	var walk func(any)
	walk = func(n any) {
		switch v := n.(type) {
		case map[string]any:
			if props, ok := v["properties"].(map[string]any); ok {
				_, said := v["additionalProperties"]
				if t, _ := v["type"].(string); !said && (t == "" || t == "object") {
					v["additionalProperties"] = false
				}
				for _, p := range props {
					walk(p)
				}
			}
			for k, c := range v {
				if k == "properties" || k == "example" || k == "examples" {
					continue
				}
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(doc)
	return json.Marshal(doc)
}

// ValidateRequest returns what is wrong with the request (its method, path,
// parameters, headers and body), or nothing. body is the request's body,
// which the caller has already read.
func (v *Validator) ValidateRequest(r *http.Request, body []byte) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if ok, errs := v.strict.ValidateHttpRequestSync(withBody(r, body)); !ok {
		return v.label(errs, func() bool {
			ok, _ := v.plain.ValidateHttpRequestSync(withBody(r, body))
			return ok
		})
	}
	return nil
}

// ValidateResponse returns what is wrong with the response to r, or nothing.
func (v *Validator) ValidateResponse(r *http.Request, status int, header http.Header, body []byte) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	resp := func() *http.Response {
		return &http.Response{StatusCode: status, Header: header.Clone(), Request: r, Body: io.NopCloser(bytes.NewReader(body))}
	}
	if ok, errs := v.strict.ValidateHttpResponse(withBody(r, nil), resp()); !ok {
		return v.label(errs, func() bool {
			ok, _ := v.plain.ValidateHttpResponse(withBody(r, nil), resp())
			return ok
		})
	}
	return nil
}

// label names which reading a message breaks: the published document, or
// only the strict one.
func (v *Validator) label(errs []*verrors.ValidationError, plainOK func() bool) []string {
	prefix := "breaks Lambda's OpenAPI document: "
	if plainOK() {
		prefix = "has a field Lambda's schema does not declare (refused by the strict fake): "
	}
	var out []string
	for _, e := range errs {
		out = append(out, prefix+describeOne(e))
	}
	return out
}

func withBody(r *http.Request, body []byte) *http.Request {
	c := r.Clone(r.Context())
	if body == nil {
		c.Body = http.NoBody
		c.ContentLength = 0
	} else {
		c.Body = io.NopCloser(bytes.NewReader(body))
		c.ContentLength = int64(len(body))
	}
	return c
}

func describe(errs []*verrors.ValidationError) string {
	parts := make([]string, len(errs))
	for i, e := range errs {
		parts[i] = describeOne(e)
	}
	return strings.Join(parts, "; ")
}

// describeOne is the message with the schema failures, which say which field
// broke which rule.
func describeOne(e *verrors.ValidationError) string {
	s := e.Message
	var details []string
	for _, f := range e.SchemaValidationErrors {
		d := f.Reason
		if f.FieldPath != "" {
			d += " at " + f.FieldPath
		}
		details = append(details, d)
	}
	sort.Strings(details)
	if len(details) > 0 {
		s += " [" + strings.Join(details, "; ") + "]"
	} else if e.Reason != "" {
		s += " (" + e.Reason + ")"
	}
	return s
}
