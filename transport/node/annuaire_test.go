package node_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/annuaire"
	"github.com/mssante-go/sdk/annuaire/annuairetest"
	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/transport/mailbox"
	"github.com/mssante-go/sdk/transport/node"
)

// A node with [annuaire] reconciles its BALs with the extraction in its folder at start and
// exports the counts: an ORG BAL the national file lists is "ok", one it lacks "missing", and
// the APP BAL, which the file never lists, "unchecked".
func TestNodeReconcilesWithTheAnnuaire(t *testing.T) {
	s := newSpace(t, "annu.test")
	o := s.ops[0]
	ml, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.lns["metrics"] = ml
	cfg := s.config(t, o)
	cfg.Annuaire = node.AnnuaireConfig{Dir: filepath.Join(t.TempDir(), "annuaire"), URL: "https://127.0.0.1:1/none",
		RefreshInterval: time.Hour}
	if err := os.MkdirAll(cfg.Annuaire.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := annuairetest.WriteExtraction(&b, 500, 3); err != nil {
		t.Fatal(err)
	}
	published := annuaire.Entry{Address: "publie@annu.test", Type: annuaire.ORG,
		Structure: annuaire.Structure{IDType: "FINESS", ID: "1123456789", Name: "STRUCTURE"}}
	f := published.Fields()
	b.WriteString(strings.Join(f[:], "|") + "\n")
	paris, _ := time.LoadLocation("Europe/Paris")
	name := "Extraction_Correspondance_MSSante_" + time.Now().In(paris).Format("20060102") + "0000.txt"
	if err := os.WriteFile(filepath.Join(cfg.Annuaire.Dir, name), b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs testenv.Buffer
	n, err := node.New(ctx, cfg, &node.Options{Listeners: o.lns, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"publie@annu.test", "secretariat@annu.test"} {
		if err := n.Store.AddBAL(ctx, &mailbox.BAL{Address: a, Type: mailbox.ORG, Owner: "1123456789"}); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	<-n.Listening()
	want := []string{`mssante_annuaire_reconcile_bals{status="missing"} 1`, `mssante_annuaire_reconcile_bals{status="ok"} 1`,
		`mssante_annuaire_reconcile_bals{status="unchecked"} 1`, "mssante_annuaire_extraction_skipped_lines 0"}
	var exp string
	var lacks []string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		_, exp = get(t, "http://"+ml.Addr().String()+"/metrics")
		lacks = lacks[:0]
		for _, w := range want {
			if !strings.Contains(exp, w) {
				lacks = append(lacks, w)
			}
		}
		if len(lacks) == 0 {
			break
		}
	}
	if len(lacks) > 0 {
		t.Errorf("/metrics lacks %s:\n%s\nlog:\n%s", strings.Join(lacks, ", "), grepLines(exp, "annuaire"), grepLines(string(logs.Bytes()), "annuaire"))
	}
	cancel()
	<-done
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
