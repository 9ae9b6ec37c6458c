-- A message whose body is kept in a blob store (Options.Blobs) names it here; its body
-- column is then empty. The index serves the sweep of files no row names.
ALTER TABLE mailbox_message ADD COLUMN blob text;
CREATE INDEX mailbox_message_blob ON mailbox_message (blob) WHERE blob IS NOT NULL;
