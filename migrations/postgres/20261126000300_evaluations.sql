-- Data sets and evaluations.
--
-- A data set's rows are (inputs, expected) pairs, numbered from 0 in upload order. Which split a
-- row belongs to is not stored: it follows from the data set's seed and fractions (rows ordered
-- by a seeded hash of their number, then cut), so re-splitting with another seed rewrites
-- nothing and every reader agrees.
--
-- An evaluation is a queue job (kind `evaluation`, same id) whose request is its payload; each
-- example's outcome is a row of `evaluation_results`, written as it completes, so a re-claimed
-- evaluation resumes where it stopped and the report is always a recount of the rows.

CREATE TABLE datasets (
    id               uuid             PRIMARY KEY,
    name             text             NOT NULL,
    description      text,
    mapping          jsonb            NOT NULL,
    split_seed       bigint           NOT NULL,
    train_fraction   double precision NOT NULL CHECK (train_fraction >= 0 AND train_fraction <= 1),
    validation_fraction double precision NOT NULL
        CHECK (validation_fraction >= 0 AND train_fraction + validation_fraction <= 1),
    row_count        integer          NOT NULL DEFAULT 0,
    created_by       text,
    created_at       timestamptz      NOT NULL DEFAULT now(),
    updated_at       timestamptz      NOT NULL DEFAULT now(),
    deleted_at       timestamptz
);

CREATE UNIQUE INDEX datasets_name_live_key ON datasets (name) WHERE deleted_at IS NULL;

CREATE TABLE dataset_rows (
    dataset_id uuid    NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    idx        integer NOT NULL,
    inputs     jsonb   NOT NULL,
    expected   jsonb   NOT NULL,
    PRIMARY KEY (dataset_id, idx)
);

CREATE TABLE evaluation_results (
    evaluation_id uuid             NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    version_id    uuid             NOT NULL,
    example       integer          NOT NULL,
    score         double precision NOT NULL,
    passed        boolean          NOT NULL,
    output        jsonb,
    expected      jsonb            NOT NULL,
    error         jsonb,
    trace         jsonb,
    tokens        bigint           NOT NULL DEFAULT 0,
    cost_usd      double precision NOT NULL DEFAULT 0,
    latency_us    bigint           NOT NULL DEFAULT 0,
    created_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (evaluation_id, version_id, example)
);
