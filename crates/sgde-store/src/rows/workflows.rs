//! Rows of `workflows` (moved here from `pg/workflows.rs`).
