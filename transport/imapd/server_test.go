package imapd

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/mailbox"
)

const (
	appBAL = "dpi@hopital.test.mssante.fr"
	orgBAL = "cardio@hopital.test.mssante.fr"
	orgPW  = "correct horse"
)

// testStore is what the tests call on the store: a mailbox.Store with the members of ORG
// BALs, which both the SQLite and the PostgreSQL store have.
type testStore interface {
	mailbox.Store
	AddMember(ctx context.Context, bal, nationalID string) error
	BALsHeldBy(ctx context.Context, nationalID string) ([]string, error)
}

type env struct {
	store      testStore
	srv        *Server
	pki        *testpki.PKI
	tlsAddr    string // implicit TLS (993)
	plainAddr  string // STARTTLS (143)
	clientCert tls.Certificate
	dir        string
}

var (
	pkiOnce sync.Once
	pkiVal  *testpki.PKI
	pkiErr  error
)

func newEnv(t *testing.T) *env { t.Helper(); return newEnvWith(t, nil) }

// newEnvWith is newEnv with a hook to change the server options before it starts.
func newEnvWith(t *testing.T, configure func(*Options)) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := mailbox.OpenSQLite(context.Background(), filepath.Join(dir, "store"), &mailbox.Options{WatchPoll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return newEnvOn(t, st, dir, configure)
}

// newEnvOn starts the servers on an open, empty store, whose BALs it adds.
func newEnvOn(t *testing.T, st testStore, dir string, configure func(*Options)) *env {
	t.Helper()
	pkiOnce.Do(func() { pkiVal, pkiErr = testpki.New(&testpki.Options{}) })
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	pki := pkiVal
	ctx := context.Background()
	e := &env{pki: pki, dir: dir, store: st}
	client, err := pki.Org(appBAL, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.clientCert = client.TLSCertificate()
	if err := st.AddBAL(ctx, &mailbox.BAL{Address: appBAL, Type: mailbox.APP, CertDN: transport.SubjectDN(client.Cert)}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddBAL(ctx, &mailbox.BAL{Address: orgBAL, Type: mailbox.ORG}); err != nil {
		t.Fatal(err)
	}
	st.SetPassword(ctx, orgBAL, orgPW)
	server, err := pki.Server("localhost", nil)
	if err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{
		Certificates: []tls.Certificate{server.TLSCertificate()},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pki.Roots(),
		MinVersion:   tls.VersionTLS12,
	}
	opts := &Options{Store: st, TLSConfig: tc, IdlePoll: time.Hour}
	if configure != nil {
		configure(opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	l1, _ := net.Listen("tcp", "127.0.0.1:0")
	l2, _ := net.Listen("tcp", "127.0.0.1:0")
	e.tlsAddr, e.plainAddr = l1.Addr().String(), l2.Addr().String()
	done := make(chan error, 2)
	go func() { done <- srv.ServeTLS(l1) }()
	go func() { done <- srv.Serve(l2) }()
	t.Cleanup(func() {
		srv.Close()
		for i := 0; i < 2; i++ {
			if err := <-done; !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve = %v", err)
			}
		}
	})
	return e
}

func (e *env) clientTLS(withCert bool) *tls.Config {
	c := &tls.Config{RootCAs: e.pki.Roots(), ServerName: "localhost"}
	if withCert {
		c.Certificates = []tls.Certificate{e.clientCert}
	}
	return c
}

func (e *env) dialApp(t *testing.T, opts *imapclient.Options) *imapclient.Client {
	t.Helper()
	if opts == nil {
		opts = &imapclient.Options{}
	}
	opts.TLSConfig = e.clientTLS(true)
	c, err := imapclient.DialTLS(e.tlsAddr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Authenticate(sasl.NewExternalClient("")); err != nil {
		t.Fatalf("EXTERNAL: %v", err)
	}
	return c
}

func testMessage(i int, extra string) string {
	return fmt.Sprintf("From: Emetteur <emetteur@autre.test.mssante.fr>\r\nTo: %s\r\nSubject: message %d%s\r\nDate: Mon, 02 Nov 2026 10:00:00 +0100\r\nMessage-ID: <m%d@test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\ncorps numero %d\r\n--XX\r\nContent-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n\r\nUEsDBA==\r\n--XX--\r\n", appBAL, i, extra, i, i)
}

func appendMsg(t *testing.T, c *imapclient.Client, box, msg string, flags ...imap.Flag) *imap.AppendData {
	t.Helper()
	cmd := c.Append(box, int64(len(msg)), &imap.AppendOptions{Flags: flags})
	cmd.Write([]byte(msg))
	cmd.Close()
	d, err := cmd.Wait()
	if err != nil {
		t.Fatalf("APPEND: %v", err)
	}
	return d
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t)
	t.Run("EXTERNAL over implicit TLS", func(t *testing.T) {
		c := e.dialApp(t, nil)
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("EXTERNAL over STARTTLS", func(t *testing.T) {
		c, err := imapclient.DialStartTLS(e.plainAddr, &imapclient.Options{TLSConfig: e.clientTLS(true)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Authenticate(sasl.NewExternalClient(appBAL)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("PLAIN over TLS", func(t *testing.T) {
		c, err := imapclient.DialTLS(e.tlsAddr, &imapclient.Options{TLSConfig: e.clientTLS(false)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Login(orgBAL, orgPW).Wait(); err != nil {
			t.Fatal(err)
		}
		if err := c.Authenticate(sasl.NewPlainClient("", orgBAL, orgPW)); err == nil {
			t.Fatal("second authentication accepted")
		}
	})
	// external dials the implicit-TLS listener with cfg and authenticates with EXTERNAL.
	external := func(cfg *tls.Config, authz string) error {
		c, err := imapclient.DialTLS(e.tlsAddr, &imapclient.Options{TLSConfig: cfg})
		if err != nil {
			return err
		}
		defer c.Close()
		return c.Authenticate(sasl.NewExternalClient(authz))
	}
	refusals := []struct {
		name string
		run  func() error
	}{
		{"EXTERNAL without certificate", func() error { return external(e.clientTLS(false), "") }},
		{"EXTERNAL with a certificate bound to no BAL", func() error {
			other, _ := e.pki.Org("inconnu@hopital.test.mssante.fr", nil)
			return external(withCert(e.clientTLS(false), other), "")
		}},
		{"EXTERNAL with another BAL as authorization identity", func() error { return external(e.clientTLS(true), orgBAL) }},
		{"certificate from a foreign CA", func() error {
			rogue, _ := e.pki.Org(appBAL, &testpki.LeafOptions{ForeignCA: true})
			return external(withCert(e.clientTLS(false), rogue), "")
		}},
		{"self-signed certificate with the registered subject", func() error {
			rogue, _ := e.pki.Org(appBAL, &testpki.LeafOptions{SelfSigned: true})
			return external(withCert(e.clientTLS(false), rogue), "")
		}},
		{"PLAIN wrong password", func() error {
			c, err := imapclient.DialTLS(e.tlsAddr, &imapclient.Options{TLSConfig: e.clientTLS(false)})
			if err != nil {
				return err
			}
			defer c.Close()
			return c.Login(orgBAL, "wrong").Wait()
		}},
		{"PLAIN before STARTTLS", func() error {
			c, err := imapclient.DialInsecure(e.plainAddr, nil)
			if err != nil {
				return err
			}
			defer c.Close()
			if !c.Caps().Has(imap.CapLoginDisabled) {
				t.Error("LOGINDISABLED not announced before STARTTLS")
			}
			return c.Login(orgBAL, orgPW).Wait()
		}},
		{"TLS 1.1", func() error {
			cfg := e.clientTLS(true)
			cfg.MaxVersion = tls.VersionTLS11
			c, err := imapclient.DialTLS(e.tlsAddr, &imapclient.Options{TLSConfig: cfg})
			if err != nil {
				return err
			}
			defer c.Close()
			return c.Authenticate(sasl.NewExternalClient(""))
		}},
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			if err := r.run(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestMailboxCommands(t *testing.T) {
	e := newEnv(t)
	c := e.dialApp(t, nil)
	for i := 1; i <= 3; i++ {
		d := appendMsg(t, c, "INBOX", testMessage(i, ""))
		if d.UID != imap.UID(i) || d.UIDValidity == 0 {
			t.Fatalf("APPENDUID = %+v", d)
		}
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 3 || sel.UIDNext != 4 {
		t.Fatalf("SELECT = %+v, %v", sel, err)
	}
	// FETCH: whole message, header, text of part 1, envelope, structure
	msgs, err := c.Fetch(imap.SeqSetNum(2), &imap.FetchOptions{
		UID: true, Flags: true, Envelope: true, RFC822Size: true, BodyStructure: &imap.FetchItemBodyStructure{},
		BodySection: []*imap.FetchItemBodySection{
			{Peek: true},
			{Specifier: imap.PartSpecifierHeader, Peek: true},
			{Part: []int{1}, Peek: true},
			{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}, Peek: true},
		},
	}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("FETCH = %v, %v", msgs, err)
	}
	m := msgs[0]
	if got := string(m.FindBodySection(&imap.FetchItemBodySection{})); got != testMessage(2, "") {
		t.Fatalf("BODY[] = %q", got)
	}
	if got := string(m.FindBodySection(&imap.FetchItemBodySection{Part: []int{1}})); got != "corps numero 2" {
		t.Fatalf("BODY[1] = %q", got)
	}
	if got := string(m.FindBodySection(&imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}})); got != "Subject: message 2\r\n\r\n" {
		t.Fatalf("HEADER.FIELDS = %q", got)
	}
	if m.Envelope == nil || m.Envelope.Subject != "message 2" || m.Envelope.MessageID != "m2@test" {
		t.Fatalf("ENVELOPE = %+v", m.Envelope)
	}
	if mp, ok := m.BodyStructure.(*imap.BodyStructureMultiPart); !ok || len(mp.Children) != 2 {
		t.Fatalf("BODYSTRUCTURE = %#v", m.BodyStructure)
	}
	if m.RFC822Size != int64(len(testMessage(2, ""))) || fmt.Sprint(m.Flags) != `[\Recent]` {
		t.Fatalf("size %d flags %v", m.RFC822Size, m.Flags)
	}
	// non-peek fetch sets \Seen
	msgs, _ = c.Fetch(imap.UIDSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Part: []int{1}}}}).Collect()
	if len(msgs) != 1 || !hasFlag(msgs[0].Flags, imap.FlagSeen) {
		t.Fatalf("\\Seen not set by FETCH BODY[1]: %+v", msgs)
	}
	// SEARCH
	search := func(cr *imap.SearchCriteria) []imap.UID {
		d, err := c.UIDSearch(cr, nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		return d.AllUIDs()
	}
	if got := search(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}); fmt.Sprint(got) != "[2 3]" {
		t.Fatalf("UNSEEN = %v", got)
	}
	if got := search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "MESSAGE 3"}}}); fmt.Sprint(got) != "[3]" {
		t.Fatalf("HEADER = %v", got)
	}
	if got := search(&imap.SearchCriteria{Body: []string{"numero 2"}}); fmt.Sprint(got) != "[2]" {
		t.Fatalf("BODY = %v", got)
	}
	if got := search(&imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Text: []string{"message 1"}}, {UID: []imap.UIDSet{imap.UIDSetNum(3)}}}}}); fmt.Sprint(got) != "[1 3]" {
		t.Fatalf("OR = %v", got)
	}
	if got := search(&imap.SearchCriteria{SentSince: time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)}); len(got) != 0 {
		t.Fatalf("SENTSINCE = %v", got)
	}
	// STORE, COPY, MOVE, EXPUNGE
	stored, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "$Urgent"}}, nil).Collect()
	if err != nil || len(stored) != 1 || !hasFlag(stored[0].Flags, "$Urgent") || !hasFlag(stored[0].Flags, imap.FlagFlagged) {
		t.Fatalf("STORE answer = %+v, %v", stored, err)
	}
	if err := c.Create("Traites", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	cd, err := c.Copy(imap.SeqSetNum(1), "Traites").Wait()
	if err != nil || cd.DestUIDs.String() != "1" || cd.SourceUIDs.String() != "1" {
		t.Fatalf("COPY = %+v, %v", cd, err)
	}
	if _, err := c.Copy(imap.SeqSetNum(1), "Absent").Wait(); err == nil || !strings.Contains(err.Error(), "TRYCREATE") {
		t.Fatalf("COPY to missing mailbox: %v", err)
	}
	md, err := c.Move(imap.UIDSetNum(2), "Traites").Wait()
	if err != nil || md.DestUIDs.String() != "2" {
		t.Fatalf("MOVE = %+v, %v", md, err)
	}
	if c.Mailbox().NumMessages != 2 {
		t.Fatalf("after MOVE: %d messages", c.Mailbox().NumMessages)
	}
	c.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	exp, err := c.Expunge().Collect()
	if err != nil || fmt.Sprint(exp) != "[1]" {
		t.Fatalf("EXPUNGE = %v, %v", exp, err)
	}
	st, err := c.Status("Traites", &imap.StatusOptions{NumMessages: true, UIDNext: true, NumUnseen: true}).Wait()
	if err != nil || *st.NumMessages != 2 || st.UIDNext != 3 || *st.NumUnseen != 1 {
		t.Fatalf("STATUS = %+v, %v", st, err)
	}
	msgs, _ = c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if len(msgs) != 1 || msgs[0].UID != 3 || string(msgs[0].FindBodySection(&imap.FetchItemBodySection{})) != testMessage(3, "") {
		t.Fatalf("remaining message: %+v", msgs)
	}
	list, err := c.List("", "*", nil).Collect()
	if err != nil || len(list) != 2 {
		t.Fatalf("LIST = %+v, %v", list, err)
	}
	// EXAMINE is read-only
	if _, err := c.Select("Traites", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err == nil {
		t.Fatal("STORE accepted in EXAMINE")
	}
}

func TestQuota(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.store.AddBAL(ctx, &mailbox.BAL{Address: "petit@hopital.test.mssante.fr", Type: mailbox.ORG, QuotaBytes: 1000})
	e.store.SetPassword(ctx, "petit@hopital.test.mssante.fr", "pw")
	c, err := imapclient.DialTLS(e.tlsAddr, &imapclient.Options{TLSConfig: e.clientTLS(false)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("petit@hopital.test.mssante.fr", "pw").Wait(); err != nil {
		t.Fatal(err)
	}
	small := testMessage(1, "")
	appendMsg(t, c, "INBOX", small)
	big := small + strings.Repeat("x", 1000)
	cmd := c.Append("INBOX", int64(len(big)), nil)
	cmd.Write([]byte(big))
	cmd.Close()
	if _, err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "OVERQUOTA") {
		t.Fatalf("APPEND over quota: %v", err)
	}
	cmd = c.Append("Absent", int64(len(small)), nil)
	cmd.Write([]byte(small))
	cmd.Close()
	if _, err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "TRYCREATE") {
		t.Fatalf("APPEND to a missing mailbox: %v", err)
	}
	// the APP BAL's folders are not visible to another BAL
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait(); st == nil || *st.NumMessages != 1 {
		t.Fatalf("STATUS = %+v", st)
	}
}

func hasFlag(fs []imap.Flag, f imap.Flag) bool {
	for _, x := range fs {
		if strings.EqualFold(string(x), string(f)) {
			return true
		}
	}
	return false
}

// TestConcurrentSessions checks that a session sees the EXISTS, FETCH FLAGS and EXPUNGE of
// changes made by another session and by local delivery, both while idle and on NOOP.
func TestConcurrentSessions(t *testing.T) {
	e := newEnv(t)
	type update struct {
		kind string
		n    uint32
	}
	updates := make(chan update, 100)
	a := e.dialApp(t, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) { updates <- update{"EXPUNGE", seq} },
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				updates <- update{"EXISTS", *d.NumMessages}
			}
		},
		Fetch: func(m *imapclient.FetchMessageData) {
			buf, _ := m.Collect()
			if buf != nil && hasFlag(buf.Flags, imap.FlagFlagged) {
				updates <- update{"FLAGGED", m.SeqNum}
			}
		},
	}})
	b := e.dialApp(t, nil)
	appendMsg(t, b, "INBOX", testMessage(1, ""))
	if _, err := a.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	expect := func(want update) {
		t.Helper()
		select {
		case got := <-updates:
			if got != want {
				t.Fatalf("update = %+v, want %+v", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %+v", want)
		}
	}
	idle, err := a.Idle()
	if err != nil {
		t.Fatal(err)
	}
	appendMsg(t, b, "INBOX", testMessage(2, ""))
	expect(update{"EXISTS", 2})
	// local delivery through the store, as the queue does
	if _, err := e.store.Append(context.Background(), appBAL, "INBOX", strings.NewReader(testMessage(3, "")), &mailbox.AppendOptions{DeliveryID: "q1"}); err != nil {
		t.Fatal(err)
	}
	expect(update{"EXISTS", 3})
	b.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close()
	expect(update{"FLAGGED", 2})
	b.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	if _, err := b.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	expect(update{"EXPUNGE", 1})
	idle.Close()
	idle.Wait()
	// without IDLE: the updates come with the next command
	appendMsg(t, b, "INBOX", testMessage(4, ""))
	if err := a.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	expect(update{"EXISTS", 3})
	if n := a.Mailbox().NumMessages; n != 3 {
		t.Fatalf("a sees %d messages", n)
	}
	// an EXPUNGE is not sent during FETCH: the numbering stays stable until NOOP
	b.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	b.Expunge().Collect()
	msgs, err := a.Fetch(imap.SeqSetNum(3), &imap.FetchOptions{UID: true}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].UID != 4 {
		t.Fatalf("FETCH 3 after a hidden expunge = %+v, %v", msgs, err)
	}
	select {
	case u := <-updates:
		t.Fatalf("update %+v during FETCH", u)
	default:
	}
	a.Noop().Wait()
	expect(update{"EXPUNGE", 1})
}

func TestShutdown(t *testing.T) {
	e := newEnv(t)
	c := e.dialApp(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := e.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with an open session = %v", err)
	}
	select {
	case <-c.Closed():
	case <-time.After(5 * time.Second):
		t.Fatal("session not closed after Shutdown's deadline")
	}
	if _, err := net.DialTimeout("tcp", e.tlsAddr, time.Second); err == nil {
		t.Fatal("listener still open")
	}
}

// writeClientFiles writes the APP BAL's certificate and key and the root for external clients.
func (e *env) writeClientFiles(t *testing.T) (cert, key, ca string) {
	t.Helper()
	leaf, err := e.pki.Org(appBAL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Cert.Subject.String() != e.clientCert.Leaf.Subject.String() {
		t.Fatal("subject differs")
	}
	cert, key, err = leaf.WriteFiles(e.dir, "client")
	if err != nil {
		t.Fatal(err)
	}
	ca = filepath.Join(e.dir, "root.pem")
	os.WriteFile(ca, e.pki.RootPEM(), 0o600)
	return cert, key, ca
}

// TestCurl reads a message over IMAPS with a client certificate (SASL EXTERNAL) with curl.
func TestCurl(t *testing.T) {
	curl := testenv.Require(t, "curl")
	e := newEnv(t)
	msg := testMessage(7, " curl")
	res, err := e.store.Append(context.Background(), appBAL, "INBOX", strings.NewReader(msg), nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, ca := e.writeClientFiles(t)
	_, port, _ := net.SplitHostPort(e.tlsAddr)
	url := fmt.Sprintf("imaps://localhost:%s/INBOX;UID=%d", port, res.UID)
	out, err := exec.Command(curl, "-sS", "--cacert", ca, "--cert", cert, "--key", key,
		"--resolve", "localhost:"+port+":127.0.0.1", "--login-options", "AUTH=EXTERNAL", "-u", appBAL+":", url).Output()
	if err != nil {
		t.Fatalf("curl: %v (%s)", err, stderr(err))
	}
	if !bytes.Equal(out, []byte(msg)) {
		t.Fatalf("curl got %q", out)
	}
	// without the client certificate curl cannot log in
	if out, err := exec.Command(curl, "-sS", "--cacert", ca, "--resolve", "localhost:"+port+":127.0.0.1",
		"--login-options", "AUTH=EXTERNAL", "-u", appBAL+":", url).Output(); err == nil {
		t.Fatalf("curl without certificate read %q", out)
	}
}

func stderr(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}

const pyClient = `
import imaplib, ssl, sys
host, port, ca, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
m = imaplib.IMAP4_SSL(host, port, ssl_context=ctx)
typ, _ = m.authenticate("EXTERNAL", lambda challenge: b"")
assert typ == "OK", typ
typ, data = m.select("INBOX")
assert typ == "OK" and data[0] == b"2", data
typ, data = m.uid("SEARCH", None, "UNSEEN")
assert data[0].split() == [b"1", b"2"], data
typ, data = m.uid("FETCH", "2", "(BODY.PEEK[])")
sys.stdout.buffer.write(data[0][1])
typ, data = m.uid("STORE", "1", "+FLAGS", "(\\Seen)")
assert typ == "OK", data
typ, data = m.uid("SEARCH", None, "UNSEEN")
assert data[0].split() == [b"2"], data
m.logout()
`

// TestPythonImaplib drives the server with Python's imaplib over TLS with a client certificate.
func TestPythonImaplib(t *testing.T) {
	py := testenv.Require(t, "python3")
	e := newEnv(t)
	ctx := context.Background()
	e.store.Append(ctx, appBAL, "INBOX", strings.NewReader(testMessage(1, "")), nil)
	msg := testMessage(2, " python")
	e.store.Append(ctx, appBAL, "INBOX", strings.NewReader(msg), nil)
	cert, key, ca := e.writeClientFiles(t)
	_, port, _ := net.SplitHostPort(e.tlsAddr)
	out, err := exec.Command(py, "-c", pyClient, "localhost", port, ca, cert, key).Output()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, stderr(err))
	}
	if !bytes.Equal(out, []byte(msg)) {
		t.Fatalf("python read %q", out)
	}
	mb, _ := e.store.Mailbox(ctx, appBAL, "INBOX")
	if mb.Unseen != 1 {
		t.Fatalf("unseen = %d after the python STORE", mb.Unseen)
	}
}

// TestSearchAddress: FROM matches the address with its comments removed, as Dovecot does
// (imaptest search-addresses), and the raw-bytes pre-filter must not hide it.
func TestSearchAddress(t *testing.T) {
	e := newEnv(t)
	c := e.dialApp(t, nil)
	appendMsg(t, c, "INBOX", "From: <user-from (comment)@ (comment) domain.org>\r\nSubject: a\r\n\r\nx\r\n")
	appendMsg(t, c, "INBOX", "From: RealFrom <user-from@domain.org>\r\nSubject: b\r\n\r\nx\r\n")
	appendMsg(t, c, "INBOX", "From: other@domain.org\r\nSubject: c\r\n\r\nx\r\n")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	d, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "user-from@domain.org"}}}, nil).Wait()
	if err != nil || fmt.Sprint(d.AllUIDs()) != "[1 2]" {
		t.Fatalf("SEARCH FROM = %v, %v", d, err)
	}
	d, err = c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "C"}}}, nil).Wait()
	if err != nil || fmt.Sprint(d.AllUIDs()) != "[3]" {
		t.Fatalf("SEARCH SUBJECT = %v, %v", d, err)
	}
}

// TestIdleSeesOtherProcess: a delivery made through another Store on the same folder (another
// process, e.g. the CLI) reaches an IDLE session through the store's one periodic look for
// all watched folders, the sessions themselves not polling (IdlePoll 0).
func TestIdleSeesOtherProcess(t *testing.T) {
	e := newEnvWith(t, func(o *Options) { o.IdlePoll = 0 })
	exists := make(chan uint32, 10)
	c := e.dialApp(t, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
	}})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	other, err := mailbox.OpenSQLite(context.Background(), filepath.Join(e.dir, "store"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Append(context.Background(), appBAL, "INBOX", strings.NewReader(testMessage(1, "")), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-exists:
		if n != 1 {
			t.Fatalf("EXISTS %d", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("IDLE did not report the other process's delivery")
	}
	idle.Close()
	idle.Wait()
}

// TestDisconnectDuringIdle drops connections while IDLE polls for deliveries: go-imap closes
// the session without waiting for Idle, so Close and Poll must not race (run with -race).
func TestDisconnectDuringIdle(t *testing.T) {
	e := newEnvWith(t, func(o *Options) { o.IdlePoll = time.Millisecond })
	other, err := mailbox.OpenSQLite(context.Background(), filepath.Join(e.dir, "store"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for i := 0; i < 10; i++ {
		c := e.dialApp(t, nil)
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Idle(); err != nil {
			t.Fatal(err)
		}
		if _, err := other.Append(context.Background(), appBAL, "INBOX", strings.NewReader(testMessage(i, "")), nil); err != nil {
			t.Fatal(err)
		}
		c.Close() // no DONE, no LOGOUT: the server sees EOF while Idle runs
	}
	// The server still serves a new session after all those drops.
	c := e.dialApp(t, nil)
	d, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if d.NumMessages != 10 {
		t.Fatalf("EXISTS %d, want 10", d.NumMessages)
	}
}

// TestEnvelopeSourceRoute: an obsolete source route ("<@route:user@domain>", RFC 5322 §4.4)
// is ignored instead of emptying the address list (imaptest fetch-envelope). go-imap cannot
// show the route itself (imap.Address has no at-domain-list): the ADL stays NIL.
func TestEnvelopeSourceRoute(t *testing.T) {
	e := newEnv(t)
	c := e.dialApp(t, nil)
	appendMsg(t, c, "INBOX", "From: <@route:user@domain>\r\nTo: A <@r1.org,@r2.org:a@b.org>, c@d.org\r\nSubject: r\r\n\r\nx\r\n")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("FETCH = %v, %v", msgs, err)
	}
	env := msgs[0].Envelope
	if got := fmt.Sprint(env.From, env.To); got != "[{ user domain}] [{A a b.org} { c d.org}]" {
		t.Fatalf("envelope addresses = %s", got)
	}
	d, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "To", Value: "a@b.org"}}}, nil).Wait()
	if err != nil || fmt.Sprint(d.AllUIDs()) != "[1]" {
		t.Fatalf("SEARCH TO = %v, %v", d, err)
	}
}

func TestStripRoutes(t *testing.T) {
	for in, want := range map[string]string{
		"<@route:user@domain>":             "<user@domain>",
		"A <@a.org,@b.org:u@c.org>, <x@y>": "A <u@c.org>, <x@y>",
		"< @a.org:u@c.org>":                "<u@c.org>",
		`"<@q:x>" <u@c.org>`:               `"<@q:x>" <u@c.org>`,
		"(<@c:x>) <u@c.org>":               "(<@c:x>) <u@c.org>",
		"<@nocolon.org>":                   "<@nocolon.org>",
		"g: <@r:u@c.org>;":                 "g: <u@c.org>;",
	} {
		if got := stripRoutes(in); got != want {
			t.Errorf("stripRoutes(%q) = %q, want %q", in, got, want)
		}
	}
}

// withCert returns cfg presenting leaf's certificate.
func withCert(cfg *tls.Config, leaf *testpki.Leaf) *tls.Config {
	cfg.Certificates = []tls.Certificate{leaf.TLSCertificate()}
	return cfg
}
