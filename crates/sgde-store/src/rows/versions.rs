//! Rows of `versions` (moved here from `pg/versions.rs`).
