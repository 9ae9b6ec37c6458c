//go:build unix

package sdnotify

import (
	"strconv"

	"golang.org/x/sys/unix"
)

// MonotonicUsec is the MONOTONIC_USEC= assignment that sd_notify(3) asks to send with
// RELOADING=1: CLOCK_MONOTONIC in microseconds, which systemd compares with the time it
// asked for the reload.
func MonotonicUsec() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return "MONOTONIC_USEC=0"
	}
	return "MONOTONIC_USEC=" + strconv.FormatInt(ts.Nano()/1000, 10)
}
