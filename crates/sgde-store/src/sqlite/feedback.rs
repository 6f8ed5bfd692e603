//! Placeholder: being ported from `pg/feedback.rs`.
