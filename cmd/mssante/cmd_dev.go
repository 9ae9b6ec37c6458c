package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
)

const devUsage = `[--state DIR] [--domain DOMAIN]

Sets up a local MSSanté trust space for trying things out, on embedded defaults: a test PKI
shaped like IGC-Santé (created in the state folder on the first run, reloaded afterwards), a
server certificate and the client certificate of a BAL applicative for DOMAIN, the CA chain and
a CRL, then checks a mutual-TLS handshake between them over loopback. The state folder defaults
to $XDG_STATE_HOME/mssante/dev when XDG_STATE_HOME is set, else ./mssante-dev.
Everything it makes is for tests only: never trust the test PKI in production.`

// devRenewWithin: leaves expiring sooner than this are re-issued on the next run.
const devRenewWithin = 30 * 24 * time.Hour

func defaultDevState() string {
	if x := os.Getenv("XDG_STATE_HOME"); x != "" {
		return filepath.Join(x, "mssante", "dev")
	}
	return "mssante-dev"
}

func runDev(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "dev", devUsage)
	state := fs.String("state", defaultDevState(), "state folder (test PKI, certificates, CRL)")
	domain := fs.String("domain", "hopital.dev.mssante.fr", "mail domain of the local structure")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return exitCode(2, nil)
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitCode(2, nil)
	}
	dir, err := filepath.Abs(*state)
	if err != nil {
		return err
	}
	pkiDir := filepath.Join(dir, "pki")
	_, statErr := os.Stat(filepath.Join(pkiDir, "intermediate.key.pem"))
	created := statErr != nil
	pki, err := testpki.New(&testpki.Options{Dir: pkiDir})
	if err != nil {
		return err
	}
	verb := "loaded"
	if created {
		verb = "created"
	}
	fmt.Fprintf(e.stdout, "mssante dev: local MSSanté trust space in %s (test PKI %s)\n\n", dir, verb)

	chainPath := filepath.Join(dir, "ca-chain.pem")
	if err := os.WriteFile(chainPath, append(pki.RootPEM(), pki.IntermediatePEM()...), 0o644); err != nil {
		return err
	}
	server, serverFiles, serverNew, err := devLeaf(dir, "server", pki, func() (*testpki.Leaf, error) {
		return pki.Server(*domain, &testpki.LeafOptions{DNSNames: []string{"localhost"}})
	})
	if err != nil {
		return err
	}
	bal, balFiles, balNew, err := devLeaf(dir, "bal", pki, func() (*testpki.Leaf, error) {
		return pki.Org("dpi@"+*domain, nil)
	})
	if err != nil {
		return err
	}
	crl, err := pki.CRL()
	if err != nil {
		return err
	}
	crlPath := filepath.Join(dir, "crl.der")
	if err := os.WriteFile(crlPath, crl, 0o644); err != nil {
		return err
	}

	w := e.stdout
	state2 := func(isNew bool) string {
		if isNew {
			return "issued"
		}
		return "kept"
	}
	fmt.Fprintf(w, "  test PKI   %s\n", pkiDir)
	fmt.Fprintf(w, "             root          %s\n", transport.SubjectDN(pki.Root))
	fmt.Fprintf(w, "             intermediate  %s\n", transport.SubjectDN(pki.Intermediate))
	fmt.Fprintf(w, "  CA chain   %s (trust this, and only in tests)\n", chainPath)
	if parsed, err := x509.ParseRevocationList(crl); err == nil {
		fmt.Fprintf(w, "  CRL        %s (DER, next update %s)\n", crlPath, parsed.NextUpdate.UTC().Format(time.DateOnly))
	}
	fmt.Fprintf(w, "  server     %s (%s, SERV/SSL_SERV until %s)\n             %s\n", serverFiles, state2(serverNew),
		server.Cert.NotAfter.UTC().Format(time.DateOnly), transport.SubjectDN(server.Cert))
	fmt.Fprintf(w, "  BAL app    %s (%s, ORG/AUTH_CLI until %s)\n             %s\n\n", balFiles, state2(balNew),
		bal.Cert.NotAfter.UTC().Format(time.DateOnly), transport.SubjectDN(bal.Cert))

	if err := devSelfCheck(ctx, w, pki, crl, server, bal); err != nil {
		return fmt.Errorf("self-check failed: %w", err)
	}

	fmt.Fprintf(w, `
Not there yet (later versions of "mssante dev" add them): the connector (SMTP relay and
submission servers, IMAP access to the BAL), a liste blanche signed by the test PKI, the test
responder answering like reponse.automatique@test.mssante.fr, and a sample Annuaire Santé.
Today "mssante dev" gives you the certificates above and proves they work together.
`)
	fmt.Fprintf(w, "Try: mssante cert inspect %s\n", filepath.Join(dir, "server.crt.pem"))
	return nil
}

// devLeaf returns the leaf stored as dir/base.{crt,key}.pem when it was issued by pki and is
// valid for more than devRenewWithin, else issues a new one with issue and writes it.
func devLeaf(dir, base string, pki *testpki.PKI, issue func() (*testpki.Leaf, error)) (*testpki.Leaf, string, bool, error) {
	certPath := filepath.Join(dir, base+".crt.pem")
	keyPath := filepath.Join(dir, base+".key.pem")
	files := certPath + " + " + filepath.Base(keyPath)
	if tc, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil && tc.Leaf != nil {
		c := tc.Leaf
		key, isSigner := tc.PrivateKey.(crypto.Signer)
		if isSigner && c.CheckSignatureFrom(pki.Intermediate) == nil && time.Until(c.NotAfter) > devRenewWithin {
			return &testpki.Leaf{Cert: c, Key: key, Chain: []*x509.Certificate{c, pki.Intermediate}}, files, false, nil
		}
	}
	l, err := issue()
	if err != nil {
		return nil, "", false, err
	}
	if _, _, err := l.WriteFiles(dir, base); err != nil {
		return nil, "", false, err
	}
	return l, files, true, nil
}

// devSelfCheck runs one mutual-TLS handshake over loopback between the server and BAL
// certificates, verified by the transport package against the test PKI and its CRL.
func devSelfCheck(ctx context.Context, w io.Writer, pki *testpki.PKI, crl []byte, server, bal *testpki.Leaf) error {
	trust := transport.NewTrustStore(&transport.TrustOptions{NoIGCSanteRoot: true})
	trust.AddRoot(pki.Root)
	trust.AddIntermediate(pki.Intermediate)
	if err := trust.AddCRL(crl); err != nil {
		return err
	}
	srvCfg, err := transport.ServerConfig(nil, &transport.TLSOptions{
		Trust: trust, Certificates: []tls.Certificate{server.TLSCertificate()},
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	seen := make(chan string, 1)
	go func() {
		defer close(seen)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		tc, err := transport.Server(ctx, c, srvCfg)
		if err != nil {
			return
		}
		dn, _ := transport.PeerDN(tc.ConnectionState())
		seen <- dn
		tc.Close()
	}()
	d := &transport.Dialer{Options: transport.TLSOptions{Trust: trust, Certificates: []tls.Certificate{bal.TLSCertificate()}}}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort("localhost", port))
	if err != nil {
		return err
	}
	cs := conn.ConnectionState()
	conn.Close()
	serverSaw, ok := <-seen
	if !ok {
		return errors.New("server side of the handshake failed")
	}
	fmt.Fprintf(w, "Self-check: mutual %s (%s) on %s: OK\n  the server verified the BAL as %s\n",
		tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), ln.Addr(), serverSaw)
	return nil
}
