// Package apitest checks HTTP exchanges with the API of transport/httpapi against its OpenAPI
// document (pb33f/libopenapi-validator), for the tests of the library and of the binary: a
// request or an answer that does not match the document fails the test.
package apitest

import (
	"bytes"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"

	"github.com/mssante-go/sdk/transport/httpapi"
)

// SchemaInvalid marks a request a test sends on purpose against the OpenAPI document: the
// validator must refuse it too. The header is removed before the request is sent.
const SchemaInvalid = "X-Test-Schema-Invalid"

// Validator checks exchanges against httpapi.OpenAPI. It is safe for concurrent use.
type Validator struct {
	t  testing.TB
	v  validator.Validator
	mu sync.Mutex
}

// New parses and validates the OpenAPI document; a document that does not validate fails t.
func New(t testing.TB) *Validator {
	t.Helper()
	doc, err := libopenapi.NewDocument(httpapi.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	// Security is mutual TLS, which an HTTP-level validator cannot see: the tests check it.
	v, errs := validator.NewValidator(doc, config.WithoutSecurityValidation())
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		for _, e := range verrs {
			t.Error(e.Message, e.Reason)
		}
		t.FailNow()
	}
	return &Validator{t: t, v: v}
}

// Check validates req, whose body is body, and resp, whose body is respBody; expectInvalid
// says the request was meant not to match the document.
func (vt *Validator) Check(req *http.Request, body []byte, resp *http.Response, respBody []byte, expectInvalid bool) {
	vt.t.Helper()
	clone := func() *http.Request {
		c := req.Clone(req.Context())
		c.Body = io.NopCloser(bytes.NewReader(body))
		return c
	}
	c := *resp
	c.Body = io.NopCloser(bytes.NewReader(respBody))
	vt.mu.Lock()
	defer vt.mu.Unlock()
	ok, errs := vt.v.ValidateHttpRequestSync(clone())
	switch {
	case expectInvalid && ok:
		vt.t.Errorf("%s %s: the OpenAPI document accepts a request the test meant as invalid", req.Method, req.URL.Path)
	case !expectInvalid && !ok:
		for _, e := range errs {
			vt.t.Errorf("%s %s: request does not match the OpenAPI document: %s: %s", req.Method, req.URL.Path, e.Message, e.Reason)
		}
	}
	for _, e := range errs {
		if e.ValidationType == "path" {
			return // no operation to check the answer against (404, 405)
		}
	}
	if ok, errs := vt.v.ValidateHttpResponse(clone(), &c); !ok {
		for _, e := range errs {
			msg := e.Message + ": " + e.Reason
			for _, s := range e.SchemaValidationErrors {
				msg += "; " + s.Reason
			}
			vt.t.Errorf("%s %s → %d: response does not match the OpenAPI document: %s", req.Method, req.URL.Path, resp.StatusCode, msg)
		}
	}
}

// Transport is an http.RoundTripper that checks each exchange it carries with V.
type Transport struct {
	V    *Validator
	Base http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (tr *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body.Close()
	}
	expectInvalid := req.Header.Get(SchemaInvalid) != ""
	req.Header.Del(SchemaInvalid)
	sent := req.Clone(req.Context())
	sent.Body = io.NopCloser(bytes.NewReader(body))
	resp, err := tr.Base.RoundTrip(sent)
	if err != nil {
		return nil, err
	}
	rb, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	tr.V.Check(req, body, resp, rb, expectInvalid)
	resp.Body = io.NopCloser(bytes.NewReader(rb))
	return resp, nil
}
