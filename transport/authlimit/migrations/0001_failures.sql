-- The failure counters of transport/authlimit, shared by the nodes of a cluster. key is the
-- SHA-256 of the Limiter's key (an account, a source address, or both), so that a login
-- typed wrongly (a password in the login field) is never stored as it was typed.
CREATE TABLE authlimit_failures (
	key  bytea       PRIMARY KEY,
	n    integer     NOT NULL,
	last timestamptz NOT NULL
);
-- The sweep deletes by age.
CREATE INDEX authlimit_failures_last ON authlimit_failures (last);
