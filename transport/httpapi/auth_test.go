package httpapi_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/transport/httpapi"
)

// The bearer hook: a verified token opens the BALs its Verify returns, and only those; a
// refused token and a request without credentials get 401.
func TestAPIBearerHook(t *testing.T) {
	const addr = "marie.durand@cabinet.dev.mssante.fr"
	c, err := bal.New(&bal.Options{Address: addr, Auth: bal.AuthPlain, Username: addr, Password: "unused"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	verify := func(_ context.Context, token string) (*httpapi.Caller, error) {
		if token != "good-token" {
			return nil, errors.New("psc: token refused")
		}
		return &httpapi.Caller{BALs: []string{addr}, Subject: "810001234567"}, nil
	}
	h, err := httpapi.New(&httpapi.Options{BALs: map[string]*bal.Client{addr: c}, StateDir: t.TempDir(),
		Auth: httpapi.FirstOf(&httpapi.CertificateAuth{}, &httpapi.BearerAuth{Verify: verify})})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, auth string
		status     int
	}{
		{"/v1/bals/" + addr + "/received", "Bearer good-token", 200},
		{"/v1/bals/other@cabinet.dev.mssante.fr/received", "Bearer good-token", 403},
		{"/v1/bals/" + addr + "/received", "Bearer bad-token", 401},
		{"/v1/bals/" + addr + "/received", "Basic dXNlcjpwYXNz", 401},
		{"/v1/bals/" + addr + "/received", "", 401},
	} {
		req := httptest.NewRequest("GET", tc.path, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.status {
			t.Errorf("%s %q: %d, want %d: %s", tc.path, tc.auth, rec.Code, tc.status, rec.Body)
		}
		if tc.status == 401 && rec.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("401 without WWW-Authenticate")
		}
	}
}
