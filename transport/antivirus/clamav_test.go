package antivirus

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mssante-go/sdk/internal/peers"
)

func TestClamAVReal(t *testing.T) {
	cd := peers.StartClamd(t)
	clam, evil := &ClamAV{Network: "unix", Addr: cd.Socket}, cd.Malware
	ctx := context.Background()
	if err := clam.Scan(ctx, strings.NewReader(peers.MIMEWith([]byte("a clean document\n")))); err != nil {
		t.Fatalf("clean: %v", err)
	}
	var ve *VirusError
	if err := clam.Scan(ctx, strings.NewReader(peers.MIMEWith(evil))); !errors.As(err, &ve) || ve.Signature != "MSSante.Test.Malware.UNOFFICIAL" && ve.Signature != "MSSante.Test.Malware" {
		t.Fatalf("infected: %v", err)
	}
	// Over clamd's StreamMaxLength (1 MiB here): clamd answers an error, never "OK".
	if err := clam.Scan(ctx, strings.NewReader(strings.Repeat("x", 2<<20))); !errors.Is(err, ErrScanner) {
		t.Fatalf("over limit: %v", err)
	}
}

func TestParseClamReply(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"stream: OK\x00", "ok"},
		{"stream: Eicar-Signature FOUND\x00", "virus Eicar-Signature"},
		{"INSTREAM size limit exceeded. ERROR\x00", "error"},
		{"stream:  FOUND", "error"},
		{"", "error"},
		{"stream: OK trailing", "error"},
	} {
		err := parseClamReply(tc.in)
		var ve *VirusError
		got := "ok"
		switch {
		case errors.As(err, &ve):
			got = "virus " + ve.Signature
		case errors.Is(err, ErrScanner):
			got = "error"
		case err != nil:
			got = "other"
		}
		if got != tc.want {
			t.Errorf("%q: %s, want %s", tc.in, got, tc.want)
		}
	}
}

// FuzzClamReply parses clamd replies: a verdict only for the exact forms, never a pass by
// default.
func FuzzClamReply(f *testing.F) {
	for _, s := range []string{"stream: OK\x00", "stream: Eicar-Signature FOUND\x00", "INSTREAM size limit exceeded. ERROR\x00", "", "stream: FOUND"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := parseClamReply(s)
		if err == nil && strings.TrimRight(s, "\x00\r\n ") != "stream: OK" {
			t.Fatalf("%q passed as clean", s)
		}
		var ve *VirusError
		if errors.As(err, &ve) && (ve.Signature == "" || len(ve.Signature) > 200) {
			t.Fatalf("bad signature from %q", s)
		}
	})
}
