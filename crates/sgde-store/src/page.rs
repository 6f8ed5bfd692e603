//! Keyset pagination: [`PageRequest`] in, [`Page`] out, cursors opaque to clients.
//!
//! A cursor is the sort key of the last row of a page (never an offset, so pages stay stable
//! while rows are inserted and cost the same at any depth), tagged with the listing it belongs to
//! and hex-encoded. Clients must treat it as opaque; the encoding may change between releases,
//! which only invalidates cursors in flight.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{Result, StoreError};

/// The most rows one page may hold.
pub const MAX_PAGE_SIZE: u32 = 500;
/// The page size when the caller gives none.
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// Where a listing starts and how much of it to return.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    /// Rows per page; clamped to `1..=MAX_PAGE_SIZE`, `None` means [`DEFAULT_PAGE_SIZE`].
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page; `None` for the first page.
    pub cursor: Option<String>,
}

impl PageRequest {
    pub fn first(limit: u32) -> Self {
        Self { limit: Some(limit), cursor: None }
    }

    pub fn after(limit: u32, cursor: impl Into<String>) -> Self {
        Self { limit: Some(limit), cursor: Some(cursor.into()) }
    }

    /// The effective page size.
    pub fn limit(&self) -> u32 {
        self.limit.unwrap_or(DEFAULT_PAGE_SIZE).clamp(1, MAX_PAGE_SIZE)
    }

    /// Rows to fetch: one more than the page, to learn whether another page follows.
    pub(crate) fn fetch(&self) -> i64 {
        i64::from(self.limit()) + 1
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass back as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Cuts a fetch of `request.fetch()` rows down to a page, deriving the cursor from the last
    /// row kept.
    pub(crate) fn from_rows(
        mut rows: Vec<T>,
        request: &PageRequest,
        cursor_of: impl Fn(&T) -> String,
    ) -> Self {
        let limit = request.limit() as usize;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(cursor_of)
        } else {
            None
        };
        Self { items: rows, next_cursor }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), next_cursor: self.next_cursor }
    }
}

/// The listings, so that a cursor of one cannot be replayed against another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CursorKind {
    Workflows,
    Versions,
    LabelHistory,
    Executions,
    CompileJobs,
    Policies,
    Evaluations,
}

impl CursorKind {
    fn tag(self) -> &'static str {
        match self {
            CursorKind::Workflows => "w",
            CursorKind::Versions => "v",
            CursorKind::LabelHistory => "h",
            CursorKind::Executions => "e",
            CursorKind::CompileJobs => "c",
            CursorKind::Policies => "p",
            CursorKind::Evaluations => "x",
        }
    }
}

fn encode(kind: CursorKind, body: &str) -> String {
    hex::encode(format!("{}1:{body}", kind.tag()))
}

fn decode(kind: CursorKind, cursor: &str) -> Result<String> {
    let invalid = || StoreError::Invalid { what: "cursor" };
    let bytes = hex::decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let prefix = format!("{}1:", kind.tag());
    text.strip_prefix(&prefix).map(str::to_owned).ok_or_else(invalid)
}

/// A cursor on a text key (workflow names).
pub(crate) fn encode_text(kind: CursorKind, key: &str) -> String {
    encode(kind, key)
}

pub(crate) fn decode_text(kind: CursorKind, cursor: Option<&str>) -> Result<Option<String>> {
    cursor.map(|c| decode(kind, c)).transpose()
}

/// A cursor on an integer key (version numbers, history ids).
pub(crate) fn encode_int(kind: CursorKind, key: i64) -> String {
    encode(kind, &key.to_string())
}

pub(crate) fn decode_int(kind: CursorKind, cursor: Option<&str>) -> Result<Option<i64>> {
    cursor
        .map(|c| decode(kind, c)?.parse::<i64>().map_err(|_| StoreError::Invalid { what: "cursor" }))
        .transpose()
}

/// A cursor on `(created_at, id)`, the order of time-ordered listings.
pub(crate) fn encode_time(kind: CursorKind, at: DateTime<Utc>, id: Uuid) -> String {
    encode(kind, &format!("{}.{}", at.timestamp_micros(), id.simple()))
}

pub(crate) fn decode_time(kind: CursorKind, cursor: Option<&str>) -> Result<Option<(DateTime<Utc>, Uuid)>> {
    let Some(cursor) = cursor else { return Ok(None) };
    let invalid = || StoreError::Invalid { what: "cursor" };
    let body = decode(kind, cursor)?;
    let (micros, id) = body.split_once('.').ok_or_else(invalid)?;
    let micros: i64 = micros.parse().map_err(|_| invalid())?;
    let at = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
    let id = Uuid::parse_str(id).map_err(|_| invalid())?;
    Ok(Some((at, id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_are_kind_specific() {
        let at = DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap();
        let id = Uuid::now_v7();
        let c = encode_time(CursorKind::Executions, at, id);
        assert_eq!(decode_time(CursorKind::Executions, Some(&c)).unwrap(), Some((at, id)));
        assert!(decode_time(CursorKind::Workflows, Some(&c)).is_err());
        assert!(decode_int(CursorKind::Versions, Some("zz")).is_err());
        let n = encode_int(CursorKind::Versions, 7);
        assert_eq!(decode_int(CursorKind::Versions, Some(&n)).unwrap(), Some(7));
        let t = encode_text(CursorKind::Workflows, "a:b");
        assert_eq!(decode_text(CursorKind::Workflows, Some(&t)).unwrap().as_deref(), Some("a:b"));
    }

    #[test]
    fn limits_are_clamped() {
        assert_eq!(PageRequest::default().limit(), DEFAULT_PAGE_SIZE);
        assert_eq!(PageRequest::first(0).limit(), 1);
        assert_eq!(PageRequest::first(10_000).limit(), MAX_PAGE_SIZE);
        assert_eq!(PageRequest::first(10).fetch(), 11);
    }

    #[test]
    fn pages_cut_the_extra_row() {
        let req = PageRequest::first(2);
        let page = Page::from_rows(vec![1, 2, 3], &req, |n| n.to_string());
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(page.next_cursor.as_deref(), Some("2"));
        let last = Page::from_rows(vec![1, 2], &req, |n| n.to_string());
        assert_eq!(last.next_cursor, None);
    }
}
