package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/connector"
	"github.com/mssante-go/sdk/transport/httpapi"
	"github.com/mssante-go/sdk/transport/webhook"
)

// startDevAPI serves, beside the trust space of "mssante dev", the HTTP API of its BAL
// applicatives on the port sandbox.json gives: HTTPS with the hospital operator's certificate,
// callers authenticated by their BAL's certificate (mutual TLS), each BAL sending with a
// bal.Client of its own state folder. The API follows only the receipts of what it sent:
// received messages are left to the BALs' other watchers ("mssante receive", selftest, the
// HL7v2 bridge), which would otherwise find them taken. It returns once the API listens (or
// failed: the error is printed and dev goes on without it), and a stop function.
// With hookURL, the API's events (accepted, delivered, …) are POSTed there, signed with the
// secret kept in the sandbox folder (printed by printDevAPI); http and loopback are allowed,
// this being a sandbox.
func startDevAPI(ctx context.Context, e *env, info *sandbox.Info, hookURL string, log *slog.Logger) (stop func()) {
	if info.API == nil {
		return func() {}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	stop, err := serveDevAPI(ctx, info, hookURL, log)
	if err != nil {
		fmt.Fprintf(e.stderr, "mssante dev: the HTTP API did not start: %v\n", err)
		return func() {}
	}
	return stop
}

func serveDevAPI(ctx context.Context, info *sandbox.Info, hookURL string, log *slog.Logger) (stop func(), err error) {
	var closers []io.Closer
	defer func() {
		if err != nil {
			for _, c := range closers {
				c.Close()
			}
		}
	}()
	stateDir := filepath.Join(info.Dir, "api")
	clients, byDN := map[string]*bal.Client{}, map[string]string{}
	for _, addr := range info.API.BALs {
		b := info.BAL(addr)
		if b == nil || b.CertFile == "" {
			return nil, fmt.Errorf("%s is not a BAL applicative of the trust space", addr)
		}
		o, err := bal.OptionsFromSandbox(info.Dir, addr)
		if err != nil {
			return nil, err
		}
		o.StateDir, o.NIL, o.Logger = filepath.Join(stateDir, "bal", addr), cliNIL, log
		c, err := bal.New(o)
		if err != nil {
			return nil, err
		}
		closers = append(closers, c)
		clients[addr], byDN[b.CertDN] = c, addr
	}
	trust, err := info.Trust()
	if err != nil {
		return nil, err
	}
	var hooks *webhook.Dispatcher
	if hookURL != "" {
		secret, err := devWebhookSecret(info)
		if err != nil {
			return nil, err
		}
		var eps []webhook.Endpoint
		for _, addr := range info.API.BALs {
			eps = append(eps, webhook.Endpoint{BAL: addr, URL: hookURL, Secret: []byte(secret)})
		}
		hooks, err = webhook.New(&webhook.Options{Dir: filepath.Join(stateDir, "webhooks"), Endpoints: eps,
			AllowInsecure: true, MinBackoff: time.Second, MaxBackoff: time.Minute, Logger: log})
		if err != nil {
			return nil, err
		}
		closers = append(closers, hooks)
	}
	h, err := httpapi.New(&httpapi.Options{BALs: clients, StateDir: filepath.Join(stateDir, "handler"), ReceiptsOnly: true,
		Auth: &httpapi.CertificateAuth{Trust: trust, Accounts: &connector.StaticAccounts{ByDN: byDN}}, Webhooks: hooks, Logger: log})
	if err != nil {
		return nil, err
	}
	op := info.OperatorOf(info.API.BALs[0])
	cert, err := tls.LoadX509KeyPair(op.CertFile, op.KeyFile)
	if err != nil {
		return nil, err
	}
	srv, err := httpapi.NewServer(h, &httpapi.ServerOptions{TLS: transport.TLSOptions{Trust: trust,
		Certificates: []tls.Certificate{cert}}, Logger: log})
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", info.API.Listen)
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, httpapi.ErrServerClosed) {
			log.Error("mssante dev: HTTP API", "err", err)
		}
	})
	wg.Go(func() {
		if err := h.Run(actx); err != nil && actx.Err() == nil {
			log.Error("mssante dev: HTTP API watch", "err", err)
		}
	})
	if hooks != nil {
		wg.Go(func() { hooks.Run(actx) })
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			srv.Close()
			wg.Wait()
			for _, c := range closers {
				c.Close()
			}
		})
	}, nil
}

// devWebhookSecret returns the secret that signs the sandbox's webhooks, made on first use and
// kept in the sandbox folder (0600) so that a receiver configured once keeps verifying.
func devWebhookSecret(info *sandbox.Info) (string, error) {
	f := filepath.Join(info.Dir, "api", "webhook-secret")
	if b, err := os.ReadFile(f); err == nil && len(strings.TrimSpace(string(b))) >= 32 {
		return strings.TrimSpace(string(b)), nil
	}
	var r [24]byte
	rand.Read(r[:])
	secret := hex.EncodeToString(r[:])
	if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
		return "", err
	}
	return secret, os.WriteFile(f, []byte(secret+"\n"), 0o600)
}

// devAPICommands are the two shell lines printed by "mssante dev": one sends the sample
// lettre de liaison from dpi@hopital with curl and the BAL's certificate, keeping the answer
// in the sandbox folder; the other reads the status of the message it names.
func devAPICommands(info *sandbox.Info) (send, status string) {
	from := info.API.BALs[0]
	b := info.BAL(from)
	curl := fmt.Sprintf("curl -sS --cert %s --key %s --cacert %s", b.CertFile, b.KeyFile, info.CAFile)
	last := filepath.Join(info.Dir, "api", "last-sent.json")
	send = fmt.Sprintf(`%s -w '%%{stderr}HTTP %%{http_code}\n' -H 'Content-Type: application/json' --data-binary @%s %s/bals/%s/messages | tee %s`,
		curl, info.API.Request, info.API.URL, from, last)
	status = fmt.Sprintf(`%s "%s/bals/%s/messages/$(sed -E 's/.*"message_id":"([^"]+)".*/\1/' %s)"`,
		curl, info.API.URL, from, last)
	return send, status
}

// printDevAPI prints the HTTP API, its OpenAPI document, the webhooks' URL and secret when
// hookURL is set, and the two curl lines.
func printDevAPI(w io.Writer, info *sandbox.Info, hookURL string) {
	if info.API == nil || len(info.API.BALs) == 0 {
		return
	}
	send, status := devAPICommands(info)
	fmt.Fprintf(w, "\nHTTP API     %s (mutual TLS: a BAL applicative's certificate; OpenAPI at %s/openapi.yaml)\n",
		info.API.URL, info.API.URL)
	fmt.Fprintf(w, "             for %s; received mail is left to the BALs' other readers\n", strings.Join(info.API.BALs, ", "))
	if hookURL != "" {
		if secret, err := devWebhookSecret(info); err == nil {
			fmt.Fprintf(w, "Webhooks     %s, signed (header Webhook-Signature, HMAC-SHA256) with secret %s\n", hookURL, secret)
		}
	}
	fmt.Fprintf(w, "\nSend the sample lettre de liaison with the HTTP API, then read its status:\n  %s\n  %s\n", send, status)
}
