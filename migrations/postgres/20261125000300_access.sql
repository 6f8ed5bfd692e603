-- API keys and idempotency records.

CREATE TABLE api_keys (
    id           uuid        PRIMARY KEY,
    name         text        NOT NULL,
    -- The first characters of the token, for people to recognise a key in a list.
    prefix       text        NOT NULL,
    -- sha256 of the whole token. Tokens carry 256 random bits, so an unsalted fast hash is
    -- enough: there is nothing to brute-force.
    secret_hash  bytea       NOT NULL CONSTRAINT api_keys_secret_hash_key UNIQUE,
    scopes       text[]      NOT NULL,
    -- The key derived from SGDE_ADMIN_TOKEN at start; at most one live at a time.
    bootstrap    boolean     NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz
);

-- One row per (principal, Idempotency-Key, method and path). `status_code` is null while the
-- first request is in flight; `locked_at` lets a later retry take over a request whose server
-- died before completing it.
CREATE TABLE idempotency_records (
    principal        text        NOT NULL,
    key              text        NOT NULL,
    scope            text        NOT NULL,
    request_hash     bytea       NOT NULL,
    status_code      smallint,
    response_headers jsonb,
    -- The exact bytes sent the first time, so a replay is byte-identical.
    response_body    bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    locked_at        timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    PRIMARY KEY (principal, key, scope)
);
CREATE INDEX idempotency_records_created_idx ON idempotency_records (created_at);
