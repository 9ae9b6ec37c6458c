-- The mailbox store on PostgreSQL: the tables of the SQLite store, with the message bodies in
-- the message rows (bytea, stored out of line and uncompressed).
CREATE TABLE mailbox_bal (
	address     text PRIMARY KEY,
	type        text   NOT NULL,
	owner       text   NOT NULL DEFAULT '',
	description text   NOT NULL DEFAULT '',
	cert_dn     text   NOT NULL DEFAULT '',
	cert_dn_key text   NOT NULL DEFAULT '',
	quota       bigint NOT NULL DEFAULT 0,
	retention_s bigint NOT NULL DEFAULT 0,
	pwhash      text   NOT NULL DEFAULT '',
	created     bigint NOT NULL,
	used        bigint NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX mailbox_bal_cert_dn ON mailbox_bal (cert_dn_key) WHERE cert_dn_key <> '';

CREATE TABLE mailbox_counter (
	name  text PRIMARY KEY,
	value bigint NOT NULL
);

CREATE TABLE mailbox_folder (
	id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	bal         text    NOT NULL REFERENCES mailbox_bal (address) ON DELETE CASCADE,
	name        text    NOT NULL,
	uidvalidity bigint  NOT NULL,
	uidnext     bigint  NOT NULL DEFAULT 1,
	modseq      bigint  NOT NULL DEFAULT 1,
	subscribed  boolean NOT NULL DEFAULT false,
	recent_uid  bigint  NOT NULL DEFAULT 0,
	n_messages  bigint  NOT NULL DEFAULT 0,
	n_unseen    bigint  NOT NULL DEFAULT 0,
	n_deleted   bigint  NOT NULL DEFAULT 0,
	n_size      bigint  NOT NULL DEFAULT 0,
	keywords    text    NOT NULL DEFAULT '',
	UNIQUE (bal, name)
);

CREATE TABLE mailbox_message (
	mailbox  bigint NOT NULL REFERENCES mailbox_folder (id) ON DELETE CASCADE,
	uid      bigint NOT NULL,
	size     bigint NOT NULL,
	internal bigint NOT NULL,
	flags    text   NOT NULL DEFAULT '',
	seen     boolean GENERATED ALWAYS AS (position(' \seen ' in ' ' || lower(flags) || ' ') > 0) STORED,
	deleted  boolean GENERATED ALWAYS AS (position(' \deleted ' in ' ' || lower(flags) || ' ') > 0) STORED,
	modseq   bigint NOT NULL,
	delivery text,
	header   bytea,
	body     bytea  NOT NULL,
	PRIMARY KEY (mailbox, uid)
);
ALTER TABLE mailbox_message ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE UNIQUE INDEX mailbox_message_delivery ON mailbox_message (mailbox, delivery) WHERE delivery IS NOT NULL;
CREATE INDEX mailbox_message_modseq ON mailbox_message (mailbox, modseq);
CREATE INDEX mailbox_message_unseen ON mailbox_message (mailbox, uid) WHERE NOT seen;
CREATE INDEX mailbox_message_deleted ON mailbox_message (mailbox, uid) WHERE deleted;

CREATE TABLE mailbox_expunged (
	mailbox bigint NOT NULL REFERENCES mailbox_folder (id) ON DELETE CASCADE,
	modseq  bigint NOT NULL,
	uid     bigint NOT NULL,
	PRIMARY KEY (mailbox, modseq, uid)
);

CREATE TABLE mailbox_audit (
	id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	ts     bigint NOT NULL,
	event  text   NOT NULL,
	bal    text   NOT NULL,
	detail text   NOT NULL
);
CREATE INDEX mailbox_audit_ts ON mailbox_audit (ts);

-- The counts of each folder and its expunge log are kept in the transaction of the change,
-- as the SQLite store's triggers keep them, once per statement: a row trigger would update
-- the folder's row once per message, and a transaction that updates one row n times costs
-- n² (each update walks the versions the transaction left before it).
CREATE FUNCTION mailbox_message_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	UPDATE mailbox_folder f SET n_messages = f.n_messages + d.n, n_size = f.n_size + d.size,
		n_unseen = f.n_unseen + d.unseen, n_deleted = f.n_deleted + d.deleted
	FROM (SELECT mailbox, count(*) AS n, sum(size) AS size, count(*) FILTER (WHERE NOT seen) AS unseen,
		count(*) FILTER (WHERE deleted) AS deleted FROM new_rows GROUP BY mailbox) d
	WHERE f.id = d.mailbox;
	RETURN NULL;
END $$;
CREATE TRIGGER mailbox_message_added AFTER INSERT ON mailbox_message
	REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION mailbox_message_added();

CREATE FUNCTION mailbox_message_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	UPDATE mailbox_folder f SET n_messages = f.n_messages - d.n, n_size = f.n_size - d.size,
		n_unseen = f.n_unseen - d.unseen, n_deleted = f.n_deleted - d.deleted
	FROM (SELECT mailbox, count(*) AS n, sum(size) AS size, count(*) FILTER (WHERE NOT seen) AS unseen,
		count(*) FILTER (WHERE deleted) AS deleted FROM old_rows GROUP BY mailbox) d
	WHERE f.id = d.mailbox;
	INSERT INTO mailbox_expunged (mailbox, modseq, uid)
		SELECT o.mailbox, f.modseq, o.uid FROM old_rows o JOIN mailbox_folder f ON f.id = o.mailbox
		ON CONFLICT DO NOTHING;
	RETURN NULL;
END $$;
CREATE TRIGGER mailbox_message_removed AFTER DELETE ON mailbox_message
	REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION mailbox_message_removed();

CREATE FUNCTION mailbox_message_flagged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	UPDATE mailbox_folder f SET n_unseen = f.n_unseen + d.unseen, n_deleted = f.n_deleted + d.deleted
	FROM (SELECT n.mailbox, sum((NOT n.seen)::int - (NOT o.seen)::int) AS unseen,
		sum(n.deleted::int - o.deleted::int) AS deleted
		FROM new_rows n JOIN old_rows o ON o.mailbox = n.mailbox AND o.uid = n.uid GROUP BY n.mailbox) d
	WHERE f.id = d.mailbox;
	RETURN NULL;
END $$;
CREATE TRIGGER mailbox_message_flagged AFTER UPDATE ON mailbox_message
	REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION mailbox_message_flagged();
