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
-- as the SQLite store's triggers keep them.
CREATE FUNCTION mailbox_message_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP IN ('DELETE', 'UPDATE') THEN
		UPDATE mailbox_folder SET n_messages = n_messages - 1, n_size = n_size - OLD.size,
			n_unseen = n_unseen - (NOT OLD.seen)::int, n_deleted = n_deleted - OLD.deleted::int
		WHERE id = OLD.mailbox;
	END IF;
	IF TG_OP = 'DELETE' THEN
		INSERT INTO mailbox_expunged (mailbox, modseq, uid)
			SELECT id, modseq, OLD.uid FROM mailbox_folder WHERE id = OLD.mailbox
			ON CONFLICT DO NOTHING;
	END IF;
	IF TG_OP IN ('INSERT', 'UPDATE') THEN
		UPDATE mailbox_folder SET n_messages = n_messages + 1, n_size = n_size + NEW.size,
			n_unseen = n_unseen + (NOT NEW.seen)::int, n_deleted = n_deleted + NEW.deleted::int
		WHERE id = NEW.mailbox;
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER mailbox_message_counts AFTER INSERT OR DELETE OR UPDATE OF flags ON mailbox_message
	FOR EACH ROW EXECUTE FUNCTION mailbox_message_counts();
