-- The execution log: one row per workflow run, synchronous or asynchronous.
--
-- A synchronous execute writes its row once, finished (one INSERT on the hot path). An
-- asynchronous run is inserted `queued` together with its job and moves to `running` and then
-- to a terminal status exactly once.

CREATE TABLE executions (
    id                uuid             PRIMARY KEY,
    workflow_id       uuid             NOT NULL,
    version_id        uuid             NOT NULL,
    mode              text             NOT NULL CHECK (mode IN ('sync', 'async')),
    status            text             NOT NULL
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    inputs            jsonb            NOT NULL,
    output            jsonb,
    error             jsonb,
    trace             jsonb,
    latency_us        bigint,
    prompt_tokens     bigint           NOT NULL DEFAULT 0,
    completion_tokens bigint           NOT NULL DEFAULT 0,
    cost_usd          double precision NOT NULL DEFAULT 0,
    -- How the version was chosen (label, route and variant), when not given explicitly.
    route             jsonb,
    -- The queue job of an asynchronous run.
    job_id            uuid,
    created_at        timestamptz      NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    CONSTRAINT executions_version_fkey FOREIGN KEY (workflow_id, version_id)
        REFERENCES workflow_versions (workflow_id, id) ON DELETE CASCADE
);

-- Listing is newest first with a (created_at, id) keyset cursor, optionally per workflow or
-- per version.
CREATE INDEX executions_created_idx ON executions (created_at DESC, id DESC);
CREATE INDEX executions_workflow_created_idx ON executions (workflow_id, created_at DESC, id DESC);
CREATE INDEX executions_version_created_idx ON executions (version_id, created_at DESC, id DESC);
