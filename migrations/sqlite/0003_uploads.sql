-- Uploads (contract §14). The bytes live in the upload storage (files or
-- S3) under the upload's id; this row says whose they are and what they are.
CREATE TABLE uploads (
    id           TEXT PRIMARY KEY,       -- at least 128 random bits
    tenant_id    TEXT NOT NULL,
    content_type TEXT NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    bytes        INTEGER NOT NULL,          -- as stored, metadata removed
    url          TEXT NOT NULL,          -- where it is served, as first answered
    etag         TEXT NOT NULL,
    page         INTEGER NOT NULL DEFAULT 0, -- 1: the image of a /s/{id} page, never swept
    created_at   INTEGER NOT NULL,
    touched_at   INTEGER NOT NULL           -- last attached to a comment (or created)
);
CREATE INDEX uploads_by_age ON uploads (touched_at);

-- Which comment attaches which upload: what keeps an upload from the sweep.
CREATE TABLE upload_refs (
    tenant_id  TEXT NOT NULL,
    upload_id  TEXT NOT NULL,
    chat_id    TEXT NOT NULL,
    comment_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, chat_id, comment_id, upload_id)
);
CREATE INDEX upload_refs_by_upload ON upload_refs (upload_id);

-- A comment's attachments as the JSON array clients get; absent: none.
ALTER TABLE comments ADD COLUMN attachments TEXT;
ALTER TABLE usage_days ADD COLUMN upload_bytes INTEGER NOT NULL DEFAULT 0;
