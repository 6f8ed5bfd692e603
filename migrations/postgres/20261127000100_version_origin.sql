-- The provenance block of the folder a version was applied from (`sgde workflow apply`), when
-- that block describes exactly the applied content. It names ids of the instance where the
-- content was compiled (compile job) and hashes of its lineage, which mean nothing as foreign
-- keys here; keeping them verbatim is what lets an export from this instance reproduce the
-- folder byte for byte.
ALTER TABLE workflow_versions ADD COLUMN origin jsonb;
