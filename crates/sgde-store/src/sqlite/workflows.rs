//! Placeholder: being ported from `pg/workflows.rs`.
