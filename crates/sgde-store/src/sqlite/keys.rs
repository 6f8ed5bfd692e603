//! Placeholder: being ported from `pg/keys.rs`.
