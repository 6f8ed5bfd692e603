//! Placeholder: being ported from `pg/executions.rs`.
