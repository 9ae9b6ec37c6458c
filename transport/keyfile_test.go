package transport

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/mssante-go/sdk/internal/testpki"
)

// A key open to group or others is refused with the chmod that fixes it; 0600 and 0400 load.
func TestLoadKeyPairMode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no permission bits")
	}
	p, err := testpki.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := p.Server("mx.x.mssante.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	crt, key, err := l.WriteFiles(dir, "server")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode os.FileMode
		ok   bool
	}{{0o600, true}, {0o400, true}, {0o640, false}, {0o644, false}, {0o666, false}, {0o604, false}, {0o620, false}} {
		if err := os.Chmod(key, tc.mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadKeyPair(crt, key)
		if tc.ok != (err == nil) {
			t.Errorf("mode %04o: %v", tc.mode, err)
			continue
		}
		if tc.ok {
			continue
		}
		var me *KeyFileModeError
		if !errors.Is(err, ErrKeyFileMode) || !errors.As(err, &me) || me.Path != key {
			t.Errorf("mode %04o: %v, want a KeyFileModeError", tc.mode, err)
		}
		if !strings.Contains(err.Error(), "chmod 600 "+key) {
			t.Errorf("mode %04o: %q does not say chmod 600 %s", tc.mode, err, key)
		}
	}
	if _, err := LoadKeyPair(crt, filepath.Join(dir, "missing.pem")); err == nil {
		t.Error("missing key loaded")
	}
}
