-- The destinations found unreachable, shared by the nodes: a dead peer is probed by one node
-- at a time (probe_owner, until probe_until) after its suspension ends (until), instead of
-- being tried by every node on its own count. A row goes when the destination is reached.
CREATE TABLE queue_suspensions (
	domain      text        PRIMARY KEY,
	fails       integer     NOT NULL,
	until       timestamptz NOT NULL,
	reason      text        NOT NULL,
	probe_owner text,
	probe_until timestamptz
);
