package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"time"
)

// Cipher suites of Réf. #2 ECO.1.1.3 that crypto/tls implements. 0xC028
// (TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384) is in the list too but Go does not implement it.

// DefaultCipherSuites returns the suites enabled by default: 0xC030 and 0xC02F. Each call
// returns a new slice, so a caller may change it without changing the suites of the process.
func DefaultCipherSuites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	}
}

// CBCCipherSuite is 0xC027, added by TLSOptions.AllowCBC: Go lists it among its insecure
// suites (CBC with HMAC-SHA256, Lucky13-style timing), so it is off unless a peer needs it.
const CBCCipherSuite uint16 = tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256

// TLSOptions configures ServerConfig and ClientConfig.
type TLSOptions struct {
	// Trust verifies the peer. nil = NewTrustStore(nil): the IGC-Santé root with CRLs required,
	// so nothing verifies until the CRL of the peer's CA is added.
	Trust *TrustStore
	// Certificates are our own certificate chains (the server's; the client certificate of a BAL
	// or relay). When empty, those of the base config are kept.
	Certificates []tls.Certificate
	// Time is the clock for certificate and CRL checks; nil = time.Now.
	Time func() time.Time
	// AllowCBC also enables 0xC027 (see CBCCipherSuite).
	AllowCBC bool
	// AllowTLS13 also accepts (server) or offers (client) TLS 1.3. The default is TLS 1.2 only,
	// as Réf. #2 ECO.1.1.2 asks of clients.
	AllowTLS13 bool
	// OptionalClientCert (server only) accepts clients without a certificate, for example BALs
	// authenticating with SASL; a certificate that is presented is still fully verified.
	OptionalClientCert bool
	// VerifyPeer, when set, runs after the peer's chain verified, with the verified chain (leaf
	// first), for checks of the caller such as the whitelist DN of a relay.
	VerifyPeer func(chain []*x509.Certificate) error
}

func (o *TLSOptions) defaults() TLSOptions {
	var r TLSOptions
	if o != nil {
		r = *o
	}
	if r.Trust == nil {
		r.Trust = NewTrustStore(nil)
	}
	if r.Time == nil {
		r.Time = time.Now
	}
	return r
}

func (o *TLSOptions) suites() []uint16 {
	s := DefaultCipherSuites()
	if o.AllowCBC {
		s = append(s, CBCCipherSuite)
	}
	return s
}

func (o *TLSOptions) maxVersion() uint16 {
	if o.AllowTLS13 {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// ServerConfig returns a clone of base (nil = empty) set up as an MSSanté server: TLS 1.2 (and
// 1.3 with AllowTLS13), the Réf. #2 cipher suites, a client certificate required and verified
// by the trust store for clientAuth at o.Time, including revocation. A client offering no
// acceptable version or suite is refused with ErrProtocolVersion or ErrCipherSuite, a client
// without certificate with ErrNoClientCert, a bad certificate with a *CertError: these are the
// errors the server's Handshake returns. The VerifyConnection callback of base still runs, after
// ours; a base with GetConfigForClient is refused, since the config it returns would replace
// these checks.
func ServerConfig(base *tls.Config, opts *TLSOptions) (*tls.Config, error) {
	o := opts.defaults()
	if base != nil && base.GetConfigForClient != nil {
		return nil, errorf("server config: a base GetConfigForClient would bypass client verification")
	}
	cfg := cloneConfig(base)
	if len(o.Certificates) > 0 {
		cfg.Certificates = o.Certificates
	}
	if len(cfg.Certificates) == 0 && cfg.GetCertificate == nil {
		return nil, errorf("server config: no server certificate")
	}
	cfg.MinVersion = tls.VersionTLS12
	cfg.MaxVersion = o.maxVersion()
	cfg.CipherSuites = o.suites()
	cfg.Time = o.Time
	// We verify the client chain ourselves in VerifyConnection so that every refusal has its
	// own error; crypto/tls still checks the client's proof of possession of its key.
	cfg.ClientAuth = tls.RequestClientCert
	cfg.ClientCAs = o.Trust.Roots() // only the hint sent in CertificateRequest
	baseVerify := cfg.VerifyConnection
	suites, allow13 := cfg.CipherSuites, o.AllowTLS13
	cfg.GetConfigForClient = func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
		err := checkHello(chi, suites, allow13)
		if err != nil && chi.Conn != nil {
			refusalAlert(chi.Conn, err)
		}
		return nil, err
	}
	trust, now, verifyPeer, optional := o.Trust, o.Time, o.VerifyPeer, o.OptionalClientCert
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			if !optional {
				return ErrNoClientCert
			}
		} else {
			chains, err := trust.Verify(cs.PeerCertificates, x509.ExtKeyUsageClientAuth, now())
			if err != nil {
				return err
			}
			if verifyPeer != nil {
				if err := verifyPeer(chains[0]); err != nil {
					return err
				}
			}
		}
		if baseVerify != nil {
			return baseVerify(cs)
		}
		return nil
	}
	return cfg, nil
}

// refusalAlert writes to the raw connection c the fatal alert that crypto/tls itself sends when
// it cannot negotiate (RFC 8446 §6.2): protocol_version (70) for ErrProtocolVersion, else
// handshake_failure (40). crypto/tls answers an error of GetConfigForClient with internal_error
// (80), which tells the client nothing and differs from what the servers configured without
// checkHello answer; the client reads this alert first, the internal_error that follows is
// ignored. The record carries version TLS 1.0, as crypto/tls writes before negotiation.
func refusalAlert(c net.Conn, err error) {
	desc := byte(40)
	if errors.Is(err, ErrProtocolVersion) {
		desc = 70
	}
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte{21, 3, 1, 0, 2, 2, desc}) // alert record: fatal, desc
	c.SetWriteDeadline(time.Time{})
}

// checkHello refuses a ClientHello that cannot negotiate with us, with a typed error.
func checkHello(chi *tls.ClientHelloInfo, suites []uint16, allow13 bool) error {
	if allow13 && slices.Contains(chi.SupportedVersions, tls.VersionTLS13) {
		return nil // TLS 1.3 suites are all acceptable
	}
	if !slices.Contains(chi.SupportedVersions, tls.VersionTLS12) {
		return ErrProtocolVersion
	}
	for _, s := range chi.CipherSuites {
		if slices.Contains(suites, s) {
			return nil
		}
	}
	return ErrCipherSuite
}

// ClientConfig returns a clone of base (nil = empty) set up as an MSSanté client towards
// serverName: TLS 1.2 only (1.3 too with AllowTLS13), the Réf. #2 cipher suites, our client
// certificate, and the server's chain verified by crypto/tls against the trust store's roots
// (a snapshot taken now) at o.Time for serverAuth and serverName, then checked for revocation
// against the store's CRLs (live). The server must send its intermediate. A base with
// InsecureSkipVerify is refused. Certificate errors come out of crypto/tls as
// *tls.CertificateVerificationError; [Dialer] and [TrustStore.ClassifyError] turn them into
// *CertError.
func ClientConfig(base *tls.Config, serverName string, opts *TLSOptions) (*tls.Config, error) {
	o := opts.defaults()
	if base != nil && base.InsecureSkipVerify {
		return nil, errorf("client config: InsecureSkipVerify is refused")
	}
	cfg := cloneConfig(base)
	if serverName != "" {
		cfg.ServerName = serverName
	}
	if cfg.ServerName == "" {
		return nil, errorf("client config: no server name to verify")
	}
	if len(o.Certificates) > 0 {
		cfg.Certificates = o.Certificates
	}
	cfg.MinVersion = tls.VersionTLS12
	cfg.MaxVersion = o.maxVersion()
	cfg.CipherSuites = o.suites()
	cfg.Time = o.Time
	cfg.RootCAs = o.Trust.Roots()
	baseVerify := cfg.VerifyConnection
	trust, now, verifyPeer := o.Trust, o.Time, o.VerifyPeer
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.VerifiedChains) == 0 {
			return ErrNoPeerCertificate // unreachable while crypto/tls verifies
		}
		chain := cs.VerifiedChains[0]
		if err := trust.checkRevocation(chain, now()); err != nil {
			return err
		}
		if verifyPeer != nil {
			if err := verifyPeer(chain); err != nil {
				return err
			}
		}
		if baseVerify != nil {
			return baseVerify(cs)
		}
		return nil
	}
	return cfg, nil
}

// PKCS12Certificate reads a PKCS#12 file (as IGC-Santé delivers the software certificate of a
// structure or BAL applicative) into a tls.Certificate with its chain, for TLSOptions.Certificates.
func PKCS12Certificate(data []byte, password string) (tls.Certificate, error) {
	key, leaf, chain, err := ParsePKCS12(data, password)
	if err != nil {
		return tls.Certificate{}, err
	}
	if key == nil || leaf == nil {
		return tls.Certificate{}, errorf("PKCS#12: no private key")
	}
	tc := tls.Certificate{PrivateKey: key, Leaf: leaf, Certificate: [][]byte{leaf.Raw}}
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc, nil
}

func cloneConfig(base *tls.Config) *tls.Config {
	if base == nil {
		return &tls.Config{}
	}
	return base.Clone()
}

// ClassifyError turns a certificate verification error of crypto/tls or crypto/x509 (as a
// client handshake returns it) into a *CertError with its reason (ErrUnknownAuthority,
// ErrBadSignature, ErrExpired, ErrNotYetValid, ErrWrongEKU, ErrHostname, ErrBadCertificate); at is
// the verification time. Other errors are returned unchanged.
func (s *TrustStore) ClassifyError(err error, at time.Time) error {
	return classify(err, at, s.knownIssuer, nil)
}
