package docs

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/internal/testenv"
)

// shippedRules is the Prometheus alerting rules file the operator guide installs.
const shippedRules = "../contrib/prometheus/mssante-rules.yml"

// promtool, the checker of Prometheus itself (Debian's prometheus package), accepts the rules
// file: YAML, PromQL expressions and templates.
func TestPrometheusRulesCheck(t *testing.T) {
	promtool := testenv.Require(t, "promtool")
	out, err := exec.Command(promtool, "check", "rules", shippedRules).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// Every series the rules use is one a running connector exposes: a rule on a misspelt or
// removed series passes promtool and never fires.
func TestPrometheusRulesSeries(t *testing.T) {
	b, err := os.ReadFile(shippedRules)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, m := range regexp.MustCompile(`\bmssante_[a-z_]+`).FindAllString(line, -1) {
			used[m] = true
		}
	}
	if len(used) < 5 {
		t.Fatalf("only %d series found in the rules: %v", len(used), used)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sb, err := sandbox.Start(ctx, &sandbox.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	op := sb.Info.Operators[0]
	// A refusal, so that the refusal counter, born with its first reason, is there: a MAIL
	// without STARTTLS on the relay.
	c, err := smtp.Dial(op.Relay)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("x@"+op.Domains[0], nil); err == nil {
		t.Fatal("the relay accepted MAIL without TLS")
	}
	c.Close()
	resp, err := http.Get("http://" + op.Metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	exp, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	exposed := map[string]bool{}
	for _, line := range strings.Split(string(exp), "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, _, _ := strings.Cut(rest, " ")
			exposed[name] = true
		}
	}
	var missing []string
	for m := range used {
		if !exposed[m] {
			missing = append(missing, m)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("the rules use series the connector does not expose: %v", missing)
	}
}
