package hl7bridge_test

import (
	"bytes"
	"crypto/tls"
	"net"
	"net/textproto"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/transport"
)

// patientRelay is the relay of the patients' domain outside the trust space: an SMTP server
// with STARTTLS that keeps each message it is given.
type patientRelay struct {
	l    net.Listener
	cert tls.Certificate
	mu   sync.Mutex
	got  [][]byte
}

func (p *patientRelay) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		go p.session(c)
	}
}

func (p *patientRelay) session(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	tp := textproto.NewConn(c)
	tp.PrintfLine("220 mx.%s ESMTP", mssante.PatientDomain)
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch verb {
		case "EHLO":
			if _, ok := c.(*tls.Conn); ok {
				tp.PrintfLine("250-mx\r\n250-8BITMIME\r\n250 SIZE 52428800")
			} else {
				tp.PrintfLine("250-mx\r\n250-8BITMIME\r\n250 STARTTLS")
			}
		case "STARTTLS":
			tp.PrintfLine("220 go ahead")
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{p.cert}, MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert})
			if tc.Handshake() != nil {
				return
			}
			c, tp = tc, textproto.NewConn(tc)
		case "MAIL", "RCPT", "RSET", "NOOP":
			tp.PrintfLine("250 ok")
		case "DATA":
			tp.PrintfLine("354 go on")
			body, err := tp.ReadDotBytes()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.got = append(p.got, body)
			p.mu.Unlock()
			tp.PrintfLine("250 kept")
		case "QUIT":
			tp.PrintfLine("221 bye")
			return
		default:
			tp.PrintfLine("502 not here")
		}
	}
}

func (p *patientRelay) wait(t *testing.T) []byte {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		p.mu.Lock()
		if len(p.got) > 0 {
			m := p.got[0]
			p.mu.Unlock()
			return m
		}
		p.mu.Unlock()
	}
	t.Fatal("no mail reached the patients' domain")
	return nil
}

// TestHL7BridgeEndOfMessaging: an NTE FIN under the DESTMSSANTEPAT OBX (CI-SIS Trans-CDA-R2,
// "Echange MSSanté Patient" and the MSSanté mapping) gives the mail to the patient the header
// X-MSS-MES: FIN; the same NTE in a mail to a professional alone, under DESTMSSANTEPAT or
// under another OBX, gives no such header.
func TestHL7BridgeEndOfMessaging(t *testing.T) {
	relay := &patientRelay{}
	e := startBridgeWith(t, nil, func(dir string) []sandbox.Extra {
		pki, err := testpki.New(&testpki.Options{Dir: filepath.Join(dir, "pki")})
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := pki.Server("mx."+mssante.PatientDomain, &testpki.LeafOptions{Org: "PATIENT DEV", DNSNames: []string{"localhost"}})
		if err != nil {
			t.Fatal(err)
		}
		if relay.l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		relay.cert = leaf.TLSCertificate()
		go relay.serve()
		t.Cleanup(func() { relay.l.Close() })
		return []sandbox.Extra{{Domain: mssante.PatientDomain, CertDN: transport.SubjectDN(leaf.Cert), Relay: relay.l.Addr().String()}}
	})
	patient := "279035121518989@" + mssante.PatientDomain
	const (
		destPat = "OBX|3|CWE|DESTMSSANTEPAT^Destinataire Patient^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F\r"
		fin     = "NTE|1|||FIN\r"
	)
	for _, tc := range []struct {
		id, to, extra string
	}{
		{"MES-1", patient, destPat + fin},
		{"MES-2", doc, destPat + fin},
		{"MES-3", doc, "OBX|3|CWE|DESTMSSANTEPS^Destinataire PS^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F\r" + fin},
	} {
		ack := send(t, e, append(mdm(t, tc.id, "279035121518989", tc.to), tc.extra...))
		if ack.Segment("MSA").Get(1, 1) != "AA" {
			out, _ := ack.Encode()
			t.Fatalf("%s: ACK %q", tc.id, out)
		}
	}
	if m := relay.wait(t); !bytes.Contains(m, []byte("\nX-MSS-MES: FIN\n")) {
		head, _, _ := bytes.Cut(m, []byte("\n\n"))
		t.Fatalf("mail to the patient without X-MSS-MES: FIN:\n%s", head)
	}
	for deadline := time.Now().Add(time.Minute); countMails(t, e, doc, "hl7-") < 2; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the mails to the professional did not arrive")
		}
	}
	if c := countMails(t, e, doc, "X-MSS-MES"); c != 0 {
		t.Fatalf("%d mails to a professional alone carry X-MSS-MES", c)
	}
}
