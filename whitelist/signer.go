package whitelist

import (
	"crypto/x509"
	"encoding/pem"
)

// DefaultSignerCertificate returns the certificate that signs the lists published at
// [DefaultURL]: subject [DefaultSigner], issued by AC IGC-SANTE ELEMENTAIRE ORGANISATIONS,
// valid 2023-08-23 to 2026-08-23, SHA-256 fingerprint
// A0:DE:16:CA:A6:49:6A:1A:35:C5:A1:3D:6B:AF:82:65:62:30:2A:FE:E1:9B:9D:38:A6:9D:D7:AA:4D:A8:D6:97.
// It is the public certificate the lists carry in their KeyInfo.
//
// Set it as [VerifyOptions.PinnedSigner] to verify the ANS list without the IGC-Santé
// intermediate: the list is then known to come from the holder of this certificate's key,
// not that the certificate chains to IGC-Santé or is unrevoked (use Roots and CRLs for that,
// alone or with the pin). Lists signed after it expires verify only with a newer certificate,
// or at an earlier time (VerifyOptions.At, VerifyOptions.UseListDate). Each call returns a new
// certificate.
func DefaultSignerCertificate() *x509.Certificate {
	b, _ := pem.Decode([]byte(defaultSignerPEM))
	if b == nil {
		panic("whitelist: embedded signer certificate is not PEM") // caught by the package tests
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		panic("whitelist: embedded signer certificate does not parse") // caught by the package tests
	}
	return c
}

// defaultSignerPEM is the certificate of DefaultSignerCertificate.
const defaultSignerPEM = `-----BEGIN CERTIFICATE-----
MIIIXTCCBkWgAwIBAgIQeXh8Ja954WKAfjMRDgj6czANBgkqhkiG9w0BAQsFADCB
gDELMAkGA1UEBhMCRlIxEzARBgNVBAoMCkFTSVAtU0FOVEUxFzAVBgNVBAsMDjAw
MDIgMTg3NTEyNzUxMRIwEAYDVQQLDAlJR0MtU0FOVEUxLzAtBgNVBAMMJkFDIElH
Qy1TQU5URSBFTEVNRU5UQUlSRSBPUkdBTklTQVRJT05TMB4XDTIzMDgyMzEzNTQy
M1oXDTI2MDgyMzEzNTQyM1owgYYxCzAJBgNVBAYTAkZSMRwwGgYDVQQIDBNIYXV0
cy1kZS1TZWluZSAoOTIpMSYwJAYDVQQKDB1DQVBHRU1JTkkgVEVDSE5PTE9HWSBT
RVJWSUNFUzEYMBYGA1UECwwPMzQ3OTc2Njg0MjAwNzI0MRcwFQYDVQQDDA5hbGIu
bXNzYW50ZS5mcjCCASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEBAMXNXLUo
1FzEmeZEeuP4lqwrrfMp58vGIB7Hm8AMFg14BiKbTxXx7egE7X8TwngWemrH64X5
CYfHOA9gmjpSKQ+07vpo9rqS/SANfytMue/MSANDf0ND3Za0P1H1KrbJgSVMosq8
yHNicma6SLuesGMD24QwAu4U40Bim7+rg+XT6szMEI9e4VhgeJk6c50YG0ysS6M4
Gf5yWMEe+FKGjdtPN26/2b2r7qVe5pb/AjoTqchoyQWp1/MkKVpirXRt4vF9Cdms
cmtzGVQFM58kd0fGJ7uZ98AaMZeM3OmLRC2sDQTX1RURiVWPegAqmKq3I9Vsma3y
lkm4SI2HZx5ffBkCAwEAAaOCA8kwggPFMBMGA1UdJQQMMAoGCCsGAQUFBwMEMB8G
A1UdIwQYMBaAFNf7+tzVAn/nwVOGTUvopEoeC7tjMHUGCCsGAQUFBwEBBGkwZzAm
BggrBgEFBQcwAYYaaHR0cDovL29jc3AuZXNhbnRlLmdvdXYuZnIwPQYIKwYBBQUH
MAKGMWh0dHA6Ly9pZ2Mtc2FudGUuZXNhbnRlLmdvdXYuZnIvQUMvQUNJLUVMLU9S
Ry5jZXIwTAYDVR0gBEUwQzBBBg0qgXoBgVUBBwEBAgMBMDAwLgYIKwYBBQUHAgEW
Imh0dHA6Ly9pZ2Mtc2FudGUuZXNhbnRlLmdvdXYuZnIvUEMwKwYDVR0QBCQwIoAP
MjAyMzA4MjMxMzU0MjNagQ8yMDI2MDgyMzEzNTQyM1owggE5BgNVHR8EggEwMIIB
LDA4oDagNIYyaHR0cDovL2lnYy1zYW50ZS5lc2FudGUuZ291di5mci9DUkwvQUNJ
LUVMLU9SRy5jcmwwge+ggeyggemGgeZsZGFwOi8vYW5udWFpcmUtaWdjLmVzYW50
ZS5nb3V2LmZyL2NuPUFDJTIwSUdDLVNBTlRFJTIwRUxFTUVOVEFJUkUlMjBPUkdB
TklTQVRJT05TLG91PUFDJTIwUkFDSU5FJTIwSUdDLVNBTlRFJTIwRUxFTUVOVEFJ
UkUsb3U9SUdDLVNBTlRFLG91PTAwMDIlMjAxODc1MTI3NTEsbz1BU0lQLVNBTlRF
LGM9RlI/Y2VydGlmaWNhdGVyZXZvY2F0aW9ubGlzdDtiaW5hcnk/YmFzZT9vYmpl
Y3RDbGFzcz1wa2lDQTAdBgNVHQ4EFgQU1+N9ZVp9JAvBRahPRX7FmI8+318wgfcG
A1UdLgSB7zCB7DCB6aCB5qCB44aB4GxkYXA6Ly9hbm51YWlyZS1pZ2MuZXNhbnRl
LmdvdXYuZnIvY249QUMlMjBJR0MtU0FOVEUlMjBFTEVNRU5UQUlSRSUyME9SR0FO
SVNBVElPTlMsb3U9QUMlMjBSQUNJTkUlMjBJR0MtU0FOVEUlMjBFTEVNRU5UQUlS
RSxvdT1JR0MtU0FOVEUsb3U9MDAwMiUyMDE4NzUxMjc1MSxvPUFTSVAtU0FOVEUs
Yz1GUj9kZWx0YXJldm9jYXRpb25saXN0O2JpbmFyeT9iYXNlP29iamVjdENsYXNz
PXBraUNBMA4GA1UdDwEB/wQEAwIGwDAPBggqgXoBRwECBQQDBAEDMBkGA1UdEQQS
MBCBDmFsYkBtc3NhbnRlLmZyMAkGA1UdEwQCMAAwDQYJKoZIhvcNAQELBQADggIB
ABFcWzkhkWU0giu+6+N+WAfqbsEwrdq9jeJt6Q5MVgxSfT+mk7Rl6CRvaunGTRrS
cQes6oVX007WD7O9jy7u3xrnFB0hcM5ZrcUPa/VQTt3YXrZYctHaJD7PL2XhMGhU
IDasKov0l+66HatG/CRTr3yX6H8kHl8Zagr7CAI8caVC105A/OuKg90NAJsKI50x
kxQiYmB9ZoW9WLdz05hjupxB0nD4YcmYz6tZGXfVdKDYbDKP53326Wf+n4TTXXJf
XScc18JvlsnsNj/yO94c/2rgNYJEnB8nB3ZBmADeVqmyK8FQK6S/q2s4Gs6OBmnT
oW3bo3+GZ2vlXz1SjTXNSQyFWoB4rkQOLB6PN3d9Jbw5OR4TwlENdj0G7yt5HOXd
TEAL2R3kd9sA9sqvaOPzn7Vgcxsz09UCVCxAUd3y8vNTetiTYsHunB/Y8dXNwZ5n
8TrWkCR+nGcXQcU0W4L+xjYDA0VPDBGrlf5eVQ2H3zt+SgVQANbzGQdFq+Uxvf3U
bwZx3rbJWMrgxDJe6odGR1NDI11UTwGTQ099qsUhKUKidMvOiLiM9np7PdAbZX0h
JvxqZ8xwlBKPmCt41sVsOzoIeRPnVeti2iYxrtrlcDjv4Q/F0GCmNvllz4FgL5aE
Y9zBxn5vMwgc6/nCk+SKBxXSW8WQ9WhHphlqKJskt45P
-----END CERTIFICATE-----
`
