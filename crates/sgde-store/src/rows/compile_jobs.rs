//! Rows of `compile_jobs` (moved here from `pg/compile_jobs.rs`).
