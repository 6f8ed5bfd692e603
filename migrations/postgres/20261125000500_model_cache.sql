-- The persistent tier of sgde-llm's response cache: content-addressed replies, so a resumed
-- compile job or a second replica never pays twice for the same model call.

CREATE TABLE model_cache (
    -- Hex sha256 of the request's canonical form (sgde_llm::CacheKey).
    key        text        PRIMARY KEY,
    reply      jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
