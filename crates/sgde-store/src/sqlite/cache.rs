//! Placeholder: being ported from `pg/cache.rs`.
