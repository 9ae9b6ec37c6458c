package annuaire

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpki"
)

// slapdLines is the size of the generated extraction loaded into the test slapd: enough PER
// BALs (about 90 %) for a search of more than 1,000 results.
const slapdLines = 2500

// The reader account is subject to the size limits (the rootdn is not).
const (
	readerDN = "cn=reader,dc=mssante,dc=fr"
	readerPW = "reader-secret"
)

// testSlapd is one throw-away OpenLDAP for the whole test run of the package.
type testSlapd struct {
	plain, tls string // ldap:// and ldaps:// URLs on 127.0.0.1
	roots      *x509.CertPool
	client     tls.Certificate // accepted for SASL EXTERNAL
	extraction string          // the extraction its LDIF was made from
	dupAddress string          // an address on two lines of it
	dir        string
	cmd        *exec.Cmd
	err        error
}

var (
	slapdOnce   sync.Once
	sharedSlapd *testSlapd
)

// startSlapd returns the package's slapd, starting it on first use: slapd.conf with our
// schema, an mdb database filled by slapadd from export-ldif's output, TLS from testpki,
// size limits that only a paged search gets past.
func startSlapd(t *testing.T) *testSlapd {
	t.Helper()
	slapdBin := testenv.Require(t, "slapd")
	slapadd := testenv.Require(t, "slapadd")
	slapdOnce.Do(func() {
		s := &testSlapd{}
		sharedSlapd = s
		s.err = s.start(t, slapdBin, slapadd)
	})
	if sharedSlapd.err != nil {
		t.Fatalf("slapd: %v", sharedSlapd.err)
	}
	return sharedSlapd
}

func (s *testSlapd) start(t *testing.T, slapdBin, slapadd string) error {
	dir, err := os.MkdirTemp("", "annuaire-slapd-")
	if err != nil {
		return err
	}
	s.dir = dir
	pki, err := testpki.New(nil)
	if err != nil {
		return err
	}
	srv, err := pki.Server("localhost", nil)
	if err != nil {
		return err
	}
	cli, err := pki.Org("bal-app.hopital.test", nil)
	if err != nil {
		return err
	}
	s.client = cli.TLSCertificate()
	s.roots = pki.Roots()
	certPath := filepath.Join(dir, "server.crt")
	if err := os.WriteFile(certPath, append(srv.CertPEM(), pki.IntermediatePEM()...), 0o600); err != nil {
		return err
	}
	keyPath := filepath.Join(dir, "server.key")
	if err := os.WriteFile(keyPath, srv.KeyPEM(), 0o600); err != nil {
		return err
	}
	caPath := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caPath, append(pki.RootPEM(), pki.IntermediatePEM()...), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "mssante.schema"), []byte(Schema()), 0o600); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		return err
	}
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include %[1]s/mssante.schema
pidfile %[1]s/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCertificateFile %[2]s
TLSCertificateKeyFile %[3]s
TLSCACertificateFile %[4]s
TLSVerifyClient try
TLSProtocolMin 3.3
database mdb
maxsize 268435456
suffix "dc=mssante,dc=fr"
rootdn "cn=admin,dc=mssante,dc=fr"
rootpw admin-secret
directory %[1]s/db
index objectClass eq
index mail,uid,mssanteIdNat,IdentifiantPM,TypeBAL eq
index mssanteNomRecherche eq,sub
sizelimit size.soft=500 size.hard=500 size.prtotal=unlimited
access to attrs=userPassword by anonymous auth by * none
access to * by users read by anonymous auth
`, dir, certPath, keyPath, caPath)
	confPath := filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return err
	}

	// The directory's content: export-ldif of a generated extraction, plus the reader.
	s.extraction = genText(t, slapdLines)
	// One address on two lines, as in the real file: the second line differs by its service.
	_, body, _ := strings.Cut(s.extraction, "\n")
	first, _, _ := strings.Cut(body, "\n")
	f, err := ParseLine(first)
	if err != nil {
		return err
	}
	f[ColService] = "Service de rattachement bis"
	s.extraction += strings.Join(f[:], "|") + "\n"
	s.dupAddress = strings.TrimSpace(f[ColAddress])
	var ldif bytes.Buffer
	if _, err := WriteLDIF(&ldif, strings.NewReader(s.extraction), &LDIFOptions{BaseEntry: true}); err != nil {
		return err
	}
	fmt.Fprintf(&ldif, "dn: %s\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: reader\nuserPassword: %s\n\n", readerDN, readerPW)
	// An applicative BAL, which the public extraction never has, with a description.
	ldif.WriteString("dn: uid=dpi@ch-test.mssante.fr,dc=mssante,dc=fr\nobjectClass: mssanteBAL\nuid: dpi@ch-test.mssante.fr\n" +
		"mail: dpi@ch-test.mssante.fr\nTypeBAL: APP\nIdentifiantPM: 1400780284\nTypeIdentifiantPM: FINESS\no: CH TEST\n" +
		"description:: " + base64.StdEncoding.EncodeToString([]byte("Intégration au DPI")) + "\n\n")
	ldifPath := filepath.Join(dir, "data.ldif")
	if err := os.WriteFile(ldifPath, ldif.Bytes(), 0o600); err != nil {
		return err
	}
	if out, err := exec.Command(slapadd, "-q", "-f", confPath, "-l", ldifPath).CombinedOutput(); err != nil {
		return fmt.Errorf("slapadd: %v\n%s", err, out)
	}

	plainPort, tlsPort := testenv.FreePort(t), testenv.FreePort(t)
	s.plain = fmt.Sprintf("ldap://127.0.0.1:%d", plainPort)
	s.tls = fmt.Sprintf("ldaps://127.0.0.1:%d", tlsPort)
	logf, err := os.Create(filepath.Join(dir, "slapd.log"))
	if err != nil {
		return err
	}
	s.cmd = exec.Command(slapdBin, "-f", confPath, "-d", "0",
		"-h", fmt.Sprintf("ldap://127.0.0.1:%d/ ldaps://127.0.0.1:%d/", plainPort, tlsPort))
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		return err
	}
	for _, port := range []int{plainPort, tlsPort} {
		deadline := time.Now().Add(20 * time.Second)
		for {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(logf.Name())
				return fmt.Errorf("slapd did not listen on %d: %s", port, log)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// stop ends slapd and removes its folder (called by TestMain).
func (s *testSlapd) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedSlapd != nil {
		sharedSlapd.stop()
	}
	os.Exit(code)
}

// TestSchemaLDIF loads SchemaLDIF into a cn=config directory with slapadd and checks the
// configuration with slaptest: OpenLDAP itself parses the LDIF form of the schema.
func TestSchemaLDIF(t *testing.T) {
	slapadd := testenv.Require(t, "slapadd")
	slaptest := testenv.Require(t, "slaptest")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "slapd.d")
	os.Mkdir(cfg, 0o700)
	os.WriteFile(filepath.Join(dir, "mssante.ldif"), []byte(SchemaLDIF()), 0o600)
	config := fmt.Sprintf(`dn: cn=config
objectClass: olcGlobal
cn: config

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif

include: file:///etc/ldap/schema/cosine.ldif

include: file://%s/mssante.ldif

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
`, dir)
	os.WriteFile(filepath.Join(dir, "config.ldif"), []byte(config), 0o600)
	if out, err := exec.Command(slapadd, "-n0", "-F", cfg, "-l", filepath.Join(dir, "config.ldif")).CombinedOutput(); err != nil {
		t.Fatalf("slapadd: %v\n%s", err, out)
	}
	out, err := exec.Command(slaptest, "-F", cfg, "-u").CombinedOutput()
	if err != nil {
		t.Fatalf("slaptest: %v\n%s", err, out)
	}
	// The committed LDIF is this one.
	if committed, err := os.ReadFile("schema/mssante.ldif"); err != nil || string(committed) != SchemaLDIF() {
		t.Errorf("schema/mssante.ldif differs from SchemaLDIF() (regenerate it: mssante annuaire schema --ldif): %v", err)
	}
	got, err := os.ReadFile(filepath.Join(cfg, "cn=config", "cn=schema", "cn={2}mssante.ldif"))
	if err != nil || !strings.Contains(string(got), "NAME 'mssanteBAL'") || strings.Count(string(got), "olcAttributeTypes:") != 27 {
		t.Fatalf("schema not stored as expected: %v\n%s", err, got)
	}
}
