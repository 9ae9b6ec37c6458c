package peers

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
)

// Postgres is a throw-away PostgreSQL server: its own cluster (initdb) in a temporary folder,
// listening only on a Unix socket in that folder, with trust authentication for the
// "postgres" role. No system service is used or started.
type Postgres struct {
	Dir    string // the cluster's folder: data/, the socket, the log
	bin    string // the folder of initdb and postgres
	cred   *syscall.Credential
	proc   *exec.Cmd
	exited chan error
}

// PostgresOptions configures StartPostgres.
type PostgresOptions struct {
	// Fsync keeps PostgreSQL's fsync on. Off by default: the tests restart the server, they
	// do not crash the machine, and fsync off makes them several times faster. Benchmarks
	// that compare durable stores turn it on.
	Fsync bool
	// Settings are more postgresql.conf lines ("max_connections = 200").
	Settings []string
}

// postgresBin returns the folder of Debian's PostgreSQL server programs, the newest version
// installed ("" when there is none). They are not on PATH.
func postgresBin() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi < vj
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "postgres")); err == nil {
			return dirs[i]
		}
	}
	return ""
}

// StartPostgres creates a cluster and starts its server; it is stopped in t.Cleanup, and
// when the test binary dies without its cleanups (on Linux at once, elsewhere by the next
// StartPostgres, which also removes the folder left). The server refuses to run as root: under root, the cluster belongs to the "postgres" user that
// Debian's package creates.
func StartPostgres(t testing.TB, o *PostgresOptions) *Postgres {
	t.Helper()
	if o == nil {
		o = &PostgresOptions{}
	}
	bin := postgresBin()
	if bin == "" {
		if testenv.PeersRequired() {
			t.Fatal("peers: PostgreSQL server programs not found under /usr/lib/postgresql (Debian package postgresql; MSSANTE_REQUIRE_PEERS=1)")
		}
		t.Skip("peers: PostgreSQL server not installed (Debian package postgresql)")
	}
	sweepOrphans()
	pg := &Postgres{Dir: TempDir(t, "pg"), bin: bin}
	if err := writeOwner(pg.Dir); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("peers: running as root, and no postgres user to run PostgreSQL as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		pg.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(pg.Dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	out, err := pg.command("initdb", "-D", pg.data(), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
		"--locale=C.UTF-8", "--no-instructions").CombinedOutput()
	if err != nil {
		t.Fatalf("peers: initdb: %v\n%s", err, out)
	}
	conf := []string{
		"listen_addresses = ''",
		"unix_socket_directories = '" + pg.Dir + "'",
		"fsync = " + map[bool]string{true: "on", false: "off"}[o.Fsync],
		"synchronous_commit = " + map[bool]string{true: "on", false: "off"}[o.Fsync],
		"full_page_writes = " + map[bool]string{true: "on", false: "off"}[o.Fsync],
		"max_connections = 100",
		"shared_buffers = 64MB",
	}
	conf = append(conf, o.Settings...)
	f, err := os.OpenFile(filepath.Join(pg.data(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("\n" + strings.Join(conf, "\n") + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	pg.Start(t)
	t.Cleanup(pg.Stop)
	return pg
}

func (pg *Postgres) data() string { return filepath.Join(pg.Dir, "data") }

// command runs one of the server programs as the cluster's owner.
func (pg *Postgres) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(pg.bin, name), args...)
	cmd.Dir = pg.Dir
	if pg.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: pg.cred}
	}
	return cmd
}

// DSN is the connection string of the server's "postgres" database for pgx or libpq.
func (pg *Postgres) DSN() string {
	return fmt.Sprintf("host=%s port=5432 user=postgres dbname=postgres sslmode=disable", pg.Dir)
}

// Start starts the server (again, after Stop or Kill) and waits until it accepts
// connections.
func (pg *Postgres) Start(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(pg.Dir, "postgres.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if pg.cred != nil {
		os.Chown(logf.Name(), int(pg.cred.Uid), int(pg.cred.Gid))
	}
	pg.proc = pg.command("postgres", "-D", pg.data(), "-p", "5432")
	pg.proc.Stdout, pg.proc.Stderr = logf, logf
	if err := startWithParent(pg.proc); err != nil {
		logf.Close()
		t.Fatalf("peers: postgres: %v", err)
	}
	logf.Close()
	pg.exited = make(chan error, 1)
	go func(c *exec.Cmd, ch chan error) { ch <- c.Wait() }(pg.proc, pg.exited)
	sock := filepath.Join(pg.Dir, ".s.PGSQL.5432")
	for deadline := time.Now().Add(30 * time.Second); ; {
		if out, err := pg.command("pg_isready", "-h", pg.Dir, "-p", "5432", "-t", "1").CombinedOutput(); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("peers: postgres not ready after 30s (%s: %s):\n%s", sock, out, pg.Log())
		}
		select {
		case err := <-pg.exited:
			pg.exited <- err
			t.Fatalf("peers: postgres exited at start: %v\n%s", err, pg.Log())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop shuts the server down (fast mode: clients are disconnected, the data is flushed).
func (pg *Postgres) Stop() { pg.signal(syscall.SIGINT) }

// Kill ends the server as a crash would (SIGKILL of the postmaster): the next Start recovers
// from its write-ahead log.
func (pg *Postgres) Kill() {
	if pg.proc == nil || pg.proc.Process == nil {
		return
	}
	// The postmaster's children notice its death and exit; a new postmaster refuses to
	// start while they hold the shared memory, so wait for them.
	children := childrenOf(pg.proc.Process.Pid)
	pg.signal(syscall.SIGKILL)
	waitGone(children)
}

// childrenOf lists the processes whose parent is pid, from /proc (procps may be absent).
func childrenOf(pid int) []string {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []string
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid …: comm may hold spaces and parentheses, so cut at the last ")".
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, filepath.Base(filepath.Dir(f)))
		}
	}
	return out
}

func (pg *Postgres) signal(sig syscall.Signal) {
	if pg.proc == nil || pg.proc.Process == nil {
		return
	}
	select {
	case err := <-pg.exited:
		pg.exited <- err
		return
	default:
	}
	pg.proc.Process.Signal(sig)
	select {
	case <-pg.exited:
	case <-time.After(30 * time.Second):
		pg.proc.Process.Kill()
		<-pg.exited
	}
	pg.exited <- nil
}

// Log returns the end of the server's log.
func (pg *Postgres) Log() string { return tail(readLog(filepath.Join(pg.Dir, "postgres.log")), 40) }
