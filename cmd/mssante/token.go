package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/mssante-go/sdk/bal"
)

// exTempFail is the exit status (sysexits EX_TEMPFAIL) by which a --token-command says that
// it could not get a token now but the session goes on: the client tries again later. Any
// other failure ends the session (bal.ErrAuth).
const exTempFail = 75

// maxTokenOutput bounds what a --token-command or --token-file may hold.
const maxTokenOutput = 64 << 10

// tokenSource returns the token source of --token, --token-file or --token-command (exactly
// one). The token is read again on every connection, so that a file or command kept fresh
// by a Pro Santé Connect client (refresh, Ségur REM SC.MSS/CONF.11) serves a long receive;
// it is held in memory only (SC.MSS/CONF.28).
func (c *connFlags) tokenSource() (bal.TokenSource, error) {
	n := 0
	for _, s := range []string{c.token, c.tokenFile, c.tokenCommand} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return nil, exitCode(2, errors.New("--auth xoauth2 and oauthbearer need one of --token, --token-file, --token-command"))
	}
	switch {
	case c.tokenFile != "":
		path := c.tokenFile
		return func(context.Context) (string, error) {
			b, err := os.ReadFile(path)
			if err != nil {
				return "", fmt.Errorf("--token-file: %w", err)
			}
			return oneToken(b, "--token-file "+path)
		}, nil
	case c.tokenCommand != "":
		cmdline := c.tokenCommand
		return func(ctx context.Context) (string, error) {
			cmd := exec.CommandContext(ctx, "sh", "-c", cmdline)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &limitedBuffer{&out, maxTokenOutput}, os.Stderr
			err := cmd.Run()
			var ee *exec.ExitError
			switch {
			case errors.As(err, &ee) && ee.ExitCode() == exTempFail:
				return "", fmt.Errorf("--token-command: no token for now (exit %d)", exTempFail)
			case err != nil:
				return "", fmt.Errorf("%w: --token-command: %w", bal.ErrAuth, err)
			}
			return oneToken(out.Bytes(), "--token-command")
		}, nil
	}
	tok := c.token
	return func(context.Context) (string, error) { return tok, nil }, nil
}

// oneToken checks that b holds one token (one line, spaces around ignored).
func oneToken(b []byte, what string) (string, error) {
	t := strings.TrimSpace(string(b))
	if t == "" || strings.ContainsAny(t, " \t\r\n") || len(t) > maxTokenOutput {
		return "", fmt.Errorf("%w: %s does not hold one access token", bal.ErrAuth, what)
	}
	return t, nil
}

// limitedBuffer keeps the first max bytes written to it and drops the rest.
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max + 1 - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
