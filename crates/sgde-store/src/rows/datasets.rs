//! Rows of `datasets` (moved here from `pg/datasets.rs`).
