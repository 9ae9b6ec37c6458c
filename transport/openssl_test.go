package transport_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
)

// pkiFiles writes the test root, intermediate and leaves as PEM files for openssl.
func pkiFiles(t *testing.T, f *fixture) (dir string) {
	t.Helper()
	dir = t.TempDir()
	writeFile(t, dir, "root.pem", f.pki.RootPEM())
	writeFile(t, dir, "inter.pem", f.pki.IntermediatePEM())
	for base, l := range map[string]*testpki.Leaf{"server": f.server, "bal": f.client} {
		if _, _, err := l.WriteFiles(dir, base); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestOpenSSLClient drives our server with openssl s_client, a real TLS peer.
func TestOpenSSLClient(t *testing.T) {
	openssl := testenv.Require(t, "openssl")
	f := newFixture(t)
	dir := pkiFiles(t, f)
	withCert := []string{"-cert", filepath.Join(dir, "bal.crt.pem"), "-key", filepath.Join(dir, "bal.key.pem")}
	for _, tc := range []struct {
		name string
		opts transport.TLSOptions
		args []string
		want error // nil = both sides succeed
	}{
		{"valid mutual TLS 1.2", transport.TLSOptions{}, append([]string{"-tls1_2"}, withCert...), nil},
		{"no client certificate", transport.TLSOptions{}, []string{"-tls1_2"}, transport.ErrNoClientCert},
		{"TLS 1.1", transport.TLSOptions{}, append([]string{"-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"}, withCert...), transport.ErrProtocolVersion},
		{"RSA key exchange only", transport.TLSOptions{}, append([]string{"-tls1_2", "-cipher", "AES128-GCM-SHA256:AES256-SHA"}, withCert...), transport.ErrCipherSuite},
		{"CBC suite refused by default", transport.TLSOptions{}, append([]string{"-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA256"}, withCert...), transport.ErrCipherSuite},
		{"CBC suite with AllowCBC", transport.TLSOptions{AllowCBC: true}, append([]string{"-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA256"}, withCert...), nil},
		{"TLS 1.3 with AllowTLS13", transport.TLSOptions{AllowTLS13: true}, append([]string{"-tls1_3"}, withCert...), nil},
		{"TLS 1.3 by default", transport.TLSOptions{}, append([]string{"-tls1_3"}, withCert...), transport.ErrProtocolVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			cfg := f.serverConfig(t, &opts)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			type res struct {
				dn  string
				err error
			}
			done := make(chan res, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					done <- res{err: err}
					return
				}
				tc, err := transport.Server(ctx, c, cfg)
				if err != nil {
					done <- res{err: err}
					return
				}
				dn, err := transport.PeerDN(tc.ConnectionState())
				fmt.Fprintln(tc, "hello from the server")
				tc.Close()
				done <- res{dn, err}
			}()
			args := append([]string{"s_client", "-connect", ln.Addr().String(), "-servername", "localhost",
				"-CAfile", filepath.Join(dir, "root.pem"), "-verify_return_error"}, tc.args...)
			cmd := exec.CommandContext(ctx, openssl, args...)
			cmd.Stdin = strings.NewReader("")
			out, cerr := cmd.CombinedOutput()
			r := <-done
			if tc.want == nil {
				if r.err != nil || cerr != nil {
					t.Fatalf("server: %v; openssl: %v\n%s", r.err, cerr, out)
				}
				if r.dn != transport.SubjectDN(f.client.Cert) {
					t.Fatalf("server saw %q", r.dn)
				}
				if !bytes.Contains(out, []byte("Verify return code: 0 (ok)")) {
					t.Fatalf("openssl did not verify our server:\n%s", out)
				}
				return
			}
			if !errors.Is(r.err, tc.want) {
				t.Fatalf("server error = %v, want %v\nopenssl:\n%s", r.err, tc.want, out)
			}
			if bytes.Contains(out, []byte("hello from the server")) {
				t.Fatalf("openssl got data from a refused connection:\n%s", out)
			}
		})
	}
}

// TestOpenSSLServer dials openssl s_server (requiring and verifying a client certificate) with
// our Dialer.
func TestOpenSSLServer(t *testing.T) {
	openssl := testenv.Require(t, "openssl")
	f := newFixture(t)
	dir := pkiFiles(t, f)
	expired, err := f.pki.Server("localhost", &testpki.LeafOptions{Expired: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := expired.WriteFiles(dir, "expired"); err != nil {
		t.Fatal(err)
	}
	errRefused := errors.New("any refusal by openssl")
	for _, tc := range []struct {
		name, cert string
		noClient   bool
		want       error
	}{
		{"valid", "server", false, nil},
		{"expired server certificate", "expired", false, transport.ErrExpired},
		{"no client certificate", "server", true, errRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := testenv.FreePort(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var log testenv.Buffer
			cmd := exec.CommandContext(ctx, openssl, "s_server", "-accept", "127.0.0.1:"+strconv.Itoa(port),
				"-cert", filepath.Join(dir, tc.cert+".crt.pem"), "-key", filepath.Join(dir, tc.cert+".key.pem"),
				"-cert_chain", filepath.Join(dir, "inter.pem"),
				"-CAfile", filepath.Join(dir, "root.pem"), "-Verify", "2", "-verify_return_error",
				"-tls1_2", "-rev")
			cmd.Stdout, cmd.Stderr = &log, &log
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cancel(); cmd.Wait() })
			addr := "localhost:" + strconv.Itoa(port)
			waitFor(t, &log, "ACCEPT")

			d := &transport.Dialer{Options: transport.TLSOptions{
				Trust: f.trust, Certificates: []tls.Certificate{f.client.TLSCertificate()},
			}}
			if tc.noClient {
				d.Options.Certificates = nil
			}
			conn, err := d.DialContext(ctx, "tcp", addr)
			if tc.want == errRefused {
				if err == nil {
					t.Fatalf("openssl accepted a client without certificate:\n%s", log.String())
				}
				return
			}
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v\nopenssl:\n%s", err, log.String())
			}
			defer conn.Close()
			// -rev echoes lines reversed: proves the server accepted our client certificate.
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			if _, err := conn.Write([]byte("ping\n")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			n, err := conn.Read(buf)
			if err != nil || !strings.Contains(string(buf[:n]), "gnip") {
				t.Fatalf("read %q, %v\nopenssl:\n%s", buf[:n], err, log.String())
			}
		})
	}
}

// waitFor waits until the output of a peer holds want.
func waitFor(t *testing.T, out *testenv.Buffer, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(out.String(), want) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("peer never printed %q:\n%s", want, out.String())
}
