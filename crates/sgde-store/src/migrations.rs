//! What the two backends' migration runners share.

use sqlx::migrate::Migrator;

/// True if every up migration of `migrator` is among `applied` (version, checksum) rows with the
/// same checksum. Readiness on either backend.
pub(crate) fn all_recorded(migrator: &Migrator, applied: &[(i64, Vec<u8>)]) -> bool {
    migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .all(|m| applied.iter().any(|(v, sum)| *v == m.version && sum.as_slice() == &*m.checksum))
}
