//go:build unix

package transport_test

import (
	"context"
	"crypto/tls"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/mssante-go/sdk/transport"
)

// BenchmarkMutualTLSHandshake measures one full mutual-TLS 1.2 handshake over loopback (TCP
// connect included, no session resumption), with our verification (ServerConfig and Dialer:
// trust store chain check, EKU, dates, CRL lookup on both sides) and with plain crypto/tls
// verification (RequireAndVerifyClientCert and RootCAs) on the same certificates, versions and
// cipher suites. bench/tls/run.sh prints the medians and their ratio.
func BenchmarkMutualTLSHandshake(b *testing.B) {
	f := newFixture(b)
	srvCert := f.server.TLSCertificate()
	cliCert := f.client.TLSCertificate()
	ours, err := transport.ServerConfig(nil, &transport.TLSOptions{Trust: f.trust, Certificates: []tls.Certificate{srvCert}})
	if err != nil {
		b.Fatal(err)
	}
	plain := &tls.Config{
		Certificates: []tls.Certificate{srvCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    f.pki.Roots(),
		MinVersion:   tls.VersionTLS12, MaxVersion: tls.VersionTLS12,
		CipherSuites: transport.DefaultCipherSuites(),
	}
	plainClient := &tls.Config{
		Certificates: []tls.Certificate{cliCert},
		RootCAs:      f.pki.Roots(),
		ServerName:   "localhost",
		MinVersion:   tls.VersionTLS12, MaxVersion: tls.VersionTLS12,
		CipherSuites: transport.DefaultCipherSuites(),
	}
	dialer := &transport.Dialer{Options: transport.TLSOptions{Trust: f.trust, Certificates: []tls.Certificate{cliCert}}}

	serve := func(b *testing.B, cfg *tls.Config) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					tc := tls.Server(c, cfg)
					if tc.Handshake() == nil {
						tc.Write([]byte{1})
					}
					tc.Close()
				}()
			}
		}()
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		return net.JoinHostPort("localhost", port)
	}
	finish := func(b *testing.B, tc *tls.Conn) {
		var one [1]byte
		// The byte may come with io.EOF: the server closes right after writing it.
		if n, err := tc.Read(one[:]); n != 1 {
			b.Fatal(err)
		}
		tc.Close()
	}
	ctx := context.Background()

	b.Run("ours", func(b *testing.B) {
		addr := serve(b, ours)
		defer reportCPU(b)()
		for b.Loop() {
			tc, err := dialer.DialContext(ctx, "tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			finish(b, tc)
		}
	})
	b.Run("plain", func(b *testing.B) {
		addr := serve(b, plain)
		defer reportCPU(b)()
		for b.Loop() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			tc := tls.Client(c, plainClient)
			if err := tc.HandshakeContext(ctx); err != nil {
				b.Fatal(err)
			}
			finish(b, tc)
		}
	})
}

// reportCPU reports the process CPU time (user+system, both ends of the handshake run in this
// process) per operation as "cpu-ns/op": unlike wall time it does not grow when other processes
// compete for the CPU.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() {
		b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
