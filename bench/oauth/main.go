// Command oauth is the XOAUTH2 login benchmark (bench/oauth/run.sh): "mint" writes an RSA key,
// its JWK set and the PEM key Dovecot reads, a TLS certificate and one access token; "serve"
// runs our IMAP server (transport/imapd, SQLite store) with Pro Santé Connect verification
// offline against that key set; "load" opens logins over implicit TLS and prints logins/s.
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mssante-go/sdk/transport/imapd"
	"github.com/mssante-go/sdk/transport/mailbox"
	"github.com/mssante-go/sdk/transport/psc"
)

const (
	issuer   = "https://psc.bench.test/realm"
	clientID = "mssante-bench"
	kid      = "k1"
	user     = "testuser@bench.test"
	national = "810000000001"
)

func main() {
	if len(os.Args) < 2 {
		log.Fatal("usage: oauth mint|serve|load [flags]")
	}
	switch os.Args[1] {
	case "mint":
		mint(os.Args[2:])
	case "serve":
		serve(os.Args[2:])
	case "load":
		load(os.Args[2:])
	default:
		log.Fatalf("unknown command %q", os.Args[1])
	}
}

func writePEM(path, typ string, der []byte, mode os.FileMode) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		log.Fatal(err)
	}
}

// mint writes dir/jwks.json, dir/keys/{mssante-bench,default}/RS256/k1 (Dovecot's
// local_validation_key_dict layout), dir/tls.{crt,key} and dir/token (valid 1 h).
func mint(args []string) {
	fs := flag.NewFlagSet("mint", flag.ExitOnError)
	dir := fs.String("dir", "", "output folder")
	fs.Parse(args)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		log.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"}}})
	os.WriteFile(filepath.Join(*dir, "jwks.json"), jwks, 0o644)
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	for _, azp := range []string{clientID, "default"} {
		d := filepath.Join(*dir, "keys", azp, "RS256")
		os.MkdirAll(d, 0o755)
		writePEM(filepath.Join(d, kid), "PUBLIC KEY", pub, 0o644)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		log.Fatal(err)
	}
	now := time.Now()
	tok, err := jwt.Signed(s).Claims(map[string]any{"iss": issuer, "sub": national, "aud": "account", "azp": clientID,
		"acr": "eidas1", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "nbf": now.Unix(),
		"SubjectNameID": national, "email": user}).Serialize()
	if err != nil {
		log.Fatal(err)
	}
	os.WriteFile(filepath.Join(*dir, "token"), []byte(tok), 0o600)
	// The TLS certificate of both servers: ECDSA P-256, self-signed, for 127.0.0.1.
	tk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames: []string{"localhost"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &tk.PublicKey, tk)
	writePEM(filepath.Join(*dir, "tls.crt"), "CERTIFICATE", der, 0o644)
	kd, _ := x509.MarshalPKCS8PrivateKey(tk)
	writePEM(filepath.Join(*dir, "tls.key"), "PRIVATE KEY", kd, 0o640)
}

type oneHolder struct{}

func (oneHolder) BALsHeldBy(_ context.Context, id string) ([]string, error) {
	if id == national {
		return []string{user}, nil
	}
	return nil, nil
}

// serve runs our IMAPS server with XOAUTH2 (keys from dir/jwks.json, served over loopback
// HTTP and cached after the first login) and PLAIN (testuser@bench.test / pass).
func serve(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	dir := fs.String("dir", "", "folder of mint")
	addr := fs.String("addr", "127.0.0.1:0", "IMAPS address")
	fs.Parse(args)
	ctx := context.Background()
	st, err := mailbox.OpenSQLite(ctx, filepath.Join(*dir, "ours"), nil)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := st.GetBAL(ctx, user); err != nil {
		if err := st.AddBAL(ctx, &mailbox.BAL{Address: user, Type: mailbox.PER, Owner: national}); err != nil {
			log.Fatal(err)
		}
		st.SetPassword(ctx, user, "pass")
	}
	jl, _ := net.Listen("tcp", "127.0.0.1:0")
	go http.Serve(jl, http.FileServer(http.Dir(*dir)))
	v, err := psc.New(&psc.Options{Issuer: issuer, ClientIDs: []string{clientID}, JWKSURL: "http://" + jl.Addr().String() + "/jwks.json"})
	if err != nil {
		log.Fatal(err)
	}
	crt, err := tls.LoadX509KeyPair(filepath.Join(*dir, "tls.crt"), filepath.Join(*dir, "tls.key"))
	if err != nil {
		log.Fatal(err)
	}
	srv, err := imapd.New(&imapd.Options{Store: st, TLSConfig: &tls.Config{Certificates: []tls.Certificate{crt}},
		OAuth: &psc.Authenticator{Verifier: v, Holdings: oneHolder{}}, MaxConnsPerAddr: 10000, MaxConns: 10000})
	if err != nil {
		log.Fatal(err)
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(srv.ServeTLS(l))
}

// load logs in n times over c connections at once (implicit TLS, AUTHENTICATE with SASL-IR,
// then LOGOUT) and prints "logins/s".
func load(args []string) {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	addr := fs.String("addr", "", "IMAPS host:port")
	mech := fs.String("mech", "XOAUTH2", "XOAUTH2 or PLAIN")
	tokenFile := fs.String("token", "", "file holding the token (XOAUTH2)")
	caFile := fs.String("ca", "", "the servers' certificate (tls.crt of gen), trusted for localhost")
	n := fs.Int("n", 2000, "logins")
	c := fs.Int("c", 8, "concurrent connections")
	fs.Parse(args)
	var ir string
	switch *mech {
	case "XOAUTH2":
		tok, err := os.ReadFile(*tokenFile)
		if err != nil {
			log.Fatal(err)
		}
		ir = "user=" + user + "\x01auth=Bearer " + strings.TrimSpace(string(tok)) + "\x01\x01"
	case "PLAIN":
		ir = "\x00" + user + "\x00pass"
	default:
		log.Fatalf("unknown mech %s", *mech)
	}
	line := "a AUTHENTICATE " + *mech + " " + base64.StdEncoding.EncodeToString([]byte(ir)) + "\r\n"
	caPEM, err := os.ReadFile(*caFile)
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		log.Fatalf("%s: no certificate", *caFile)
	}
	tc := &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	once := func() error {
		conn, err := tls.Dial("tcp", *addr, tc)
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		r := bufio.NewReader(conn)
		if _, err := r.ReadString('\n'); err != nil {
			return err
		}
		if _, err := conn.Write([]byte(line)); err != nil {
			return err
		}
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if strings.HasPrefix(l, "a OK") {
				break
			}
			if strings.HasPrefix(l, "a ") || strings.HasPrefix(l, "+") {
				return fmt.Errorf("login refused: %s", strings.TrimSpace(l))
			}
		}
		conn.Write([]byte("b LOGOUT\r\n"))
		return nil
	}
	if err := once(); err != nil { // warm-up: keys fetched, processes started
		log.Fatal(err)
	}
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range *c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(*n) {
				if err := once(); err != nil {
					if failed.Add(1) == 1 {
						log.Print(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if f := failed.Load(); f > 0 {
		log.Fatalf("%d of %d logins failed", f, *n)
	}
	fmt.Printf("%.0f\n", float64(*n)/el.Seconds())
}
