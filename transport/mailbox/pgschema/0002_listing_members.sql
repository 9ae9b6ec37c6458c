-- What the Annuaire Santé publishes of a BAL beyond the registry, the journal of what a
-- publication run must do, and the members of ORG BALs: the tables of the SQLite store.
CREATE TABLE mailbox_bal_listing (
	address     text PRIMARY KEY REFERENCES mailbox_bal (address) ON DELETE CASCADE,
	structure   text    NOT NULL DEFAULT '',
	liste_rouge boolean NOT NULL DEFAULT false,
	suspended   boolean NOT NULL DEFAULT false
);

CREATE TABLE mailbox_publication (
	id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	ts          bigint  NOT NULL,
	address     text    NOT NULL,
	action      text    NOT NULL,
	type        text    NOT NULL,
	owner       text    NOT NULL DEFAULT '',
	structure   text    NOT NULL DEFAULT '',
	description text    NOT NULL DEFAULT '',
	liste_rouge boolean NOT NULL DEFAULT false,
	done        bigint  NOT NULL DEFAULT 0
);
CREATE INDEX mailbox_publication_pending ON mailbox_publication (done, id);
CREATE INDEX mailbox_publication_address ON mailbox_publication (address);

CREATE TABLE mailbox_bal_member (
	bal         text   NOT NULL REFERENCES mailbox_bal (address) ON DELETE CASCADE,
	national_id text   NOT NULL,
	added       bigint NOT NULL,
	PRIMARY KEY (bal, national_id)
);
CREATE INDEX mailbox_bal_member_id ON mailbox_bal_member (national_id);
