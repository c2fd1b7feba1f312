//! What every benchmark measures and how it is shown: counters and an HDR latency histogram
//! that the workers update, a progress line per second on stderr, and the final summary as
//! text or JSON on stdout.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde_json::json;
use serde_json::Value;

/// Largest latency the histograms resolve, in microseconds; larger ones count as this.
const LATENCY_MICROS_MAX: u64 = 600_000_000;

/// The percentiles of the latency spectrum in every report (`latency_ms.spectrum`): dense in
/// the tail, where the behaviour of a system under load shows, as HdrHistogram's plots are.
const SPECTRUM_PERCENTILES: [f64; 13] = [
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0,
];

/// Counters and latencies of one stream of work (produce requests, fetches, or records seen
/// end to end), shared by the tasks doing it.
pub(super) struct Stats {
    records: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    /// Acknowledged produce requests whose receipt reported less than a majority fsync.
    below_majority: AtomicU64,
    latency: Mutex<Latencies>,
}

/// The whole run's histogram, and the one since the last progress line.
struct Latencies {
    total: Histogram<u64>,
    interval: Histogram<u64>,
}

impl Latencies {
    fn record(&mut self, latency: Duration) {
        let micros = (latency.as_micros() as u64).max(1);
        self.total.saturating_record(micros);
        self.interval.saturating_record(micros);
    }
}

impl Stats {
    pub(super) fn new() -> anyhow::Result<Arc<Stats>> {
        // 3 significant digits, as kafka-producer-perf-test and nats bench report.
        let histogram = || {
            Histogram::<u64>::new_with_bounds(1, LATENCY_MICROS_MAX, 3).context("latency histogram")
        };
        Ok(Arc::new(Stats {
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            below_majority: AtomicU64::new(0),
            latency: Mutex::new(Latencies {
                total: histogram()?,
                interval: histogram()?,
            }),
        }))
    }

    /// Counts `records` records of `bytes` bytes done.
    pub(super) fn add(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts an acknowledgement that was not fsynced on a majority.
    pub(super) fn below_majority(&self) {
        self.below_majority.fetch_add(1, Ordering::Relaxed);
    }

    /// Acknowledgements so far that were not fsynced on a majority.
    pub(super) fn acks_below_majority(&self) -> u64 {
        self.below_majority.load(Ordering::Relaxed)
    }

    /// Counts a failed request.
    pub(super) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one latency.
    pub(super) fn latency(&self, latency: Duration) {
        if let Ok(mut latencies) = self.latency.lock() {
            latencies.record(latency);
        }
    }

    /// Records many latencies under one lock: end-to-end runs have one per record.
    pub(super) fn latencies(&self, values: impl IntoIterator<Item = Duration>) {
        if let Ok(mut latencies) = self.latency.lock() {
            for latency in values {
                latencies.record(latency);
            }
        }
    }

    pub(super) fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// p50 and p99 in ms since the last call, and starts a new interval.
    fn take_interval(&self) -> Option<(f64, f64)> {
        let mut latencies = self.latency.lock().ok()?;
        if latencies.interval.is_empty() {
            return None;
        }
        let quantiles = (
            ms(latencies.interval.value_at_quantile(0.5)),
            ms(latencies.interval.value_at_quantile(0.99)),
        );
        latencies.interval.reset();
        Some(quantiles)
    }

    /// The totals over `seconds`.
    pub(super) fn summary(&self, seconds: f64) -> Summary {
        let latency = match self.latency.lock() {
            Ok(latencies) if !latencies.total.is_empty() => {
                let h = &latencies.total;
                Some(LatencySummary {
                    p50: ms(h.value_at_quantile(0.5)),
                    p90: ms(h.value_at_quantile(0.9)),
                    p99: ms(h.value_at_quantile(0.99)),
                    p999: ms(h.value_at_quantile(0.999)),
                    max: ms(h.max()),
                    count: h.len(),
                    spectrum: SPECTRUM_PERCENTILES
                        .iter()
                        .map(|percentile| (*percentile, ms(h.value_at_percentile(*percentile))))
                        .collect(),
                })
            }
            _ => None,
        };
        Summary {
            seconds,
            records: self.records(),
            bytes: self.bytes(),
            errors: self.errors(),
            latency,
        }
    }
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// Latency percentiles in milliseconds.
pub(super) struct LatencySummary {
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
    /// Samples behind the percentiles.
    count: u64,
    /// (percentile, ms) at each of `SPECTRUM_PERCENTILES`, for plots.
    spectrum: Vec<(f64, f64)>,
}

/// Totals of one stream of work over a run.
pub(super) struct Summary {
    pub(super) seconds: f64,
    pub(super) records: u64,
    bytes: u64,
    pub(super) errors: u64,
    latency: Option<LatencySummary>,
}

impl Summary {
    pub(super) fn records_per_sec(&self) -> f64 {
        per_second(self.records as f64, self.seconds)
    }

    /// MB (10^6 bytes) of record values per second, as kafka-producer-perf-test counts.
    fn mb_per_sec(&self) -> f64 {
        per_second(self.bytes as f64 / 1e6, self.seconds)
    }

    /// `records`, `records_per_sec`, `mb_per_sec`, `latency_ms` and friends; `latency_ms` is
    /// null when nothing was measured (a JSON reader then fails loudly rather than reading 0).
    pub(super) fn to_json(&self) -> Value {
        json!({
            "seconds": round(self.seconds, 3),
            "records": self.records,
            "bytes": self.bytes,
            "errors": self.errors,
            "records_per_sec": round(self.records_per_sec(), 1),
            "mb_per_sec": round(self.mb_per_sec(), 3),
            "latency_ms": self.latency.as_ref().map(|l| json!({
                "p50": l.p50, "p90": l.p90, "p99": l.p99, "p999": l.p999, "max": l.max,
                "samples": l.count,
                "spectrum": l.spectrum.iter().map(|(percentile, ms)| json!({
                    "percentile": percentile, "ms": ms,
                })).collect::<Vec<_>>(),
            })),
        })
    }

    /// One line for people; `what` names the latency (`request`, `fetch`, `end-to-end`).
    pub(super) fn text(&self, what: &str) -> String {
        let latency = match &self.latency {
            Some(l) => format!(
                "{what} latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
                l.p50, l.p90, l.p99, l.p999, l.max
            ),
            None => format!("no {what} latency measured"),
        };
        format!(
            "{} records in {:.1} s: {:.0} records/s, {:.1} MB/s; {latency}; {} errors",
            self.records,
            self.seconds,
            self.records_per_sec(),
            self.mb_per_sec(),
            self.errors
        )
    }
}

fn per_second(amount: f64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        amount / seconds
    } else {
        0.0
    }
}

/// `value` rounded to `digits` decimals, for reports.
pub(super) fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// Prints the result: `parameters` merged with `measured` as one JSON object, or `text`.
pub(super) fn print(json: bool, parameters: Value, measured: Value, text: &str) {
    if json {
        let mut report = parameters;
        if let (Some(report), Value::Object(measured)) = (report.as_object_mut(), measured) {
            report.extend(measured);
        }
        println!("{report}");
    } else {
        println!("{text}");
    }
}

/// Prints one line per second on stderr with the rate and latency of the last second, until
/// dropped. Goes to stderr so that `--json` output on stdout stays one clean object.
pub(super) struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts reporting `streams` (a label and its stats each), unless `quiet`.
    pub(super) fn start(streams: Vec<(&'static str, Arc<Stats>)>, quiet: bool) -> Progress {
        if quiet {
            return Progress { task: None };
        }
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            let mut last: Vec<(u64, u64)> = streams
                .iter()
                .map(|(_, s)| (s.records(), s.bytes()))
                .collect();
            let mut last_at = Instant::now();
            loop {
                ticker.tick().await;
                let now = Instant::now();
                let seconds = now.duration_since(last_at).as_secs_f64();
                last_at = now;
                let parts: Vec<String> = streams
                    .iter()
                    .zip(last.iter_mut())
                    .map(|((label, stats), (records, bytes))| {
                        let (r, b) = (stats.records(), stats.bytes());
                        let rate = per_second((r - *records) as f64, seconds);
                        let mb = per_second((b - *bytes) as f64 / 1e6, seconds);
                        (*records, *bytes) = (r, b);
                        let latency = match stats.take_interval() {
                            Some((p50, p99)) => format!("p50 {p50:>7.2} ms  p99 {p99:>7.2} ms"),
                            None => format!("{:>29}", "-"),
                        };
                        let errors = match stats.errors() {
                            0 => String::new(),
                            n => format!("  {n} errors"),
                        };
                        format!(
                            "{label} {rate:>9.0} rec/s {mb:>7.1} MB/s  {latency}  \
                             total {r}{errors}"
                        )
                    })
                    .collect();
                eprintln!(
                    "{:>6.1}s  {}",
                    started.elapsed().as_secs_f64(),
                    parts.join("  |  ")
                );
            }
        });
        Progress { task: Some(task) }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
