// Command fill builds the large folders of bench/imap/scale.sh without going through IMAP:
// in our store through the mailbox API (Append: each message fsynced and committed, as a
// delivery), and as a Dovecot Maildir (one file per message in cur/, which Dovecot indexes
// on the first SELECT). Both get the same messages.
//
//	go run ./bench/imap/fill -store DIR -bal a@b.fr -maildir DIR/Maildir -folders f1k:1000,f100k:100000
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mssante-go/sdk/transport/mailbox"
)

func main() {
	store := flag.String("store", "", "our store folder (created); empty: none")
	bal := flag.String("bal", "testuser@bench.test", "BAL owning the folders")
	maildir := flag.String("maildir", "", "Dovecot Maildir (created); empty: none")
	folders := flag.String("folders", "f1k:1000", "folders to build, name:count,…")
	size := flag.Int("size", 2048, "message size in bytes")
	workers := flag.Int("workers", 4, "concurrent appends to our store")
	flag.Parse()
	ctx := context.Background()
	var st *mailbox.SQLite
	if *store != "" {
		var err error
		if st, err = mailbox.OpenSQLite(ctx, *store, &mailbox.Options{WatchPoll: -1}); err != nil {
			log.Fatal(err)
		}
		defer st.Close()
		if _, err := st.GetBAL(ctx, *bal); err != nil {
			if err := st.AddBAL(ctx, &mailbox.BAL{Address: *bal, Type: mailbox.ORG}); err != nil {
				log.Fatal(err)
			}
		}
	}
	for _, f := range strings.Split(*folders, ",") {
		name, n, _ := strings.Cut(f, ":")
		count, err := strconv.Atoi(n)
		if err != nil {
			log.Fatalf("fill: folder %q: %v", f, err)
		}
		t := time.Now()
		if st != nil {
			if err := st.CreateMailbox(ctx, *bal, name); err != nil {
				log.Fatal(err)
			}
			var wg sync.WaitGroup
			next := make(chan int)
			for w := 0; w < *workers; w++ {
				wg.Go(func() {
					for i := range next {
						if _, err := st.Append(ctx, *bal, name, bytes.NewReader(message(i, *size)), nil); err != nil {
							log.Fatal(err)
						}
					}
				})
			}
			for i := range count {
				next <- i
			}
			close(next)
			wg.Wait()
		}
		ours := time.Since(t)
		t = time.Now()
		if *maildir != "" {
			cur := filepath.Join(*maildir, "."+name, "cur")
			for _, d := range []string{cur, filepath.Join(*maildir, "."+name, "new"), filepath.Join(*maildir, "."+name, "tmp")} {
				if err := os.MkdirAll(d, 0o700); err != nil {
					log.Fatal(err)
				}
			}
			base := time.Now().Unix() - int64(count)
			for i := range count {
				m := message(i, *size)
				file := fmt.Sprintf("%d.M%dP%d.bench,S=%d:2,", base+int64(i), i, os.Getpid(), len(m))
				if err := os.WriteFile(filepath.Join(cur, file), m, 0o600); err != nil {
					log.Fatal(err)
				}
			}
		}
		fmt.Printf("fill: %s: %d messages: ours %.1f s, maildir %.1f s\n", name, count, ours.Seconds(), time.Since(t).Seconds())
	}
}

// message builds a text message of about size bytes with a unique Message-ID and subject.
func message(i, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Emetteur <emetteur@hopital-a.test.mssante.fr>\r\nTo: dpi@hopital-b.test.mssante.fr\r\n")
	fmt.Fprintf(&b, "Subject: Compte rendu %06d\r\nDate: Mon, 02 Nov 2026 10:00:00 +0100\r\nMessage-ID: <fill-%d@test>\r\n", i, i)
	fmt.Fprintf(&b, "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	for b.Len() < size {
		b.WriteString("patient compte rendu examen biologie cardiologie lettre liaison sortie\r\n")
	}
	return b.Bytes()
}
