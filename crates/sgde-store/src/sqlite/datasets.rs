//! Placeholder: being ported from `pg/datasets.rs`.
