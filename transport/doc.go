// Package transport is what both sides of the MSSanté wire share, and (in its sub-packages) the
// reference connector built on it.
//
// This root package holds:
//
//   - IGC-Santé trust ([TrustStore]): the real root "AC RACINE IGC-SANTE ELEMENTAIRE" embedded,
//     more roots and intermediates from PEM, DER, PKCS#7 .p7b bundles (the ANS publishes
//     Chaine_de_certification-IGC-Sante.p7b) and PKCS#12 files, and CRLs whose signatures are
//     verified, keeping the last valid CRL of each CA (Réf. #2 ECO.1.1.6, ECO.1.1.7; Ségur
//     REM SC.MSS/CONF.22). When no valid CRL covers a certificate the default fails closed.
//   - TLS configurations ([ServerConfig], [ClientConfig]) following Réf. #2 ECO.1.1.2/1.1.3:
//     TLS 1.2 only by default, cipher suites 0xC030 and 0xC02F
//     (ECDHE-RSA with AES-GCM); 0xC027 (ECDHE-RSA AES-128-CBC-SHA256) only with
//     [TLSOptions.AllowCBC] because Go marks it insecure; Go has no 0xC028 suite.
//     TLS 1.3 is an option. Peer certificates are verified against the trust store at an
//     injectable time, with their extended key usage, validity dates (ECO.1.1.5) and revocation
//     (ECO.1.1.6). Callers' configurations are cloned, never mutated.
//   - Peer identity ([SubjectDN], [PeerDN], [EqualDN]): the subject DN written as the liste
//     blanche writes DNCertificatOperateur, "CN=…,OU=…,O=…,ST=Haute-Garonne (31),C=FR".
//   - Dialers ([Dialer], [Server]) that take a context and really cancel a stuck handshake.
//   - Listener bounds ([ConnLimiter], [LimitedConn]) that the connector's SMTP and IMAP servers
//     share: caps on connections in total and per address, and deadlines for the handshake, the
//     session, each wait and each protocol unit, so that neither a silent peer nor one that
//     trickles a byte at a time holds a connection for long.
//
// Every refusal is a sentinel error ([ErrUnknownAuthority], [ErrExpired], [ErrRevoked], …)
// wrapped in a [*CertError] or returned as is, testable with errors.Is and errors.As on the side
// that detects it.
//
// Start with [NewTrustStore], or [LoadTrustStore] for CA and CRL files, then [ClientConfig] or
// [ServerConfig]; [TrustStore.VerifyWhitelistFile] verifies a liste blanche file against the
// same trust. Specifications (docs/references.md): Réf. #2 ECO.1.1.x, IGC-Santé, the Liste
// blanche's DN form.
//
// The connector lives in the sub-packages: transport/queue (the durable queue),
// transport/connector (the SMTP servers and outbound delivery), transport/audit (the audit
// log), transport/metrics (Prometheus metrics), transport/antivirus (content scanning,
// ClamAV), transport/mailbox and transport/mailbox/local (the mailbox store and local
// delivery), transport/imapd (IMAP access), transport/responder (the test responder), and
// transport/node, which owns the configuration and wires them into one operator node.
package transport
