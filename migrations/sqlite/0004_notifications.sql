-- Mentions, notifications, e-mail digests and webhooks (contract §12, §13).

-- The tenant's directory: every user who signed in with SSO, as last seen.
CREATE TABLE directory_users (
    tenant_id    TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    name         TEXT NOT NULL,
    name_fold    TEXT NOT NULL,           -- lower-cased name: prefix search
    avatar       TEXT,
    email        TEXT,                    -- never sent to other users
    locale       TEXT NOT NULL,           -- 'en' or 'ja'
    mail_ok      INTEGER NOT NULL,        -- 0: optedInNotifications false
    unsubscribed INTEGER NOT NULL DEFAULT 0,
    mail_lease   INTEGER NOT NULL DEFAULT 0, -- ms: a node is mailing this user until then
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX directory_by_name ON directory_users (tenant_id, name_fold);

-- Who follows which chat. Writing in a chat sets following = 1; unfollowing
-- sets it to 0 until the user writes again.
CREATE TABLE chat_followers (
    tenant_id TEXT NOT NULL,
    chat_id   TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    following INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, chat_id, user_id)
);

CREATE TABLE notifications (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    at         INTEGER NOT NULL,
    reason     TEXT NOT NULL,
    url_id     TEXT NOT NULL,
    chat_id    TEXT NOT NULL,
    comment_id TEXT NOT NULL,
    by_json    TEXT NOT NULL,
    excerpt    TEXT NOT NULL,
    read       INTEGER NOT NULL DEFAULT 0,
    mailed     INTEGER NOT NULL DEFAULT 0  -- 1: in a digest already, or never to be mailed
);
CREATE INDEX notifications_by_user ON notifications (tenant_id, user_id, id);
CREATE INDEX notifications_to_mail ON notifications (mailed, at);

CREATE TABLE webhooks (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    url        TEXT NOT NULL,
    events     TEXT NOT NULL,             -- JSON array of event types
    secret     TEXT NOT NULL,             -- whsec_…
    created_at INTEGER NOT NULL
);
CREATE INDEX webhooks_by_tenant ON webhooks (tenant_id);

-- Messages waiting for delivery, written in the transaction of their event.
-- A message of an image waits for the earlier ones of that image and
-- endpoint (url_id, seq); notifications have no url_id and wait for none.
CREATE TABLE webhook_outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id  TEXT NOT NULL,
    msg_id      TEXT NOT NULL,            -- webhook-id: the same on every retry
    url_id      TEXT,
    seq         INTEGER NOT NULL,
    body        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     INTEGER NOT NULL,
    lease_until INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_at);
CREATE INDEX webhook_outbox_order ON webhook_outbox (webhook_id, url_id, seq);

CREATE TABLE webhook_deliveries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id  TEXT NOT NULL,
    at          INTEGER NOT NULL,
    msg_id      TEXT NOT NULL,
    status      INTEGER,
    error       TEXT,
    duration_ms INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_by_hook ON webhook_deliveries (webhook_id, id);

-- A comment's mentions as the JSON array of users clients get; absent: none.
ALTER TABLE comments ADD COLUMN mentions TEXT;
