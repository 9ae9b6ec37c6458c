// Package webhook tells a DPI what happened to its mail by HTTP: for each event of a BAL
// (a message accepted, delivered, delayed, failed, processed or refused by the recipient's
// software, a message received or handled), a POST of one JSON object to each endpoint the
// BAL configured.
//
// Each request is signed with HMAC-SHA256 (RFC 2104) under the endpoint's secret, over the
// timestamp and the body: header Webhook-Signature "t=UNIX,v1=HEX", HEX being
// HMAC-SHA256(secret, "UNIX." + body) in lower-case hexadecimal. A receiver checks it with
// Verify, which refuses a timestamp more than DefaultReplayWindow (5 minutes) away from its
// clock, so that a captured request cannot be replayed later; it deduplicates on the
// Webhook-Id header (the event's ID), since a request whose answer was lost is sent again.
//
// Events are appended to a journal in Options.Dir, shared by the endpoints, and Publish
// returns once it is on disk (fsynced): concurrent Publishes share one fsync. An event leaves
// the journal once the endpoint answered 2xx or it was abandoned; the journal is rewritten
// with the events left once it passes Options.CompactSize. A restart, even after the process
// was killed, loses no event Publish returned for. Delivery is at least once: an event whose
// answer was lost, or which was delivered just before the process or the machine stopped,
// may be sent again, with the same ID. An endpoint receives its events one at a time,
// in the order they were published, so the events of one message arrive in order; a failed
// attempt (timeout, network error, any non-2xx answer) is retried with exponential backoff
// (Options.MinBackoff to MaxBackoff) until Options.MaxAge (default 5 days), then abandoned
// with a record in the delivery log. Every attempt is recorded in the endpoint's delivery log
// (Dispatcher.Log): event id, type, time, HTTP status or error, never the body.
//
// In production mode an endpoint must be https and must not resolve to a loopback, private,
// link-local, shared (100.64.0.0/10) or unspecified address: the check is made on the address
// actually dialled, so a DNS answer that changes after configuration is caught too (server-side
// request forgery). Options.AllowInsecure lifts both for a sandbox on loopback. Redirects are
// not followed.
package webhook
