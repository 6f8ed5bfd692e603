//! Rows of `policies` (moved here from `pg/policies.rs`).
