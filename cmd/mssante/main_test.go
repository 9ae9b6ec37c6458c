package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A package name is printed once, and not at all when it is the command's.
func TestErrorLine(t *testing.T) {
	for _, c := range []struct {
		cmd  string
		err  error
		want string
	}{
		{"annuaire", errors.New("annuaire: annuaire: no such file"), "no such file"},
		{"cert", fmt.Errorf("x.pem: %w", errors.New("transport: not PEM: transport: PKCS#7: short")), "x.pem: transport: not PEM: PKCS#7: short"},
		{"send", errors.Join(errors.New("bal: a"), errors.New("bal: b")), "bal: a; bal: b"},
		{"xdm", errors.New("open f: no such file or directory"), "open f: no such file or directory"},
		{"doctor", errors.New("ends with colon: "), "ends with colon:"},
	} {
		if got := errorLine(c.cmd, c.err); got != c.want {
			t.Errorf("%s %q: got %q, want %q", c.cmd, c.err, got, c.want)
		}
	}
}

// Through the binary: "mssante annuaire: annuaire: …" loses its second prefix.
func TestErrorPrefixOnce(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "x.txt")
	os.WriteFile(bad, []byte("not an extraction\n"), 0o600)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"annuaire", "search", "--source", "extraction:" + bad, "--name", "x"}, &env{stdout: &out, stderr: &errb})
	if code != 1 || !strings.HasPrefix(errb.String(), "mssante annuaire: ") || strings.Contains(errb.String(), "annuaire: annuaire:") ||
		strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}

// A command made of subcommands has no options of its own: its help has no empty "Options:".
func TestGroupHelpHasNoEmptyOptions(t *testing.T) {
	for _, name := range []string{"cda", "xdm", "bal", "whitelist", "cert", "annuaire"} {
		var out, errb bytes.Buffer
		run(context.Background(), []string{name, "--help"}, &env{stdout: &out, stderr: &errb})
		help := strings.TrimRight(out.String()+errb.String(), "\n ")
		if help == "" || strings.HasSuffix(help, "Options:") {
			t.Errorf("%s --help ends with an empty Options:\n%s", name, help)
		}
	}
}

// A usage mistake is said in one line that names what is missing, not with the whole usage.
func TestUsageMistakesOneLine(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"doctor"}, "--domain is required"},
		{[]string{"cert", "inspect"}, "no FILE"},
		{[]string{"xdm", "pack", "-o", "x.zip"}, "--cda FILE is required"},
		{[]string{"xdm", "inspect"}, "one IHE_XDM.ZIP"},
		{[]string{"cda", "validate"}, "one CDA document"},
		{[]string{"cda", "build"}, "--from INPUT.json is required"},
		{[]string{"annuaire", "search", "--name", "x"}, "--source is required"},
	} {
		var out, errb bytes.Buffer
		code := run(context.Background(), c.args, &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb})
		if code != 2 || !strings.Contains(errb.String(), c.want) || !strings.Contains(errb.String(), "--help") || strings.Count(errb.String(), "\n") != 1 {
			t.Errorf("%v: exit %d, want 2 and one line with %q:\n%s", c.args, code, c.want, errb.String())
		}
	}
}
