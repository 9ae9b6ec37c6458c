package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mssante-go/sdk/internal/peers"
)

// storeConfig writes a serve.toml whose [store] is the PostgreSQL server pg (its DSN in a
// 0600 dsn_file) and returns its path.
func storeConfig(t *testing.T, pg *peers.Postgres) string {
	t.Helper()
	dir := t.TempDir()
	dsn := filepath.Join(dir, "dsn")
	if err := os.WriteFile(dsn, []byte(pg.DSN()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "serve.toml")
	toml := fmt.Sprintf(`hostname = "mx.a.test"
domains = ["a.test"]
spool_dir = "%[1]s/spool"
[tls]
cert_file = "%[1]s/c.pem"
key_file = "%[1]s/k.pem"
[whitelist]
file = "%[1]s/w.xml"
[audit]
dir = "%[1]s/audit"
[store]
backend = "postgres"
dsn_file = "%[2]s"
`, dir, dsn)
	if err := os.WriteFile(cfg, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// "store check" on an empty database says every component is pending and fails; "store
// migrate" applies them all (twice: the second applies nothing); "store check" then passes;
// a version written by a newer release makes check and migrate fail and name it.
func TestStoreMigrateAndCheck(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	cfg := storeConfig(t, pg)
	code, out, errOut := runCmd(t, "store", "check", "--config", cfg, "--json")
	if code != 1 || strings.Count(out, `"state":"pending"`) != 4 || !strings.Contains(out, `"version":0`) {
		t.Fatalf("check of an empty database: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCmd(t, "store", "migrate", "--config", cfg)
	if code != 0 || strings.Count(out, ": current (") != 4 || strings.Contains(out, "(0 applied)") {
		t.Fatalf("migrate: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCmd(t, "store", "migrate", "--config", cfg, "--json")
	if code != 0 || strings.Count(out, `"state":"current"`) != 4 || strings.Contains(out, `"applied"`) {
		t.Fatalf("second migrate: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCmd(t, "store", "check", "--config", cfg)
	for _, c := range []string{"mailbox", "queue", "authlimit", "connshare"} {
		if !strings.Contains(out, c) {
			t.Errorf("check does not name %s:\n%s", c, out)
		}
	}
	if code != 0 || strings.Count(out, ": current") != 4 {
		t.Fatalf("check after migrate: exit %d\n%s%s", code, out, errOut)
	}

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO mssante_schema (component, version, name) VALUES ('queue', 999, 'future')`); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCmd(t, "store", "check", "--config", cfg, "--json")
	if code != 1 || !strings.Contains(out, `"component":"queue","version":999`) || !strings.Contains(out, `"state":"newer"`) {
		t.Errorf("check of a newer database: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCmd(t, "store", "migrate", "--config", cfg)
	if code != 1 || !strings.Contains(errOut, "newer than this program") {
		t.Errorf("migrate of a newer database: exit %d\n%s%s", code, out, errOut)
	}
}

// Usage errors exit 2 with the reason; a SQLite configuration is refused with the why.
func TestStoreUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"store", "--help"}, 2, "migrate|check"},
		{[]string{"store", "vacuum"}, 2, "unknown subcommand"},
		{[]string{"store", "check"}, 2, "--config is required"},
	} {
		code, _, errOut := runCmd(t, c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, %q", c.args, code, errOut)
		}
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "serve.toml")
	os.WriteFile(cfg, []byte("hostname = \"h\"\ndomains = [\"a.test\"]\nspool_dir = \"/s\"\n[tls]\ncert_file = \"c\"\nkey_file = \"k\"\n[whitelist]\nfile = \"w\"\n[audit]\ndir = \"/a\"\n"), 0o600)
	if code, _, errOut := runCmd(t, "store", "check", "--config", cfg); code != 1 || !strings.Contains(errOut, "SQLite store migrates itself") {
		t.Errorf("sqlite: exit %d, %q", code, errOut)
	}
}

// "serve --check" with [store] backend = "postgres" reaches the database and reports each
// component's schema: pending before any node ran (info: the node migrates at start),
// current after "store migrate"; a dsn_file others can read and a database that does not
// answer fail the check.
func TestServeCheckStore(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	f := newServeFixture(t, t.TempDir())
	dsnFile := filepath.Join(f.dir, "dsn")
	if err := os.WriteFile(dsnFile, []byte(pg.DSN()), 0o600); err != nil {
		t.Fatal(err)
	}
	f.edit(t, "[log]\n", fmt.Sprintf("[store]\nbackend = \"postgres\"\ndsn_file = %q\n[log]\n", dsnFile))
	code, out, errOut := runCmd(t, "serve", "--config", f.config, "--check")
	if code != 0 || !strings.Contains(out, "info  store mailbox: schema version 0, this binary's is") {
		t.Fatalf("--check before migrate: exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(out, "local.maildir") {
		t.Errorf("--check looks at the Maildir a PostgreSQL node does not use:\n%s", out)
	}
	if code, out, errOut := runCmd(t, "store", "migrate", "--config", f.config); code != 0 {
		t.Fatalf("migrate: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCmd(t, "serve", "--config", f.config, "--check", "--json")
	if code != 0 || strings.Count(out, `"status":"ok","check":"store `) != 4 {
		t.Fatalf("--check after migrate: exit %d\n%s%s", code, out, errOut)
	}
	os.Chmod(dsnFile, 0o644)
	code, out, _ = runCmd(t, "serve", "--config", f.config, "--check")
	if code != 1 || !strings.Contains(out, "fail  store: node: store.dsn_file open to group or others") || !strings.Contains(out, "chmod 600") {
		t.Errorf("--check with a dsn_file of mode 0644: exit %d\n%s", code, out)
	}
	os.Chmod(dsnFile, 0o600)
	pg.Stop()
	code, out, _ = runCmd(t, "serve", "--config", f.config, "--check")
	if code != 1 || !strings.Contains(out, "fail  store: the database does not answer") {
		t.Errorf("--check with the database stopped: exit %d\n%s", code, out)
	}
}
