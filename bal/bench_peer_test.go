package bal

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
)

// TestBenchAgainstSmtpSource is the measurement bench/bal/run.sh prints: N messages of
// SIZE bytes over one connection to a throw-away Postfix (implicit TLS, client certificate,
// messages discarded after queueing), sent by this client and by Postfix's smtp-source
// (through stunnel, since smtp-source has no TLS), ROUNDS rounds alternated; the medians
// and their ratio. It runs only with BAL_BENCH=1.
func TestBenchAgainstSmtpSource(t *testing.T) {
	if os.Getenv("BAL_BENCH") != "1" {
		t.Skip("BAL_BENCH=1 runs the benchmark (bench/bal/run.sh)")
	}
	n, size, rounds := envInt("BAL_BENCH_N", 1000), envInt("BAL_BENCH_SIZE", 100*1024), envInt("BAL_BENCH_ROUNDS", 3)
	source := testenv.Require(t, "smtp-source")
	stunnel := testenv.Require(t, "stunnel4")
	p := newTestPKI(t)
	peers := startMailPeers(t, p)

	// stunnel: plaintext on a loopback port → SMTPS of Postfix with the BAL's certificate.
	sdir := filepath.Join(peers.dir, "stunnel")
	os.MkdirAll(sdir, 0o755)
	if _, _, err := p.client.WriteFiles(sdir, "client"); err != nil {
		t.Fatal(err)
	}
	sport := testenv.FreePort(t)
	writeFile(t, filepath.Join(sdir, "client.conf"), fmt.Sprintf(`pid = %[1]s/stunnel.pid
output = %[1]s/stunnel.log
foreground = no
[smtps-mtls]
client = yes
accept = 127.0.0.1:%[2]d
connect = %[3]s
cert = %[1]s/client.crt.pem
key = %[1]s/client.key.pem
CAfile = %[4]s/pki/ca.pem
verifyChain = yes
checkHost = localhost
`, sdir, sport, peers.submissions, peers.dir))
	runCmd(t, stunnel, filepath.Join(sdir, "client.conf"))
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(sdir, "stunnel.pid")); err == nil {
			exec.Command("kill", strings.TrimSpace(string(b))).Run()
		}
	})
	waitListen(t, fmt.Sprintf("127.0.0.1:%d", sport))
	// stunnel writes its pid file once detached, which may come after it listens.
	var spid []byte
	for i := 0; ; i++ {
		b, err := os.ReadFile(filepath.Join(sdir, "stunnel.pid"))
		if err == nil && len(bytes.TrimSpace(b)) > 0 {
			spid = b
			break
		}
		if i == 100 {
			t.Fatalf("stunnel pid file: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stunnelCPU := func() time.Duration { return procCPU(t, strings.TrimSpace(string(spid))) }

	// The same messages for both: N distinct Message-IDs, SIZE bytes each.
	body := bytes.Repeat([]byte("0123456789012345678901234567890123456789012345678901234567890123456789012\r\n"), size/76)
	msgs := make([][]byte, n)
	// Each side's figures: messages per second (wall clock) and CPU time per message (user +
	// system, the client's own process; for smtp-source, its process plus stunnel's, which
	// does its TLS). CPU time depends far less on the load of this shared machine.
	var cpuOurs, cpuTheirs []float64
	ours := func(round, workers int) float64 {
		for i := range msgs {
			msgs[i] = []byte(fmt.Sprintf("From: <%s>\r\nTo: <x@bench.example>\r\nSubject: bench\r\nX-MSS-NIL: DEV000000\r\nMessage-ID: <r%d.%d.%d@test.example>\r\n\r\n%s",
				testBAL, round, i, time.Now().UnixNano(), body))
		}
		c, err := New(&Options{
			Address:    testBAL,
			Submission: Endpoint{Addr: peers.submissions, Security: ImplicitTLS, Auth: AuthNone},
			IMAP:       Endpoint{Addr: peers.imaps, Security: ImplicitTLS},
			TLS:        p.clientTLS(), Whitelist: testList(), StateDir: benchStateDir(t),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		opts := &SendOptions{Recipients: []string{"x@bench.example"}, Notify: []DSNNotify{NotifyNever}}
		cpu0 := selfCPU(t)
		start := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Go(func() {
				for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
					if _, err := c.SendRaw(context.Background(), bytes.NewReader(msgs[i]), opts); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		rate := float64(n) / time.Since(start).Seconds()
		if workers == 1 {
			cpuOurs = append(cpuOurs, float64(selfCPU(t)-cpu0)/float64(n)/1e3)
		}
		return rate
	}
	theirs := func() float64 {
		cpu0 := stunnelCPU()
		start := time.Now()
		cmd := exec.Command(source, "-s", "1", "-d", "-m", fmt.Sprint(n), "-l", fmt.Sprint(size),
			"-f", testBAL, "-t", "x@bench.example", fmt.Sprintf("127.0.0.1:%d", sport))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("smtp-source: %v\n%s", err, out)
		}
		rate := float64(n) / time.Since(start).Seconds()
		cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime() + stunnelCPU() - cpu0
		cpuTheirs = append(cpuTheirs, float64(cpu)/float64(n)/1e3)
		return rate
	}
	var a, a2, b, ratios []float64
	for r := 0; r < rounds; r++ {
		a = append(a, ours(r, 1))
		b = append(b, theirs())
		a2 = append(a2, ours(r+rounds, 2))
		ratios = append(ratios, a[r]/b[r])
		fmt.Printf("bench round %d: bal %.0f msg/s %.0f µs CPU/msg, smtp-source+stunnel %.0f msg/s %.0f µs CPU/msg, bal from 2 goroutines %.0f msg/s\n",
			r+1, a[r], cpuOurs[r], b[r], cpuTheirs[r], a2[r])
	}
	ma, mb := median(a), median(b)
	fmt.Printf("bench bal.Client.SendRaw  %d x %d KB, one connection, mTLS: %.0f msg/s, %.0f µs CPU/msg (medians of %d)\n",
		n, size/1024, ma, median(cpuOurs), rounds)
	fmt.Printf("bench smtp-source -d      %d x %d KB, one connection, mTLS via stunnel: %.0f msg/s, %.0f µs CPU/msg (medians of %d)\n",
		n, size/1024, mb, median(cpuTheirs), rounds)
	fmt.Printf("bench ratio bal/smtp-source: %.2fx (ratio of medians; median of per-round ratios %.2fx; goal >= 0.8x)\n", ma/mb, median(ratios))
	fmt.Printf("bench bal.Client.SendRaw from 2 goroutines, same connection (fsyncs shared, overlapping the next transfer): %.0f msg/s, %.2fx smtp-source\n",
		median(a2), median(a2)/mb)
	fmt.Printf("bench CPU per message bal/(smtp-source+stunnel): %.2fx\n", median(cpuOurs)/median(cpuTheirs))
}

// selfCPU is the user + system CPU time of this process.
func selfCPU(t testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the user + system CPU time of process pid (its threads included), from
// /proc/PID/stat in clock ticks (USER_HZ, 100 on Linux).
func procCPU(t testing.TB, pid string) time.Duration {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func envInt(k string, def int) int {
	var v int
	if _, err := fmt.Sscan(os.Getenv(k), &v); err != nil || v <= 0 {
		return def
	}
	return v
}

// benchStateDir is BAL_BENCH_STATE when set (to compare file systems), else a test folder.
func benchStateDir(t testing.TB) string {
	if d := os.Getenv("BAL_BENCH_STATE"); d != "" {
		d, err := os.MkdirTemp(d, "balbench")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		return d
	}
	return t.TempDir()
}
