package peers

import (
	"os/exec"
	"strings"
	"testing"

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
