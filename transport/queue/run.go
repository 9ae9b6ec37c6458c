package queue

import (
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// NoticeKind is the kind of delivery notice raised for a recipient (RFC 3464 Action values).
type NoticeKind string

// Notice kinds. Delivered and Failed are final notices: a recipient gets at most one of them,
// and at most one Delayed before it.
const (
	NoticeDelivered NoticeKind = "delivered"
	NoticeFailed    NoticeKind = "failed"
	NoticeDelayed   NoticeKind = "delayed"
	// NoticeRelayed is the final success notice when the next hop does not support DSN
	// (RFC 3461 §5.2.2): the message left our responsibility, the final outcome is unknown.
	NoticeRelayed NoticeKind = "relayed"
)

// Result is the outcome of one delivery attempt to one recipient.
type Result struct {
	// Err is nil when the recipient was delivered.
	Err error
	// Permanent marks Err as final (5xx, policy refusal); otherwise the queue retries.
	Permanent bool
	// Status is the reply to report in a DSN, e.g. "250 2.0.0 Ok" or "550 5.7.1 refused".
	Status string
	// RemoteMTA is the host that gave Status, if any.
	RemoteMTA string
	// Forwarded means the next hop supports DSN and took the NOTIFY request over (RFC 3461
	// §5.2.2): no success notice is raised here, the final MTA sends it.
	Forwarded bool
	// Relayed means the next hop accepted the message without supporting DSN: a success
	// notice says "relayed" instead of "delivered".
	Relayed bool
	// Unreachable means no session could be opened with the recipient's destination (no
	// connection, no TLS session, no answer): it counts toward suspending the destination
	// (Schedule.SuspendAfter). A reply of the destination's server, even a refusal, does not.
	Unreachable bool
}

// Job is one delivery attempt of one message to its due recipients.
type Job struct {
	Env   *Envelope    // copy of the envelope
	Rcpts []*Recipient // the recipients to deliver now (pointers into Env.Rcpts)
	queue interface {
		OpenMessage(id string) (io.ReadCloser, error)
	}
}

// Open opens the stored message for reading; the caller closes it.
func (j *Job) Open() (io.ReadCloser, error) { return j.queue.OpenMessage(j.Env.ID) }

// Deliverer delivers a message to some of its recipients and returns one Result per
// recipient, in the order of job.Rcpts. It must honour ctx.
type Deliverer interface {
	Deliver(ctx context.Context, job *Job) []Result
}

// DelivererFunc adapts a function to Deliverer.
type DelivererFunc func(ctx context.Context, job *Job) []Result

// Deliver calls f.
func (f DelivererFunc) Deliver(ctx context.Context, job *Job) []Result { return f(ctx, job) }

// Notifier turns a notice into a DSN for env.From (typically by building an RFC 3464 report
// and enqueuing it with a null sender). It is called after the recipient state is on disk; on
// error the notice is kept and offered again later, so a crash may repeat a notice but never
// lose one.
type Notifier interface {
	Notify(ctx context.Context, env *Envelope, kind NoticeKind, rcpts []*Recipient) error
}

// NotifierFunc adapts a function to Notifier.
type NotifierFunc func(ctx context.Context, env *Envelope, kind NoticeKind, rcpts []*Recipient) error

// Notify calls f.
func (f NotifierFunc) Notify(ctx context.Context, env *Envelope, kind NoticeKind, rcpts []*Recipient) error {
	return f(ctx, env, kind, rcpts)
}

// RunOptions configure Run.
type RunOptions struct {
	// Workers is the number of messages delivered at once (default 16).
	Workers int
	// Notifier receives delivery notices (nil: notices are dropped).
	Notifier Notifier
	// OnResult, when set, is called after each recipient state change is stored (for audit
	// logs and metrics).
	OnResult func(env *Envelope, r *Recipient, res Result)
	// ControlPoll is how often Run looks for the requests of Admin in the spool's ctl/
	// folder (default 500 ms; negative: never, and Admin then gets ErrNoAnswer).
	ControlPoll time.Duration
}

// Run delivers due messages with d until ctx is done or the queue is closed; it returns after
// the attempts in progress have ended. It returns ctx.Err() or ErrClosed.
func (q *Queue) Run(ctx context.Context, d Deliverer, opts *RunOptions) error {
	var o RunOptions
	if opts != nil {
		o = *opts
	}
	if o.Workers <= 0 {
		o.Workers = 16
	}
	sem := make(chan struct{}, o.Workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var poll <-chan time.Time
	if o.ControlPoll >= 0 {
		t := time.NewTicker(cmp.Or(o.ControlPoll, 500*time.Millisecond))
		defer t.Stop()
		poll = t.C
	}
	for {
		q.mu.Lock()
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		jobs, next := q.due(q.opts.Now(), o.Workers)
		for _, e := range jobs {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				q.release(e.ID)
				continue
			}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done(); q.wake() }()
				q.process(ctx, e, d, &o)
			}()
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(q.opts.Now()), time.Millisecond)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
		case <-q.kick:
		case <-timer.C:
		case <-poll:
			q.serveControl()
		}
	}
}

// Kick makes Run look for due messages now (used by tests that move the clock).
func (q *Queue) Kick() { q.wake() }

// RunOnce makes one attempt on every message due now, one after the other, and returns how
// many it processed: the deterministic step that tests drive with an injected clock.
func (q *Queue) RunOnce(ctx context.Context, d Deliverer, opts *RunOptions) int {
	var o RunOptions
	if opts != nil {
		o = *opts
	}
	jobs, _ := q.due(q.opts.Now(), 1<<30)
	for _, e := range jobs {
		q.process(ctx, e, d, &o)
	}
	return len(jobs)
}

func (q *Queue) release(id string) {
	q.mu.Lock()
	delete(q.inflight, id)
	if doms, ok := q.rearm[id]; ok {
		delete(q.rearm, id)
		for _, dom := range doms {
			q.dueNow(id, dom, q.opts.Now())
		}
	}
	q.schedule(id)
	q.mu.Unlock()
}

// unpark makes the pending recipients for dom of the messages ids due at now, in memory: dom
// was reached again after the queue deferred them. Their stored schedule stays, so a restart
// only delays them. A message in flight (its deferral being stored) is done when released.
func (q *Queue) unpark(ids []string, dom string, now time.Time) {
	if len(ids) == 0 {
		return
	}
	q.mu.Lock()
	for _, id := range ids {
		if q.inflight[id] {
			q.rearm[id] = append(q.rearm[id], dom)
			continue
		}
		q.dueNow(id, dom, now)
		q.schedule(id)
	}
	q.mu.Unlock()
	q.wake()
}

// dueNow makes the pending recipients for dom of message id due at now; q.mu is held.
func (q *Queue) dueNow(id, dom string, now time.Time) {
	e, ok := q.msgs[id]
	if !ok {
		return
	}
	for _, r := range e.Rcpts {
		if r.State == Pending && addrDomain(r.Addr) == dom && r.NextAttempt.After(now) {
			r.NextAttempt = now
		}
	}
}

// process runs one attempt on message e (a private copy) and stores the outcome.
func (q *Queue) process(ctx context.Context, e *Envelope, d Deliverer, o *RunOptions) {
	defer q.release(e.ID)
	q.attempter().attempt(ctx, e, d, o)
}

func (q *Queue) attempter() *attempter {
	return &attempter{now: q.opts.Now, rand: q.opts.Rand, sched: q.sched, logger: q.logger, dests: q.dests,
		store: q, unpark: q.unpark, commit: func(e *Envelope) bool { q.commit(e); return true }}
}

// attempter is what one attempt on a message needs of the queue that keeps it, whether files
// owned by one process or rows leased in a database: both apply the same schedule, the same
// destination suspension and the same notices.
type attempter struct {
	now    func() time.Time
	rand   func() float64
	sched  Schedule
	logger *slog.Logger
	dests  destTracker
	store  interface {
		OpenMessage(id string) (io.ReadCloser, error)
	}
	// unpark makes the deferred recipients for dom of the messages ids due at now.
	unpark func(ids []string, dom string, now time.Time)
	// commit stores e as the new state; false when it may no longer be stored (the lease on
	// the message was lost): the attempt then ends there.
	commit func(e *Envelope) bool
}

// attempt runs one attempt on message e (a private copy) and stores the outcome.
func (q *attempter) attempt(ctx context.Context, e *Envelope, d Deliverer, o *RunOptions) {
	now := q.now()
	var rcpts []*Recipient
	for _, r := range e.Rcpts {
		if r.State == Pending && !r.NextAttempt.After(now) {
			rcpts = append(rcpts, r)
		}
	}
	if len(rcpts) > 0 {
		// The recipients of a suspended destination are deferred without an attempt.
		type verdict struct {
			ok, probe bool
			reason    string
		}
		verdicts := map[string]*verdict{}
		var send []*Recipient
		for _, r := range rcpts {
			dom := addrDomain(r.Addr)
			v := verdicts[dom]
			if v == nil {
				v = &verdict{}
				v.ok, v.probe, v.reason = q.dests.admit(dom, e.ID, now)
				verdicts[dom] = v
			}
			if v.ok {
				send = append(send, r)
			}
		}
		var results []Result
		if len(send) > 0 {
			results = d.Deliver(ctx, &Job{Env: e, Rcpts: send, queue: q.store})
		}
		if ctx.Err() != nil {
			for dom, v := range verdicts {
				if v.probe {
					q.dests.abandon(dom)
				}
			}
			return // shutting down: the attempt does not count, the state stays as stored
		}
		now = q.now()
		byRcpt := make(map[*Recipient]Result, len(rcpts))
		reached := map[string]bool{}
		status := map[string]string{}
		for i, r := range send {
			res := Result{Err: errors.New("queue: deliverer returned no result"), Status: "451 4.3.0 internal error"}
			if i < len(results) {
				res = results[i]
			}
			byRcpt[r] = res
			dom := addrDomain(r.Addr)
			if !res.Unreachable {
				reached[dom] = true
			} else if status[dom] == "" {
				status[dom] = res.Status
			}
		}
		for dom, v := range verdicts {
			if v.ok {
				q.unpark(q.dests.report(dom, v.probe, reached[dom], status[dom], now), dom, now)
			}
		}
		results = make([]Result, 0, len(rcpts))
		for _, r := range rcpts {
			res, ok := byRcpt[r]
			if !ok {
				v := verdicts[addrDomain(r.Addr)]
				res = Result{Err: ErrSuspended, Status: suspendedStatus + v.reason}
			}
			results = append(results, res)
			q.apply(e, r, res, now)
		}
		for i, r := range rcpts {
			if i < len(results) {
				q.logOutcome(e, r, results[i])
			}
		}
		if !q.commit(e) { // after the outcomes, so that "queue: done" closes a message's lines
			return
		}
		if o.OnResult != nil {
			for i, r := range rcpts {
				if i < len(results) {
					o.OnResult(e, r, results[i])
				}
			}
		}
	}
	// Hand the notices over, one call per kind.
	if o.Notifier != nil {
		changed := false
		for _, kind := range []NoticeKind{NoticeDelayed, NoticeFailed, NoticeDelivered, NoticeRelayed} {
			var rs []*Recipient
			for _, r := range e.Rcpts {
				if r.Notice == kind && !r.NoticeRetry.After(now) {
					rs = append(rs, r)
				}
			}
			if len(rs) == 0 {
				continue
			}
			if err := o.Notifier.Notify(ctx, e.clone(), kind, rs); err != nil {
				q.logger.Warn("queue: notice not sent, will retry", "id", e.ID, "err", err)
				for _, r := range rs {
					r.NoticeRetry = now.Add(q.sched.First)
				}
			} else {
				q.logger.Info("queue: delivery notice sent", "id", e.ID, "kind", string(kind), "rcpts", len(rs))
				for _, r := range rs {
					r.Notice = ""
				}
			}
			changed = true
		}
		if changed {
			q.commit(e)
		}
	} else {
		for _, r := range e.Rcpts {
			r.Notice = ""
		}
		q.commit(e)
	}
}

// logOutcome writes the outcome of an attempt for r to the operational log: the
// recipient's domain, never its address (its local part may be a patient's INS), and of the
// reply only its codes, since a remote reply text often quotes the address. The full status
// stays in the queue (Admin) for whoever may read it.
func (q *attempter) logOutcome(e *Envelope, r *Recipient, res Result) {
	attrs := []slog.Attr{slog.String("id", e.ID), slog.String("rcpt_domain", addrDomain(r.Addr)),
		slog.String("code", statusCode(r.LastStatus)), slog.Int("attempts", r.Attempts)}
	if r.RemoteMTA != "" {
		attrs = append(attrs, slog.String("remote_mta", r.RemoteMTA))
	}
	ctx := context.Background()
	switch {
	case r.State == Delivered:
		q.logger.LogAttrs(ctx, slog.LevelInfo, "queue: recipient delivered", attrs...)
	case r.State == Failed:
		reason := "refused"
		if !res.Permanent {
			reason = "expired"
		}
		attrs = append(attrs, slog.String("reason", reason), slog.Bool("dsn", r.Notice == NoticeFailed))
		q.logger.LogAttrs(ctx, slog.LevelWarn, "queue: recipient failed", attrs...)
	default:
		attrs = append(attrs, slog.Time("next_attempt", r.NextAttempt))
		q.logger.LogAttrs(ctx, slog.LevelInfo, "queue: recipient deferred", attrs...)
	}
}

// addrDomain is the lower-case domain of addr ("" when it has none).
func addrDomain(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}

// statusCode keeps the reply code and enhanced status code at the start of an SMTP status,
// "550 5.1.1" of "550 5.1.1 <x@y>: unknown user"; "" when it starts with neither.
func statusCode(status string) string {
	f := strings.Fields(status)
	var out []string
	if len(f) > 0 && len(f[0]) == 3 && strings.Trim(f[0], "0123456789") == "" {
		out, f = append(out, f[0]), f[1:]
	}
	if len(f) > 0 && strings.Count(f[0], ".") == 2 && strings.Trim(f[0], "0123456789.") == "" && len(f[0]) <= 11 {
		out = append(out, f[0])
	}
	return strings.Join(out, " ")
}

// apply records res for recipient r at now, raising at most the notices RFC 3461 asks for.
func (q *attempter) apply(e *Envelope, r *Recipient, res Result, now time.Time) {
	r.Attempts++
	r.LastStatus, r.RemoteMTA = res.Status, res.RemoteMTA
	if r.LastStatus == "" && res.Err != nil {
		r.LastStatus = res.Err.Error()
	}
	notify := func(n string, k NoticeKind) {
		if e.From != "" && r.wants(n) {
			r.Notice = k
		}
	}
	switch {
	case res.Err == nil:
		r.State, r.FinalAt = Delivered, now
		switch {
		case res.Forwarded:
		case res.Relayed:
			notify(NotifySuccess, NoticeRelayed)
		default:
			notify(NotifySuccess, NoticeDelivered)
		}
	case res.Permanent:
		r.State, r.FinalAt = Failed, now
		notify(NotifyFailure, NoticeFailed)
	case now.Sub(e.Received) >= q.sched.GiveUp:
		r.State, r.FinalAt = Failed, now
		r.LastStatus = "554 4.4.7 message expired: " + r.LastStatus
		notify(NotifyFailure, NoticeFailed)
	default:
		wait := float64(q.sched.Backoff(r.Attempts))
		wait *= 1 + q.sched.Jitter*(2*q.rand()-1)
		r.NextAttempt = now.Add(time.Duration(wait))
		if !r.DelayNotified && now.Sub(e.Received) >= q.sched.DelayNotice {
			r.DelayNotified = true
			notify(NotifyDelay, NoticeDelayed)
		}
	}
}

// commit stores e (a copy owned by the caller) as the new state, removing the message when
// every recipient is final and notified.
func (q *Queue) commit(e *Envelope) {
	done := e.done()
	if done {
		q.mu.Lock()
		q.drop(e.ID)
		delete(q.held, e.ID)
		q.mu.Unlock()
		q.removeFiles(e)
		q.logger.Info("queue: done", "id", e.ID)
		return
	}
	if err := q.writeEnv(e); err != nil {
		// The previous state stays on disk: the attempt is repeated after a restart.
		q.logger.Error("queue: state not stored", "id", e.ID, "err", err)
	}
	q.mu.Lock()
	if _, ok := q.msgs[e.ID]; ok {
		q.put(e.clone())
	}
	q.mu.Unlock()
}
