// Command scale compares two IMAP servers on what a large folder costs per command, the way
// bench/imap/run.sh scale compares ours with Dovecot: in each of the given folders (already
// filled, and looked at once so both servers have their index in sync) it times, run after
// run with the servers taking turns, SELECT, a FETCH of the last 50 messages' headers (the
// first after SELECT), a STORE on one message and the FETCH that follows it. Then the IDLE
// fan-out: S sessions SELECT a folder and IDLE, one APPEND is made from another connection,
// and the time until each session hears of it (EXISTS) is measured, with the memory of the
// server processes, resting and at their peak during the wake.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

type server struct {
	name, addr, user, pass string
	// rss sums the resident memory of the server's processes (bytes).
	rss func() int64
	c   *imapclient.Client
	// times[folder][op] are the durations of each run, in ms
	times map[string]map[string][]float64
}

var ops = []string{"select", "fetch-last-50", "store-one", "fetch-after-store"}

func main() {
	a := flag.String("a", "dovecot=127.0.0.1:10143,testuser,pass", "server A: name=addr,user,password")
	b := flag.String("b", "ours=127.0.0.1:10144,testuser@bench.test,pass", "server B: name=addr,user,password")
	aProc := flag.String("a-proc", "comm:imap", "server A processes for memory: pid:N or comm:NAME")
	bProc := flag.String("b-proc", "", "server B processes for memory: pid:N or comm:NAME")
	folders := flag.String("folders", "f1k,f100k", "filled folders to time commands in")
	runs := flag.Int("runs", 5, "runs per folder (median printed)")
	idleBox := flag.String("idle-folder", "f10k", "folder of the IDLE fan-out; empty: none")
	sessions := flag.Int("sessions", 1000, "IDLE sessions")
	flag.Parse()

	servers := []*server{parse(*a, *aProc), parse(*b, *bProc)}
	boxes := strings.Split(*folders, ",")
	for _, s := range servers {
		s.c = dial(s)
		defer s.c.Close()
		for _, box := range boxes {
			// in sync: the first look indexes a Maildir (Dovecot), claims \Recent (both)
			d, err := s.c.Select(box, nil).Wait()
			if err != nil {
				log.Fatalf("%s: select %s: %v", s.name, box, err)
			}
			fetchLast(s.c, d.NumMessages)
		}
	}
	for r := 0; r < *runs; r++ {
		for _, box := range boxes {
			for _, s := range servers {
				s.run(box, r)
			}
		}
	}
	A, B := servers[0], servers[1]
	fmt.Printf("%-18s %-7s %10s %10s %8s\n", "command", "folder", A.name+" ms", B.name+" ms", "ratio")
	for _, op := range ops {
		for _, box := range boxes {
			ma, mb := median(A.times[box][op]), median(B.times[box][op])
			fmt.Printf("%-18s %-7s %10.2f %10.2f %7.2fx\n", op, box, ma, mb, mb/ma)
		}
	}
	fmt.Printf("(ratio = %s/%s time: < 1 means %s faster; goal <= 2)\n", B.name, A.name, B.name)
	if len(boxes) >= 2 {
		small, large := boxes[0], boxes[len(boxes)-1]
		for _, s := range servers {
			fmt.Printf("%s, %s over %s:", s.name, large, small)
			for _, op := range ops {
				fmt.Printf(" %s %.2fx", op, median(s.times[large][op])/median(s.times[small][op]))
			}
			fmt.Println()
		}
		fmt.Printf("(goal for %s: each <= 2)\n", B.name)
	}
	for _, s := range servers {
		s.c.Logout().Wait()
	}
	if *idleBox != "" {
		for _, s := range servers {
			s.fanOut(*idleBox, *sessions)
		}
	}
}

func parse(spec, proc string) *server {
	name, rest, _ := strings.Cut(spec, "=")
	f := strings.Split(rest, ",")
	if len(f) != 3 {
		log.Fatalf("bad server spec %q", spec)
	}
	s := &server{name: name, addr: f[0], user: f[1], pass: f[2], times: map[string]map[string][]float64{}}
	kind, arg, _ := strings.Cut(proc, ":")
	switch kind {
	case "pid":
		pid, _ := strconv.Atoi(arg)
		s.rss = func() int64 { return rssOf(pid) }
	case "comm":
		s.rss = func() int64 {
			var total int64
			ents, _ := os.ReadDir("/proc")
			for _, e := range ents {
				pid, err := strconv.Atoi(e.Name())
				if err != nil {
					continue
				}
				if c, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm")); strings.TrimSpace(string(c)) == arg {
					total += rssOf(pid)
				}
			}
			return total
		}
	default:
		s.rss = func() int64 { return 0 }
	}
	return s
}

// rssOf reads VmRSS of a process, in bytes (0 when it is gone).
func rssOf(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func dial(s *server) *imapclient.Client {
	return dialWith(s, nil)
}

func dialWith(s *server, opts *imapclient.Options) *imapclient.Client {
	c, err := imapclient.DialInsecure(s.addr, opts)
	if err != nil {
		log.Fatalf("%s: %v", s.name, err)
	}
	if err := c.Login(s.user, s.pass).Wait(); err != nil {
		log.Fatalf("%s: login: %v", s.name, err)
	}
	return c
}

var headerFetch = &imap.FetchOptions{UID: true, Flags: true, Envelope: true, RFC822Size: true, InternalDate: true}

// fetchLast fetches the headers of the last 50 messages of an n-message folder.
func fetchLast(c *imapclient.Client, n uint32) int {
	if n == 0 {
		return 0
	}
	msgs, err := c.Fetch(imap.SeqSet{{Start: max(n, 50) - 49, Stop: n}}, headerFetch).Collect()
	if err != nil {
		log.Fatalf("fetch: %v", err)
	}
	return len(msgs)
}

func (s *server) record(box, op string, t time.Time) {
	if s.times[box] == nil {
		s.times[box] = map[string][]float64{}
	}
	s.times[box][op] = append(s.times[box][op], time.Since(t).Seconds()*1000)
}

func (s *server) run(box string, r int) {
	t := time.Now()
	d, err := s.c.Select(box, nil).Wait()
	if err != nil {
		log.Fatalf("%s: select %s: %v", s.name, box, err)
	}
	s.record(box, "select", t)
	n := d.NumMessages
	t = time.Now()
	if got := fetchLast(s.c, n); got != min(int(n), 50) {
		log.Fatalf("%s: fetch %s: %d messages", s.name, box, got)
	}
	s.record(box, "fetch-last-50", t)
	op := imap.StoreFlagsAdd
	if r%2 == 1 {
		op = imap.StoreFlagsDel
	}
	t = time.Now()
	if _, err := s.c.Store(imap.SeqSetNum(max(n, 10)-9), &imap.StoreFlags{Op: op, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect(); err != nil {
		log.Fatalf("%s: store %s: %v", s.name, box, err)
	}
	s.record(box, "store-one", t)
	t = time.Now()
	fetchLast(s.c, n)
	s.record(box, "fetch-after-store", t)
}

// fanOut opens n sessions IDLE on box, appends one message from another connection and
// measures when each session hears of it, and the memory of the server meanwhile.
func (s *server) fanOut(box string, n int) {
	var mu sync.Mutex
	var t0 time.Time
	var lat []float64
	var want uint32
	all := make(chan struct{})
	clients := make([]*imapclient.Client, n)
	idles := make([]*imapclient.IdleCommand, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 20)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			seen := false
			opts := &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
				Mailbox: func(d *imapclient.UnilateralDataMailbox) {
					mu.Lock()
					defer mu.Unlock()
					if d.NumMessages == nil || seen || want == 0 || *d.NumMessages < want {
						return
					}
					seen = true
					lat = append(lat, time.Since(t0).Seconds()*1000)
					if len(lat) == n {
						close(all)
					}
				},
			}}
			c := dialWith(s, opts)
			d, err := c.Select(box, nil).Wait()
			if err != nil {
				log.Fatalf("%s: session %d: select: %v", s.name, i, err)
			}
			mu.Lock()
			want = max(want, d.NumMessages+1)
			mu.Unlock()
			idle, err := c.Idle()
			if err != nil {
				log.Fatalf("%s: session %d: idle: %v", s.name, i, err)
			}
			clients[i], idles[i] = c, idle
		})
	}
	wg.Wait()
	time.Sleep(3 * time.Second) // let the server settle
	resting := s.rss()
	peak := resting
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				peak = max(peak, s.rss())
			}
		}
	}()
	deliver := dial(s)
	msg := []byte("From: a@hopital-a.test.mssante.fr\r\nTo: b@hopital-b.test.mssante.fr\r\nSubject: fan-out\r\nMessage-ID: <fanout@test>\r\n\r\nwake up\r\n")
	mu.Lock()
	t0 = time.Now()
	mu.Unlock()
	cmd := deliver.Append(box, int64(len(msg)), nil)
	cmd.Write(msg)
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		log.Fatalf("%s: append: %v", s.name, err)
	}
	select {
	case <-all:
	case <-time.After(120 * time.Second):
	}
	close(stop)
	<-sampled
	mu.Lock()
	got := slices.Clone(lat)
	mu.Unlock()
	slices.Sort(got)
	var med, last float64
	if len(got) > 0 {
		med, last = got[len(got)/2], got[len(got)-1]
	}
	fmt.Printf("idle fan-out %s: %d sessions on %s (%d messages), one APPEND: %d woken, median %.0f ms, last %.0f ms; memory resting %.0f MB, peak %.0f MB (%.2fx)\n",
		s.name, n, box, want-1, len(got), med, last, float64(resting)/(1<<20), float64(peak)/(1<<20), float64(peak)/float64(max(resting, 1)))
	// remove the message so that a second run sees the same folder
	if _, err := deliver.Select(box, nil).Wait(); err == nil {
		if d, err := deliver.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: "fanout@test"}}}, nil).Wait(); err == nil && len(d.AllUIDs()) > 0 {
			deliver.Store(imap.UIDSetNum(d.AllUIDs()...), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
			deliver.Expunge().Close()
		}
	}
	deliver.Logout().Wait()
	for i := range n {
		if idles[i] != nil {
			idles[i].Close()
		}
		clients[i].Close()
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}
