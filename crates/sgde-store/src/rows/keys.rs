//! Rows of `keys` (moved here from `pg/keys.rs`).
