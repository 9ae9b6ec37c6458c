//go:build !unix

package sdnotify

// MonotonicUsec has no clock to read where there is no systemd either.
func MonotonicUsec() string { return "MONOTONIC_USEC=0" }
