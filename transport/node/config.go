package node

import (
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultConfigTOML returns the documented configuration of "mssante serve", every setting
// with its default value.
func DefaultConfigTOML() string { return defaultConfigTOML }

//go:embed config.toml
var defaultConfigTOML string

// Config is the configuration of a whole node: the connector's mail path and what runs beside
// it. Each field is a table of the TOML file; DefaultConfigTOML documents every setting.
type Config struct {
	// Hostname is our host name: SMTP greeting, Received headers, Reporting-MTA of DSNs.
	Hostname string `toml:"hostname"`
	// Domains are the mail domains whose BALs this node hosts.
	Domains []string `toml:"domains"`
	// SpoolDir is the durable queue directory.
	SpoolDir string `toml:"spool_dir"`

	Node       NodeConfig       `toml:"node"`
	Store      StoreConfig      `toml:"store"`
	TLS        TLSConfig        `toml:"tls"`
	Whitelist  WhitelistConfig  `toml:"whitelist"`
	Relay      RelayConfig      `toml:"relay"`
	Submission SubmissionConfig `toml:"submission"`
	BALs       []BALConfig      `toml:"bal"`
	Local      LocalConfig      `toml:"local"`
	Mailbox    MailboxConfig    `toml:"mailbox"`
	IMAP       IMAPConfig       `toml:"imap"`
	Responder  ResponderConfig  `toml:"responder"`
	Delivery   DeliveryConfig   `toml:"delivery"`
	Queue      QueueConfig      `toml:"queue"`
	Limits     LimitsConfig     `toml:"limits"`
	Auth       AuthConfig       `toml:"auth"`
	PSC        PSCConfig        `toml:"psc"`
	Scanner    ScannerConfig    `toml:"scanner"`
	Audit      AuditConfig      `toml:"audit"`
	Metrics    MetricsConfig    `toml:"metrics"`
	Log        LogConfig        `toml:"log"`
	HL7        HL7Config        `toml:"hl7"`
	Annuaire   AnnuaireConfig   `toml:"annuaire"`
	API        APIConfig        `toml:"api"`
}

// TLSConfig is the table "tls": our IGC-Santé certificate, the trust and revocation of peer
// certificates, and the protocol choices of the ANS Réf. #2 (TLS 1.2 with ECDHE_RSA AES-GCM
// suites; TLS 1.3 and the CBC suite opt-in).
type TLSConfig struct {
	CertFile       string   `toml:"cert_file"`
	KeyFile        string   `toml:"key_file"`
	CAFiles        []string `toml:"ca_files"`
	NoIGCSanteRoot bool     `toml:"no_igc_sante_root"`
	CRLFiles       []string `toml:"crl_files"`
	// CRLURLs are fetched besides the CRL distribution points of the CAs and of our
	// certificate, every CRLRefreshInterval (0: no fetching), the last good CRLs kept in
	// CRLCacheDir (default: the spool's "crl" folder); CRLGrace is how long past its
	// nextUpdate a CRL is still used before revocation checking fails closed.
	CRLURLs            []string      `toml:"crl_urls"`
	CRLRefreshInterval time.Duration `toml:"crl_refresh_interval"`
	CRLCacheDir        string        `toml:"crl_cache_dir"`
	CRLGrace           time.Duration `toml:"crl_grace"`
	// CABundleURLs are CA bundles fetched with the CRLs (revocation.Options.BundleURLs).
	CABundleURLs []string `toml:"ca_bundle_urls"`
	// OCSP is "off", "ocsp_then_crl" or "both" (transport.OCSPPolicy); OCSPURL, when set, is
	// asked instead of the OCSP address of each certificate.
	OCSP    string `toml:"ocsp"`
	OCSPURL string `toml:"ocsp_url"`
	// Revocation is "required" or "best_effort".
	Revocation string `toml:"revocation"`
	AllowTLS13 bool   `toml:"allow_tls13"`
	AllowCBC   bool   `toml:"allow_cbc"`
}

// WhitelistConfig is the table "whitelist": the signed ANS liste blanche, from a local file
// or from a URL refreshed periodically (exactly one of File and URL).
type WhitelistConfig struct {
	File            string        `toml:"file"`
	URL             string        `toml:"url"`
	CacheFile       string        `toml:"cache_file"`
	RefreshInterval time.Duration `toml:"refresh_interval"`
	Signer          string        `toml:"signer"`
	UseListDate     bool          `toml:"use_list_date"`
}

// RelayConfig is the table "relay": the listener other operators deliver to (port 25).
type RelayConfig struct {
	Listen string `toml:"listen"`
	// RedeliveryWindow and RedeliveryMax bound how long, and for how many recipients, a
	// message handed over again by the same operator is recognised and stored only once
	// (queue.Options.RedeliveryWindow and RedeliveryMax); a window of 0 turns this off.
	RedeliveryWindow time.Duration `toml:"redelivery_window"`
	RedeliveryMax    int           `toml:"redelivery_max"`
}

// SubmissionConfig is the table "submission": the listeners our BALs submit to (587 STARTTLS,
// 465 implicit TLS), and whether AUTH PLAIN is offered besides SASL EXTERNAL.
type SubmissionConfig struct {
	Listen     string `toml:"listen"`
	ListenTLS  string `toml:"listen_tls"`
	AllowPlain bool   `toml:"allow_plain"`
	RequireNIL bool   `toml:"require_nil"`
}

// BALConfig is one [[bal]] entry: a BAL of our domains, authenticated by the DN of its client
// certificate (an applicative BAL) or by login and password.
type BALConfig struct {
	Address string `toml:"address"`
	// Type is PER, ORG or APP (default: APP with a CertDN, else ORG).
	Type     string `toml:"type"`
	CertDN   string `toml:"cert_dn"`
	Login    string `toml:"login"`
	Password string `toml:"password"`
}

// LocalConfig is the table "local": the Maildir local delivery writes to when the node has no
// mailbox store.
type LocalConfig struct {
	Maildir string `toml:"maildir"`
}

// MailboxConfig is the table "mailbox": the mailbox store of the BALs, with its default quota
// and retention, how often the retention purge runs, the durability of flag changes
// ("full" or "normal": mailbox.FlagSync) and how far back each folder's log of expunged UIDs
// reaches (mailbox.Options.ExpungeLog). Without Dir the node runs the mail path only.
type MailboxConfig struct {
	Dir              string        `toml:"dir"`
	DefaultQuota     int64         `toml:"default_quota"`
	DefaultRetention time.Duration `toml:"default_retention"`
	PurgeInterval    time.Duration `toml:"purge_interval"`
	FlagSync         string        `toml:"flag_sync"`
	ExpungeLog       int64         `toml:"expunge_log"`
}

// IMAPConfig is the table "imap": the IMAP listeners of the mailbox store (143 STARTTLS, 993
// implicit TLS) and the bounds of their connections (imapd.Options).
type IMAPConfig struct {
	Listen                   string        `toml:"listen"`
	ListenTLS                string        `toml:"listen_tls"`
	HandshakeTimeout         time.Duration `toml:"handshake_timeout"`
	LoginTimeout             time.Duration `toml:"login_timeout"`
	IdleTimeout              time.Duration `toml:"idle_timeout"`
	MaxConnections           int           `toml:"max_connections"`
	MaxConnectionsPerAddress int           `toml:"max_connections_per_address"`
}

// ResponderConfig is the table "responder": the BAL of the test responder (RFC 3834
// automatic replies), none when empty.
type ResponderConfig struct {
	Address string `toml:"address"`
}

// DeliveryConfig is the table "delivery": outbound delivery to the other operators (workers,
// connections per destination, static routes, timeouts).
type DeliveryConfig struct {
	Workers                  int               `toml:"workers"`
	MaxPerDestination        int               `toml:"max_per_destination"`
	Port                     int               `toml:"port"`
	Routes                   map[string]string `toml:"routes"`
	IdleTimeout              time.Duration     `toml:"idle_timeout"`
	MaxMessagesPerConnection int               `toml:"max_messages_per_connection"`
	ConnectTimeout           time.Duration     `toml:"connect_timeout"`
	CommandTimeout           time.Duration     `toml:"command_timeout"`
}

// QueueConfig is the table "queue": the retry schedule, when a message is given up (and
// bounced, RFC 3464) and when the sender gets a delay notice.
type QueueConfig struct {
	RetryFirst  time.Duration `toml:"retry_first"`
	RetryFactor float64       `toml:"retry_factor"`
	RetryMax    time.Duration `toml:"retry_max"`
	RetryJitter float64       `toml:"retry_jitter"`
	GiveUp      time.Duration `toml:"give_up"`
	DelayNotice time.Duration `toml:"delay_notice"`
	// Lease, on PostgreSQL, is how long a node holds a message it delivers without renewing
	// it: the messages of a node that died are taken over by the others after this long.
	Lease time.Duration `toml:"lease"`
}

// LimitsConfig is the table "limits": the bounds of the SMTP listeners.
type LimitsConfig struct {
	MaxMessageBytes       int64         `toml:"max_message_bytes"`
	MaxRecipients         int           `toml:"max_recipients"`
	MaxLineLength         int           `toml:"max_line_length"`
	ReadTimeout           time.Duration `toml:"read_timeout"`
	WriteTimeout          time.Duration `toml:"write_timeout"`
	MaxConnections        int           `toml:"max_connections"`
	MaxConnectionsPerPeer int           `toml:"max_connections_per_peer"`
	CommandTimeout        time.Duration `toml:"command_timeout"`
	DataTimeout           time.Duration `toml:"data_timeout"`
	SessionTimeout        time.Duration `toml:"session_timeout"`
	HandshakeTimeout      time.Duration `toml:"handshake_timeout"`
	// ShutdownGrace is how long a stop waits for SMTP sessions in a transaction to end
	// before cutting them (an unfinished DATA is then never acknowledged).
	ShutdownGrace time.Duration `toml:"shutdown_grace"`
}

// AuthConfig is the table "auth": the brake on password guessing shared by IMAP (LOGIN,
// AUTHENTICATE PLAIN) and submission (AUTH PLAIN); see transport/authlimit.
type AuthConfig struct {
	// AllowPasswords lets PER and ORG BALs log in with a password (IMAP LOGIN and PLAIN,
	// submission PLAIN with submission.allow_plain). Off by default: health professionals
	// open their BALs with a Pro Santé Connect token ([psc]).
	AllowPasswords         bool          `toml:"allow_passwords"`
	MaxConnectionFailures  int           `toml:"max_connection_failures"`
	FreeFailures           int           `toml:"free_failures"`
	FreeAddressFailures    int           `toml:"free_address_failures"`
	Delay                  time.Duration `toml:"delay"`
	MaxDelay               time.Duration `toml:"max_delay"`
	LockoutFailures        int           `toml:"lockout_failures"`
	LockoutAddressFailures int           `toml:"lockout_address_failures"`
	AccountFailures        int           `toml:"account_failures"`
	Window                 time.Duration `toml:"window"`
	MaxTracked             int           `toml:"max_tracked"`
}

// ScannerConfig is the table "scanner": the clamd socket ("unix:PATH" or "tcp:HOST:PORT",
// none when empty), its timeout, and whether a scanner failure is a temporary ("tempfail")
// or permanent ("reject") refusal.
type ScannerConfig struct {
	Clamd   string        `toml:"clamd"`
	Timeout time.Duration `toml:"timeout"`
	OnError string        `toml:"on_error"`
}

// NodeConfig is the table "node": this node among the nodes that serve the same domains
// behind one load balancer.
type NodeConfig struct {
	// Name names this node in the audit log (default: the machine's host name, which the
	// nodes of a cluster do not share, unlike Hostname).
	Name string `toml:"name"`
}

// AuditConfig is the table "audit": where the audit log is written, its rotation size and
// retention.
type AuditConfig struct {
	Dir       string        `toml:"dir"`
	MaxBytes  int64         `toml:"max_bytes"`
	Retention time.Duration `toml:"retention"`
}

// MetricsConfig is the table "metrics": the HTTP listener of /metrics, /healthz and /readyz,
// none when empty.
type MetricsConfig struct {
	Listen string `toml:"listen"`
}

// LogConfig is the table "log": the level (debug, info, warn, error) and format (text or
// json) of the operational log.
type LogConfig struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

// DefaultConfig returns the configuration of DefaultConfigTOML.
func DefaultConfig() *Config {
	var c Config
	if _, err := toml.Decode(defaultConfigTOML, &c); err != nil {
		panic("node: embedded config.toml: " + err.Error())
	}
	return &c
}

// LoadConfigFile reads the configuration file at path, as LoadConfig.
func LoadConfigFile(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return LoadConfig(f)
}

// LoadConfig reads a TOML configuration over the defaults and checks it. Unknown keys are
// errors (a typo must not silently leave a default in place).
func LoadConfig(r io.Reader) (*Config, error) {
	c := DefaultConfig()
	md, err := toml.NewDecoder(r).Decode(c)
	if err != nil {
		return nil, fmt.Errorf("node: config: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("node: config: unknown settings: %s", strings.Join(keys, ", "))
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) check() error {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf("node: config: "+f, a...)) }
	if c.Hostname == "" {
		bad("hostname is required")
	}
	if len(c.Domains) == 0 {
		bad("domains is required")
	}
	if c.SpoolDir == "" {
		bad("spool_dir is required")
	}
	if err := c.HL7.Check(); err != nil {
		errs = append(errs, err)
	}
	if err := c.API.check(); err != nil {
		errs = append(errs, err)
	}
	if c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
		bad("tls.cert_file and tls.key_file are required")
	}
	if r := c.TLS.Revocation; r != "required" && r != "best_effort" {
		bad("tls.revocation must be required or best_effort, not %q", r)
	}
	if o := c.TLS.OCSP; o != "off" && o != "ocsp_then_crl" && o != "both" {
		bad("tls.ocsp must be off, ocsp_then_crl or both, not %q", o)
	}
	if c.TLS.CRLRefreshInterval < 0 || c.TLS.CRLGrace < 0 {
		bad("tls.crl_refresh_interval and tls.crl_grace must not be negative")
	}
	if (c.Whitelist.File == "") == (c.Whitelist.URL == "") {
		bad("exactly one of whitelist.file and whitelist.url is required")
	}
	if o := c.Scanner.OnError; o != "tempfail" && o != "reject" {
		bad("scanner.on_error must be tempfail or reject, not %q", o)
	}
	if c.Scanner.Clamd != "" && !strings.HasPrefix(c.Scanner.Clamd, "unix:") && !strings.HasPrefix(c.Scanner.Clamd, "tcp:") {
		bad("scanner.clamd must start with unix: or tcp:")
	}
	for i, b := range c.BALs {
		if !isAddress(b.Address) {
			bad("bal[%d]: address %q is not an address", i, b.Address)
		}
		if b.CertDN == "" && b.Login == "" {
			bad("bal[%d]: cert_dn or login is required", i)
		}
	}
	for i, b := range c.BALs {
		if t := strings.ToUpper(b.Type); t != "" && t != "PER" && t != "ORG" && t != "APP" {
			bad("bal[%d]: type must be PER, ORG or APP, not %q", i, b.Type)
		}
	}
	if a := c.Auth; a.MaxConnectionFailures <= 0 || a.FreeFailures <= 0 || a.FreeAddressFailures <= 0 ||
		a.LockoutFailures <= 0 || a.LockoutAddressFailures <= 0 || a.AccountFailures <= 0 || a.MaxTracked <= 0 ||
		a.Delay <= 0 || a.MaxDelay < a.Delay || a.Window <= 0 {
		bad("auth: every setting must be positive, and max_delay at least delay")
	}
	if c.Submission.AllowPlain && !c.Auth.AllowPasswords {
		bad("submission.allow_plain needs auth.allow_passwords = true (passwords are off for PER and ORG BALs)")
	}
	errs = append(errs, c.PSC.check()...)
	errs = append(errs, c.Store.check()...)
	if c.Queue.Lease <= 0 {
		bad("queue.lease must be positive")
	}
	if c.Store.Postgres() && c.Mailbox.Dir != "" {
		bad("mailbox.dir is the SQLite store's folder: leave it empty with store.backend = \"postgres\" (mssante store copy moves its mail)")
	}
	if c.Relay.RedeliveryWindow < 0 || c.Relay.RedeliveryMax <= 0 {
		bad("relay.redelivery_window must not be negative, relay.redelivery_max must be positive")
	}
	if c.Limits.ShutdownGrace < 0 {
		bad("limits.shutdown_grace must not be negative")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"limits.read_timeout", c.Limits.ReadTimeout}, {"limits.command_timeout", c.Limits.CommandTimeout},
		{"limits.data_timeout", c.Limits.DataTimeout}, {"limits.session_timeout", c.Limits.SessionTimeout},
		{"limits.handshake_timeout", c.Limits.HandshakeTimeout}, {"imap.handshake_timeout", c.IMAP.HandshakeTimeout},
		{"imap.login_timeout", c.IMAP.LoginTimeout}, {"imap.idle_timeout", c.IMAP.IdleTimeout}} {
		if d.v < 0 {
			bad("%s must not be negative", d.name)
		}
	}
	if c.Mailbox.DefaultQuota < 0 || c.Mailbox.DefaultRetention < 0 {
		bad("mailbox.default_quota and mailbox.default_retention must not be negative")
	}
	if c.mailboxSide() && c.Mailbox.PurgeInterval <= 0 {
		bad("mailbox.purge_interval must be positive")
	}
	if f := c.Mailbox.FlagSync; f != "full" && f != "normal" {
		bad("mailbox.flag_sync must be full or normal, not %q", f)
	}
	if c.Mailbox.ExpungeLog <= 0 {
		bad("mailbox.expunge_log must be positive")
	}
	if c.Annuaire.Dir != "" && !c.mailboxSide() {
		bad("annuaire needs mailbox.dir (the BALs reconciled are those of the mailbox store)")
	}
	if c.Annuaire.Dir != "" && c.Annuaire.RefreshInterval <= 0 {
		bad("annuaire.refresh_interval must be positive")
	}
	if !c.mailboxSide() && c.PSC.Issuer != "" {
		bad("psc needs mailbox.dir (the BALs a person holds are in the mailbox store)")
	}
	if !c.mailboxSide() && (c.IMAP.Listen != "" || c.IMAP.ListenTLS != "" || c.Responder.Address != "") {
		bad("imap and responder need mailbox.dir")
	}
	if a := c.Responder.Address; a != "" && !isAddress(a) {
		bad("responder.address %q is not an address", a)
	}
	if c.Audit.Dir == "" {
		bad("audit.dir is required")
	}
	return errors.Join(errs...)
}

// isAddress reports whether a has the local@domain form of a BAL address.
func isAddress(a string) bool {
	i := strings.LastIndexByte(a, '@')
	return i > 0 && i < len(a)-1
}
