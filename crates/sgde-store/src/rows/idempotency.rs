//! Rows of `idempotency` (moved here from `pg/idempotency.rs`).
