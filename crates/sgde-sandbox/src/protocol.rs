//! The wire protocol between the pool and a worker: one JSON document per line.
//!
//! ```text
//! worker → parent   {"ready":{"pid":4242,"init_micros":61000}}            once, after start-up
//! parent → worker   {"id":7,"code":"def run(x): ...","function":"run","kwargs":{"x":1},"limits":{...}}
//! worker → parent   {"done":{"id":7,"result":{"ok":{"value":2,"stdout":"","forked":false}},"recycle":false}}
//!                   {"done":{"id":7,"result":{"err":{"kind":"user","exc_type":"ValueError",...}},"recycle":false}}
//! ```
//!
//! Lines keep framing trivial and cheap; the request carries the full source every time (a
//! few hundred bytes) and the worker caches compiled code by source, so the parent never has
//! to track which worker has seen which code. The parent reads lines with a hard length
//! bound, so even a compromised worker cannot make it buffer without limit.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::{error::SandboxError, limits::Limits};

/// A call as the parent sends it (borrowing, to avoid copying the code and arguments).
#[derive(Debug, Serialize)]
pub(crate) struct RequestRef<'a> {
    pub id: u64,
    pub code: &'a str,
    pub function: &'a str,
    pub kwargs: &'a Map<String, Value>,
    pub limits: &'a Limits,
}

/// A call as the worker receives it.
#[derive(Debug, Deserialize)]
pub(crate) struct Request {
    pub id: u64,
    pub code: String,
    pub function: String,
    pub kwargs: Map<String, Value>,
    pub limits: Limits,
}

/// Everything a worker writes on stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WorkerMessage {
    /// The interpreter is built and sealed; calls may start.
    Ready { pid: u32, init_micros: u64 },
    /// The answer to request `id`. With `recycle`, the worker exits after this line.
    Done { id: u64, result: CallResult, recycle: bool },
}

/// The outcome of one call.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CallResult {
    Ok {
        value: Value,
        stdout: String,
        /// Whether the call ran in a throw-away fork rather than the warm interpreter.
        forked: bool,
    },
    Err(SandboxError),
}

/// What [`read_line_bounded`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A complete line (without its newline) is in the buffer.
    Complete,
    /// The stream ended; the buffer holds any partial line.
    Eof,
    /// The line exceeded the bound; reading stopped mid-line.
    TooLong,
}

/// Reads one `\n`-terminated line into `buf` (cleared first), reading at most `max` bytes.
pub(crate) async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buf.clear();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(Line::Eof);
        }
        if let Some(pos) = available.iter().position(|&b| b == b'\n') {
            if buf.len() + pos > max {
                return Ok(Line::TooLong);
            }
            buf.extend_from_slice(&available[..pos]);
            reader.consume(pos + 1);
            return Ok(Line::Complete);
        }
        let n = available.len();
        if buf.len() + n > max {
            return Ok(Line::TooLong);
        }
        buf.extend_from_slice(available);
        reader.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_lines_with_a_bound() {
        let data: &[u8] = b"short\nthis line is too long\nlast";
        let mut reader = tokio::io::BufReader::with_capacity(4, data);
        let mut buf = Vec::new();
        assert_eq!(read_line_bounded(&mut reader, &mut buf, 10).await.unwrap(), Line::Complete);
        assert_eq!(buf, b"short");
        assert_eq!(read_line_bounded(&mut reader, &mut buf, 10).await.unwrap(), Line::TooLong);
    }

    #[tokio::test]
    async fn reports_eof() {
        let data: &[u8] = b"partial";
        let mut reader = tokio::io::BufReader::new(data);
        let mut buf = Vec::new();
        assert_eq!(read_line_bounded(&mut reader, &mut buf, 100).await.unwrap(), Line::Eof);
        assert_eq!(buf, b"partial");
    }

    #[test]
    fn request_round_trips() {
        let kwargs: Map<String, Value> = serde_json::from_str(r#"{"a": 1, "b": [true, null]}"#).unwrap();
        let limits = Limits::default();
        let line = serde_json::to_string(&RequestRef {
            id: 9,
            code: "def run(a, b): return a",
            function: "run",
            kwargs: &kwargs,
            limits: &limits,
        })
        .unwrap();
        let back: Request = serde_json::from_str(&line).unwrap();
        assert_eq!(back.id, 9);
        assert_eq!(back.kwargs, kwargs);
        assert_eq!(back.limits, limits);
    }

    #[test]
    fn messages_have_the_documented_shape() {
        let msg = WorkerMessage::Done {
            id: 7,
            result: CallResult::Ok { value: Value::from(2), stdout: String::new(), forked: false },
            recycle: false,
        };
        let json = serde_json::to_value(&msg).unwrap();
        assert_eq!(json["done"]["result"]["ok"]["value"], 2);
        let err = WorkerMessage::Done {
            id: 7,
            result: CallResult::Err(SandboxError::MissingFunction { function: "run".into() }),
            recycle: true,
        };
        let json = serde_json::to_value(&err).unwrap();
        assert_eq!(json["done"]["result"]["err"]["kind"], "missing_function");
    }
}
