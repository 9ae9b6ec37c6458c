// Package bal is the applicative BAL client (BAL applicative) a DPI embeds to exchange
// MSSanté mail: it sends through its operator's submission server and reads its mailbox
// over IMAP, both with mutual TLS and the BAL's IGC-Santé certificate, and correlates the
// receipts that come back to what it sent.
//
// Start with [New] and [Options]; [NewDocumentMessage] builds a message carrying a CDA
// document. Specifications are cited as in docs/references.md.
//
// It implements, on top of go-smtp and go-imap:
//   - submission per RFC 6409 with STARTTLS (Réf. #2 ECO.1.0.1) or implicit TLS, SASL
//     EXTERNAL (default), PLAIN or XOAUTH2 (Pro Santé Connect, Réf. #2 ECO.1.2.1), or none;
//   - endpoint discovery by DNS SRV records, RFC 6186 (Réf. #2 ECO.1.1.9, which does not name
//     the records: the RFC 6186 names are used);
//   - DSN requests, RFC 3461 (NOTIFY, RET, ENVID, ORCPT), and DSN reading, RFC 3464;
//   - MDN requests and answers, RFC 8098, with the MSSanté integration codes 900–906
//     (CI-SIS Trans-CDA-MSS), and the error mail when no MDN was asked for;
//   - IMAP4rev1 (RFC 3501) with IDLE (RFC 2177) or polling, UIDVALIDITY/UID checkpoints,
//     the $MDNSent keyword (RFC 3503).
//
// # Sending
//
// [Client.Send] checks every recipient against the liste blanche before any network I/O,
// writes the message to an outbox under Options.StateDir with a stable Message-ID, and
// submits it with DSN parameters. Sending the same message again after a network error only
// retries the recipients the server had not accepted: no duplicate.
//
// Consecutive sends reuse one connection (no RSET after a transaction that ended cleanly)
// and write the message dot-stuffed straight onto the TLS connection in large records.
// Concurrent calls (and [Client.SendBatch]) share that connection and the fsyncs of the
// outbox journal (group commit): a call returns only once its own record is durable.
//
// # Receiving
//
// [Client.Watch] hands each new message once to a [Handler], across restarts and duplicate
// deliveries (a journal keyed by Message-ID, a checkpoint, and a keyword or a move on the
// server), with its attachments on disk. The handler accepts, or rejects with [Reject]; the
// client answers with the MDN or error mail due. DSNs and MDNs arriving in the mailbox update
// the outbox and are reported as [Receipt] values: each recipient ends with exactly one final
// status.
//
// Nothing the client logs holds health data: message IDs, mailbox addresses and counts only.
package bal
