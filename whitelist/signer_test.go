package whitelist

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

func TestDefaultSignerCertificate(t *testing.T) {
	c := DefaultSignerCertificate()
	if !c.Equal(realSigner(t)) {
		t.Fatal("not the certificate of testdata/alb.mssante.fr-2023.pem")
	}
	sum := sha256.Sum256(c.Raw)
	if got := hex.EncodeToString(sum[:]); got != "a0de16caa6496a1a35c5a13d6baf826562302afee19b9d38a69dd7aa4da8d697" {
		t.Errorf("SHA-256 fingerprint %s", got)
	}
	want, _ := CanonicalDN(DefaultSigner)
	if got, err := CanonicalDN(c.Subject.String()); err != nil || got != want {
		t.Errorf("subject %q, want DefaultSigner %q", c.Subject, DefaultSigner)
	}
	if DefaultSignerCertificate() == c {
		t.Error("the same certificate returned twice: callers could change it for each other")
	}
}
