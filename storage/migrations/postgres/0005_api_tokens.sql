-- Admin API bearer tokens (PostgreSQL): mirrors ../0005_api_tokens.sql. SQLite's version also
-- carries a token over from meta, written there by versions older than this backend: no
-- PostgreSQL database has one, so there is nothing to carry over here.
CREATE TABLE api_tokens (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    digest              TEXT COLLATE "C" NOT NULL UNIQUE,
    hint                TEXT COLLATE "C" NOT NULL,
    label               TEXT COLLATE "C" NOT NULL,
    created_at          TEXT COLLATE "C" NOT NULL
);
