package node

import (
	"errors"
	"fmt"
	"net"
)

// HL7Config is the [hl7] section: the HL7v2 bridge of one BAL applicative (package
// bal/hl7bridge), run by "mssante hl7 serve --config" from the same file. The bridge is a
// client of the BAL (submission and IMAP with the BAL's certificate), so the node does not run
// it itself; the section only lives here so that one serve.toml describes the whole platform.
type HL7Config struct {
	// Listen is the MLLP listener the DPI sends its MDM and ORU to; empty: no bridge.
	Listen string `toml:"listen"`
	// DPI is the DPI's MLLP endpoint, for the ZAM acknowledgements and the received
	// documents; empty: none are sent.
	DPI string `toml:"dpi"`
	// BAL is the address of the BAL applicative the mails leave from.
	BAL string `toml:"bal"`
	// Sandbox takes the BAL's connection from a "mssante dev" folder; otherwise Submission,
	// IMAP (host:port, STARTTLS), CertFile and KeyFile (the BAL's certificate), TrustFiles,
	// CRLFiles and WhitelistFile (the signed liste blanche) describe it.
	Sandbox       string   `toml:"sandbox"`
	Submission    string   `toml:"submission"`
	IMAP          string   `toml:"imap"`
	CertFile      string   `toml:"cert_file"`
	KeyFile       string   `toml:"key_file"`
	TrustFiles    []string `toml:"trust_files"`
	CRLFiles      []string `toml:"crl_files"`
	WhitelistFile string   `toml:"whitelist_file"`
	// StateDir holds the bal outbox and the bridge's journal.
	StateDir string `toml:"state_dir"`
	// MaxMessageBytes caps one HL7v2 message (default 32 MiB).
	MaxMessageBytes int `toml:"max_message_bytes"`
}

// Check reports what is missing or wrong in the section, all at once; nil when Listen is
// empty (no bridge).
func (h *HL7Config) Check() error {
	if h.Listen == "" {
		return nil
	}
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf("node: config: hl7."+f, a...)) }
	for name, v := range map[string]string{"listen": h.Listen, "dpi": h.DPI} {
		if v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			bad("%s %q is not host:port", name, v)
		}
	}
	if !isAddress(h.BAL) {
		bad("bal %q is not an address", h.BAL)
	}
	if h.StateDir == "" {
		bad("state_dir is required")
	}
	if h.Sandbox == "" {
		if h.Submission == "" || h.WhitelistFile == "" || h.CertFile == "" || h.KeyFile == "" {
			bad("submission, whitelist_file, cert_file and key_file are required without sandbox")
		}
	}
	if h.MaxMessageBytes < 0 {
		bad("max_message_bytes must not be negative")
	}
	return errors.Join(errs...)
}
