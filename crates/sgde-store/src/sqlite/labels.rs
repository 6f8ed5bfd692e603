//! Placeholder: being ported from `pg/labels.rs`.
