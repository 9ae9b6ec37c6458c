package peers

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
)

// The throw-away server answers psql, survives a stop and a kill -9 with its data, and
// listens on no TCP port.
func TestPostgres(t *testing.T) {
	psql := testenv.Require(t, "psql")
	pg := StartPostgres(t, nil)
	query := func(sql string) string {
		t.Helper()
		out, err := exec.Command(psql, pg.DSN(), "-XAtc", sql).CombinedOutput()
		if err != nil {
			t.Fatalf("psql %q: %v\n%s\n%s", sql, err, out, pg.Log())
		}
		return strings.TrimSpace(string(out))
	}
	query("CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')")
	if got := query("SHOW listen_addresses"); got != "" {
		t.Errorf("listen_addresses = %q, want none", got)
	}
	pg.Stop()
	pg.Start(t)
	pg.Kill()
	pg.Start(t)
	if got := query("SELECT v FROM t"); got != "kept" {
		t.Fatalf("after a stop and a kill: %q", got)
	}
}

// TestPostgresOrphanProcess is the test binary of TestPostgresDiesWithParent that is killed:
// it starts a server, prints its folder and waits. It does nothing in a normal run.
func TestPostgresOrphanProcess(t *testing.T) {
	if os.Getenv("MSSANTE_PEERS_ORPHAN") == "" {
		t.Skip("helper process of TestPostgresDiesWithParent")
	}
	pg := StartPostgres(t, nil)
	fmt.Println("dir", pg.Dir)
	time.Sleep(time.Minute)
}

// A test binary killed with SIGKILL runs no cleanup: its PostgreSQL server stops all the same,
// at once, and the next StartPostgres removes the folder it left.
func TestPostgresDiesWithParent(t *testing.T) {
	if postgresBin() == "" {
		StartPostgres(t, nil) // skips, or fails when peers are required
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPostgresOrphanProcess$", "-test.v")
	cmd.Env = append(os.Environ(), "MSSANTE_PEERS_ORPHAN=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var dir string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "dir "); ok {
			dir = d
			break
		}
	}
	if dir == "" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("the helper process started no server")
	}
	b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	if processStart(pid) == "" {
		t.Fatalf("postmaster %d not running", pid)
	}
	cmd.Process.Kill()
	cmd.Wait()
	killed := time.Now()
	for processStart(pid) != "" {
		if time.Since(killed) > 20*time.Second {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("postmaster %d still running 20 s after its test binary was killed", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("postmaster gone %v after its test binary", time.Since(killed).Round(time.Millisecond))
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the folder is already gone: %v", err)
	}
	StartPostgres(t, nil)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the folder of the killed test binary is still there: %v", err)
	}
}
