//! Placeholder: being ported from `pg/runs.rs`.
