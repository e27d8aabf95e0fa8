//! The fields of vegeta's `report -type=json`, with its names and units, so that a tool that
//! reads vegeta reports reads `gclab cli bench --json` too.
//!
//! vegeta counts time in nanoseconds and names percentiles `50th`…`99th`; its timestamps are
//! RFC 3339 with nanoseconds. `requests`, `rate`, `throughput` and `status_codes` already
//! mean in our reports what they mean in vegeta's, so they are not repeated here.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use serde::Serialize;

/// vegeta's latency block, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latencies {
    pub total: u64,
    pub mean: u64,
    #[serde(rename = "50th")]
    pub p50: u64,
    #[serde(rename = "90th")]
    pub p90: u64,
    #[serde(rename = "95th")]
    pub p95: u64,
    #[serde(rename = "99th")]
    pub p99: u64,
    pub max: u64,
    pub min: u64,
}

/// Bytes received (bodies) or sent, in all and per request.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Bytes {
    pub total: u64,
    pub mean: f64,
}

/// The vegeta fields a report adds (flattened into it).
#[derive(Debug, Clone, Serialize)]
pub struct Vegeta {
    pub latencies: Latencies,
    pub bytes_in: Bytes,
    pub bytes_out: Bytes,
    /// When the first request was (meant to be) sent.
    pub earliest: String,
    /// When the last request was (meant to be) sent.
    pub latest: String,
    /// When the last answer came.
    pub end: String,
    /// From `earliest` to `latest`, in nanoseconds.
    pub duration: u64,
    /// From `latest` to `end`, in nanoseconds: the wait for the last answers.
    pub wait: u64,
    /// Successful answers / requests, 0 to 1.
    pub success: f64,
    /// Each distinct error once, as vegeta lists them. `None` in a report whose own
    /// `errors` is a count (herd's, older than this format).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<String>>,
}

/// Gathers a run's samples into [`Vegeta`]: offsets are from the run's start, `wall` is the
/// clock time of that start.
#[derive(Debug)]
pub struct Tally {
    wall: SystemTime,
    total_ns: u128,
    earliest: Option<Duration>,
    latest: Duration,
    end: Duration,
    bytes_in: u64,
    bytes_out: u64,
    ok: u64,
    requests: u64,
    errors: BTreeSet<String>,
}

impl Tally {
    pub fn new(wall: SystemTime) -> Tally {
        Tally {
            wall,
            total_ns: 0,
            earliest: None,
            latest: Duration::ZERO,
            end: Duration::ZERO,
            bytes_in: 0,
            bytes_out: 0,
            ok: 0,
            requests: 0,
            errors: BTreeSet::new(),
        }
    }

    /// One request, sent at `at` after the start, answered `latency` later; `error` is its
    /// error's text, if it failed.
    pub fn add(&mut self, at: Duration, latency: Duration, bytes_in: u64, error: Option<String>) {
        self.requests += 1;
        self.total_ns += latency.as_nanos();
        self.earliest = Some(self.earliest.map_or(at, |e| e.min(at)));
        self.latest = self.latest.max(at);
        self.end = self.end.max(at + latency);
        self.bytes_in += bytes_in;
        match error {
            Some(error) => {
                self.errors.insert(error);
            }
            None => self.ok += 1,
        }
    }

    /// The report; `latency` is the run's histogram, in microseconds.
    pub fn finish(self, latency: &Histogram<u64>) -> Vegeta {
        let ns = |us: u64| us.saturating_mul(1000);
        let per = |total: u64| total as f64 / self.requests.max(1) as f64;
        let (p50, p90, p95, p99, max, min) = if latency.is_empty() {
            (0, 0, 0, 0, 0, 0)
        } else {
            (
                ns(latency.value_at_quantile(0.50)),
                ns(latency.value_at_quantile(0.90)),
                ns(latency.value_at_quantile(0.95)),
                ns(latency.value_at_quantile(0.99)),
                ns(latency.max()),
                ns(latency.min()),
            )
        };
        let earliest = self.earliest.unwrap_or(Duration::ZERO);
        let time =
            |offset: Duration| humantime::format_rfc3339_nanos(self.wall + offset).to_string();
        Vegeta {
            latencies: Latencies {
                total: u64::try_from(self.total_ns).unwrap_or(u64::MAX),
                mean: u64::try_from(self.total_ns / u128::from(self.requests.max(1)))
                    .unwrap_or(u64::MAX),
                p50,
                p90,
                p95,
                p99,
                max,
                min,
            },
            bytes_in: Bytes {
                total: self.bytes_in,
                mean: per(self.bytes_in),
            },
            bytes_out: Bytes {
                total: self.bytes_out,
                mean: per(self.bytes_out),
            },
            earliest: time(earliest),
            latest: time(self.latest),
            end: time(self.end),
            duration: nanos(self.latest.saturating_sub(earliest)),
            wait: nanos(self.end.saturating_sub(self.latest)),
            success: if self.requests == 0 {
                0.0
            } else {
                self.ok as f64 / self.requests as f64
            },
            errors: Some(self.errors.into_iter().collect()),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_requests_make_vegetas_totals_in_nanoseconds() {
        let mut tally = Tally::new(SystemTime::UNIX_EPOCH);
        tally.add(
            Duration::from_millis(10),
            Duration::from_millis(2),
            30,
            None,
        );
        tally.add(
            Duration::from_millis(20),
            Duration::from_millis(4),
            0,
            Some("404 Not Found".to_owned()),
        );
        let mut h = Histogram::<u64>::new(3).unwrap();
        h.record(2000).unwrap();
        h.record(4000).unwrap();
        let v = tally.finish(&h);
        assert_eq!(v.latencies.total, 6_000_000);
        assert_eq!(v.latencies.mean, 3_000_000);
        // The histogram's own values (3 significant digits), as nanoseconds.
        assert_eq!(
            (v.latencies.min, v.latencies.max),
            (h.min() * 1000, h.max() * 1000)
        );
        assert_eq!(v.duration, 10_000_000, "earliest 10 ms to latest 20 ms");
        assert_eq!(v.wait, 4_000_000, "the last answer came 4 ms after it left");
        assert_eq!(v.earliest, "1970-01-01T00:00:00.010000000Z");
        assert_eq!(v.end, "1970-01-01T00:00:00.024000000Z");
        assert_eq!(v.bytes_in.total, 30);
        assert_eq!(v.success, 0.5);
        assert_eq!(v.errors, Some(vec!["404 Not Found".to_owned()]));
    }
}
