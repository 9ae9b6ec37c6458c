// Package sdk is the root of mssante-go, the Go SDK for MSSanté, the French national secure
// health messaging system, and of the reference connector built from the same packages.
//
// This package holds documentation only. The module is organised as follows:
//
//   - [github.com/mssante-go/sdk/mssante]: the domain with no network: addresses, identifiers
//     (INS, RPPS, FINESS, SIRET), the MSSanté message, DSN and MDN; with its sub-packages
//     mssante/cda (CDA R2 documents, the lettre de liaison) and mssante/xdm (IHE XDM packages).
//   - [github.com/mssante-go/sdk/whitelist]: the ANS liste blanche, verified and enforced.
//   - [github.com/mssante-go/sdk/annuaire]: the Annuaire Santé (LDAP, extraction file, FHIR).
//   - [github.com/mssante-go/sdk/transport]: IGC-Santé trust and TLS; its sub-packages hold
//     the reference connector (queue, SMTP servers and delivery, audit, metrics, antivirus,
//     mailbox store, IMAP, test responder, and the node that wires them).
//   - [github.com/mssante-go/sdk/bal]: the applicative BAL client a DPI embeds.
//   - cmd/mssante: the binary (connector, dev sandbox, tools).
//
// Quick start: run "go run ./cmd/mssante dev" for a whole local trust space, then see the
// examples folder and the README. Each package's documentation names the specifications it
// implements; docs/references.md lists them with their versions and addresses.
//
// mssante-go is licensed under the Apache License, Version 2.0 (the LICENSE file at the root
// of the module), which grants the patent rights health software vendors need.
package sdk
