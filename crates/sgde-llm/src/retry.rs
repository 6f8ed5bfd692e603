//! When and how long to wait before trying a model call again.
//!
//! Exponential backoff with *full jitter* (a uniformly random wait between zero and the
//! exponential cap): when many samples of a consensus fan-out hit a 429 together, full jitter
//! spreads their retries instead of sending them back in one burst. A server's `Retry-After`
//! overrides the computed wait — it knows its own quota better than we do. Both the number of
//! attempts and the total elapsed time are bounded, so a call always ends.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Retry bounds for one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// HTTP attempts per call, the first included.
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// Cap of the first backoff; doubles per retry.
    #[serde(default = "defaults::initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Largest computed backoff (a `Retry-After` may ask for more, within `max_elapsed_ms`).
    #[serde(default = "defaults::max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// No retry starts later than this after the call began.
    #[serde(default = "defaults::max_elapsed_ms")]
    pub max_elapsed_ms: u64,
}

mod defaults {
    pub fn max_attempts() -> u32 {
        4
    }
    pub fn initial_backoff_ms() -> u64 {
        500
    }
    pub fn max_backoff_ms() -> u64 {
        20_000
    }
    pub fn max_elapsed_ms() -> u64 {
        120_000
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: defaults::max_attempts(),
            initial_backoff_ms: defaults::initial_backoff_ms(),
            max_backoff_ms: defaults::max_backoff_ms(),
            max_elapsed_ms: defaults::max_elapsed_ms(),
        }
    }
}

impl RetryPolicy {
    /// A policy for tests: a few attempts, millisecond waits.
    pub fn fast(max_attempts: u32) -> Self {
        Self { max_attempts, initial_backoff_ms: 5, max_backoff_ms: 20, max_elapsed_ms: 10_000 }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 {
            return Err("retry.max_attempts must be at least 1".into());
        }
        if self.initial_backoff_ms > self.max_backoff_ms {
            return Err("retry.initial_backoff_ms exceeds retry.max_backoff_ms".into());
        }
        Ok(())
    }

    /// The exponential cap before retry number `retry` (1 = the first retry).
    pub fn backoff_cap(&self, retry: u32) -> Duration {
        let factor = 1u64.checked_shl(retry.saturating_sub(1).min(32)).unwrap_or(u64::MAX);
        Duration::from_millis(self.initial_backoff_ms.saturating_mul(factor).min(self.max_backoff_ms))
    }

    /// The wait before retry number `retry`: the server's `Retry-After` if it sent one, else a
    /// uniformly random duration up to [`backoff_cap`](Self::backoff_cap).
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
        if let Some(wait) = retry_after {
            return wait;
        }
        let cap = u64::try_from(self.backoff_cap(retry).as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rng.random_range(0..=cap))
    }

    pub fn max_elapsed(&self) -> Duration {
        Duration::from_millis(self.max_elapsed_ms)
    }
}

/// Parses a `Retry-After` header value: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
/// A date in the past means "now". Garbage gives `None` (and the computed backoff applies).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // Some servers (and the OpenAI `retry-after-ms` convention) send fractional seconds.
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(86_400.0)));
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses the three HTTP-date forms: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850
/// (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
pub fn parse_http_date(value: &str) -> Option<SystemTime> {
    const MONTHS: [&str; 12] =
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    let cleaned: String = value.chars().map(|c| if c == ',' || c == '-' { ' ' } else { c }).collect();
    let tokens: Vec<&str> = cleaned.split_whitespace().collect();
    let is_month = |t: &str| MONTHS.contains(&t.to_ascii_lowercase().as_str());
    let (mut day, mut month, mut year, mut time) = (None, None, None, None);
    for (i, token) in tokens.iter().enumerate() {
        let lower = token.to_ascii_lowercase();
        if let Some(m) = MONTHS.iter().position(|m| *m == lower) {
            month = Some(m as u32 + 1);
        } else if token.contains(':') {
            time = Some(*token);
        } else if token.bytes().all(|b| b.is_ascii_digit()) {
            let n: i64 = token.parse().ok()?;
            // The day is the short number next to the month; the year is the other one.
            let near_month =
                (i > 0 && is_month(tokens[i - 1])) || tokens.get(i + 1).is_some_and(|t| is_month(t));
            if day.is_none() && near_month && token.len() <= 2 {
                day = Some(n);
            } else {
                year = Some(match (token.len(), n) {
                    (2, n) if n >= 70 => 1900 + n,
                    (2, n) => 2000 + n,
                    (_, n) => n,
                });
            }
        }
    }
    let (day, month, year) = (day?, month?, year?);
    let mut hms = time?.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s;
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("1.5", now), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("Sunday, 06-Nov-94 08:50:37 GMT", now), Some(Duration::from_secs(60)));
        assert_eq!(parse_retry_after("Sun Nov  6 08:49:38 1994", now), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[test]
    fn known_dates() {
        let t = parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT").unwrap();
        assert_eq!(t, UNIX_EPOCH);
        let t = parse_http_date("Tue, 29 Feb 2028 12:00:00 GMT").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 1_835_438_400);
    }

    #[test]
    fn full_jitter_stays_under_the_cap_and_retry_after_wins() {
        let p = RetryPolicy {
            max_attempts: 5,
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
            max_elapsed_ms: 60_000,
        };
        assert_eq!(p.backoff_cap(1), Duration::from_millis(100));
        assert_eq!(p.backoff_cap(3), Duration::from_millis(400));
        assert_eq!(p.backoff_cap(10), Duration::from_millis(1000));
        assert_eq!(p.backoff_cap(200), Duration::from_millis(1000));
        let mut rng = rand::rng();
        for retry in 1..8 {
            assert!(p.delay(retry, None, &mut rng) <= p.backoff_cap(retry));
        }
        assert_eq!(p.delay(1, Some(Duration::from_secs(30)), &mut rng), Duration::from_secs(30));
    }
}
