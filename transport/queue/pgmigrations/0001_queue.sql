-- The delivery queue shared by the nodes: one row a message (its envelope, the lease of the
-- node attempting it), its bytes apart (the row that every lease rewrites stays small, and
-- leaves room on its page for the next version: fillfactor), one row a recipient (its
-- delivery state), and the redelivery keys that outlive the messages.
CREATE TABLE queue_messages (
	id          text        PRIMARY KEY,
	envelope    json        NOT NULL,
	received    timestamptz NOT NULL,
	held        boolean     NOT NULL DEFAULT false,
	due         timestamptz,
	lease_owner text,
	lease_until timestamptz,
	lease_seq   bigint      NOT NULL DEFAULT 0
) WITH (fillfactor = 70);
CREATE INDEX queue_messages_due ON queue_messages (due) WHERE due IS NOT NULL AND NOT held;

CREATE TABLE queue_bodies (
	msg_id text  PRIMARY KEY REFERENCES queue_messages (id) ON DELETE CASCADE,
	body   bytea NOT NULL
);

CREATE TABLE queue_rcpts (
	msg_id       text        NOT NULL REFERENCES queue_messages (id) ON DELETE CASCADE,
	idx          integer     NOT NULL,
	domain       text        NOT NULL,
	state        text        NOT NULL,
	attempts     integer     NOT NULL,
	next_attempt timestamptz NOT NULL,
	notice       text        NOT NULL,
	data         json        NOT NULL,
	PRIMARY KEY (msg_id, idx)
) WITH (fillfactor = 70);

CREATE TABLE queue_keys (
	key      bytea       PRIMARY KEY,
	msg_id   text        NOT NULL,
	received timestamptz NOT NULL
);
CREATE INDEX queue_keys_received ON queue_keys (received);
