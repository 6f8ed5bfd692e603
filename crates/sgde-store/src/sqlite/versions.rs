//! Placeholder: being ported from `pg/versions.rs`.
