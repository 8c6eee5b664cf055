-- Server-wide facts: the log epoch and the session-token key.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    secret     TEXT NOT NULL,
    origins    TEXT NOT NULL, -- JSON array of origins, empty allows any
    anonymous  TEXT NOT NULL CHECK (anonymous IN ('none', 'read', 'write')),
    created_at BIGINT NOT NULL
);

-- One row per image discussion that was ever written: its log position.
-- Writers lock this row to take the next seq.
CREATE TABLE images (
    tenant_id     TEXT NOT NULL,
    url_id        TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    last_activity BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, url_id)
);
CREATE INDEX images_by_activity ON images (tenant_id, last_activity DESC);

CREATE TABLE chats (
    tenant_id  TEXT NOT NULL,
    id         TEXT NOT NULL,
    url_id     TEXT NOT NULL,
    ord        BIGINT NOT NULL, -- seq of its creation: orders chats oldest first
    x          DOUBLE PRECISION NOT NULL,
    y          DOUBLE PRECISION NOT NULL,
    resolved   BIGINT NOT NULL,
    user_id    TEXT NOT NULL,
    user_json  TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX chats_by_image ON chats (tenant_id, url_id, ord);

CREATE TABLE comments (
    tenant_id  TEXT NOT NULL,
    id         TEXT NOT NULL,
    chat_id    TEXT NOT NULL,
    url_id     TEXT NOT NULL,
    ord        BIGINT NOT NULL,
    user_id    TEXT NOT NULL,
    user_json  TEXT NOT NULL,
    text       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    edited_at  BIGINT,
    PRIMARY KEY (tenant_id, chat_id, id) -- comment ids are unique within their chat
);
CREATE INDEX comments_by_image ON comments (tenant_id, url_id, ord);

-- The event log of each image, kept as the exact JSON sent to clients.
CREATE TABLE events (
    tenant_id TEXT NOT NULL,
    url_id    TEXT NOT NULL,
    seq       BIGINT NOT NULL,
    at        BIGINT NOT NULL,
    body      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, url_id, seq)
);

CREATE TABLE usage_days (
    tenant_id        TEXT NOT NULL,
    day              TEXT NOT NULL, -- YYYY-MM-DD in UTC
    messages         BIGINT NOT NULL DEFAULT 0,
    bandwidth        BIGINT NOT NULL DEFAULT 0,
    conversations    BIGINT NOT NULL DEFAULT 0,
    comments         BIGINT NOT NULL DEFAULT 0,
    peak_connections BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day)
);
