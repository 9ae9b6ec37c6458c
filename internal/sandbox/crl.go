package sandbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
)

// CRLRefresh is how often the sandbox's connectors fetch the CRL: a certificate revoked with
// Revoke is refused within that time, without a restart.
const CRLRefresh = 5 * time.Second

// crlPath is where the CRL server publishes the intermediate's CRL; ocspPath is where it
// answers OCSP requests (RFC 6960 over HTTP POST).
const (
	crlPath  = "/crl/intermediate.crl"
	ocspPath = "/ocsp"
)

// listenCRL opens the listener of the CRL and OCSP server and returns the distribution point
// and OCSP URLs to write in the certificates.
func listenCRL(lns *listeners) (crl, ocsp string, err error) {
	ln, err := lns.raw("pki", "http")
	if err != nil {
		return "", "", err
	}
	return "http://" + ln.Addr().String() + crlPath, "http://" + ln.Addr().String() + ocspPath, nil
}

// crlServer publishes the CRL of the PKI in pkiDir over HTTP, signed again whenever the
// revoked list changes (Revoke in another process appends to it), with an ETag so that the
// connectors' conditional GETs cost a 304 otherwise.
type crlServer struct {
	pkiDir string

	mu   sync.Mutex
	key  string // size and time of the revoked list the CRL was signed for
	pki  *testpki.PKI
	der  []byte
	etag string
	at   time.Time
}

func (c *crlServer) current() ([]byte, string, time.Time, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.currentLocked()
}

func (c *crlServer) currentLocked() ([]byte, string, time.Time, error) {
	key := ""
	if fi, err := os.Stat(filepath.Join(c.pkiDir, "revoked.txt")); err == nil {
		key = fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
	}
	// Signed again daily too, well before the nextUpdate of seven days.
	if c.der == nil || key != c.key || time.Since(c.at) > 24*time.Hour {
		pki, err := testpki.New(&testpki.Options{Dir: c.pkiDir})
		if err != nil {
			return nil, "", time.Time{}, err
		}
		der, err := pki.CRL()
		if err != nil {
			return nil, "", time.Time{}, err
		}
		sum := sha256.Sum256(der)
		c.pki, c.der, c.key, c.at, c.etag = pki, der, key, time.Now(), `"`+hex.EncodeToString(sum[:12])+`"`
	}
	return c.der, c.etag, c.at, nil
}

// ocsp answers an OCSP request from the revoked list as it is now.
func (c *crlServer) ocsp(w http.ResponseWriter, r *http.Request) {
	req, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil || r.Method != http.MethodPost {
		http.Error(w, "POST an OCSP request", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	_, _, _, err = c.currentLocked()
	pki := c.pki
	c.mu.Unlock()
	if err != nil {
		http.Error(w, "OCSP unavailable", http.StatusInternalServerError)
		return
	}
	resp, err := pki.OCSPResponse(req, CRLRefresh)
	if err != nil {
		http.Error(w, "bad OCSP request", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Write(resp)
}

func (c *crlServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == ocspPath {
		c.ocsp(w, r)
		return
	}
	if r.URL.Path != crlPath {
		http.NotFound(w, r)
		return
	}
	der, etag, at, err := c.current()
	if err != nil {
		http.Error(w, "CRL unavailable", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	w.Header().Set("ETag", etag)
	http.ServeContent(w, r, "intermediate.crl", at, bytes.NewReader(der))
}

// startCRL serves the CRL on ln until Close.
func (s *Sandbox) startCRL(ln net.Listener) {
	if ln == nil {
		return
	}
	s.crlSrv = &http.Server{Handler: &crlServer{pkiDir: filepath.Join(s.Info.Dir, "pki")},
		ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.crlSrv.Serve(ln)
	}()
}

func (s *Sandbox) stopCRL(ctx context.Context) {
	if s.crlSrv != nil {
		s.crlSrv.Shutdown(ctx)
	}
}

// Revoke revokes a certificate of the sandbox in dir: target is the address of a BAL
// applicative or the path of a certificate file (PEM, DER) issued by the sandbox's PKI, such as
// an operator's server.crt.pem. The running connectors refuse it at their next CRL fetch
// (within CRLRefresh); the CRL file is written again for the next start.
func Revoke(dir, target string) (*x509.Certificate, error) {
	info, err := Load(dir)
	if err != nil {
		return nil, err
	}
	path := target
	if strings.Contains(target, "@") {
		path = ""
		for _, op := range info.Operators {
			for _, b := range op.BALs {
				if strings.EqualFold(b.Address, target) {
					path = b.CertFile
				}
			}
		}
		if path == "" {
			return nil, fmt.Errorf("sandbox: %s is not a BAL applicative of the sandbox (no certificate)", target)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	certs, err := transport.ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %s: %w", path, err)
	}
	pki, err := testpki.New(&testpki.Options{Dir: filepath.Join(info.Dir, "pki")})
	if err != nil {
		return nil, err
	}
	c := certs[0]
	if c.CheckSignatureFrom(pki.Intermediate) != nil {
		return nil, errors.New("sandbox: " + path + ": not issued by the sandbox's test PKI")
	}
	if err := pki.Revoke(c); err != nil {
		return nil, err
	}
	crl, err := pki.CRL()
	if err != nil {
		return nil, err
	}
	if err := writeAtomic(info.CRLFile, crl); err != nil {
		return nil, err
	}
	return c, nil
}
