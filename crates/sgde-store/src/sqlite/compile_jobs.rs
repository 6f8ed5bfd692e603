//! Placeholder: being ported from `pg/compile_jobs.rs`.
