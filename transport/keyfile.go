package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"runtime"
)

// ErrKeyFileMode reports a private key file that users other than its owner may read or
// write: anyone able to read it can impersonate the operator to every other operator until
// the certificate is revoked.
var ErrKeyFileMode = errors.New("transport: private key file open to group or others")

// KeyFileModeError names the key file refused with ErrKeyFileMode, its mode, and the fix.
type KeyFileModeError struct {
	Path string
	Mode os.FileMode
}

func (e *KeyFileModeError) Error() string {
	return fmt.Sprintf("transport: private key %s has mode %04o, open to group or others: chmod 600 %s",
		e.Path, uint32(e.Mode.Perm()), e.Path)
}

func (e *KeyFileModeError) Unwrap() error { return ErrKeyFileMode }

// CheckKeyFileMode returns a *KeyFileModeError when the file at path (a symbolic link is
// followed) grants any permission to its group or to others, as OpenSSH does for its keys. A
// group-readable key is refused too: the group of a service account is rarely the service
// alone. Where permission bits mean nothing (Windows) it checks only that the file exists.
func CheckKeyFileMode(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return errorf("private key: %w", err)
	}
	if runtime.GOOS == "windows" {
		return nil
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return &KeyFileModeError{Path: path, Mode: fi.Mode()}
	}
	return nil
}

// LoadKeyPair is tls.LoadX509KeyPair (the certificate chain, leaf first, and its matching
// private key, PEM) after CheckKeyFileMode on keyFile: a key that others can read is refused
// before it is used.
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	if err := CheckKeyFileMode(keyFile); err != nil {
		return tls.Certificate{}, err
	}
	return tls.LoadX509KeyPair(certFile, keyFile)
}
