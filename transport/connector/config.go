package connector

import (
	_ "embed"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultConfigTOML returns the documented configuration of "mssante serve", every setting with
// its default value.
func DefaultConfigTOML() string { return defaultConfigTOML }

//go:embed config.toml
var defaultConfigTOML string

// Config is the configuration of a whole connector (see DefaultConfigTOML for each field).
type Config struct {
	Hostname string   `toml:"hostname"`
	Domains  []string `toml:"domains"`
	SpoolDir string   `toml:"spool_dir"`

	TLS struct {
		CertFile       string   `toml:"cert_file"`
		KeyFile        string   `toml:"key_file"`
		CAFiles        []string `toml:"ca_files"`
		NoIGCSanteRoot bool     `toml:"no_igc_sante_root"`
		CRLFiles       []string `toml:"crl_files"`
		Revocation     string   `toml:"revocation"`
		AllowTLS13     bool     `toml:"allow_tls13"`
		AllowCBC       bool     `toml:"allow_cbc"`
	} `toml:"tls"`

	Whitelist struct {
		File            string        `toml:"file"`
		URL             string        `toml:"url"`
		CacheFile       string        `toml:"cache_file"`
		RefreshInterval time.Duration `toml:"refresh_interval"`
		Signer          string        `toml:"signer"`
		UseListDate     bool          `toml:"use_list_date"`
	} `toml:"whitelist"`

	Relay struct {
		Listen string `toml:"listen"`
	} `toml:"relay"`

	Submission struct {
		Listen     string `toml:"listen"`
		ListenTLS  string `toml:"listen_tls"`
		AllowPlain bool   `toml:"allow_plain"`
	} `toml:"submission"`

	BALs []struct {
		Address  string `toml:"address"`
		Type     string `toml:"type"`
		CertDN   string `toml:"cert_dn"`
		Login    string `toml:"login"`
		Password string `toml:"password"`
	} `toml:"bal"`

	Local struct {
		Maildir string `toml:"maildir"`
	} `toml:"local"`

	// Mailbox, IMAP and Responder are run by the node beside the connector (transport/node).
	Mailbox struct {
		Dir              string        `toml:"dir"`
		DefaultQuota     int64         `toml:"default_quota"`
		DefaultRetention time.Duration `toml:"default_retention"`
		PurgeInterval    time.Duration `toml:"purge_interval"`
	} `toml:"mailbox"`

	IMAP struct {
		Listen    string `toml:"listen"`
		ListenTLS string `toml:"listen_tls"`
	} `toml:"imap"`

	Responder struct {
		Address string `toml:"address"`
	} `toml:"responder"`

	Delivery struct {
		Workers                  int               `toml:"workers"`
		MaxPerDestination        int               `toml:"max_per_destination"`
		Port                     int               `toml:"port"`
		Routes                   map[string]string `toml:"routes"`
		IdleTimeout              time.Duration     `toml:"idle_timeout"`
		MaxMessagesPerConnection int               `toml:"max_messages_per_connection"`
		ConnectTimeout           time.Duration     `toml:"connect_timeout"`
		CommandTimeout           time.Duration     `toml:"command_timeout"`
	} `toml:"delivery"`

	Queue struct {
		RetryFirst  time.Duration `toml:"retry_first"`
		RetryFactor float64       `toml:"retry_factor"`
		RetryMax    time.Duration `toml:"retry_max"`
		RetryJitter float64       `toml:"retry_jitter"`
		GiveUp      time.Duration `toml:"give_up"`
		DelayNotice time.Duration `toml:"delay_notice"`
	} `toml:"queue"`

	Limits struct {
		MaxMessageBytes       int64         `toml:"max_message_bytes"`
		MaxRecipients         int           `toml:"max_recipients"`
		MaxLineLength         int           `toml:"max_line_length"`
		ReadTimeout           time.Duration `toml:"read_timeout"`
		WriteTimeout          time.Duration `toml:"write_timeout"`
		MaxConnections        int           `toml:"max_connections"`
		MaxConnectionsPerPeer int           `toml:"max_connections_per_peer"`
		// ShutdownGrace is how long a stop waits for SMTP sessions in a transaction to end
		// before cutting them (an unfinished DATA is then never acknowledged).
		ShutdownGrace time.Duration `toml:"shutdown_grace"`
	} `toml:"limits"`

	Scanner struct {
		Clamd   string        `toml:"clamd"`
		Timeout time.Duration `toml:"timeout"`
		OnError string        `toml:"on_error"`
	} `toml:"scanner"`

	Audit struct {
		Dir       string        `toml:"dir"`
		MaxBytes  int64         `toml:"max_bytes"`
		Retention time.Duration `toml:"retention"`
	} `toml:"audit"`

	Metrics struct {
		Listen string `toml:"listen"`
	} `toml:"metrics"`

	Log struct {
		Level  string `toml:"level"`
		Format string `toml:"format"`
	} `toml:"log"`
}

// DefaultConfig returns the configuration of DefaultConfigTOML.
func DefaultConfig() *Config {
	var c Config
	if _, err := toml.Decode(defaultConfigTOML, &c); err != nil {
		panic("connector: embedded config.toml: " + err.Error())
	}
	return &c
}

// LoadConfig reads a TOML configuration over the defaults and checks it. Unknown keys are
// errors (a typo must not silently leave a default in place).
func LoadConfig(r io.Reader) (*Config, error) {
	c := DefaultConfig()
	md, err := toml.NewDecoder(r).Decode(c)
	if err != nil {
		return nil, fmt.Errorf("connector: config: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("connector: config: unknown settings: %s", strings.Join(keys, ", "))
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) check() error {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf("connector: config: "+f, a...)) }
	if c.Hostname == "" {
		bad("hostname is required")
	}
	if len(c.Domains) == 0 {
		bad("domains is required")
	}
	if c.SpoolDir == "" {
		bad("spool_dir is required")
	}
	if c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
		bad("tls.cert_file and tls.key_file are required")
	}
	if r := c.TLS.Revocation; r != "required" && r != "best_effort" {
		bad("tls.revocation must be required or best_effort, not %q", r)
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
		if domainOf(b.Address) == "" {
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
	if c.Limits.ShutdownGrace < 0 {
		bad("limits.shutdown_grace must not be negative")
	}
	if c.Mailbox.DefaultQuota < 0 || c.Mailbox.DefaultRetention < 0 {
		bad("mailbox.default_quota and mailbox.default_retention must not be negative")
	}
	if c.Mailbox.Dir != "" && c.Mailbox.PurgeInterval <= 0 {
		bad("mailbox.purge_interval must be positive")
	}
	if c.Mailbox.Dir == "" && (c.IMAP.Listen != "" || c.IMAP.ListenTLS != "" || c.Responder.Address != "") {
		bad("imap and responder need mailbox.dir")
	}
	if a := c.Responder.Address; a != "" && domainOf(a) == "" {
		bad("responder.address %q is not an address", a)
	}
	if c.Audit.Dir == "" {
		bad("audit.dir is required")
	}
	return errors.Join(errs...)
}
