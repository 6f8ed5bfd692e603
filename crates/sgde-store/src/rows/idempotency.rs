//! Rows of `idempotency_records`.

use sqlx::types::Json;

use crate::error::{Result, StoreError};
use crate::idempotency::{IdempotencyBegin, StoredResponse};

/// How often `begin` tries to claim a key or read why it cannot. A record can vanish between
/// the claim and the read (purged, or abandoned by its owner); then the next claim takes it, so
/// two rounds always suffice in practice.
pub(crate) const CLAIM_ROUNDS: usize = 3;

/// A record read back when the key could not be claimed.
#[derive(sqlx::FromRow)]
pub(crate) struct RecordRow {
    request_hash: Vec<u8>,
    status_code: Option<i16>,
    response_headers: Option<Json<Vec<(String, String)>>>,
    response_body: Option<Vec<u8>>,
}

impl RecordRow {
    /// Why a request with `request_hash` could not claim this record: another body, the same
    /// request still in progress, or the same request already answered.
    pub(crate) fn outcome(self, request_hash: &[u8]) -> Result<IdempotencyBegin> {
        if self.request_hash != request_hash {
            return Ok(IdempotencyBegin::Mismatch);
        }
        let Some(status) = self.status_code else {
            return Ok(IdempotencyBegin::InProgress);
        };
        Ok(IdempotencyBegin::Completed(StoredResponse {
            status: u16::try_from(status)
                .map_err(|_| StoreError::Corrupt(format!("idempotency status code {status}")))?,
            headers: self.response_headers.map(|h| h.0).unwrap_or_default(),
            body: self.response_body.unwrap_or_default(),
        }))
    }
}

/// A response's status code for the `smallint` column.
pub(crate) fn status_code(response: &StoredResponse) -> Result<i16> {
    i16::try_from(response.status).map_err(|_| StoreError::Invalid { what: "status code" })
}
