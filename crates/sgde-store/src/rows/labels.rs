//! Rows of `labels` (moved here from `pg/labels.rs`).
