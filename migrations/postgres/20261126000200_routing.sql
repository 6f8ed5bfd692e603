-- A/B routing: traffic policy revisions per workflow, and feedback on executions.
--
-- A policy is never updated in place: every change is a new revision, the highest revision is
-- in force, and a revision with an empty variant list means routing is off. Variants are kept
-- as JSON ([{version_id, version_number, weight_bp, buckets: [{start, end}]}]) because they are
-- read and written whole; the weights are checked to sum to 10,000 in the same statement that
-- writes them.

-- A split routes nothing (routing off) or exactly 100.00% of the traffic.
CREATE FUNCTION sgde_policy_weights_ok(variants jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT jsonb_array_length(variants) = 0
        OR (SELECT sum((v ->> 'weight_bp')::int) FROM jsonb_array_elements(variants) v) = 10000
$$;

CREATE TABLE traffic_policies (
    workflow_id       uuid        NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    revision          integer     NOT NULL CHECK (revision > 0),
    variants          jsonb       NOT NULL CHECK (jsonb_typeof(variants) = 'array'),
    shadow_version_id uuid,
    shadow_version_number integer,
    salt              text        NOT NULL,
    change            text        NOT NULL CHECK (change IN ('set', 'rollback', 'promote', 'clear')),
    created_by        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, revision),
    CONSTRAINT traffic_policies_shadow_fkey FOREIGN KEY (workflow_id, shadow_version_id)
        REFERENCES workflow_versions (workflow_id, id) ON DELETE CASCADE,
    CONSTRAINT traffic_policies_weights_check CHECK (sgde_policy_weights_ok(variants))
);

CREATE TABLE execution_feedback (
    execution_id uuid             PRIMARY KEY REFERENCES executions (id) ON DELETE CASCADE,
    correct      boolean,
    score        double precision CHECK (score >= 0 AND score <= 1),
    comment      text,
    created_by   text,
    created_at   timestamptz      NOT NULL DEFAULT now(),
    updated_at   timestamptz      NOT NULL DEFAULT now(),
    CHECK (correct IS NOT NULL OR score IS NOT NULL)
);
