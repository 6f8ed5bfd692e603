//! Placeholder: being ported from `pg/policies.rs`.
