package sandbox

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mssante-go/sdk/internal/pscop"
	"github.com/mssante-go/sdk/internal/sandboxinfo"
	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport/mailbox"
)

// PSCClientID is the client the sandbox connectors accept Pro Santé Connect tokens for.
const PSCClientID = "mssante-dev"

// startPSC starts the sandbox's OpenID provider over HTTPS (test PKI): each PER BAL's holder
// is a practitioner who also holds the ORG BALs of their operator (a member of them).
func (s *Sandbox) startPSC(lns *listeners) error {
	info := s.Info
	pd := filepath.Join(info.Dir, "psc")
	if err := os.MkdirAll(pd, 0o700); err != nil {
		return err
	}
	web, err := leaf(pd, "https", s.PKI, func() (*testpki.Leaf, error) { return s.PKI.Server("localhost", nil) })
	if err != nil {
		return err
	}
	ln, err := lns.raw("psc", "https")
	if err != nil {
		return err
	}
	pi := &sandboxinfo.PSC{Issuer: "https://localhost:" + portOf(ln.Addr().String()), ClientID: PSCClientID}
	pi.TokenURL = pi.Issuer + "/oauth/token"
	var pract []pscop.Practitioner
	for i, sp := range specs {
		var orgs []string
		for _, b := range sp.bals {
			if b.typ == mailbox.ORG {
				orgs = append(orgs, b.local+"@"+sp.domains[0])
			}
		}
		for _, b := range sp.bals {
			if b.typ != mailbox.PER {
				continue
			}
			secret, err := password(filepath.Join(pd, b.local+".secret"))
			if err != nil {
				return err
			}
			p := &sandboxinfo.Practitioner{ClientID: b.local, Secret: secret, NationalID: b.owner,
				Operator: info.Operators[i].Name, BALs: append([]string{b.local + "@" + sp.domains[0]}, orgs...)}
			pi.Practitioners = append(pi.Practitioners, p)
			pract = append(pract, pscop.Practitioner{ClientID: p.ClientID, Secret: p.Secret, NationalID: p.NationalID})
		}
	}
	op, err := pscop.New(&pscop.Options{Issuer: pi.Issuer, Audience: PSCClientID, Practitioners: pract,
		TokenLifetime: s.opts.PSCTokenLifetime, Logger: s.logger.With("component", "psc")})
	if err != nil {
		return err
	}
	s.pscSrv = &http.Server{Handler: op, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{web.TLSCertificate()}}}
	lns.take("psc", "https")
	info.PSC = pi
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.pscSrv.ServeTLS(ln, "", "")
	}()
	return nil
}

// pscConfig is the [psc] table of a sandbox connector.
func (s *Sandbox) pscConfig() string {
	if s.Info.PSC == nil {
		return ""
	}
	c := fmt.Sprintf("[psc]\nissuer = %q\nclient_ids = [%q]\nca_file = %q\n", s.Info.PSC.Issuer, PSCClientID, s.Info.CAFile)
	if d := s.opts.PSCSessionLength; d > 0 {
		c += fmt.Sprintf("session_length = %q\n", d.String())
	}
	if s.opts.PSCEndWithToken {
		c += "end_with_token = true\nskew = \"1s\"\n"
	}
	return c + "\n"
}

// addMembers makes the practitioners members of the ORG BALs they hold in store.
func (s *Sandbox) addMembers(ctx context.Context, store *mailbox.SQLite, op *Operator) error {
	if s.Info.PSC == nil {
		return nil
	}
	for _, p := range s.Info.PSC.Practitioners {
		for _, b := range p.BALs {
			if bal := s.Info.BAL(b); bal != nil && bal.Type == string(mailbox.ORG) && s.Info.OperatorOf(b) == op {
				if err := store.AddMember(ctx, b, p.NationalID); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func portOf(addr string) string {
	i := strings.LastIndexByte(addr, ':')
	return addr[i+1:]
}
