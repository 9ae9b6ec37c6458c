package main

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"os"
	"os/user"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mssante-go/sdk/transport/audit"
	"github.com/mssante-go/sdk/transport/node"
	"github.com/mssante-go/sdk/transport/queue"
)

const queueUsage = `list|show|hold|release|retry|delete|flush --config serve.toml [options] [ID...]

The queue of a connector, as Postfix's mailq, postsuper and postqueue -f show and change it,
whether or not "mssante serve" runs on it: the spool's files (spool_dir), or with [store]
backend = "postgres" the queue that every node of the cluster shares in the database. Run it
as the account of the service (sudo -u mssante …).

  list              every queued message, oldest first, with its recipients' states
  show ID           one message: envelope, per-recipient state (--headers: its trace headers)
  hold ID...        keep messages in the queue undelivered (and their DSNs unsent) until release
  release ID...     deliver held messages again, on their schedule
  retry ID...       attempt the pending recipients now (a held message stays held)
  delete ID...      remove messages without a DSN: neither recipients nor sender are told
  flush             retry every message not held, as postqueue -f does; on PostgreSQL it
                    also lifts the suspension of the destinations found unreachable

On the spool's files, with "mssante serve" running, hold, release, retry and delete are
handed to it (a request in the spool's ctl/ folder, taken within half a second); otherwise
they change the spool's files, keeping a "serve" from starting meanwhile. On PostgreSQL they
change the database, which every node reads at its next round (within a second), whichever
nodes run. Retry and delete refuse a message being delivered at that moment (in_flight):
try again. Each of them writes an audit record (queue_held, queue_released, queue_retried,
queue_deleted; flush, a queue_retried per message) with the queue ID, the OS account and the
outcome.

Never shown: the subject, the body, display names, or the local part of a patient address
(the INS, shown as "INS@patient.mssante.fr"). --headers shows the trace headers (Received,
Date, Message-ID, the addresses of From/To/Cc…) and names the others as withheld: a subject,
a file name or any other header can carry health data.

--json writes one object a line. list and show: {"id", "received" (RFC 3339), "age_seconds",
"size" (bytes), "from", "source" (relay, submission, …), "held", "node" (PostgreSQL: the node
attempting it now), "rcpts": [{"addr", "state" (pending, delivered, failed), "attempts",
"next_attempt", "last_code" (e.g. "451 4.4.1"), "remote_mta"}]}; show adds "envid", "ret",
"peer_dn", "peer_addr", to each recipient "last_status" (the whole last reply), "orcpt",
"notify", "final_at", and with --headers "headers": [{"name", "value"} or {"name",
"withheld": true}]. hold, release, retry, delete, flush: {"id", "action", "outcome" (done,
not_found, in_flight, no_answer, error), "via" ("serve": the running node applied it,
"spool": the files, "database": PostgreSQL), "error"}.
Exit status: 0, 1 when an action failed for one ID (flush: other than in_flight or
not_found, a message being or just delivered), 2 for a usage error.`

func runQueue(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "queue", queueUsage)
	configPath := fs.String("config", "", "the configuration of \"mssante serve\" (spool_dir or [store], [audit] dir)")
	jsonOut := fs.Bool("json", false, "one JSON object a line (fields above)")
	headers := fs.Bool("headers", false, "show: the trace headers too")
	timeout := fs.Duration("timeout", 15*time.Second, "how long a running serve, or the database, has to take an action")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if err := fs.Parse(args); err != nil {
			return err
		}
		fs.Usage()
		return exitCode(2, nil)
	}
	sub := args[0]
	ids, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	if *configPath == "" {
		return usageError(fs, "--config is required")
	}
	_, isOp := queueOps[sub]
	switch {
	case sub == "list" && len(ids) > 0:
		return usageError(fs, "list takes no ID")
	case sub == "show" && len(ids) != 1:
		return usageError(fs, "show takes one ID")
	case sub == "flush" && len(ids) > 0:
		return usageError(fs, "flush takes no ID")
	case isOp && len(ids) == 0:
		return usageError(fs, "%s takes one or more IDs", sub)
	case !isOp && sub != "list" && sub != "show" && sub != "flush":
		return usageError(fs, "unknown queue command %q", sub)
	}
	cfg, err := node.LoadConfigFile(*configPath)
	if err != nil {
		return err
	}
	octx, cancel := context.WithTimeout(ctx, *timeout)
	qb, err := openQueueBackend(octx, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer qb.close()
	out := &queueOut{e: e, json: *jsonOut, now: time.Now()}
	switch sub {
	case "list", "show":
		// The database has --timeout to answer; the files are read at once.
		rctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		ctx = rctx
	}
	switch sub {
	case "list":
		ms, err := qb.list(ctx)
		if err != nil {
			return err
		}
		out.list(ms)
		return nil
	case "show":
		m, err := qb.show(ctx, ids[0])
		if err != nil {
			return fmt.Errorf("%s: %w", ids[0], err)
		}
		var h []queue.HeaderField
		if *headers {
			if h, err = qb.header(ctx, ids[0]); err != nil {
				return fmt.Errorf("%s: %w", ids[0], err)
			}
		}
		out.show(m, h, *headers)
		return nil
	}
	// No action without its record: the audit log is opened first.
	alog, err := audit.Open(&audit.Options{Dir: cfg.Audit.Dir, MaxBytes: cfg.Audit.MaxBytes, Retention: cfg.Audit.Retention})
	if err != nil {
		return err
	}
	defer alog.Close()
	act := &queueActor{qb: qb, alog: alog, actor: osActor(), out: out, timeout: *timeout}
	if sub == "flush" {
		return act.flush(ctx)
	}
	failed := false
	for _, id := range ids {
		failed = act.do(ctx, sub, id) != nil || failed
	}
	if failed {
		return exitCode(1, nil)
	}
	return nil
}

var queueOps = map[string]struct {
	op    queue.Op
	event audit.Event
	done  string
}{
	"hold":    {queue.OpHold, audit.EventQueueHeld, "held"},
	"release": {queue.OpRelease, audit.EventQueueReleased, "released"},
	"retry":   {queue.OpRetry, audit.EventQueueRetried, "retry scheduled"},
	"delete":  {queue.OpDelete, audit.EventQueueDeleted, "deleted"},
}

// queueActor applies the actions of "mssante queue", each audited and printed.
type queueActor struct {
	qb      queueBackend
	alog    *audit.Log
	actor   string
	out     *queueOut
	timeout time.Duration
	mu      sync.Mutex // the audit log and the output, for flush's parallel requests
}

// do applies action sub (a key of queueOps) to message id, audits and prints it.
func (a *queueActor) do(ctx context.Context, sub, id string) error {
	op := queueOps[sub]
	actx, cancel := context.WithTimeout(ctx, a.timeout)
	via, err := a.qb.apply(actx, op.op, id)
	cancel()
	a.report(sub, id, op.event, op.done, via, err)
	return err
}

func (a *queueActor) report(sub, id string, event audit.Event, done, via string, err error) {
	outcome := adminOutcome(err)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.alog.Log(&audit.Record{Event: event, Source: "admin", MsgID: id, Actor: a.actor, Reason: outcome})
	a.out.action(id, sub, done, outcome, via, err)
}

// flush retries every message not held.
func (a *queueActor) flush(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	lifted, err := a.qb.liftSuspensions(lctx)
	if err != nil {
		return err
	}
	ms, err := a.qb.list(lctx)
	if err != nil {
		return err
	}
	var ids []string
	for _, m := range ms {
		if !m.Held {
			ids = append(ids, m.ID)
		}
	}
	var failed atomic.Bool
	retry := func(id string) string {
		actx, cancel := context.WithTimeout(ctx, a.timeout)
		via, err := a.qb.apply(actx, queue.OpRetry, id)
		cancel()
		a.report("flush", id, audit.EventQueueRetried, "retry scheduled", via, err)
		if err != nil && !errors.Is(err, queue.ErrInFlight) && !errors.Is(err, queue.ErrNotFound) {
			failed.Store(true)
		}
		return via
	}
	// The first says which way the others go: to a running serve, which answers a round of
	// requests together, several at once; to the spool's files, which one command at a time
	// holds, one after the other.
	parallel := 1
	if len(ids) > 0 && retry(ids[0]) == "serve" {
		parallel = 16
	}
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for _, id := range ids[min(len(ids), 1):] {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			retry(id)
		})
	}
	wg.Wait()
	if !a.out.json {
		fmt.Fprintf(a.out.e.stdout, "-- flush: %d messages, %d held left alone", len(ids), len(ms)-len(ids))
		if lifted > 0 {
			fmt.Fprintf(a.out.e.stdout, ", %d destination suspensions lifted", lifted)
		}
		fmt.Fprintln(a.out.e.stdout)
	}
	if failed.Load() {
		return exitCode(1, nil)
	}
	return nil
}

// queueBackend is the queue that "mssante queue" reads and changes: the files of spool_dir,
// or the database of [store] backend = "postgres".
type queueBackend interface {
	list(ctx context.Context) ([]*queue.Message, error)
	show(ctx context.Context, id string) (*queue.Message, error)
	header(ctx context.Context, id string) ([]queue.HeaderField, error)
	// apply runs op on message id and says which way it went (via of the --json output).
	apply(ctx context.Context, op queue.Op, id string) (via string, err error)
	// liftSuspensions ends the suspension of the destinations found unreachable, where the
	// queue shares it; it returns how many there were.
	liftSuspensions(ctx context.Context) (int, error)
	close()
}

func openQueueBackend(ctx context.Context, cfg *node.Config) (queueBackend, error) {
	if !cfg.Store.Postgres() {
		return spoolBackend(cfg.SpoolDir), nil
	}
	dsn, err := cfg.Store.ConnString()
	if err != nil {
		return nil, err
	}
	q, err := queue.OpenPostgres(ctx, dsn, &queue.PostgresOptions{MaxConns: 2})
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("queue: the database did not answer within --timeout: %w", err)
	}
	if err != nil {
		return nil, err
	}
	return pgQueueBackend{q}, nil
}

// spoolBackend is the file queue of a spool folder.
type spoolBackend string

func (d spoolBackend) list(context.Context) ([]*queue.Message, error) {
	return queue.Inspect(string(d))
}
func (d spoolBackend) show(_ context.Context, id string) (*queue.Message, error) {
	return queue.InspectMessage(string(d), id)
}
func (d spoolBackend) header(_ context.Context, id string) ([]queue.HeaderField, error) {
	return queue.ReadHeader(string(d), id)
}
func (d spoolBackend) apply(ctx context.Context, op queue.Op, id string) (string, error) {
	owner, err := queue.Admin(ctx, string(d), op, id)
	if owner {
		return "serve", err
	}
	return "spool", err
}
func (d spoolBackend) liftSuspensions(context.Context) (int, error) { return 0, nil }
func (d spoolBackend) close()                                       {}

// pgQueueBackend is the queue the nodes of a cluster share in PostgreSQL.
type pgQueueBackend struct{ q *queue.Postgres }

func (b pgQueueBackend) list(ctx context.Context) ([]*queue.Message, error) { return b.q.Inspect(ctx) }
func (b pgQueueBackend) show(ctx context.Context, id string) (*queue.Message, error) {
	return b.q.InspectMessage(ctx, id)
}
func (b pgQueueBackend) header(ctx context.Context, id string) ([]queue.HeaderField, error) {
	return b.q.ReadHeader(ctx, id)
}
func (b pgQueueBackend) apply(ctx context.Context, op queue.Op, id string) (string, error) {
	return "database", b.q.Apply(ctx, op, id)
}
func (b pgQueueBackend) liftSuspensions(ctx context.Context) (int, error) {
	return b.q.LiftSuspensions(ctx)
}
func (b pgQueueBackend) close() { b.q.Close() }

// adminOutcome is the word the audit record and --json give for the result of an action.
func adminOutcome(err error) string {
	switch {
	case err == nil:
		return "done"
	case errors.Is(err, queue.ErrNotFound):
		return "not_found"
	case errors.Is(err, queue.ErrInFlight):
		return "in_flight"
	case errors.Is(err, queue.ErrNoAnswer):
		return "no_answer"
	}
	return "error"
}

// osActor names the account running the command for the audit log: the name when the system
// knows it, and the uid, which a name cannot hide. Run through sudo -u as the service's
// account, the person is the one sudo names (SUDO_USER, set by sudo, which logs it too).
func osActor() string {
	uid := os.Getuid()
	a := "uid " + strconv.Itoa(uid)
	if u, err := user.Current(); err == nil {
		a = fmt.Sprintf("%s (uid %d)", u.Username, uid)
	}
	if su := os.Getenv("SUDO_USER"); su != "" {
		a += " via sudo by " + su
	}
	return a
}

type queueOut struct {
	e    *env
	json bool
	now  time.Time
}

type queueRcptJSON struct {
	Addr        string    `json:"addr"`
	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastCode    string    `json:"last_code,omitempty"`
	RemoteMTA   string    `json:"remote_mta,omitempty"`
	// show only
	LastStatus string    `json:"last_status,omitempty"`
	ORCPT      string    `json:"orcpt,omitempty"`
	Notify     []string  `json:"notify,omitempty"`
	FinalAt    time.Time `json:"final_at,omitzero"`
}

type queueHeaderJSON struct {
	Name     string `json:"name"`
	Value    string `json:"value,omitempty"`
	Withheld bool   `json:"withheld,omitempty"`
}

type queueMsgJSON struct {
	ID       string          `json:"id"`
	Received time.Time       `json:"received"`
	Age      int64           `json:"age_seconds"`
	Size     int64           `json:"size"`
	From     string          `json:"from"`
	Source   string          `json:"source,omitempty"`
	Held     bool            `json:"held"`
	Node     string          `json:"node,omitempty"`
	Rcpts    []queueRcptJSON `json:"rcpts"`
	// show only
	EnvID    string            `json:"envid,omitempty"`
	Ret      string            `json:"ret,omitempty"`
	PeerDN   string            `json:"peer_dn,omitempty"`
	PeerAddr string            `json:"peer_addr,omitempty"`
	Headers  []queueHeaderJSON `json:"headers,omitempty"`
}

func (o *queueOut) message(m *queue.Message, detail bool) queueMsgJSON {
	j := queueMsgJSON{ID: m.ID, Received: m.Received.UTC(), Age: int64(o.now.Sub(m.Received).Seconds()), Size: m.Size,
		From: maskINS(m.From), Source: m.Source, Held: m.Held, Node: m.Node}
	for _, r := range m.Rcpts {
		rj := queueRcptJSON{Addr: maskINS(r.Addr), State: string(r.State), Attempts: r.Attempts,
			LastCode: replyCode(r.LastStatus), RemoteMTA: r.RemoteMTA}
		if r.State == queue.Pending {
			rj.NextAttempt = r.NextAttempt.UTC()
		}
		if detail {
			rj.LastStatus, rj.ORCPT, rj.Notify, rj.FinalAt = maskINS(r.LastStatus), maskINS(r.ORCPT), r.Notify, r.FinalAt.UTC()
		}
		j.Rcpts = append(j.Rcpts, rj)
	}
	if detail {
		j.EnvID, j.Ret, j.PeerDN, j.PeerAddr = m.EnvID, m.Ret, m.PeerDN, m.PeerAddr
	}
	return j
}

func (o *queueOut) list(ms []*queue.Message) {
	pending, held := 0, 0
	for _, m := range ms {
		j := o.message(m, false)
		if m.Held {
			held++
		}
		for _, r := range m.Rcpts {
			if r.State == queue.Pending {
				pending++
			}
		}
		if o.json {
			jsonLine(o.e.stdout, j)
			continue
		}
		mark := ""
		if j.Held {
			mark = "  HELD"
		}
		if j.Node != "" {
			mark += "  attempted by " + j.Node
		}
		fmt.Fprintf(o.e.stdout, "%s  %s  %d bytes  from %s%s\n", j.ID, ago(o.now, m.Received), j.Size, orNull(j.From), mark)
		for _, r := range j.Rcpts {
			fmt.Fprintf(o.e.stdout, "    %s\n", o.rcptLine(r))
		}
	}
	if !o.json {
		fmt.Fprintf(o.e.stdout, "-- %d messages, %d recipients pending, %d held\n", len(ms), pending, held)
	}
}

func (o *queueOut) rcptLine(r queueRcptJSON) string {
	s := fmt.Sprintf("%s  %s  %d attempts", r.Addr, r.State, r.Attempts)
	if !r.NextAttempt.IsZero() {
		if d := r.NextAttempt.Sub(o.now); d > 0 {
			s += "  next in " + d.Round(time.Second).String()
		} else {
			s += "  due now"
		}
	}
	if r.LastCode != "" {
		s += "  last " + r.LastCode
	}
	if r.RemoteMTA != "" {
		s += "  mta " + r.RemoteMTA
	}
	return s
}

func (o *queueOut) show(m *queue.Message, h []queue.HeaderField, withHeaders bool) {
	j := o.message(m, true)
	for _, f := range h {
		v, ok := traceHeader(f)
		j.Headers = append(j.Headers, queueHeaderJSON{Name: f.Name, Value: v, Withheld: !ok})
	}
	if o.json {
		jsonLine(o.e.stdout, j)
		return
	}
	w := o.e.stdout
	fmt.Fprintf(w, "id:        %s\n", j.ID)
	fmt.Fprintf(w, "received:  %s (%s ago)\n", j.Received.Format(time.RFC3339), ago(o.now, m.Received))
	fmt.Fprintf(w, "size:      %d bytes\n", j.Size)
	fmt.Fprintf(w, "from:      %s\n", orNull(j.From))
	fmt.Fprintf(w, "source:    %s", j.Source)
	if j.PeerAddr != "" {
		fmt.Fprintf(w, " from %s", j.PeerAddr)
	}
	if j.PeerDN != "" {
		fmt.Fprintf(w, " (%s)", j.PeerDN)
	}
	fmt.Fprintln(w)
	if j.EnvID != "" || j.Ret != "" {
		fmt.Fprintf(w, "dsn:       envid %q ret %s\n", j.EnvID, j.Ret)
	}
	fmt.Fprintf(w, "held:      %v\n", j.Held)
	if j.Node != "" {
		fmt.Fprintf(w, "node:      %s (attempting it now)\n", j.Node)
	}
	for _, r := range j.Rcpts {
		fmt.Fprintf(w, "recipient: %s\n", o.rcptLine(r))
		if r.LastStatus != "" {
			fmt.Fprintf(w, "           last reply: %s\n", r.LastStatus)
		}
		if r.ORCPT != "" || len(r.Notify) > 0 {
			fmt.Fprintf(w, "           orcpt %q notify %s\n", r.ORCPT, strings.Join(r.Notify, ","))
		}
	}
	if withHeaders {
		fmt.Fprintln(w, "headers:")
		for _, f := range j.Headers {
			if f.Withheld {
				fmt.Fprintf(w, "  %s: (withheld)\n", f.Name)
			} else {
				fmt.Fprintf(w, "  %s: %s\n", f.Name, f.Value)
			}
		}
	}
}

func (o *queueOut) action(id, action, done, outcome, via string, err error) {
	if o.json {
		v := struct {
			ID      string `json:"id"`
			Action  string `json:"action"`
			Outcome string `json:"outcome"`
			Via     string `json:"via"`
			Error   string `json:"error,omitempty"`
		}{id, action, outcome, via, ""}
		if err != nil {
			v.Error = err.Error()
		}
		jsonLine(o.e.stdout, v)
		return
	}
	if err != nil {
		fmt.Fprintf(o.e.stderr, "mssante queue %s: %s: %s\n", action, id, errorLine("queue", err))
		return
	}
	fmt.Fprintf(o.e.stdout, "%s: %s (by %s)\n", id, done, via)
}

// traceHeader returns what may be shown of a header field: trace and identification fields,
// addresses without display names, the media type without parameters. Everything else (the
// subject, a file name, the X-MSS-* fields…) may carry health data and is withheld.
func traceHeader(f queue.HeaderField) (string, bool) {
	switch strings.ToLower(f.Name) {
	case "received", "return-path", "date", "message-id", "in-reply-to", "references", "mime-version":
		return maskINS(f.Value), true
	case "from", "sender", "reply-to", "to", "cc", "disposition-notification-to":
		as, err := mail.ParseAddressList(f.Value)
		if err != nil {
			return "", false
		}
		var s []string
		for _, a := range as {
			s = append(s, "<"+maskINS(a.Address)+">")
		}
		return strings.Join(s, ", "), true
	case "content-type":
		t, _, _ := strings.Cut(f.Value, ";")
		return strings.TrimSpace(t), true
	}
	return "", false
}

// insAddr matches the local part of a patient address, which is the patient's INS.
var insAddr = regexp.MustCompile(`(?i)[^\s<>"(),;:@]+@patient\.mssante\.fr`)

func maskINS(s string) string { return insAddr.ReplaceAllString(s, "INS@patient.mssante.fr") }

var replyCodeRE = regexp.MustCompile(`^[2-5][0-9][0-9]( [2-5]\.[0-9]{1,3}\.[0-9]{1,3})?`)

// replyCode is the reply code and enhanced status code at the head of an SMTP reply, e.g.
// "451 4.4.1" of "451 4.4.1 connection refused"; empty when the status is not a reply.
func replyCode(s string) string { return replyCodeRE.FindString(s) }

func ago(now, t time.Time) string {
	d := now.Sub(t)
	if d >= time.Hour {
		return d.Round(time.Minute).String()
	}
	return d.Round(time.Second).String()
}

func orNull(from string) string {
	if from == "" {
		return "<> (a DSN)"
	}
	return from
}
