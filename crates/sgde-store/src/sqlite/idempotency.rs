//! Placeholder: being ported from `pg/idempotency.rs`.
