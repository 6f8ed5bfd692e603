-- Compile jobs: the queue item lives in `jobs` (kind `compile`, same id); this is its state.
--
-- `checkpoint` is the compiler's last saved loop state (sgde_compiler::Checkpoint): a job
-- re-claimed after a crash resumes from it. It is text, not jsonb, because jsonb reorders object
-- keys: a resumed compile must render the very prompts it rendered before (JSON schemas inside
-- the workflow included), or the response cache misses and calls are paid twice. `compile_iterations` is the iteration log, one row
-- per completed iteration, written together with the checkpoint that contains it.

CREATE TABLE compile_jobs (
    id                uuid        PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    workflow          text        NOT NULL,
    request           jsonb       NOT NULL,
    status            text        NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    stop_reason       text,
    stop_detail       text,
    progress          jsonb       NOT NULL DEFAULT '{}',
    estimate          jsonb       NOT NULL,
    checkpoint        text,
    result_version_id uuid        REFERENCES workflow_versions (id),
    error             jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz
);

CREATE INDEX compile_jobs_list_idx ON compile_jobs (created_at DESC, id DESC);
CREATE INDEX compile_jobs_workflow_idx ON compile_jobs (workflow, created_at DESC);

CREATE TABLE compile_iterations (
    job_id     uuid        NOT NULL REFERENCES compile_jobs (id) ON DELETE CASCADE,
    iteration  integer     NOT NULL,
    record     jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, iteration)
);
