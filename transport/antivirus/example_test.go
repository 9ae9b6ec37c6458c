package antivirus_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/mssante-go/sdk/transport/antivirus"
)

// A message checked by the local clamd before it is accepted: a detection is refused for good,
// a scanner that cannot tell is a temporary failure, never a pass.
func Example() {
	var s antivirus.Scanner = &antivirus.ClamAV{Network: "unix", Addr: "/run/clamav/clamd.ctl"}
	msg, err := os.Open("message.eml")
	if err != nil {
		log.Fatal(err)
	}
	defer msg.Close()
	err = s.Scan(context.Background(), msg)
	var found *antivirus.VirusError
	switch {
	case errors.As(err, &found):
		fmt.Println("554 5.7.1 content rejected:", found.Signature)
	case err != nil:
		fmt.Println("451 4.7.1 try again later:", err)
	default:
		fmt.Println("clean")
	}
}
