//go:build unix

package revocation_test

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/revocation"
)

// BenchmarkInboundRevocation measures one full inbound mutual-TLS 1.2 handshake over loopback
// (our ServerConfig verifying the client certificate) with the revocation check done from a
// warm cache against none: "none" holds no CRL and checks nothing (best effort), "crl" holds a
// CRL of 5,000 entries, "ocsp" asks OCSP first (ocsp_then_crl) with the answer cached.
// bench/tls/revocation.sh prints the medians and the ratios to "none".
func BenchmarkInboundRevocation(b *testing.B) {
	dir := b.TempDir()
	pki, err := testpki.New(&testpki.Options{Dir: filepath.Join(dir, "pki")})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := pki.Server("localhost", nil)
	if err != nil {
		b.Fatal(err)
	}
	cli, err := pki.Org("dpi@hopital.test", nil)
	if err != nil {
		b.Fatal(err)
	}
	for i := range 5000 {
		if err := pki.Revoke(&x509.Certificate{SerialNumber: big.NewInt(int64(1e9 + i))}); err != nil {
			b.Fatal(err)
		}
	}
	crl, err := pki.CRL()
	if err != nil {
		b.Fatal(err)
	}
	responder := ocspResponder(b, pki, filepath.Join(dir, "pki", "intermediate.key.pem"))
	checker := revocation.NewOCSP(&revocation.OCSPOptions{URL: responder})
	store := func(o *transport.TrustOptions, withCRL bool) *transport.TrustStore {
		o.NoIGCSanteRoot = true
		s := transport.NewTrustStore(o)
		s.AddRoot(pki.Root)
		s.AddIntermediate(pki.Intermediate)
		if withCRL {
			if err := s.AddCRL(crl); err != nil {
				b.Fatal(err)
			}
		}
		return s
	}
	ocspStore := store(&transport.TrustOptions{OCSP: checker, OCSPPolicy: transport.OCSPThenCRL}, false)
	if _, err := ocspStore.Verify(cli.Chain, x509.ExtKeyUsageClientAuth, time.Now()); err != nil {
		b.Fatal(err) // warms the OCSP cache
	}
	client := &tls.Config{Certificates: []tls.Certificate{cli.TLSCertificate()}, RootCAs: pki.Roots(), ServerName: "localhost",
		MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, CipherSuites: transport.DefaultCipherSuites()}
	for _, c := range []struct {
		name  string
		trust *transport.TrustStore
	}{
		{"none", store(&transport.TrustOptions{Revocation: transport.RevocationBestEffort}, false)},
		{"crl", store(&transport.TrustOptions{}, true)},
		{"ocsp", ocspStore},
	} {
		b.Run(c.name, func(b *testing.B) {
			cfg, err := transport.ServerConfig(nil, &transport.TLSOptions{Trust: c.trust, Certificates: []tls.Certificate{srv.TLSCertificate()}})
			if err != nil {
				b.Fatal(err)
			}
			addr := serveTLS(b, cfg)
			start := cpuTime()
			for b.Loop() {
				conn, err := tls.Dial("tcp", addr, client)
				if err != nil {
					b.Fatal(err)
				}
				var one [1]byte
				if n, err := conn.Read(one[:]); n != 1 {
					b.Fatal(err)
				}
				conn.Close()
			}
			b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
		})
	}
}

func serveTLS(b *testing.B, cfg *tls.Config) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := tls.Server(c, cfg)
				if tc.Handshake() == nil {
					tc.Write([]byte{1})
				}
				tc.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// ocspResponder answers "good" for every certificate, signed by the intermediate.
func ocspResponder(b *testing.B, pki *testpki.PKI, keyFile string) string {
	data, err := os.ReadFile(keyFile)
	if err != nil {
		b.Fatal(err)
	}
	blk, _ := pem.Decode(data)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		req, err := ocsp.ParseRequest(body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		now := time.Now()
		resp, err := ocsp.CreateResponse(pki.Intermediate, pki.Intermediate, ocsp.Response{Status: ocsp.Good,
			SerialNumber: req.SerialNumber, ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour)}, k.(crypto.Signer))
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Write(resp)
	}))
	b.Cleanup(srv.Close)
	return srv.URL
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
