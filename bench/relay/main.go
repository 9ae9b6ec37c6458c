// Command relay is the helper of bench/relay/run.sh, which measures the relay path of
// "mssante serve" against Postfix configured the same way (client certificate required, queue
// and Maildir on the same disk), with load from Postfix's smtp-source.
//
//	relay setup DIR        writes a test PKI, a signed whitelist and serve.toml (port
//	                       $SERVE_PORT, Maildir); with $SQLITE_PORT, serve-sqlite.toml (the
//	                       SQLite mailbox store); with $PG_PORT and $PG_DSN, serve-pg.toml
//	                       ([store] backend = "postgres")
//	relay port             prints a free loopback TCP port
//	relay proxy FLAGS      plaintext in, STARTTLS with our client certificate out, and the
//	                       accept latency of every message (end of DATA → reply) to a file
//
// smtp-source has no TLS: the proxy gives both servers the same mutual-TLS client, and the
// same latency measurement.
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/whitelist"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: relay setup DIR | relay proxy -listen ADDR -upstream ADDR -dir DIR -out FILE")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "setup":
		err = setup(os.Args[2])
	case "proxy":
		err = proxy(os.Args[2:])
	case "port":
		var l net.Listener
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err == nil {
			fmt.Println(l.Addr().(*net.TCPAddr).Port)
			l.Close()
		}
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
}

const (
	ourDomain  = "x.mssante.test"
	peerDomain = "a.mssante.test"
)

func setup(dir string) error {
	p, err := testpki.New(nil)
	if err != nil {
		return err
	}
	pki := filepath.Join(dir, "pki")
	if err := os.MkdirAll(pki, 0o755); err != nil {
		return err
	}
	server, err := p.Server("mx."+ourDomain, &testpki.LeafOptions{DNSNames: []string{"localhost"}})
	if err != nil {
		return err
	}
	client, err := p.Server("mx."+peerDomain, nil)
	if err != nil {
		return err
	}
	signer, err := p.Leaf(testpki.ProfileOrgSign, p.Subject("liste-blanche.test", nil), nil)
	if err != nil {
		return err
	}
	for name, l := range map[string]*testpki.Leaf{"server": server, "client": client} {
		if _, _, err := l.WriteFiles(pki, name); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(pki, "ca.pem"), append(p.RootPEM(), p.IntermediatePEM()...), 0o644); err != nil {
		return err
	}
	crl, err := p.CRL()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(pki, "ca.crl"), crl, 0o644); err != nil {
		return err
	}
	list := whitelist.NewList(time.Now(), []whitelist.Entry{
		{Domain: ourDomain, OperatorDNs: []string{transport.SubjectDN(server.Cert)}},
		{Domain: peerDomain, OperatorDNs: []string{transport.SubjectDN(client.Cert)}},
	})
	signed, err := whitelist.Sign(list, signer.Key, signer.Chain)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "whitelist.xml"), signed, 0o644); err != nil {
		return err
	}
	// The three nodes differ only in where the queue and the mail live.
	nodes := []struct{ file, name, port, store string }{
		{"serve.toml", "serve", os.Getenv("SERVE_PORT"), "[local]\nmaildir = \"" + dir + "/serve/maildir\"\n"},
		{"serve-sqlite.toml", "sqlite", os.Getenv("SQLITE_PORT"), "[mailbox]\ndir = \"" + dir + "/sqlite/mailbox\"\n"},
		{"serve-pg.toml", "pg", os.Getenv("PG_PORT"), fmt.Sprintf("[store]\nbackend = \"postgres\"\ndsn = %q\n", os.Getenv("PG_DSN"))},
	}
	for _, n := range nodes {
		if n.port == "" || n.name == "pg" && os.Getenv("PG_DSN") == "" {
			continue
		}
		cfg := fmt.Sprintf(`hostname = "mx.%[2]s"
domains = ["%[2]s"]
spool_dir = "%[1]s/%[5]s/spool"
[tls]
cert_file = "%[1]s/pki/server.crt.pem"
key_file = "%[1]s/pki/server.key.pem"
ca_files = ["%[1]s/pki/ca.pem"]
no_igc_sante_root = true
crl_files = ["%[1]s/pki/ca.crl"]
[whitelist]
file = "%[1]s/whitelist.xml"
signer = "%[3]s"
[relay]
listen = "127.0.0.1:%[4]s"
[submission]
listen = ""
listen_tls = ""
[imap]
listen = ""
listen_tls = ""
[[bal]]
address = "dr@%[2]s"
login = "dr"
%[6]s[limits]
max_connections_per_peer = 100
[audit]
dir = "%[1]s/%[5]s/audit"
[metrics]
listen = ""
[log]
level = "warn"
`, dir, ourDomain, transport.SubjectDN(signer.Cert), n.port, n.name, n.store)
		if err := os.WriteFile(filepath.Join(dir, n.file), []byte(cfg), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// proxy accepts plaintext SMTP clients and connects each to the upstream server with STARTTLS
// and our client certificate, then relays bytes both ways, recording for each message the time
// from the end-of-data marker to the reply.
func proxy(args []string) error {
	fs := flag.NewFlagSet("proxy", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "plaintext listen address")
	upstream := fs.String("upstream", "", "server address (STARTTLS)")
	dir := fs.String("dir", "", "setup directory (pki/)")
	out := fs.String("out", "", "latency file (microseconds, one a line)")
	fs.Parse(args)
	cert, err := tls.LoadX509KeyPair(filepath.Join(*dir, "pki", "client.crt.pem"), filepath.Join(*dir, "pki", "client.key.pem"))
	if err != nil {
		return err
	}
	pem, err := os.ReadFile(filepath.Join(*dir, "pki", "ca.pem"))
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: "localhost",
		MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(64)}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var lat []time.Duration
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
		<-sig
		mu.Lock()
		var b bytes.Buffer
		for _, d := range lat {
			fmt.Fprintln(&b, d.Microseconds())
		}
		mu.Unlock()
		os.WriteFile(*out, b.Bytes(), 0o644)
		os.Exit(0)
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			ds, err := handle(c, *upstream, tc)
			if err != nil {
				fmt.Fprintln(os.Stderr, "proxy:", err)
			}
			mu.Lock()
			lat = append(lat, ds...)
			mu.Unlock()
		}()
	}
}

func handle(client net.Conn, upstream string, tc *tls.Config) ([]time.Duration, error) {
	raw, err := net.Dial("tcp", upstream)
	if err != nil {
		return nil, err
	}
	defer raw.Close()
	br := bufio.NewReader(raw)
	reply := func() (string, error) {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return "", err
			}
			if len(line) < 4 || line[3] != '-' {
				return line, nil
			}
		}
	}
	if _, err := reply(); err != nil {
		return nil, err
	}
	fmt.Fprintf(raw, "EHLO proxy.test\r\n")
	if _, err := reply(); err != nil {
		return nil, err
	}
	fmt.Fprintf(raw, "STARTTLS\r\n")
	if l, err := reply(); err != nil || !strings.HasPrefix(l, "220") {
		return nil, fmt.Errorf("STARTTLS: %q %v", l, err)
	}
	up := tls.Client(raw, tc)
	if err := up.Handshake(); err != nil {
		return nil, err
	}
	fmt.Fprintf(client, "220 proxy.test ESMTP\r\n")
	// The client's EHLO goes upstream (a second EHLO after STARTTLS, as RFC 3207 asks).
	marks := make(chan time.Time, 1024)
	go func() {
		var tail []byte
		buf := make([]byte, 32<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				chunk := append(tail, buf[:n]...)
				if i := bytes.Index(chunk, []byte("\r\n.\r\n")); i >= 0 {
					marks <- time.Now()
				}
				if len(chunk) >= 4 {
					tail = append([]byte(nil), chunk[len(chunk)-4:]...)
				} else {
					tail = chunk
				}
				if _, werr := up.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		up.CloseWrite()
		close(marks)
	}()
	var out []time.Duration
	ur := bufio.NewReader(up)
	var pending []time.Time
	for {
		line, err := ur.ReadString('\n')
		if len(line) > 0 {
			if _, werr := io.WriteString(client, line); werr != nil {
				return out, nil
			}
		}
		if err != nil {
			return out, nil
		}
	drain:
		for {
			select {
			case t, ok := <-marks:
				if !ok {
					break drain
				}
				pending = append(pending, t)
			default:
				break drain
			}
		}
		if len(pending) > 0 && len(line) >= 4 && line[3] == ' ' {
			out = append(out, time.Since(pending[0]))
			pending = pending[1:]
		}
	}
}
