-- The connections each node of a cluster holds, per group of listeners (scope) and source
-- address, for transport/connshare. heartbeat is the database's clock, so that the nodes'
-- clocks do not matter to the lease.
CREATE TABLE connshare_nodes (
	node      text        PRIMARY KEY,
	heartbeat timestamptz NOT NULL
);
CREATE TABLE connshare_conns (
	node  text    NOT NULL REFERENCES connshare_nodes ON DELETE CASCADE,
	scope text    NOT NULL,
	addr  text    NOT NULL,
	n     integer NOT NULL,
	PRIMARY KEY (node, scope, addr)
);
