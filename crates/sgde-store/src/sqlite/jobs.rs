//! Placeholder: being ported from `pg/jobs.rs`.
