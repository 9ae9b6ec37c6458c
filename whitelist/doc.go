// Package whitelist holds the ANS liste blanche MSSanté: the signed XML list of the mail domains
// of the MSSanté trust space and, for each, the subject DNs of the certificates of its
// operators' servers.
//
// Start with [NewStore] for a list kept fresh from the ANS, or [Verify] for one file; both give
// the [Policy] that senders and servers check. Specifications (docs/references.md): the Liste
// blanche as published; XMLDSig, exc-c14n and RFC 6931.
//
// It implements:
//   - the list format published at https://espacedeconfiance.mssante.fr/listeblanchemssante.xml
//     (namespace https://listeblanche.mssante.fr/schema), parsed as a stream;
//   - the enveloped W3C XML Signature (XMLDSig 1.0) in the one profile the ANS uses, and nothing
//     else: Exclusive XML Canonicalization 1.0 (without comments), RSA-SHA256 (RFC 6931 §2.3.2),
//     SHA-256 digest, one Reference URI="" with exactly the enveloped-signature and exc-c14n
//     transforms, one Signature, last child of the root (the profile of the published file);
//   - the refresh of the list over HTTPS ([Store]), with conditional GET, rollback refusal, a
//     persisted last good copy and a maximum age;
//   - the [Policy] the connector and the BAL enforce: is a domain listed, is a peer certificate DN
//     one of its operators ([CanonicalDN] is the one DN comparison of the module).
//
// # Verification
//
// [Verify] reads the document once. The same token stream is canonicalized into the SHA-256
// digest of the Reference and decoded into entries, and the document must have exactly the
// shape of the liste blanche (root, DateDeGeneration, ListeDomaines/Domaine, Signature): no other
// element is accepted anywhere, so no content outside what was digested can become an entry
// (signature wrapping is impossible). The list is returned only when the digest, the signature
// value and the signer all check.
//
// The signer is checked by one or both of: a chain to [VerifyOptions.Roots] (the IGC-Santé roots)
// at the verification time, and [VerifyOptions.PinnedSigner], a certificate that must be the
// embedded one byte for byte. Its subject must equal [VerifyOptions.Signer] (default
// [DefaultSigner]), its validity period must hold at the verification time (now, or the list's
// own DateDeGeneration with [VerifyOptions.UseListDate]), and it must not be on a CRL given in
// [VerifyOptions.CRLs].
//
// The package ships the certificate that signs the ANS list, [DefaultSignerCertificate], but not
// the IGC-Santé intermediate "AC IGC-SANTE ELEMENTAIRE ORGANISATIONS" that issued it. Verifying
// the real 2025-02-28 file with that certificate pinned proves that the bytes were signed by
// the holder of that certificate's key and have not changed since; it does not prove that the
// certificate was issued by IGC-Santé, nor that it was not revoked: that takes Roots (with the
// intermediate) and a CRL.
//
// # Domains and DNs
//
// Domains are compared without case, with a trailing dot ignored, and IDNA-aware: a label with
// non-ASCII letters is lower-cased and converted to its A-label (xn--, RFC 3492 Punycode). The
// full UTS #46 mapping (NFC, width folding) is not applied; every observed domain is ASCII.
// No suffix is assumed: two listed domains end in apicrypt.org.
package whitelist
