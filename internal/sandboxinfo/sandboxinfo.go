// Package sandboxinfo is the schema of sandbox.json, the description a "mssante dev" trust
// space (internal/sandbox) writes in its state folder: endpoints, trust files, the liste
// blanche and the certificate files of each BAL. It is apart from internal/sandbox so that
// bal can read the file without linking the connector that the sandbox runs.
package sandboxinfo

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/whitelist"
)

// File is the name of the description of the sandbox in its state folder.
const File = "sandbox.json"

// Extra is an operator outside the sandbox that the sandbox trusts and routes to.
type Extra struct {
	Domain string `json:"domain"`
	// CertDN is the subject DN of its server certificate (issued by the sandbox's PKI, see
	// testpki.New with Dir = DIR/pki), as the liste blanche lists it.
	CertDN string `json:"cert_dn"`
	// Relay is the host:port of its relay (port 25) listener.
	Relay string `json:"relay"`
}

// Info describes a running (or the last started) sandbox. It is written to Dir/sandbox.json.
type Info struct {
	Dir string `json:"dir"`
	// CAFile holds the test root and intermediate (PEM): trust it, and only in tests.
	CAFile string `json:"ca_file"`
	// CRLFile is the DER CRL of the test intermediate.
	CRLFile string `json:"crl_file"`
	// CRLURL serves the CRL of the test intermediate over HTTP: the distribution point
	// written in the sandbox's certificates, fetched by its connectors.
	CRLURL string `json:"crl_url,omitempty"`
	// WhitelistURL serves the signed liste blanche over HTTPS (server certificate of the test
	// PKI); WhitelistFile is the same document on disk; WhitelistSigner the DN of its signer.
	WhitelistURL    string `json:"whitelist_url"`
	WhitelistFile   string `json:"whitelist_file"`
	WhitelistSigner string `json:"whitelist_signer"`
	// Annuaire is the sample Extraction_Correspondance_MSSante file (PER and ORG BALs of the
	// sandbox, then synthetic entries).
	Annuaire string `json:"annuaire"`
	// SampleCDA and SamplePDF are a lettre de liaison (CDA R2 LDL-SES) and its PDF copy, made of
	// fictitious data (test INS), to send with "mssante send".
	SampleCDA string `json:"sample_cda"`
	SamplePDF string `json:"sample_pdf"`
	// Responder is the address of the test responder, "" when none runs.
	Responder string `json:"responder,omitempty"`
	// Operators are the connectors of the sandbox.
	Operators []*Operator `json:"operators"`
	// Extra are the operators outside the sandbox it trusts (Options.Extra).
	Extra []Extra `json:"extra,omitempty"`
	// HL7 gives the MLLP ports of the HL7v2 bridge "mssante dev" runs.
	HL7 *HL7 `json:"hl7,omitempty"`
	// API is the HTTP API "mssante dev" serves for the BAL applicatives.
	API *API `json:"api,omitempty"`
	// PSC is the sandbox's Pro Santé Connect stand-in, nil when none runs.
	PSC *PSC `json:"psc,omitempty"`
}

// PSC is the sandbox's OpenID provider: the connectors accept its tokens for ClientID.
type PSC struct {
	Issuer   string `json:"issuer"`
	TokenURL string `json:"token_url"`
	ClientID string `json:"client_id"`
	// Practitioners get a token with the client_credentials grant (ClientID and Secret in
	// HTTP Basic) and open the BALs they hold with it.
	Practitioners []*Practitioner `json:"practitioners"`
}

// Practitioner is a test health professional of the sandbox.
type Practitioner struct {
	ClientID   string   `json:"client_id"`
	Secret     string   `json:"secret"`
	NationalID string   `json:"national_id"`
	Operator   string   `json:"operator"`
	BALs       []string `json:"bals"` // their PER BAL first, then the ORG BALs they are a member of
}

// Operator is one connector of the sandbox.
type Operator struct {
	Name     string   `json:"name"`
	Domains  []string `json:"domains"`
	Hostname string   `json:"hostname"`
	// Listening addresses (host:port).
	Relay         string `json:"relay"`
	Submission    string `json:"submission"`     // STARTTLS
	SubmissionTLS string `json:"submission_tls"` // implicit TLS
	IMAP          string `json:"imap"`           // STARTTLS
	IMAPS         string `json:"imaps"`          // implicit TLS
	Metrics       string `json:"metrics"`
	// CertFile and KeyFile are the server certificate (SERV/SSL_SERV, chain) and key; CertDN
	// its subject DN as the liste blanche lists it.
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
	CertDN   string `json:"cert_dn"`
	// Config is the "mssante serve" configuration the connector runs with.
	Config string `json:"config"`
	BALs   []*BAL `json:"bals"`
}

// BAL is one mailbox of an operator. An APP BAL authenticates with its certificate (SASL
// EXTERNAL); PER and ORG BALs with a login (their address) and a password, over TLS.
type BAL struct {
	Address  string `json:"address"`
	Type     string `json:"type"`
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	CertDN   string `json:"cert_dn,omitempty"`
	Password string `json:"password,omitempty"`
}

// Load reads the description of the sandbox last started in dir.
func Load(dir string) (*Info, error) {
	b, err := os.ReadFile(filepath.Join(dir, File))
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w (is \"mssante dev\" running with this state folder?)", err)
	}
	var info Info
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, fmt.Errorf("sandbox: %s: %w", File, err)
	}
	return &info, nil
}

// BAL returns the BAL of the given address, or nil.
func (i *Info) BAL(addr string) *BAL {
	for _, o := range i.Operators {
		for _, b := range o.BALs {
			if strings.EqualFold(b.Address, addr) {
				return b
			}
		}
	}
	return nil
}

// Operator returns the operator that hosts domain, or nil.
func (i *Info) Operator(domain string) *Operator {
	for _, o := range i.Operators {
		for _, d := range o.Domains {
			if strings.EqualFold(d, domain) {
				return o
			}
		}
	}
	return nil
}

// OperatorOf returns the operator hosting the BAL addr, or nil.
func (i *Info) OperatorOf(addr string) *Operator {
	_, d, ok := strings.Cut(addr, "@")
	if !ok {
		return nil
	}
	return i.Operator(d)
}

// Trust returns a trust store holding the test PKI and its CRL, as a BAL or an operator of the
// sandbox trusts it.
func (i *Info) Trust() (*transport.TrustStore, error) {
	t, err := transport.LoadTrustStore(&transport.TrustOptions{NoIGCSanteRoot: true}, []string{i.CAFile}, []string{i.CRLFile})
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	return t, nil
}

// Whitelist verifies the signed liste blanche file of the sandbox against the test PKI and its
// CRL.
func (i *Info) Whitelist() (*whitelist.List, error) {
	t, err := i.Trust()
	if err != nil {
		return nil, err
	}
	l, err := t.VerifyWhitelistFile(i.WhitelistFile, &whitelist.VerifyOptions{Signer: i.WhitelistSigner})
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	return l, nil
}

// ClientTLS returns the TLS configuration a BAL uses towards its operator's servers (named
// serverName): its certificate when it has one, the test PKI as trust.
func (i *Info) ClientTLS(b *BAL, serverName string) (*tls.Config, error) {
	t, err := i.Trust()
	if err != nil {
		return nil, err
	}
	opts := &transport.TLSOptions{Trust: t}
	if b != nil && b.CertFile != "" {
		crt, err := tls.LoadX509KeyPair(b.CertFile, b.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
		opts.Certificates = []tls.Certificate{crt}
	}
	return transport.ClientConfig(nil, serverName, opts)
}
