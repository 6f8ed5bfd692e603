//! Placeholder: being ported from `pg/endpoints.rs`.
