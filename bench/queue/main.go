// Command queue is the helper of bench/queue/run.sh, which measures the delivery queue of the
// connector (transport/queue with connector.Delivery) against Postfix's on the same machine.
//
//	queue setup DIR                    writes a test PKI under DIR/pki (CA, sink and client)
//	queue port                         prints a free loopback TCP port
//	queue sink -listen ADDR -dir DIR   an SMTP server (STARTTLS, client certificate required)
//	                                   that accepts and discards every message
//	queue pass -n N -spool DIR -sink ADDR -dir DIR [-restart-only]
//	                                   N messages with a RedeliveryKey in the state of a
//	                                   deferred queue (each had one failed attempt), then a
//	                                   restart after a clean stop and one after a crash (no
//	                                   index), each with the spool's pages evicted from the page
//	                                   cache, then one pass delivering all to the sink over
//	                                   mutual TLS; prints N, the seconds of both restarts (until
//	                                   Open returns), of the pass, of the crash restart until
//	                                   every message is read (Stats.Loading), and of both
//	                                   restarts until a Commit with a RedeliveryKey returns
//	queue evict DIR                    evicts the pages of the files under DIR from the page cache
//	queue enqueue -backlog B -n N -spool DIR
//	                                   B messages not yet due, Run running; then the CPU time of
//	                                   N enqueues one after the other, and the rate of a burst of
//	                                   N enqueues from 20 goroutines
//
// Filling a spool is not measured, and uses Options.NoSync to save time.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/sys/unix"

	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/connector"
	"github.com/mssante-go/sdk/transport/queue"
	"github.com/mssante-go/sdk/whitelist"
)

const (
	from = "bal@a.mssante.test"
	to   = "dr@x.mssante.test"
	dest = "x.mssante.test"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: queue setup|port|sink|pass|enqueue ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "setup":
		err = setup(os.Args[2])
	case "port":
		var l net.Listener
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err == nil {
			fmt.Println(l.Addr().(*net.TCPAddr).Port)
			l.Close()
		}
	case "sink":
		err = sink(os.Args[2:])
	case "pass":
		err = pass(os.Args[2:])
	case "enqueue":
		err = enqueue(os.Args[2:])
	case "evict":
		evict(os.Args[2])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "queue:", err)
		os.Exit(1)
	}
}

func setup(dir string) error {
	pki := filepath.Join(dir, "pki")
	p, err := testpki.New(&testpki.Options{Dir: filepath.Join(pki, "ca")})
	if err != nil {
		return err
	}
	server, err := p.Server("mx."+dest, &testpki.LeafOptions{DNSNames: []string{"localhost"}})
	if err != nil {
		return err
	}
	client, err := p.Server("mx.a.mssante.test", nil)
	if err != nil {
		return err
	}
	for name, l := range map[string]*testpki.Leaf{"server": server, "client": client} {
		if _, _, err := l.WriteFiles(pki, name); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(pki, "ca.pem"), append(p.RootPEM(), p.IntermediatePEM()...), 0o644)
}

func loadPKI(dir string) (*testpki.PKI, tls.Certificate, tls.Certificate, error) {
	pki := filepath.Join(dir, "pki")
	p, err := testpki.New(&testpki.Options{Dir: filepath.Join(pki, "ca")})
	if err != nil {
		return nil, tls.Certificate{}, tls.Certificate{}, err
	}
	server, err := tls.LoadX509KeyPair(filepath.Join(pki, "server.crt.pem"), filepath.Join(pki, "server.key.pem"))
	if err != nil {
		return nil, server, server, err
	}
	client, err := tls.LoadX509KeyPair(filepath.Join(pki, "client.crt.pem"), filepath.Join(pki, "client.key.pem"))
	return p, server, client, err
}

type discard struct{}

func (discard) Mail(string, *smtp.MailOptions) error { return nil }
func (discard) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (discard) Data(r io.Reader) error               { _, err := io.Copy(io.Discard, r); return err }
func (discard) Reset()                               {}
func (discard) Logout() error                        { return nil }

func sink(args []string) error {
	fs := flag.NewFlagSet("sink", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address")
	dir := fs.String("dir", "", "setup directory")
	fs.Parse(args)
	p, server, _, err := loadPKI(*dir)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AddCert(p.Root)
	pool.AddCert(p.Intermediate)
	s := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return discard{}, nil }))
	s.Domain = "mx." + dest
	s.EnableDSN = true
	s.MaxRecipients = 100
	s.ReadTimeout, s.WriteTimeout = time.Minute, time.Minute
	s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{server}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: pool, MinVersion: tls.VersionTLS12}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	return s.Serve(l)
}

// policy lists every domain, and every DN for it: the bench measures the queue, not the list.
type policy struct{}

func (policy) CheckDomain(string) error           { return nil }
func (policy) CheckOperator(string, string) error { return nil }
func (policy) Domains(func(string, []whitelist.Entry) bool) {
}

var body = "From: <" + from + ">\r\nTo: <" + to + ">\r\nSubject: bench\r\nMessage-ID: <%d@a.mssante.test>\r\n\r\n" +
	strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-\r\n", 30)

// fill queues n messages with 20 writers and makes one failed attempt on each, with the clock
// at now+shift.
func fill(spool string, n int, shift time.Duration) error {
	q, err := queue.Open(&queue.Options{Dir: spool, NoSync: true,
		Now: func() time.Time { return time.Now().Add(shift) }})
	if err != nil {
		return err
	}
	defer q.Close()
	if err := burst(q, n, 20, 0, true); err != nil {
		return err
	}
	fail := queue.DelivererFunc(func(_ context.Context, j *queue.Job) []queue.Result {
		rs := make([]queue.Result, len(j.Rcpts))
		for i := range rs {
			rs[i] = queue.Result{Err: errors.New("refused"), Status: "451 4.4.1 connection refused"}
		}
		return rs
	})
	q.RunOnce(context.Background(), fail, nil)
	return nil
}

// burst enqueues n messages from c goroutines; keyed: each with a RedeliveryKey, as the
// relay sets one.
func burst(q *queue.Queue, n, c, base int, keyed bool) error {
	var wg sync.WaitGroup
	errs := make(chan error, c)
	next := make(chan int)
	go func() {
		for i := range n {
			next <- base + i
		}
		close(next)
	}()
	for range c {
		wg.Go(func() {
			for i := range next {
				e := &queue.Envelope{From: from, Source: "bench", Rcpts: []*queue.Recipient{{Addr: to}}}
				if keyed {
					e.RedeliveryKey = fmt.Sprintf("bench-%d", i)
				}
				if _, err := q.Enqueue(context.Background(), e, strings.NewReader(fmt.Sprintf(body, i))); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// evict drops the pages of the spool's files from the page cache, so that Open reads them from
// the disk as after a reboot (directory entries and inodes may stay cached).
func evict(spool string) {
	filepath.WalkDir(spool, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if f, err := os.Open(path); err == nil {
			unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
			f.Close()
		}
		return nil
	})
}

func pass(args []string) error {
	fs := flag.NewFlagSet("pass", flag.ExitOnError)
	n := fs.Int("n", 1000, "messages")
	spool := fs.String("spool", "", "spool directory (emptied)")
	sinkAddr := fs.String("sink", "", "sink address")
	dir := fs.String("dir", "", "setup directory")
	workers := fs.Int("workers", 16, "RunOptions.Workers")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the pass to this file")
	restartOnly := fs.Bool("restart-only", false, "measure the restarts only (the pass prints 0)")
	fs.Parse(args)
	os.RemoveAll(*spool)
	if err := fill(*spool, *n, -10*time.Minute); err != nil {
		return err
	}
	p, _, client, err := loadPKI(*dir)
	if err != nil {
		return err
	}
	// A restart after a clean stop (from the index where there is one), then one after a
	// crash (every message's files), each with the spool's pages out of the page cache:
	// the time until Open returns (the queue accepts and delivers), until a relay-style
	// Commit (a new message with a RedeliveryKey, fsynced) right after it returns, and until
	// every message is read.
	round := 0
	open := func() (q *queue.Queue, d, commit, loaded time.Duration, err error) {
		syscall.Sync()
		evict(*spool)
		t0 := time.Now()
		q, err = queue.Open(&queue.Options{Dir: *spool})
		d = time.Since(t0)
		if err != nil {
			return nil, 0, 0, 0, err
		}
		if s := q.Stats(); s.Messages != *n+round {
			err = fmt.Errorf("%d messages after restart, want %d", s.Messages, *n+round)
		}
		round++
		e := &queue.Envelope{From: from, Source: "bench", RedeliveryKey: fmt.Sprintf("relay-%d", round),
			Rcpts: []*queue.Recipient{{Addr: to}}}
		if _, cerr := q.Enqueue(context.Background(), e, strings.NewReader(fmt.Sprintf(body, -round))); cerr != nil && err == nil {
			err = cerr
		}
		commit = time.Since(t0)
		for q.Stats().Loading > 0 {
			time.Sleep(time.Millisecond)
		}
		return q, d, commit, time.Since(t0), err
	}
	q, clean, cleanCommit, _, err := open()
	if err != nil {
		return err
	}
	q.Close()
	os.Remove(filepath.Join(*spool, "index"))
	q, crash, crashCommit, crashLoaded, err := open()
	if err != nil {
		return err
	}
	defer q.Close()
	if *restartOnly {
		fmt.Printf("%d %.3f %.3f 0 %.3f %.3f %.3f\n", *n, clean.Seconds(), crash.Seconds(), crashLoaded.Seconds(),
			cleanCommit.Seconds(), crashCommit.Seconds())
		return nil
	}
	ts := transport.NewTrustStore(&transport.TrustOptions{NoIGCSanteRoot: true})
	ts.AddRoot(p.Root)
	ts.AddIntermediate(p.Intermediate)
	crl, err := p.CRL()
	if err != nil {
		return err
	}
	if err := ts.AddCRL(crl); err != nil {
		return err
	}
	d, err := connector.NewDelivery(&connector.DeliveryOptions{Hostname: "mx.a.mssante.test", Policy: policy{},
		TLS:    &transport.TLSOptions{Trust: ts, Certificates: []tls.Certificate{client}},
		Routes: map[string]string{dest: *sinkAddr}, MaxPerDestination: 20,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	defer d.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	t1 := time.Now()
	go func() { defer close(done); q.Run(ctx, d, &queue.RunOptions{Workers: *workers}) }()
	for q.Stats().Messages > 0 {
		time.Sleep(50 * time.Millisecond)
	}
	passTime := time.Since(t1)
	cancel()
	<-done
	fmt.Printf("%d %.3f %.3f %.3f %.3f %.3f %.3f\n", *n, clean.Seconds(), crash.Seconds(), passTime.Seconds(), crashLoaded.Seconds(),
		cleanCommit.Seconds(), crashCommit.Seconds())
	return nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func enqueue(args []string) error {
	fs := flag.NewFlagSet("enqueue", flag.ExitOnError)
	backlog := fs.Int("backlog", 1000, "messages queued, not due")
	n := fs.Int("n", 2000, "messages enqueued")
	spool := fs.String("spool", "", "spool directory (emptied)")
	fs.Parse(args)
	os.RemoveAll(*spool)
	if err := fill(*spool, *backlog, time.Hour); err != nil { // not due for an hour
		return err
	}
	q, err := queue.Open(&queue.Options{Dir: *spool})
	if err != nil {
		return err
	}
	defer q.Close()
	// The backlog is taken from the index, and the redelivery keys read, after Open returns:
	// the CPU measured below is that of the enqueues alone.
	for s := q.Stats(); s.Loading > 0 || s.RedeliveryLoading; s = q.Stats() {
		time.Sleep(5 * time.Millisecond)
	}
	// The new messages are refused for now: each costs one attempt and one state write,
	// whatever the backlog.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	var attempts atomic.Int64
	fail := queue.DelivererFunc(func(_ context.Context, j *queue.Job) []queue.Result {
		rs := make([]queue.Result, len(j.Rcpts))
		for i := range rs {
			rs[i] = queue.Result{Err: errors.New("busy"), Status: "451 4.3.0 busy"}
		}
		attempts.Add(1)
		return rs
	})
	go func() { defer close(done); q.Run(ctx, fail, nil) }()
	// settle waits for the attempt on each new message (Stats would scan the backlog).
	settle := func(want int64) {
		for attempts.Load() < want {
			time.Sleep(5 * time.Millisecond)
		}
	}
	seq := min(*n, 500)
	c0 := cpuTime()
	if err := burst(q, seq, 1, 1<<20, false); err != nil {
		return err
	}
	settle(int64(seq))
	perMsg := (cpuTime() - c0) / time.Duration(seq)
	t0 := time.Now()
	if err := burst(q, *n, 20, 2<<20, false); err != nil {
		return err
	}
	rate := float64(*n) / time.Since(t0).Seconds()
	settle(int64(seq + *n))
	cancel()
	<-done
	fmt.Printf("%d %.3f %.0f\n", *backlog, float64(perMsg.Microseconds())/1000, rate)
	return nil
}
