// Package mssante is the domain of MSSanté secure health messaging, with no network: the
// identifiers (INS with its NIR key, RPPS, ADELI, FINESS, SIREN, SIRET and the national
// identifier prefixes of the CI-SIS), patient identity traits, MSSanté addresses (including the
// patient address <matricule INS>@patient.mssante.fr), the MSSanté message (compose and parse:
// X-MSS-* headers, the XDM/1.0/DDM+ subject, PDF naming, threading), delivery status
// notifications and message disposition notifications.
//
// Specifications (docs/references.md): Réf. #2 §3 (ECO.2.x: subject, PDF copy, X-MSS-*
// headers, patient addresses); CI-SIS StrucMin (identifiers and their OIDs); CI-SIS
// Trans-CDA-R2 and CI-SIS Trans-CDA-MSS (MSSanté metadata, the 900–906 integration codes);
// RFC 5322 and RFC 2045–2049 (messages), RFC 3464 and RFC 6522 (DSN), RFC 8098 (MDN).
// Where the ANS texts leave a point open, the code takes the safe reading and says so where
// it does.
//
// Start with [Message]: fill one and write it with [Message.WriteTo], or read one with
// [ReadMessage]; [ParseDSN] and [ParseMDN] read receipts, [BuildMDN] answers a message.
// Package mssante/xdm attaches the IHE_XDM.ZIP (xdm.Compose, xdm.Open).
package mssante
