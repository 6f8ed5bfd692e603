-- The catalogue: model endpoints, workflows, their immutable versions and movable labels.
--
-- Constraint and index names are part of the contract with sgde-store: unique violations are
-- turned into typed conflicts by name (crates/sgde-store/src/error.rs), so rename them together.

CREATE TABLE model_endpoints (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL CONSTRAINT model_endpoints_name_key UNIQUE,
    -- sgde_llm::EndpointConfig as JSON: URL, model, the *name* of the key's environment
    -- variable, limits, prices. Never a key.
    config      jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Workflows are soft-deleted: the execution log keeps pointing at what ran, and the name becomes
-- free for a new workflow (the unique index covers live rows only).
CREATE TABLE workflows (
    id             uuid        PRIMARY KEY,
    name           text        NOT NULL CHECK (name <> ''),
    description    text,
    -- Highest version number handed out; bumped under the row lock that serialises version
    -- creation, so numbers are gap-free per workflow and "latest" needs no aggregate.
    latest_version integer     NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz
);
CREATE UNIQUE INDEX workflows_name_live_key ON workflows (name) WHERE deleted_at IS NULL;

CREATE TABLE workflow_versions (
    id                uuid        PRIMARY KEY,
    workflow_id       uuid        NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    number            integer     NOT NULL CHECK (number > 0),
    spec              jsonb       NOT NULL,
    -- sha256 of the spec's canonical form, computed by sgde-workflow.
    content_hash      text        NOT NULL,
    parent_version_id uuid,
    source            text        NOT NULL CHECK (source IN ('manual', 'compile', 'apply')),
    -- The compile job that produced this version, for lineage.
    job_id            uuid,
    metrics           jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workflow_versions_number_key UNIQUE (workflow_id, number),
    CONSTRAINT workflow_versions_content_hash_key UNIQUE (workflow_id, content_hash),
    -- Target of the composite foreign keys below: a label, a parent or an execution can only
    -- point at a version of the same workflow.
    CONSTRAINT workflow_versions_workflow_id_id_key UNIQUE (workflow_id, id),
    CONSTRAINT workflow_versions_parent_fkey FOREIGN KEY (workflow_id, parent_version_id)
        REFERENCES workflow_versions (workflow_id, id)
);

-- Versions are immutable; the database refuses updates even from a buggy caller.
CREATE FUNCTION workflow_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'workflow versions are immutable' USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER workflow_versions_no_update BEFORE UPDATE ON workflow_versions
    FOR EACH ROW EXECUTE FUNCTION workflow_versions_immutable();

CREATE TABLE workflow_labels (
    workflow_id uuid        NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    name        text        NOT NULL CHECK (name <> ''),
    version_id  uuid        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text,
    PRIMARY KEY (workflow_id, name),
    CONSTRAINT workflow_labels_version_fkey FOREIGN KEY (workflow_id, version_id)
        REFERENCES workflow_versions (workflow_id, id) ON DELETE CASCADE
);
CREATE INDEX workflow_labels_version_idx ON workflow_labels (version_id);

-- Every set, move and delete of a label; `to_version_id` is null for a delete and
-- `from_version_id` null for a first set.
CREATE TABLE workflow_label_history (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id     uuid        NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    label           text        NOT NULL,
    from_version_id uuid,
    to_version_id   uuid,
    moved_by        text,
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workflow_label_history_idx ON workflow_label_history (workflow_id, label, id DESC);
CREATE INDEX workflow_label_history_workflow_idx ON workflow_label_history (workflow_id, id DESC);
