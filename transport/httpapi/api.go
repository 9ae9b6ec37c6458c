package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/transport/webhook"
)

// ErrConfig reports invalid Options.
var ErrConfig = errors.New("httpapi: invalid configuration")

// DefaultMaxBodySize bounds a request body when Options.MaxBodySize is zero: a message of bal's
// default largest size is bigger, but documents travel base64-encoded in JSON.
const DefaultMaxBodySize = 32 << 20

// Options configure New.
type Options struct {
	// BALs are the clients of the BALs served, by address. The Handler sends with them and,
	// in Run, watches their mailboxes. BALs or Sender is required.
	BALs map[string]*bal.Client
	// Sender, when set, sends instead of BALs: NewConnectorSender on a node, which submits
	// through its own submission server. Then every BAL an authenticated caller holds is
	// served.
	Sender Sender
	// Auth finds the caller of each request (required): CertificateAuth, BearerAuth, FirstOf.
	Auth Authenticator
	// StateDir holds the idempotency records and the received messages until they are
	// handled (required; files 0600).
	StateDir string
	// ReceiptsOnly makes Run follow only the receipts of what the Handler sent: received
	// messages are left in the mailbox for the BAL's other readers (bal.WatchOptions
	// ReceiptsOnly), so the received endpoints list nothing and no MDN is sent from here.
	ReceiptsOnly bool
	// Webhooks, when set, receives the events of the BALs (persisted before the answer).
	Webhooks *webhook.Dispatcher
	// MaxBodySize bounds a request body; default DefaultMaxBodySize. A larger Content-Length
	// is refused before anything is read.
	MaxBodySize int64
	// SendTimeout bounds one submission; default 2 minutes.
	SendTimeout time.Duration
	// Logger receives operational events (message IDs, BAL addresses, never content).
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Handler serves the API. It is safe for concurrent use.
type Handler struct {
	o      Options
	bals   clients // lower-case address
	sender Sender  // bals, or Options.Sender
	mux    *http.ServeMux
	log    *slog.Logger
	idem   *idemStore
	in     *inbox
	node   *storeFollower // on a node: received messages come from its store

	mu      sync.Mutex
	running map[string]bool // idempotency keys being served
}

// New checks opts and returns the Handler.
func New(opts *Options) (*Handler, error) {
	if opts == nil || len(opts.BALs) == 0 && opts.Sender == nil || opts.Auth == nil || opts.StateDir == "" {
		return nil, fmt.Errorf("%w: BALs or Sender, Auth and StateDir are required", ErrConfig)
	}
	o := *opts
	if o.MaxBodySize <= 0 {
		o.MaxBodySize = DefaultMaxBodySize
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = 2 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &Handler{o: o, bals: clients{}, log: o.Logger, running: map[string]bool{}}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	for addr, c := range o.BALs {
		if c == nil {
			return nil, fmt.Errorf("%w: nil client for %s", ErrConfig, addr)
		}
		h.bals[strings.ToLower(addr)] = c
	}
	h.sender = h.bals
	if o.Sender != nil {
		h.sender = o.Sender
	}
	for _, d := range []string{"idempotency", "received"} {
		if err := os.MkdirAll(filepath.Join(o.StateDir, d), 0o700); err != nil {
			return nil, fmt.Errorf("httpapi: %w", err)
		}
	}
	idem, err := openIdemStore(filepath.Join(o.StateDir, "idempotency"), o.Now, h.log)
	if err != nil {
		return nil, err
	}
	h.idem = idem
	h.in = &inbox{dir: filepath.Join(o.StateDir, "received"), now: o.Now}

	m := http.NewServeMux()
	m.Handle("/v1/openapi.yaml", methods{"GET": serveOpenAPI})
	m.Handle("/v1/bals/{bal}/messages", methods{"POST": h.auth(h.send)})
	m.Handle("/v1/bals/{bal}/messages/{id}", methods{"GET": h.auth(h.status)})
	m.Handle("/v1/bals/{bal}/received", methods{"GET": h.auth(h.listReceived)})
	m.Handle("/v1/bals/{bal}/received/{id}", methods{"GET": h.auth(h.getReceived)})
	m.Handle("/v1/bals/{bal}/received/{id}/handled", methods{"POST": h.auth(h.markHandled)})
	m.Handle("/v1/bals/{bal}/webhook-deliveries", methods{"GET": h.auth(h.deliveries)})
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, problem(http.StatusNotFound, ProblemNotFound, "no such resource"))
	})
	h.mux = m
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			h.log.Error("httpapi: panic serving a request", "path", r.URL.Path, "panic", fmt.Sprint(v))
			writeProblem(w, problem(http.StatusInternalServerError, ProblemInternal, ""))
		}
	}()
	h.mux.ServeHTTP(w, r)
}

// methods routes a path by method, answering others with a 405 problem and its Allow header.
type methods map[string]http.HandlerFunc

func (m methods) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f := m[r.Method]; f != nil {
		f(w, r)
		return
	}
	if r.Method == http.MethodHead && m["GET"] != nil {
		m["GET"](w, r)
		return
	}
	var allow []string
	for k := range m {
		allow = append(allow, k)
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeProblem(w, problem(http.StatusMethodNotAllowed, ProblemMethod, r.Method+" is not allowed here"))
}

// request is an authenticated request on one of the caller's BALs.
type request struct {
	caller *Caller
	addr   string
}

func (h *Handler) auth(next func(http.ResponseWriter, *http.Request, *request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := h.o.Auth.Authenticate(r)
		if err != nil || c == nil {
			if !errors.Is(err, ErrNoCredentials) {
				h.log.Warn("httpapi: authentication refused", "remote", r.RemoteAddr, "err", err)
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="mssante"`)
			writeProblem(w, problem(http.StatusUnauthorized, ProblemUnauthenticated,
				"present the BAL applicative's IGC-Santé client certificate, or a Pro Santé Connect bearer token"))
			return
		}
		addr := strings.ToLower(r.PathValue("bal"))
		if !c.may(addr) {
			writeProblem(w, problem(http.StatusForbidden, ProblemForbiddenBAL, "this BAL is not one of the caller's"))
			return
		}
		if !h.sender.Serves(addr) {
			writeProblem(w, problem(http.StatusNotFound, ProblemNotFound, "this BAL is not served here"))
			return
		}
		c.tls, c.addr = r.TLS, r.RemoteAddr
		next(w, r, &request{caller: c, addr: addr})
	}
}

// publish hands an event to the webhooks, if any; a failure to persist it is logged.
func (h *Handler) publish(ctx context.Context, e webhook.Event) {
	if h.o.Webhooks == nil {
		return
	}
	if err := h.o.Webhooks.Publish(ctx, e); err != nil {
		h.log.Error("httpapi: webhook event not persisted", "bal", e.BAL, "message_id", e.MessageID, "type", e.Type, "err", err)
	}
}
