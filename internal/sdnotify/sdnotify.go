// Package sdnotify tells the service manager about the state of a service, as sd_notify(3)
// does without libsystemd: one datagram of newline-separated KEY=VALUE assignments to the
// unix socket named by $NOTIFY_SOCKET (a path, or an abstract name starting with "@"). With a
// unit of Type=notify (systemd.service(5)), systemd starts dependent units only after
// READY=1, shows STATUS= in "systemctl status", holds the unit in "reloading" from
// RELOADING=1 to the next READY=1, and in "deactivating" after STOPPING=1.
//
// Without $NOTIFY_SOCKET (not run by systemd, or a Type other than notify) every call does
// nothing, so a program notifies unconditionally.
package sdnotify

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
)

// The states of sd_notify(3) that a server sends.
const (
	Ready     = "READY=1"
	Reloading = "RELOADING=1"
	Stopping  = "STOPPING=1"
)

// Notify sends the assignments, one per line, to $NOTIFY_SOCKET. It returns nil without
// sending when the variable is unset.
func Notify(assignments ...string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	if addr[0] != '/' && addr[0] != '@' {
		return errors.New("sdnotify: NOTIFY_SOCKET " + strconv.Quote(addr) + " is neither a path nor an abstract socket")
	}
	// A leading "@" is read by the net package as the Linux abstract namespace, as systemd
	// means it.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(strings.Join(assignments, "\n")))
	return err
}

// Status is the STATUS= assignment of a one-line state, for "systemctl status".
func Status(s string) string {
	return "STATUS=" + strings.ReplaceAll(s, "\n", " ")
}
