package mailbox

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
)

// hashPassword returns the stored form of a password: a salted PBKDF2-SHA256 hash
// ("pbkdf2-sha256$iter$salt$key"), or "" for no password.
func hashPassword(password string) (string, error) {
	if password == "" {
		return "", nil
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	key, err := pbkdf2.Key(sha256.New, password, salt, pbkdf2Iter, 32)
	if err != nil {
		return "", fmt.Errorf("mailbox: %w", err)
	}
	return "pbkdf2-sha256$" + fmt.Sprint(pbkdf2Iter) + "$" + base64.RawStdEncoding.EncodeToString(salt) + "$" + base64.RawStdEncoding.EncodeToString(key), nil
}

// checkPasswordHash returns nil when password matches the stored hash h (found: the address
// has a BAL), else ErrAuthFailed, after one key derivation in every case (see
// SQLite.CheckPassword).
func checkPasswordHash(h string, found bool, password string) error {
	iter, salt, want, ok := parsePasswordHash(h)
	if !found || !ok {
		iter, salt, want = pbkdf2Iter, dummySalt[:], dummyKey[:]
	}
	got, kerr := pbkdf2.Key(sha256.New, password, salt, iter, len(want))
	match := kerr == nil && subtle.ConstantTimeCompare(got, want) == 1
	if !found || !ok || password == "" || !match {
		return ErrAuthFailed
	}
	return nil
}
