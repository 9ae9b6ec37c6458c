// Package httpapi is the HTTP API of a BAL applicative, for a DPI written in any language: it
// sends a message, follows each recipient's status, lists the messages received with their
// documents and INS and marks them handled (which sends the MDN), and reads the delivery log of
// the BAL's webhooks (transport/webhook). It is a thin layer over bal: each BAL is a
// bal.Client, so the liste blanche, the message rules, the outbox and its receipts are the
// ones bal applies; nothing is sent by another path.
//
// Handler is an http.Handler that a vendor mounts in its own server, backed by its bal.Client;
// the reference connector serves it with Server (mutual TLS, the IGC-Santé trust of the
// submission listener). A node knows its BALs' certificates but not their keys: there the
// Handler sends through a ConnectorSender (Options.Sender), which hands each message to the
// node's submission server (connector.Server.Submit), authenticated again by the caller's
// certificate or token, so that every check of SMTP submission applies, and follows each
// recipient with the queue's results. NodeAPI builds all of it from the [api] table of the
// node's configuration ("mssante serve"); with the node's mailbox store, it also reads each
// BAL's INBOX there as bal.Watch reads it over IMAP (bal.ReadReport, bal.ReadIncoming, the
// same flags): the DSNs and MDNs update the status of what it sent, the APP BALs' mail is
// listed, and marking a message handled sends its MDN through the caller's submission. OpenAPI returns its description (OpenAPI 3.1), also served at
// GET /v1/openapi.yaml.
//
// Who may call: Options.Auth authenticates each request. CertificateAuth takes the caller's
// IGC-Santé client certificate (the BAL applicative's, verified against the same trust store
// as submission) and maps it to its BAL with the same Accounts as the submission server
// (connector.StaticAccounts satisfies it). BearerAuth is the hook for a Pro Santé Connect
// access token (RFC 6750): its Verify function, given by the program, maps a verified token
// to the BALs of the person; FirstOf combines both. A caller reaches only its own BALs: any
// other is refused with 403, whether it exists or not.
//
// Errors are problem documents (RFC 9457, application/problem+json) with a precise status and
// a type URI "urn:mssante-go:problem:NAME"; they never hold health data.
//
// Sending is idempotent under an Idempotency-Key header (IETF draft-ietf-httpapi-idempotency-
// key-header): the key, the fingerprint of the request and the Message-ID chosen are made
// durable before the message is submitted (one journal, whose fsyncs concurrent requests
// share), the answer is journaled after, so that a request sent again, even after a crash, gets
// the first answer or completes the first submission with the same Message-ID, which bal's
// outbox recognises (a raw message keeps its own Message-ID, or bal derives one from its
// bytes). One window is SMTP's own: a crash after the submission server took the message and
// before its reply reached bal leaves the outcome unknown, and the request sent again submits
// that Message-ID a second time. Records are kept 7 days.
package httpapi
