package sandbox_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/mssante-go/sdk/internal/sandbox"
)

// A test starts the whole trust space in-process, sends from the hopital's BAL applicative to
// the test responder (hosted by the other operator) and reads the answer over IMAPS.
func Example() {
	dir, err := os.MkdirTemp("", "sandbox")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sb, err := sandbox.Start(ctx, &sandbox.Options{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Close()

	info := sb.Info // also in dir/sandbox.json, for other processes: sandbox.Load(dir)
	from := "dpi@" + sandbox.Hopital
	msg := "From: <" + from + ">\r\nTo: <" + info.Responder + ">\r\nSubject: test\r\nMessage-ID: <ex1@example>\r\n\r\nbonjour\r\n"
	if err := info.Submit(ctx, from, []string{info.Responder}, []byte(msg)); err != nil {
		log.Fatal(err)
	}
	reply, err := info.WaitFor(ctx, from, func(raw []byte) bool { return bytes.Contains(raw, []byte("In-Reply-To: <ex1@example>")) })
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(bytes.Contains(reply, []byte("Auto-Submitted: auto-replied")))
	// Output: true
}
