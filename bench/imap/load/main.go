// Command load measures an IMAP server the way bench/imap/run.sh compares ours with Dovecot:
// it APPENDs N messages of a given size into a fresh folder, then FETCHes them all (BODY.PEEK[])
// and SEARCHes them (a BODY search that reads every message, a HEADER search), RUNS times
// each, and prints one line per figure: "RESULT phase value unit" (medians).
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

func main() {
	addr := flag.String("addr", "127.0.0.1:10143", "server")
	user := flag.String("user", "testuser", "login")
	pass := flag.String("pass", "pass", "password")
	n := flag.Int("n", 10000, "messages")
	size := flag.Int("size", 20*1024, "message size in bytes")
	runs := flag.Int("runs", 3, "runs of FETCH and SEARCH (median printed)")
	box := flag.String("mailbox", "bench", "folder (re-created)")
	flag.Parse()

	c, err := imapclient.DialInsecure(*addr, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(*user, *pass).Wait(); err != nil {
		log.Fatal(err)
	}
	c.Delete(*box).Wait()
	if err := c.Create(*box, nil).Wait(); err != nil {
		log.Fatal(err)
	}

	rng := rand.New(rand.NewSource(1))
	start := time.Now()
	for i := 0; i < *n; i++ {
		msg := message(rng, i, *size)
		cmd := c.Append(*box, int64(len(msg)), nil)
		cmd.Write(msg)
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			log.Fatalf("append %d: %v", i, err)
		}
	}
	fmt.Printf("RESULT append %.1f msg/s\n", float64(*n)/time.Since(start).Seconds())

	sel, err := c.Select(*box, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil || sel.NumMessages != uint32(*n) {
		log.Fatalf("select: %v, %d messages", err, sel.NumMessages)
	}
	var fetch, body, header []float64
	for r := 0; r < *runs; r++ {
		t := time.Now()
		var count int
		var bytes int64
		all := imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}
		cmd := c.Fetch(all, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
		for m := cmd.Next(); m != nil; m = cmd.Next() {
			for it := m.Next(); it != nil; it = m.Next() {
				if bs, ok := it.(imapclient.FetchItemDataBodySection); ok {
					k, _ := io.Copy(io.Discard, bs.Literal)
					bytes += k
				}
			}
			count++
		}
		if err := cmd.Close(); err != nil || count != *n || bytes < int64(*n)*int64(*size)*9/10 {
			log.Fatalf("fetch: %v, %d messages, %d bytes", err, count, bytes)
		}
		fetch = append(fetch, float64(count)/time.Since(t).Seconds())

		t = time.Now()
		want := fmt.Sprintf("needle%05d", *n/2)
		d, err := c.UIDSearch(&imap.SearchCriteria{Body: []string{want}}, nil).Wait()
		if err != nil || len(d.AllUIDs()) != 1 {
			log.Fatalf("search body: %v %v", err, d)
		}
		body = append(body, time.Since(t).Seconds()*1000)

		t = time.Now()
		d, err = c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: fmt.Sprintf("Compte rendu %05d", *n/3)}}}, nil).Wait()
		if err != nil || len(d.AllUIDs()) != 1 {
			log.Fatalf("search header: %v %v", err, d)
		}
		header = append(header, time.Since(t).Seconds()*1000)
	}
	fmt.Printf("RESULT fetch %.1f msg/s\n", median(fetch))
	fmt.Printf("RESULT search-body %.1f ms\n", median(body))
	fmt.Printf("RESULT search-header %.1f ms\n", median(header))
	c.Logout().Wait()
}

func median(v []float64) float64 {
	sort.Float64s(v)
	return v[len(v)/2]
}

const words = "patient compte rendu examen biologie cardiologie lettre liaison sortie hospitalisation traitement "

// message builds a MIME message of about size bytes with a unique Message-ID, subject and
// body token (needleNNNNN).
func message(rng *rand.Rand, i, size int) []byte {
	var b strings.Builder
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
