//! Rows of `executions` (moved here from `pg/executions.rs`).
