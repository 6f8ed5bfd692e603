//! Rows of `jobs` (moved here from `pg/jobs.rs`).
