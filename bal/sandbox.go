package bal

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/mssante-go/sdk/internal/sandboxinfo"
	"github.com/mssante-go/sdk/whitelist"
)

// OptionsFromSandbox returns the Options of the BAL address in the local trust space that
// "mssante dev" keeps in the folder dir (./mssante-dev by default): it reads dir/sandbox.json,
// loads the test PKI and its CRL as the trust store, verifies the sandbox's signed liste
// blanche with them, and sets the operator's endpoints with their TLS modes (submission with
// STARTTLS, IMAP with implicit TLS). An APP BAL authenticates with its certificate and key
// (SASL EXTERNAL); a PER or ORG BAL with its password (SASL PLAIN).
//
// Set StateDir, and NIL for what the client sends, before New. The test PKI is trusted by the
// returned Options only: never use them outside tests and demonstrations. The error wraps
// fs.ErrNotExist when dir holds no trust space, ErrConfig when address is not one of its BALs.
func OptionsFromSandbox(dir, address string) (*Options, error) {
	info, err := sandboxinfo.Load(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("bal: no trust space in %s (start one with \"mssante dev\"): %w", dir, err)
		}
		return nil, fmt.Errorf("bal: %w", err)
	}
	b, op := info.BAL(address), info.OperatorOf(address)
	if b == nil || op == nil {
		var all []string
		for _, o := range info.Operators {
			for _, b := range o.BALs {
				all = append(all, b.Address)
			}
		}
		return nil, fmt.Errorf("%w: %s is not a BAL of the trust space in %s: use one of %s",
			ErrConfig, address, dir, strings.Join(all, ", "))
	}
	trust, err := info.Trust()
	if err != nil {
		return nil, fmt.Errorf("bal: %w", err)
	}
	// The same trust store, CRLs included, verifies the list's signature.
	wl, err := trust.VerifyWhitelistFile(info.WhitelistFile, &whitelist.VerifyOptions{Signer: info.WhitelistSigner})
	if err != nil {
		return nil, fmt.Errorf("bal: %s: %w", info.WhitelistFile, err)
	}
	o := &Options{
		Address:    b.Address,
		Submission: Endpoint{Addr: op.Submission, Security: StartTLS},
		IMAP:       Endpoint{Addr: op.IMAPS, Security: ImplicitTLS},
		Whitelist:  wl,
	}
	o.TLS.Trust = trust
	if b.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(b.CertFile, b.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("bal: certificate of %s: %w", b.Address, err)
		}
		o.TLS.Certificates = []tls.Certificate{cert}
	} else {
		o.Auth, o.Username, o.Password = AuthPlain, b.Address, b.Password
	}
	return o, nil
}
