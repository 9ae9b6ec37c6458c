-- The delivery queue shared by the nodes: one row a message (its bytes, its envelope, the
-- lease of the node attempting it), one row a recipient (its delivery state), and the
-- redelivery keys that outlive the messages.
CREATE TABLE queue_messages (
	id          text        PRIMARY KEY,
	envelope    json        NOT NULL,
	body        bytea       NOT NULL,
	received    timestamptz NOT NULL,
	held        boolean     NOT NULL DEFAULT false,
	due         timestamptz,
	lease_owner text,
	lease_until timestamptz,
	lease_seq   bigint      NOT NULL DEFAULT 0
);
CREATE INDEX queue_messages_due ON queue_messages (due) WHERE due IS NOT NULL AND NOT held;

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
);

CREATE TABLE queue_keys (
	key      bytea       PRIMARY KEY,
	msg_id   text        NOT NULL,
	received timestamptz NOT NULL
);
CREATE INDEX queue_keys_received ON queue_keys (received);
