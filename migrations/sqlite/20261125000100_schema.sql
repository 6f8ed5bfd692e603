-- The whole schema on SQLite: the same tables, columns and rules as migrations/postgres/, in
-- SQLite's types. Later changes get their own files here, next to their Postgres counterparts.
--
-- Representation (crates/sgde-store/src/sqlite/mod.rs relies on it):
-- - uuid: 16-byte BLOB (what sqlx binds for `Uuid`);
-- - timestamps: RFC 3339 TEXT in UTC with a `+00:00` offset (what sqlx binds for
--   `DateTime<Utc>`; the defaults below write the same shape), so text order is time order;
-- - JSON: TEXT holding JSON; arrays of text (API key scopes): a JSON array;
-- - booleans: INTEGER 0/1; bytea: BLOB; double precision: REAL.
--
-- Unique indexes keep the Postgres constraint names (error messages name columns, not indexes,
-- so src/error.rs maps SQLite's "table.column" lists to the same typed conflicts).

CREATE TABLE model_endpoints (
    id          BLOB    PRIMARY KEY,
    name        TEXT    NOT NULL CONSTRAINT model_endpoints_name_key UNIQUE,
    config      TEXT    NOT NULL,
    created_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    updated_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
);

CREATE TABLE workflows (
    id             BLOB    PRIMARY KEY,
    name           TEXT    NOT NULL CHECK (name <> ''),
    description    TEXT,
    latest_version INTEGER NOT NULL DEFAULT 0,
    created_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    updated_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    deleted_at     TEXT
);
CREATE UNIQUE INDEX workflows_name_live_key ON workflows (name) WHERE deleted_at IS NULL;

CREATE TABLE workflow_versions (
    id                BLOB    PRIMARY KEY,
    workflow_id       BLOB    NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    number            INTEGER NOT NULL CHECK (number > 0),
    spec              TEXT    NOT NULL,
    content_hash      TEXT    NOT NULL,
    parent_version_id BLOB,
    source            TEXT    NOT NULL CHECK (source IN ('manual', 'compile', 'apply')),
    job_id            BLOB,
    metrics           TEXT,
    created_at        TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    origin            TEXT,
    CONSTRAINT workflow_versions_number_key UNIQUE (workflow_id, number),
    CONSTRAINT workflow_versions_content_hash_key UNIQUE (workflow_id, content_hash),
    CONSTRAINT workflow_versions_workflow_id_id_key UNIQUE (workflow_id, id),
    CONSTRAINT workflow_versions_parent_fkey FOREIGN KEY (workflow_id, parent_version_id)
        REFERENCES workflow_versions (workflow_id, id)
);

CREATE TRIGGER workflow_versions_no_update BEFORE UPDATE ON workflow_versions
BEGIN
    SELECT RAISE(ABORT, 'workflow versions are immutable');
END;

CREATE TABLE workflow_labels (
    workflow_id BLOB    NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL CHECK (name <> ''),
    version_id  BLOB    NOT NULL,
    updated_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    updated_by  TEXT,
    PRIMARY KEY (workflow_id, name),
    CONSTRAINT workflow_labels_version_fkey FOREIGN KEY (workflow_id, version_id)
        REFERENCES workflow_versions (workflow_id, id) ON DELETE CASCADE
);
CREATE INDEX workflow_labels_version_idx ON workflow_labels (version_id);

CREATE TABLE workflow_label_history (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id     BLOB    NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    label           TEXT    NOT NULL,
    from_version_id BLOB,
    to_version_id   BLOB,
    moved_by        TEXT,
    at              TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
);
CREATE INDEX workflow_label_history_idx ON workflow_label_history (workflow_id, label, id DESC);
CREATE INDEX workflow_label_history_workflow_idx ON workflow_label_history (workflow_id, id DESC);

CREATE TABLE executions (
    id                BLOB    PRIMARY KEY,
    workflow_id       BLOB    NOT NULL,
    version_id        BLOB    NOT NULL,
    mode              TEXT    NOT NULL CHECK (mode IN ('sync', 'async')),
    status            TEXT    NOT NULL
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    inputs            TEXT    NOT NULL,
    output            TEXT,
    error             TEXT,
    trace             TEXT,
    latency_us        INTEGER,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd          REAL    NOT NULL DEFAULT 0,
    route             TEXT,
    job_id            BLOB,
    created_at        TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    started_at        TEXT,
    finished_at       TEXT,
    CONSTRAINT executions_version_fkey FOREIGN KEY (workflow_id, version_id)
        REFERENCES workflow_versions (workflow_id, id) ON DELETE CASCADE
);
CREATE INDEX executions_created_idx ON executions (created_at DESC, id DESC);
CREATE INDEX executions_workflow_created_idx ON executions (workflow_id, created_at DESC, id DESC);
CREATE INDEX executions_version_created_idx ON executions (version_id, created_at DESC, id DESC);

CREATE TABLE api_keys (
    id           BLOB    PRIMARY KEY,
    name         TEXT    NOT NULL,
    prefix       TEXT    NOT NULL,
    secret_hash  BLOB    NOT NULL CONSTRAINT api_keys_secret_hash_key UNIQUE,
    scopes       TEXT    NOT NULL,
    bootstrap    INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    revoked_at   TEXT,
    last_used_at TEXT
);

CREATE TABLE idempotency_records (
    principal        TEXT    NOT NULL,
    key              TEXT    NOT NULL,
    scope            TEXT    NOT NULL,
    request_hash     BLOB    NOT NULL,
    status_code      INTEGER,
    response_headers TEXT,
    response_body    BLOB,
    created_at       TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    locked_at        TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    completed_at     TEXT,
    PRIMARY KEY (principal, key, scope)
);
CREATE INDEX idempotency_records_created_idx ON idempotency_records (created_at);

CREATE TABLE jobs (
    id               BLOB    PRIMARY KEY,
    kind             TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    status           TEXT    NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts > 0),
    run_at           TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    lease_owner      TEXT,
    lease_expires_at TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    result           TEXT,
    created_at       TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    updated_at       TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    started_at       TEXT,
    finished_at      TEXT,
    CONSTRAINT jobs_lease_check CHECK (
        (status = 'running') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL))
);
CREATE INDEX jobs_queued_idx ON jobs (kind, run_at) WHERE status = 'queued';
CREATE INDEX jobs_running_idx ON jobs (kind, lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_owner_idx ON jobs (lease_owner) WHERE status = 'running';

CREATE TABLE model_cache (
    key        TEXT    PRIMARY KEY,
    reply      TEXT    NOT NULL,
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
);

CREATE TABLE compile_jobs (
    id                BLOB    PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    workflow          TEXT    NOT NULL,
    request           TEXT    NOT NULL,
    status            TEXT    NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    stop_reason       TEXT,
    stop_detail       TEXT,
    progress          TEXT    NOT NULL DEFAULT '{}',
    estimate          TEXT    NOT NULL,
    checkpoint        TEXT,
    result_version_id BLOB    REFERENCES workflow_versions (id),
    error             TEXT,
    created_at        TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    updated_at        TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    finished_at       TEXT
);
CREATE INDEX compile_jobs_list_idx ON compile_jobs (created_at DESC, id DESC);
CREATE INDEX compile_jobs_workflow_idx ON compile_jobs (workflow, created_at DESC);

CREATE TABLE compile_iterations (
    job_id     BLOB    NOT NULL REFERENCES compile_jobs (id) ON DELETE CASCADE,
    iteration  INTEGER NOT NULL,
    record     TEXT    NOT NULL,
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    PRIMARY KEY (job_id, iteration)
);

CREATE TABLE traffic_policies (
    workflow_id           BLOB    NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    revision              INTEGER NOT NULL CHECK (revision > 0),
    variants              TEXT    NOT NULL CHECK (json_type(variants) = 'array'),
    shadow_version_id     BLOB,
    shadow_version_number INTEGER,
    salt                  TEXT    NOT NULL,
    change                TEXT    NOT NULL CHECK (change IN ('set', 'rollback', 'promote', 'clear')),
    created_by            TEXT,
    created_at            TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    PRIMARY KEY (workflow_id, revision),
    CONSTRAINT traffic_policies_shadow_fkey FOREIGN KEY (workflow_id, shadow_version_id)
        REFERENCES workflow_versions (workflow_id, id) ON DELETE CASCADE
);

-- A split routes nothing (routing off) or exactly 100.00% of the traffic. (SQLite allows no
-- subquery in a CHECK constraint; a trigger states the same rule.)
CREATE TRIGGER traffic_policies_weights_check BEFORE INSERT ON traffic_policies
WHEN json_array_length(NEW.variants) > 0
    AND (SELECT coalesce(sum(json_extract(v.value, '$.weight_bp')), 0)
         FROM json_each(NEW.variants) v) <> 10000
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: traffic_policies_weights_check');
END;

CREATE TABLE execution_feedback (
    execution_id BLOB    PRIMARY KEY REFERENCES executions (id) ON DELETE CASCADE,
    correct      INTEGER,
    score        REAL    CHECK (score >= 0 AND score <= 1),
    comment      TEXT,
    created_by   TEXT,
    created_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    updated_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    CHECK (correct IS NOT NULL OR score IS NOT NULL)
);

CREATE TABLE datasets (
    id                  BLOB    PRIMARY KEY,
    name                TEXT    NOT NULL,
    description         TEXT,
    mapping             TEXT    NOT NULL,
    split_seed          INTEGER NOT NULL,
    train_fraction      REAL    NOT NULL CHECK (train_fraction >= 0 AND train_fraction <= 1),
    validation_fraction REAL    NOT NULL
        CHECK (validation_fraction >= 0 AND train_fraction + validation_fraction <= 1),
    row_count           INTEGER NOT NULL DEFAULT 0,
    created_by          TEXT,
    created_at          TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    updated_at          TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    deleted_at          TEXT
);
CREATE UNIQUE INDEX datasets_name_live_key ON datasets (name) WHERE deleted_at IS NULL;

CREATE TABLE dataset_rows (
    dataset_id BLOB    NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    idx        INTEGER NOT NULL,
    inputs     TEXT    NOT NULL,
    expected   TEXT    NOT NULL,
    PRIMARY KEY (dataset_id, idx)
);

CREATE TABLE evaluation_results (
    evaluation_id BLOB    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    version_id    BLOB    NOT NULL,
    example       INTEGER NOT NULL,
    score         REAL    NOT NULL,
    passed        INTEGER NOT NULL,
    output        TEXT,
    expected      TEXT    NOT NULL,
    error         TEXT,
    trace         TEXT,
    tokens        INTEGER NOT NULL DEFAULT 0,
    cost_usd      REAL    NOT NULL DEFAULT 0,
    latency_us    INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    PRIMARY KEY (evaluation_id, version_id, example)
);
