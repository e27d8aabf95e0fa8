//! `gclab cli bench`: a load generator in the spirit of wrk2 and vegeta.
//!
//! Keys are drawn at random from `key1`…`keyN` and requests go round-robin over the
//! frontends. Two ways to apply load:
//! - **open loop** (`--rate R`): a request leaves every 1/R seconds whatever the answers do,
//!   and latency is measured from when it *should* have left. A closed-loop tool that
//!   waits for slow answers before sending more hides exactly the stalls you are looking
//!   for ("coordinated omission"); measuring from the intended send time does not.
//! - **closed loop** (`--concurrency C`): C requests in flight, each sent when one returns.
//!   It finds the maximum throughput, but its latencies are the optimistic kind.
//!
//! Percentiles come from an HDR histogram (`hdrhistogram`), which keeps 3 significant digits
//! from a microsecond to a minute in a few kilobytes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::mpsc;

use super::check::{Checker, Reads, Verdict};
use super::vegeta::{Tally, Vegeta};
use super::{exit, fail, print_report, short, TIMEOUT};
use crate::client::{Cached, ClientError, DbClient, FrontendClient};

/// How load is applied.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Open loop: this many requests per second.
    Rate(u32),
    /// Closed loop: this many requests in flight.
    Concurrency(u32),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: Mode,
    pub duration: Duration,
    /// Keys are `key1`..=`key{keys}`.
    pub keys: u32,
    /// The frontends' HTTP addresses.
    pub frontends: Vec<String>,
    /// The dbserver: `--check` counts its reads.
    pub db: Option<String>,
    /// Write key1..keyN to the dbserver first.
    pub fill: bool,
    /// How long a request may take before the cli gives up on it.
    pub client_timeout: Duration,
    /// End with the checker's verdict (`--check`; needs `db`, whose reads it counts).
    pub check: bool,
    /// Keep a timeline of the run: answers per interval, by source, and their p99.
    pub timeline: bool,
    /// Frontend restarts the run itself causes (`cli chaos` kills), for the checker.
    pub restarts: u64,
    /// `--hit-ratio`: this share of requests asks for key1..keyN (warmed first), the rest
    /// for fresh keys that no one stored, which miss every cache and read the dbserver.
    pub hit_ratio: Option<f64>,
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    /// Reads a histogram recorded in microseconds.
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            min: ms(h.min()),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

/// One bar of the latency histogram.
#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    pub from_ms: f64,
    pub to_ms: f64,
    pub count: u64,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `rate` or `concurrency`.
    pub mode: &'static str,
    /// The requested rate or concurrency.
    pub target: u32,
    pub duration_s: f64,
    pub keys: u32,
    pub frontends: Vec<String>,
    pub requests: u64,
    /// Requests sent per second.
    pub rate: f64,
    /// Successful answers per second, over the whole run.
    pub throughput: f64,
    /// Successful answers / requests.
    pub success_ratio: f64,
    pub latency_ms: Latency,
    /// Count per HTTP status, or per error for requests that got no status.
    pub status_codes: BTreeMap<String, u64>,
    /// Count per `x-gclab-source`: main, hot, peer, db.
    pub sources: BTreeMap<String, u64>,
    pub histogram: Vec<Bucket>,
    /// The checker's verdict, with `--check`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<Verdict>,
    /// Database reads during the run (the dbserver's `gets`, after − before), with `--check`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_reads: Option<u64>,
    /// Distinct keys asked for, with `--check` (0 without).
    #[serde(skip_serializing_if = "is_zero")]
    pub keys_asked: u64,
    /// Answers over time, when asked for (`cli chaos` draws it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Timeline>,
    /// The `--hit-ratio` asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hit_ratio_asked: Option<f64>,
    /// The share of requests answered without a database read for them: 1 − the dbserver's
    /// reads during the run / requests (with `--hit-ratio`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hit_ratio_seen: Option<f64>,
    /// vegeta's fields, in its names and units.
    #[serde(flatten)]
    pub vegeta: Vegeta,
    /// Latencies of the answers from the asked node's own cache (main or hot), for `--plot`.
    #[serde(skip)]
    pub hit_latency: Histogram<u64>,
    /// Latencies of every other request: a peer call, a database read, a 404, an error.
    #[serde(skip)]
    pub miss_latency: Histogram<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A run's answers over time, in equal intervals.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    /// The width of one interval, in milliseconds.
    pub bin_ms: u64,
    pub bins: Vec<Bin>,
}

/// The answers to the requests sent in one interval, by where they came from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Bin {
    /// Seconds from the start of the run to the start of the interval.
    pub t_s: f64,
    /// From a main or hot cache.
    pub hit: u64,
    pub peer: u64,
    pub db: u64,
    /// Errors and "no such key" answers.
    pub failed: u64,
    /// The interval's 99th-percentile latency.
    pub p99_ms: f64,
}

/// One answer, as the load tasks hand it to the collector.
struct Sample {
    /// Latency as the report counts it (in open loop, from the intended send time).
    micros: u64,
    /// The request's own time on the wire, for the deadline claim.
    took: Duration,
    /// When it was (meant to be) sent, from the start of the run.
    at: Duration,
    key: u32,
    /// A fresh key that no one stored (`--hit-ratio`): a 404 is its right answer.
    miss: bool,
    answer: Result<Option<Cached>, ClientError>,
}

/// Which keys a run asks for.
#[derive(Debug)]
struct Keys {
    /// key1..key{count}.
    count: u32,
    hit_ratio: Option<f64>,
    /// Fresh keys are `miss-{run}-{n}`: this run's own, never stored by an earlier run.
    run: u32,
    misses: AtomicU64,
}

impl Keys {
    /// The next key to ask for: its number and whether it is a fresh miss, and its name.
    fn draw(&self) -> (u32, bool, String) {
        match self.hit_ratio {
            Some(ratio) if fastrand::f64() >= ratio => {
                let n = self.misses.fetch_add(1, Ordering::Relaxed) + 1;
                (0, true, format!("miss-{:08x}-{n}", self.run))
            }
            _ => {
                let key = fastrand::u32(1..=self.count);
                (key, false, format!("key{key}"))
            }
        }
    }
}

/// Runs the benchmark and prints the report; draws its timeline to `timeline` if given.
pub async fn run(
    plan: Plan,
    timeline: Option<std::path::PathBuf>,
    plot: Option<std::path::PathBuf>,
    json: bool,
) -> u8 {
    match measure(&plan, !json).await {
        Ok(report) => {
            print_report(&report, render, json);
            if let Some(path) = &plot {
                let title = format!(
                    "gclab cli bench · {} requests over {} frontends",
                    report.requests,
                    report.frontends.len()
                );
                let series = [
                    super::plot::Series {
                        name: "hits (main or hot cache)",
                        colour: "#2e9e44",
                        dash: "",
                        latency: &report.hit_latency,
                    },
                    super::plot::Series {
                        name: "misses (peer, db, not found)",
                        colour: "#d62728",
                        dash: "8 5",
                        latency: &report.miss_latency,
                    },
                ];
                if let Err(e) = super::plot::save(path, &title, &series) {
                    return fail(
                        exit::UNREACHABLE,
                        &format!("cannot write {}: {e}", path.display()),
                        json,
                    );
                }
                if !json {
                    println!("plot: {}", path.display());
                }
            }
            if let (Some(path), Some(drawn)) = (&timeline, &report.timeline) {
                let title = format!(
                    "gclab cli bench · {} · {} s over {} frontends",
                    match plan.mode {
                        Mode::Rate(r) => format!("open loop at {r}/s"),
                        Mode::Concurrency(c) => format!("closed loop, {c} in flight"),
                    },
                    report.duration_s,
                    report.frontends.len()
                );
                if let Err(e) = super::timeline::save(path, &title, drawn, &[]) {
                    return fail(
                        exit::UNREACHABLE,
                        &format!("cannot write {}: {e}", path.display()),
                        json,
                    );
                }
                if !json {
                    println!("timeline: {}", path.display());
                }
            }
            if report.check.as_ref().is_some_and(|v| !v.valid) {
                exit::INVALID
            } else {
                exit::FOUND
            }
        }
        Err(e) => fail(exit::UNREACHABLE, &e.to_string(), json),
    }
}

/// The value bench writes for `key{i}`: 30 bytes, like the static file nginx serves in
/// `bench/`, so the two are compared on equal payloads.
pub fn value_of(i: u32) -> Bytes {
    Bytes::from(format!("{:<30}", format!("value of key{i}")))
}

/// Writes the keys, applies the load, and collects the report.
pub async fn measure(plan: &Plan, progress: bool) -> Result<Report, ClientError> {
    let db = plan.db.as_ref().map(|db| DbClient::new(db, TIMEOUT));
    if let (Some(db), true) = (&db, plan.fill) {
        fill(db, plan.keys).await?;
    }
    let frontends: Arc<Vec<FrontendClient>> = Arc::new(
        plan.frontends
            .iter()
            .map(|addr| FrontendClient::new(addr, plan.client_timeout))
            .collect(),
    );
    // Fail early and clearly if a frontend is down, instead of reporting a run of errors.
    let mut nodes_before = Vec::new();
    for frontend in frontends.iter() {
        nodes_before.push(frontend.stats().await?);
    }
    if plan.hit_ratio.is_some() {
        // Each stored key read once first, so that what hits and what misses is the knob's
        // doing, not a cold start's.
        warm(&frontends, plan.keys).await?;
    }
    let db_before = match (&db, plan.check || plan.hit_ratio.is_some()) {
        (Some(db), true) => Some(db.stats().await?.gets),
        _ => None,
    };
    let mut checker = Checker::new(plan.client_timeout);
    let mut timeline = plan.timeline.then(|| Collector::new(plan.duration));

    let (tx, mut rx) = mpsc::unbounded_channel::<Sample>();
    let sent = Arc::new(AtomicU64::new(0));
    let bar = live_bar(plan.duration, progress, Arc::clone(&sent));
    let keys = Arc::new(Keys {
        count: plan.keys,
        hit_ratio: plan.hit_ratio,
        run: fastrand::u32(..),
        misses: AtomicU64::new(0),
    });
    let wall = SystemTime::now();
    let started = Instant::now();
    let mut tally = Tally::new(wall);
    let load = tokio::spawn(apply(
        plan.mode,
        started,
        plan.duration,
        keys,
        Arc::clone(&frontends),
        tx,
        Arc::clone(&sent),
    ));

    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .expect("bounds 1 µs..60 s with 3 digits are valid");
    let (mut hit_latency, mut miss_latency) = (latency.clone(), latency.clone());
    let mut status_codes = BTreeMap::new();
    let mut sources = BTreeMap::new();
    let mut ok = 0u64;
    // The channel closes when the load task and every request it started have finished.
    // Past the sending time, the answers still out are waited for, and the wait is named:
    // at a rate the servers cannot keep, that is seconds of an otherwise silent screen.
    let mut drain_at = std::pin::pin!(tokio::time::sleep_until((started + plan.duration).into()));
    let (mut received, mut draining) = (0u64, false);
    loop {
        let sample = tokio::select! {
            sample = rx.recv() => match sample {
                Some(sample) => sample,
                None => break,
            },
            () = &mut drain_at, if !draining => {
                draining = true;
                let left = sent.load(Ordering::Relaxed).saturating_sub(received);
                if left > 0 {
                    bar.println(format!("sending done; draining {left} requests still in flight…"));
                }
                continue;
            }
        };
        received += 1;
        latency.saturating_record(sample.micros);
        let hit = matches!(&sample.answer, Ok(Some(c)) if c.source == "main" || c.source == "hot");
        match hit {
            true => hit_latency.saturating_record(sample.micros),
            false => miss_latency.saturating_record(sample.micros),
        }
        let (bytes_in, error) = match &sample.answer {
            Ok(Some(cached)) => (cached.value.len() as u64, None),
            Ok(None) => (0, Some("404 Not Found".to_owned())),
            Err(e) => (0, Some(e.to_string())),
        };
        tally.add(
            sample.at,
            Duration::from_micros(sample.micros),
            bytes_in,
            error,
        );
        if plan.check && !sample.miss {
            let key = format!("key{}", sample.key);
            checker.answer(&key, &value_of(sample.key), &sample.answer, sample.took);
        }
        if let Some(timeline) = &mut timeline {
            timeline.add(&sample);
        }
        let status = match sample.answer {
            Ok(Some(cached)) => {
                ok += 1;
                *sources.entry(cached.source).or_insert(0) += 1;
                "200".to_owned()
            }
            Ok(None) => "404".to_owned(),
            Err(e) => status_of(&e),
        };
        *status_codes.entry(status).or_insert(0) += 1;
    }
    let send_seconds = load.await.unwrap_or(plan.duration.as_secs_f64());
    let total_seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();

    let keys_asked = checker.keys_asked();
    let (check, db_reads) = match (&db, db_before) {
        (Some(db), Some(before)) if !plan.check => {
            (None, Some(db.stats().await?.gets.saturating_sub(before)))
        }
        (Some(db), Some(before)) => {
            let db_reads = db.stats().await?.gets.saturating_sub(before);
            let mut nodes_after = Vec::new();
            for (frontend, before) in frontends.iter().zip(&nodes_before) {
                nodes_after.push(frontend.stats().await.unwrap_or_else(|_| before.clone()));
            }
            let mut reads = Reads::between(Some(db_reads), &nodes_before, &nodes_after);
            // The restarts the counters show, or those the run made, whichever is more: a
            // node killed early may have served more since its restart than before the run.
            reads.restarts = reads.restarts.max(plan.restarts);
            (Some(checker.verdict(&reads)), Some(db_reads))
        }
        _ => (None, None),
    };
    let requests = latency.len();
    let (mode, target) = match plan.mode {
        Mode::Rate(r) => ("rate", r),
        Mode::Concurrency(c) => ("concurrency", c),
    };
    Ok(Report {
        mode,
        target,
        duration_s: plan.duration.as_secs_f64(),
        keys: plan.keys,
        frontends: plan.frontends.clone(),
        requests,
        rate: requests as f64 / send_seconds.max(1e-9),
        throughput: ok as f64 / total_seconds.max(1e-9),
        success_ratio: if requests == 0 {
            0.0
        } else {
            ok as f64 / requests as f64
        },
        latency_ms: Latency::of(&latency),
        status_codes,
        sources,
        histogram: buckets(&latency),
        check,
        db_reads,
        keys_asked,
        timeline: timeline.map(Collector::finish),
        hit_ratio_asked: plan.hit_ratio,
        hit_ratio_seen: plan
            .hit_ratio
            .and(db_reads)
            .map(|reads| 1.0 - reads as f64 / requests.max(1) as f64),
        vegeta: tally.finish(&latency),
        hit_latency,
        miss_latency,
    })
}

/// Reads key1..keyN once each, 64 at a time, round-robin over the frontends.
async fn warm(frontends: &[FrontendClient], keys: u32) -> Result<(), ClientError> {
    let results: Vec<Result<(), ClientError>> = stream::iter(1..=keys)
        .map(|i| async move {
            let frontend = &frontends[i as usize % frontends.len()];
            frontend.cget(&format!("key{i}")).await.map(drop)
        })
        .buffer_unordered(64)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Writes `key1`..`keyN` to the dbserver, 64 at a time.
pub async fn fill(db: &DbClient, keys: u32) -> Result<(), ClientError> {
    let results: Vec<Result<(), ClientError>> = stream::iter(1..=keys)
        .map(|i| async move { db.set(&format!("key{i}"), value_of(i)).await.map(drop) })
        .buffer_unordered(64)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Sends requests until `deadline`; returns how long sending took, in seconds.
/// The open loop's schedule starts at `started`, so a run sends exactly rate × duration.
async fn apply(
    mode: Mode,
    started: Instant,
    duration: Duration,
    keys: Arc<Keys>,
    frontends: Arc<Vec<FrontendClient>>,
    tx: mpsc::UnboundedSender<Sample>,
    sent: Arc<AtomicU64>,
) -> f64 {
    let deadline = started + duration;
    match mode {
        Mode::Rate(rate) => {
            let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
            for i in 0u64.. {
                let intended = started + interval.mul_f64(i as f64);
                if intended >= deadline {
                    break;
                }
                tokio::time::sleep_until(intended.into()).await;
                let (frontends, tx, keys) = (Arc::clone(&frontends), tx.clone(), Arc::clone(&keys));
                sent.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let frontend = &frontends[i as usize % frontends.len()];
                    // Measured from the intended send time, not from when we got round to it.
                    let _ = tx.send(one_request(frontend, &keys, started, intended).await);
                });
            }
        }
        Mode::Concurrency(concurrency) => {
            let workers: Vec<_> = (0..concurrency)
                .map(|w| {
                    let (frontends, tx, sent, keys) = (
                        Arc::clone(&frontends),
                        tx.clone(),
                        Arc::clone(&sent),
                        Arc::clone(&keys),
                    );
                    tokio::spawn(async move {
                        let mut n = w as usize;
                        while Instant::now() < deadline {
                            let frontend = &frontends[n % frontends.len()];
                            n += 1;
                            sent.fetch_add(1, Ordering::Relaxed);
                            let now = Instant::now();
                            let _ = tx.send(one_request(frontend, &keys, started, now).await);
                        }
                    })
                })
                .collect();
            for worker in workers {
                let _ = worker.await;
            }
        }
    }
    started.elapsed().as_secs_f64()
}

async fn one_request(
    frontend: &FrontendClient,
    keys: &Keys,
    started: Instant,
    since: Instant,
) -> Sample {
    let (key, miss, name) = keys.draw();
    let sent = Instant::now();
    let answer = frontend.cget(&name).await;
    Sample {
        micros: since.elapsed().as_micros() as u64,
        took: sent.elapsed(),
        at: since.saturating_duration_since(started),
        key,
        miss,
        answer,
    }
}

/// The report's name for an error: its status, or what kind of failure it was.
pub(super) fn status_of(error: &ClientError) -> String {
    match error {
        ClientError::Refused { status, .. } | ClientError::Failed { status, .. } => {
            status.to_string()
        }
        ClientError::Timeout { .. } => "timeout".to_owned(),
        ClientError::Unreachable { reason, .. } => format!("error: {reason}"),
        // A connection that broke mid-request (its frontend was killed) reaches the client
        // as a port that stopped answering HTTP: it is a broken connection, not a stranger.
        ClientError::WrongServer { found, .. } if found.starts_with("a port that does not") => {
            "error: connection broke".to_owned()
        }
        ClientError::WrongServer { .. } => "not a frontend".to_owned(),
    }
}

/// Builds a [`Timeline`] as the answers come in.
struct Collector {
    bin: Duration,
    bins: Vec<(Bin, Histogram<u64>)>,
}

impl Collector {
    /// Bins of a quarter second for a run of up to a minute, and about 240 bins for longer.
    fn new(duration: Duration) -> Collector {
        let bin = Duration::from_millis(250).max(duration / 240);
        Collector {
            bin,
            bins: Vec::new(),
        }
    }

    fn add(&mut self, sample: &Sample) {
        let i = (sample.at.as_nanos() / self.bin.as_nanos().max(1)) as usize;
        while self.bins.len() <= i {
            let t_s = self.bin.as_secs_f64() * self.bins.len() as f64;
            let histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 2)
                .expect("bounds 1 µs..60 s with 2 digits are valid");
            self.bins.push((
                Bin {
                    t_s,
                    ..Bin::default()
                },
                histogram,
            ));
        }
        let (bin, histogram) = &mut self.bins[i];
        histogram.saturating_record(sample.micros);
        match &sample.answer {
            Ok(Some(cached)) => match cached.source.as_str() {
                "peer" => bin.peer += 1,
                "db" => bin.db += 1,
                _ => bin.hit += 1,
            },
            _ => bin.failed += 1,
        }
    }

    fn finish(self) -> Timeline {
        Timeline {
            bin_ms: self.bin.as_millis() as u64,
            bins: self
                .bins
                .into_iter()
                .map(|(mut bin, histogram)| {
                    bin.p99_ms = histogram.value_at_quantile(0.99) as f64 / 1000.0;
                    bin
                })
                .collect(),
        }
    }
}

/// A bar that fills over the run's duration and shows the live request rate.
fn live_bar(duration: Duration, visible: bool, sent: Arc<AtomicU64>) -> indicatif::ProgressBar {
    if !visible {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(duration.as_millis() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40.cyan/blue} {elapsed} / {msg}")
            .expect("the template is valid"),
    );
    let ticker = bar.clone();
    let total = humantime::format_duration(duration).to_string();
    tokio::spawn(async move {
        let started = Instant::now();
        let mut last = (started, 0u64);
        while !ticker.is_finished() {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = Instant::now();
            let count = sent.load(Ordering::Relaxed);
            let rate = (count - last.1) as f64 / (now - last.0).as_secs_f64();
            last = (now, count);
            ticker.set_position((now - started).as_millis() as u64);
            ticker.set_message(format!("{total} · {count} requests · {rate:.0}/s"));
        }
    });
    bar
}

/// Doubling buckets from the fastest answer to the slowest.
fn buckets(h: &Histogram<u64>) -> Vec<Bucket> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut low = (h.min().max(1).next_power_of_two() / 2).max(1);
    let mut out = Vec::new();
    while low <= h.max() {
        let high = low * 2;
        out.push(Bucket {
            from_ms: low as f64 / 1000.0,
            to_ms: high as f64 / 1000.0,
            count: h.count_between(low, high - 1),
        });
        low = high;
    }
    out
}

/// The report as a person reads it.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let shape = match r.mode {
        "rate" => format!("open loop at {}/s", r.target),
        _ => format!("closed loop, {} in flight", r.target),
    };
    let frontends: Vec<&str> = r.frontends.iter().map(|f| short(f)).collect();
    let _ = writeln!(
        out,
        "bench: {shape} for {} s, keys key1..key{} over {}",
        r.duration_s,
        r.keys,
        frontends.join(", ")
    );
    let _ = writeln!(
        out,
        "  requests   {} · rate {:.1}/s · throughput {:.1}/s · success {:.2}%",
        r.requests,
        r.rate,
        r.throughput,
        r.success_ratio * 100.0
    );
    let l = &r.latency_ms;
    let _ = writeln!(
        out,
        "  latency    min {:.2} · mean {:.2} · p50 {:.2} · p90 {:.2} · p95 {:.2} · p99 {:.2} · max {:.2} ms",
        l.min, l.mean, l.p50, l.p90, l.p95, l.p99, l.max
    );
    let codes: Vec<String> = r
        .status_codes
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let _ = writeln!(out, "  status     {}", codes.join(" · "));
    let found: u64 = r.sources.values().sum();
    let sources: Vec<String> = r
        .sources
        .iter()
        .map(|(k, v)| format!("{k} {:.1}%", *v as f64 * 100.0 / found.max(1) as f64))
        .collect();
    let _ = writeln!(out, "  sources    {}", sources.join(" · "));
    if let (Some(asked), Some(seen)) = (r.hit_ratio_asked, r.hit_ratio_seen) {
        let _ = writeln!(
            out,
            "  hit ratio  asked {asked:.2} · seen {seen:.2} (answers that cost no database read)"
        );
    }
    let _ = writeln!(out, "  latency histogram");
    let most = r
        .histogram
        .iter()
        .map(|b| b.count)
        .max()
        .unwrap_or(1)
        .max(1);
    for b in &r.histogram {
        let width = (b.count * 40).div_ceil(most) as usize;
        let _ = writeln!(
            out,
            "  {:>9.3} – {:>9.3} ms  {:<40} {:>8} {:>6.2}%",
            b.from_ms,
            b.to_ms,
            "█".repeat(width),
            b.count,
            b.count as f64 * 100.0 / r.requests.max(1) as f64
        );
    }
    if let Some(verdict) = &r.check {
        out.push_str(&super::check::render(verdict));
    }
    out
}
