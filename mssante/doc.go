// Package mssante is the domain of MSSanté secure health messaging, with no network: the
// identifiers (INS with its NIR key, RPPS, ADELI, FINESS, SIREN, SIRET and the national
// identifier prefixes of the CI-SIS), patient identity traits, MSSanté addresses (including the
// patient address <matricule INS>@patient.mssante.fr), the MSSanté message (compose and parse:
// X-MSS-* headers, the XDM/1.0/DDM+ subject, PDF naming, threading), delivery status
// notifications and message disposition notifications.
//
// Specifications: ANS Référentiel #2 MSSanté (clients) §3 ECO.2.x, the CI-SIS volets
// "Structuration minimale des documents de santé" and "Transmission CDA-R2" (mapping-mss),
// RFC 5322 and RFC 2045–2049 (messages), RFC 3464 and RFC 6522 (DSN), RFC 8098 (MDN).
// Where the ANS texts leave a point open, the code takes the safe reading and says so where
// it does.
package mssante
