//! Rows of `feedback` (moved here from `pg/feedback.rs`).
