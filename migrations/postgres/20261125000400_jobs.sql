-- The durable job queue (async runs, compile jobs).
--
-- A worker claims a job by setting itself as `lease_owner` until `lease_expires_at` and extends
-- the lease by heartbeat. A job whose lease expired (its worker died) is claimable again. Only
-- the current owner of a running job can finish it, so a worker whose lease was taken over
-- cannot overwrite the result.

CREATE TABLE jobs (
    id               uuid        PRIMARY KEY,
    kind             text        NOT NULL,
    payload          jsonb       NOT NULL,
    status           text        NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    attempts         integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL DEFAULT 3 CHECK (max_attempts > 0),
    run_at           timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_expires_at timestamptz,
    cancel_requested boolean     NOT NULL DEFAULT false,
    last_error       jsonb,
    result           jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    -- A running job always has an owner and a lease; nothing else has one.
    CONSTRAINT jobs_lease_check CHECK (
        (status = 'running') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL))
);

CREATE INDEX jobs_queued_idx ON jobs (kind, run_at) WHERE status = 'queued';
CREATE INDEX jobs_running_idx ON jobs (kind, lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_owner_idx ON jobs (lease_owner) WHERE status = 'running';
