//! Rows of `endpoints` (moved here from `pg/endpoints.rs`).
