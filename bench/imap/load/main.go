// Command load compares two IMAP servers the way bench/imap/run.sh compares ours with
// Dovecot: on each it APPENDs N messages of a given size into a fresh folder, then FETCHes
// them all (BODY.PEEK[]) and SEARCHes them (a BODY search that reads every message, a HEADER
// search). The servers take turns — appends in chunks, FETCH and SEARCH run by run — so both
// see the same machine load. It prints, per phase, both medians and the ratio (> 1: B faster).
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

type server struct {
	name, addr, user, pass string
	c                      *imapclient.Client
	appendTime             time.Duration
	fetch, body, header    []float64
}

func main() {
	a := flag.String("a", "dovecot=127.0.0.1:10143,testuser,pass", "server A: name=addr,user,password")
	b := flag.String("b", "ours=127.0.0.1:10144,testuser@bench.test,pass", "server B: name=addr,user,password")
	n := flag.Int("n", 10000, "messages")
	size := flag.Int("size", 20*1024, "message size in bytes")
	runs := flag.Int("runs", 3, "runs of FETCH and SEARCH (median printed)")
	chunks := flag.Int("chunks", 10, "APPEND turns per server")
	box := flag.String("mailbox", "bench", "folder (re-created)")
	flag.Parse()

	servers := []*server{parse(*a), parse(*b)}
	for _, s := range servers {
		c, err := imapclient.DialInsecure(s.addr, nil)
		if err != nil {
			log.Fatal(err)
		}
		defer c.Close()
		if err := c.Login(s.user, s.pass).Wait(); err != nil {
			log.Fatalf("%s: %v", s.name, err)
		}
		c.Delete(*box).Wait()
		if err := c.Create(*box, nil).Wait(); err != nil {
			log.Fatalf("%s: %v", s.name, err)
		}
		s.c = c
	}
	per := (*n + *chunks - 1) / *chunks
	for i := 0; i < *n; i += per {
		for _, s := range servers {
			rng := rand.New(rand.NewSource(int64(i)))
			t := time.Now()
			for j := i; j < i+per && j < *n; j++ {
				msg := message(rng, j, *size)
				cmd := s.c.Append(*box, int64(len(msg)), nil)
				cmd.Write(msg)
				cmd.Close()
				if _, err := cmd.Wait(); err != nil {
					log.Fatalf("%s: append %d: %v", s.name, j, err)
				}
			}
			s.appendTime += time.Since(t)
		}
	}
	for _, s := range servers {
		sel, err := s.c.Select(*box, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil || sel.NumMessages != uint32(*n) {
			log.Fatalf("%s: select: %v, %d messages", s.name, err, sel.NumMessages)
		}
	}
	for r := 0; r < *runs; r++ {
		for _, s := range servers {
			s.run(*n, *size)
		}
	}
	A, B := servers[0], servers[1]
	fmt.Printf("%-14s %16s %16s %8s\n", "phase", A.name, B.name, "ratio")
	row := func(phase string, a, b float64, unit string, higherBetter bool) {
		r := b / a
		if !higherBetter {
			r = a / b
		}
		fmt.Printf("%-14s %10.1f %-5s %10.1f %-5s %7.2fx\n", phase, a, unit, b, unit, r)
	}
	row("append", float64(*n)/A.appendTime.Seconds(), float64(*n)/B.appendTime.Seconds(), "msg/s", true)
	row("fetch", median(A.fetch), median(B.fetch), "msg/s", true)
	row("search-body", median(A.body), median(B.body), "ms", false)
	row("search-header", median(A.header), median(B.header), "ms", false)
	for _, s := range servers {
		s.c.Logout().Wait()
	}
}

func parse(spec string) *server {
	name, rest, _ := strings.Cut(spec, "=")
	f := strings.Split(rest, ",")
	if len(f) != 3 {
		log.Fatalf("bad server spec %q", spec)
	}
	return &server{name: name, addr: f[0], user: f[1], pass: f[2]}
}

func (s *server) run(n, size int) {
	t := time.Now()
	var count int
	var bytes int64
	all := imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}
	cmd := s.c.Fetch(all, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	for m := cmd.Next(); m != nil; m = cmd.Next() {
		for it := m.Next(); it != nil; it = m.Next() {
			if bs, ok := it.(imapclient.FetchItemDataBodySection); ok {
				k, _ := io.Copy(io.Discard, bs.Literal)
				bytes += k
			}
		}
		count++
	}
	if err := cmd.Close(); err != nil || count != n || bytes < int64(n)*int64(size)*9/10 {
		log.Fatalf("%s: fetch: %v, %d messages, %d bytes", s.name, err, count, bytes)
	}
	s.fetch = append(s.fetch, float64(count)/time.Since(t).Seconds())

	t = time.Now()
	d, err := s.c.UIDSearch(&imap.SearchCriteria{Body: []string{fmt.Sprintf("needle%05d", n/2)}}, nil).Wait()
	if err != nil || len(d.AllUIDs()) != 1 {
		log.Fatalf("%s: search body: %v %v", s.name, err, d)
	}
	s.body = append(s.body, time.Since(t).Seconds()*1000)

	t = time.Now()
	d, err = s.c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: fmt.Sprintf("Compte rendu %05d", n/3)}}}, nil).Wait()
	if err != nil || len(d.AllUIDs()) != 1 {
		log.Fatalf("%s: search header: %v %v", s.name, err, d)
	}
	s.header = append(s.header, time.Since(t).Seconds()*1000)
}

func median(v []float64) float64 {
	sort.Float64s(v)
	return v[len(v)/2]
}

const words = "patient compte rendu examen biologie cardiologie lettre liaison sortie hospitalisation traitement "

// message builds a text message of about size bytes with a unique Message-ID, subject and
// body token (needleNNNNN).
func message(rng *rand.Rand, i, size int) []byte {
	var b strings.Builder
	b.Grow(size + 200)
	fmt.Fprintf(&b, "From: Emetteur <emetteur@hopital-a.test.mssante.fr>\r\nTo: dpi@hopital-b.test.mssante.fr\r\n")
	fmt.Fprintf(&b, "Subject: Compte rendu %05d\r\nDate: Mon, 02 Nov 2026 10:00:00 +0100\r\nMessage-ID: <bench-%d@test>\r\n", i, i)
	fmt.Fprintf(&b, "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nneedle%05d\r\n", i)
	for b.Len() < size {
		for j := 0; j < 10; j++ {
			k := rng.Intn(len(words) - 12)
			b.WriteString(words[k : k+10])
		}
		b.WriteString("\r\n")
	}
	return []byte(b.String())
}
