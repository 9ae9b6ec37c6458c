package authlimit_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/mssante-go/sdk/transport/authlimit"
)

// A server asks the connection's limiter before checking a password, and tells it the
// outcome; it closes the connection on ErrLocked and ErrTooManyFailures.
func Example() {
	l := authlimit.New(nil) // the defaults: close after 3 failures, delay from 3, refuse from 10
	c := l.Conn("imap", "192.0.2.1:49152")
	check := func(user, pass string) bool { return pass == "correct horse" }
	for _, pass := range []string{"a", "b", "c"} {
		if err := c.Before(context.Background(), "dr@h.fr"); err != nil {
			fmt.Println("refused:", err)
			return
		}
		if check("dr@h.fr", pass) {
			c.Succeeded("dr@h.fr")
			continue
		}
		if err := c.Failed("dr@h.fr"); errors.Is(err, authlimit.ErrTooManyFailures) {
			fmt.Println("closing:", err)
		}
	}
	// Output:
	// closing: authlimit: too many failed authentications on this connection
}
