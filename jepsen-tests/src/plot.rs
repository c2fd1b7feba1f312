//! The timeline picture of a run: send latency and throughput over time, with the nemesis's
//! faults shaded behind both, so a glance shows whether latency spikes and throughput dips line
//! up with faults (and how long the cluster took to recover).
//!
//! [`write_timeline`] does it for a results directory; [`render_svg`] and
//! [`parse_nemesis_log`] are the parts.

use std::collections::HashMap;
use std::path::Path;
use std::path::PathBuf;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::HPos;
use plotters::style::text_anchor::Pos;
use plotters::style::text_anchor::VPos;

use crate::history::Action;
use crate::history::History;
use crate::history::Kind;

/// The nemesis log's name in a results directory.
pub const NEMESIS_LOG: &str = "nemesis.log";

/// The picture's name in a results directory.
pub const TIMELINE_FILE: &str = "timeline.svg";

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 800;
/// The legend column right of the charts.
const LEGEND_WIDTH: u32 = 190;
const FONT: &str = "sans-serif";

const OK: RGBColor = RGBColor(31, 119, 180);
const FAIL: RGBColor = RGBColor(214, 39, 40);
const INFO: RGBColor = RGBColor(255, 127, 14);
const ACKED: RGBColor = RGBColor(31, 119, 180);
const POLLED: RGBColor = RGBColor(44, 160, 44);
/// Fault shading, one colour per kind in order of first appearance; none of them is an
/// outcome's or a throughput line's colour, so shading never reads as data.
const FAULT_COLORS: [RGBColor; 10] = [
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(127, 127, 127),
    RGBColor(0, 0, 128),
    RGBColor(128, 0, 0),
    RGBColor(0, 100, 0),
    RGBColor(184, 134, 11),
];
const FAULT_OPACITY: f64 = 0.2;
/// Points overlap by the thousand in a long run: translucency keeps density visible.
const POINT_OPACITY: f64 = 0.6;
/// A log axis cannot show zero; a latency under a microsecond is drawn at one.
const MIN_LATENCY_MS: f64 = 0.001;

/// One fault the nemesis injected: when it started and ended, and what it was.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultInterval {
    /// Seconds since the history's time origin (that of `time_ns`).
    pub start_s: f64,
    /// When it was healed, same origin.
    pub end_s: f64,
    /// The rest of the nemesis log line, e.g. `Kill node 2`.
    pub label: String,
}

impl FaultInterval {
    /// The fault's kind: the label's first word (`Kill`, `Pause`, `Partition`, ...).
    pub fn kind(&self) -> &str {
        self.label.split_whitespace().next().unwrap_or("")
    }
}

/// A nemesis log line that is not `START END LABEL`.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NemesisLogError {
    /// A time is missing.
    #[error("line {line}: expected the {field} time in seconds, found the end of the line")]
    MissingTime {
        /// 1-based line number.
        line: usize,
        /// `start` or `end`.
        field: &'static str,
    },
    /// A time is not a number of seconds.
    #[error("line {line}: {field} time {text:?} is not a finite, non-negative number of seconds")]
    BadTime {
        /// 1-based line number.
        line: usize,
        /// `start` or `end`.
        field: &'static str,
        /// What stood there.
        text: String,
    },
    /// The fault ends before it starts.
    #[error("line {line}: the fault ends ({end_s} s) before it starts ({start_s} s)")]
    EndBeforeStart {
        /// 1-based line number.
        line: usize,
        /// Start, seconds.
        start_s: f64,
        /// End, seconds.
        end_s: f64,
    },
    /// Nothing says what the fault was.
    #[error("line {line}: no fault named after the start and end times")]
    MissingLabel {
        /// 1-based line number.
        line: usize,
    },
}

/// Why the timeline could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The nemesis log could not be read.
    #[error("read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The nemesis log is malformed.
    #[error("{path} {source}")]
    Nemesis {
        /// The file.
        path: String,
        /// Where and why.
        source: NemesisLogError,
    },
    /// Drawing failed.
    #[error("draw the timeline: {0}")]
    Draw(String),
    /// The picture could not be written.
    #[error("write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

fn draw_error(error: impl std::fmt::Display) -> PlotError {
    PlotError::Draw(error.to_string())
}

/// Parses a nemesis log: one fault a line, `START_S END_S LABEL...`; blank lines are skipped.
/// Only the two times have a fixed format, so new kinds of fault need no change here.
pub fn parse_nemesis_log(text: &str) -> Result<Vec<FaultInterval>, NemesisLogError> {
    let mut faults = Vec::new();
    for (i, mut rest) in text.lines().enumerate() {
        let line = i + 1;
        if rest.trim().is_empty() {
            continue;
        }
        let start_s = time_field(&mut rest, line, "start")?;
        let end_s = time_field(&mut rest, line, "end")?;
        let label = rest.trim();
        if label.is_empty() {
            return Err(NemesisLogError::MissingLabel { line });
        }
        if end_s < start_s {
            return Err(NemesisLogError::EndBeforeStart {
                line,
                start_s,
                end_s,
            });
        }
        faults.push(FaultInterval {
            start_s,
            end_s,
            label: label.to_string(),
        });
    }
    Ok(faults)
}

/// Takes the next whitespace-separated word off `rest` as a time in seconds.
fn time_field(rest: &mut &str, line: usize, field: &'static str) -> Result<f64, NemesisLogError> {
    let trimmed = rest.trim_start();
    let end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
    let (word, tail) = trimmed.split_at(end);
    *rest = tail;
    if word.is_empty() {
        return Err(NemesisLogError::MissingTime { line, field });
    }
    match word.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => Ok(seconds),
        _ => Err(NemesisLogError::BadTime {
            line,
            field,
            text: word.to_string(),
        }),
    }
}

/// One completed send, as plotted.
#[derive(Clone, Debug, PartialEq)]
struct SendLatency {
    invoked_s: f64,
    latency_ms: f64,
    outcome: Kind,
}

/// Every send that completed, paired with its invocation. A process does one operation at a
/// time, so a completion belongs to the same process's last invocation.
fn send_latencies(history: &History) -> Vec<SendLatency> {
    let mut invoked = HashMap::new();
    let mut sends = Vec::new();
    for op in &history.ops {
        match (&op.action, op.kind) {
            // Final reads are recorded without an invocation (under process 0, which is also a
            // producer's number), so they must not consume a producer's pending invocation.
            (Action::FinalRead { .. }, _) => {}
            (action, Kind::Invoke) => {
                invoked.insert(
                    op.process,
                    (matches!(action, Action::Send { .. }), op.time_ns),
                );
            }
            (action, outcome) => {
                if let Some((true, invoked_ns)) = invoked.remove(&op.process) {
                    if matches!(action, Action::Send { .. }) {
                        sends.push(SendLatency {
                            invoked_s: seconds(invoked_ns),
                            latency_ms: op.time_ns.saturating_sub(invoked_ns) as f64 / 1e6,
                            outcome,
                        });
                    }
                }
            }
        }
    }
    sends
}

/// Values acknowledged to producers and values returned to consumers, per 1 s bucket of
/// completion time, from 0 s.
#[derive(Debug, Default, PartialEq)]
struct Throughput {
    acked: Vec<u64>,
    polled: Vec<u64>,
}

fn throughput(history: &History) -> Throughput {
    let mut per_second = Throughput::default();
    // Final reads come after the workload: counting them would add a tail of empty seconds.
    let workload = history
        .ops
        .iter()
        .filter(|op| op.kind == Kind::Ok && !matches!(op.action, Action::FinalRead { .. }));
    for op in workload {
        let bucket = (op.time_ns / 1_000_000_000) as usize;
        if per_second.acked.len() <= bucket {
            per_second.acked.resize(bucket + 1, 0);
            per_second.polled.resize(bucket + 1, 0);
        }
        match &op.action {
            Action::Send { values, .. } => per_second.acked[bucket] += values.len() as u64,
            Action::Poll { reads, .. } => per_second.polled[bucket] += reads.len() as u64,
            _ => {}
        }
    }
    per_second
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// The end of the time axis: the last workload event or fault end, whole seconds. Final reads
/// come after the workload and are not drawn, so they do not stretch it.
fn time_span_s(history: &History, faults: &[FaultInterval]) -> f64 {
    let last_op = history
        .ops
        .iter()
        .filter(|op| !matches!(op.action, Action::FinalRead { .. }))
        .map(|op| seconds(op.time_ns))
        .fold(0.0, f64::max);
    let last_fault = faults.iter().map(|f| f.end_s).fold(0.0, f64::max);
    last_op.max(last_fault).ceil().max(1.0)
}

/// Whole decades around the latencies, so the log axis is labelled at powers of ten. The
/// extremes are widened by a quarter first so that no point sits on the frame, hidden by it.
fn latency_range_ms(sends: &[SendLatency]) -> (f64, f64) {
    let mut latencies = sends.iter().map(|s| s.latency_ms.max(MIN_LATENCY_MS));
    let Some(first) = latencies.next() else {
        return (1.0, 1000.0);
    };
    let (min, max) = latencies.fold((first, first), |(lo, hi), l| (lo.min(l), hi.max(l)));
    let lo = 10f64.powf((min * 0.8).log10().floor());
    let hi = 10f64.powf((max * 1.25).log10().ceil());
    // A hair of padding: plotters drops a decade label that sits exactly on the range's end
    // when rounding puts it just outside.
    (lo / 1.001, hi * 1.001)
}

fn outcome_color(outcome: Kind) -> RGBColor {
    match outcome {
        Kind::Fail => FAIL,
        Kind::Info => INFO,
        Kind::Ok | Kind::Invoke => OK,
    }
}

/// Fault kinds in order of first appearance, each with its colour.
fn fault_kinds(faults: &[FaultInterval]) -> Vec<(String, RGBColor, usize)> {
    let mut kinds: Vec<(String, RGBColor, usize)> = Vec::new();
    for fault in faults {
        match kinds.iter_mut().find(|(kind, _, _)| kind == fault.kind()) {
            Some((_, _, count)) => *count += 1,
            None => {
                let color = FAULT_COLORS[kinds.len() % FAULT_COLORS.len()];
                kinds.push((fault.kind().to_string(), color, 1));
            }
        }
    }
    kinds
}

/// Formats an axis value without float noise (`0.001`, not `0.0010000000000000002`); `f64`'s
/// `Display` already drops a whole number's `.0`.
fn axis_number(value: f64) -> String {
    format!("{}", (value * 1e6).round() / 1e6)
}

/// Renders the timeline as an SVG document: send latency (top, log scale, one point per
/// completed send coloured by outcome) over throughput (bottom, values per second), sharing the
/// time axis, with `faults` shaded across both and a legend on the right.
pub fn render_svg(history: &History, faults: &[FaultInterval]) -> Result<String, PlotError> {
    let sends = send_latencies(history);
    let per_second = throughput(history);
    let span_s = time_span_s(history, faults);
    let kinds = fault_kinds(faults);
    let fault_color = |fault: &FaultInterval| {
        kinds
            .iter()
            .find(|(kind, _, _)| kind == fault.kind())
            .map_or(FAULT_COLORS[0], |(_, color, _)| *color)
    };
    let count = |outcome| sends.iter().filter(|s| s.outcome == outcome).count();
    let title = format!(
        "raftlog Jepsen run: {} completed sends ({} ok, {} fail, {} info), {} faults",
        sends.len(),
        count(Kind::Ok),
        count(Kind::Fail),
        count(Kind::Info),
        faults.len()
    );

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let root = root
            .titled(&title, (FONT, 24).into_font().style(FontStyle::Bold))
            .map_err(draw_error)?;
        let (charts, legend) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
        let (top, bottom) = charts.split_vertically(charts.dim_in_pixel().1 * 55 / 100);

        let (lo_ms, hi_ms) = latency_range_ms(&sends);
        let mut latency = ChartBuilder::on(&top)
            .caption("Send latency", (FONT, 18))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..span_s, (lo_ms..hi_ms).log_scale())
            .map_err(draw_error)?;
        latency
            .configure_mesh()
            .y_desc("latency (ms, log scale)")
            .y_label_formatter(&|v| axis_number(*v))
            .x_label_formatter(&|v| axis_number(*v))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .light_line_style(BLACK.mix(0.04))
            .draw()
            .map_err(draw_error)?;
        latency
            .draw_series(faults.iter().map(|f| {
                Rectangle::new(
                    [(f.start_s, lo_ms), (f.end_s, hi_ms)],
                    fault_color(f).mix(FAULT_OPACITY).filled(),
                )
            }))
            .map_err(draw_error)?;
        latency
            .draw_series(sends.iter().map(|s| {
                Circle::new(
                    (s.invoked_s, s.latency_ms.max(MIN_LATENCY_MS)),
                    2,
                    outcome_color(s.outcome).mix(POINT_OPACITY).filled(),
                )
            }))
            .map_err(draw_error)?;

        let peak = per_second
            .acked
            .iter()
            .chain(&per_second.polled)
            .copied()
            .max()
            .unwrap_or(0);
        // Headroom above the peak keeps the top line off the frame.
        let y_max = (peak as f64 * 1.1).max(1.0);
        let mut rate = ChartBuilder::on(&bottom)
            .caption("Throughput (1 s buckets)", (FONT, 18))
            .margin(8)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..span_s, 0.0..y_max)
            .map_err(draw_error)?;
        rate.configure_mesh()
            .x_desc("time since start (s)")
            .y_desc("values / s")
            .x_label_formatter(&|v| axis_number(*v))
            .y_label_formatter(&|v| axis_number(*v))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .light_line_style(BLACK.mix(0.04))
            .draw()
            .map_err(draw_error)?;
        rate.draw_series(faults.iter().map(|f| {
            Rectangle::new(
                [(f.start_s, 0.0), (f.end_s, y_max)],
                fault_color(f).mix(FAULT_OPACITY).filled(),
            )
        }))
        .map_err(draw_error)?;
        for (buckets, color) in [(&per_second.acked, ACKED), (&per_second.polled, POLLED)] {
            // Each bucket's value is drawn at its middle, where the points above it sit.
            let line = buckets
                .iter()
                .enumerate()
                .map(|(second, &n)| (second as f64 + 0.5, n as f64));
            rate.draw_series(LineSeries::new(line, color.stroke_width(2)))
                .map_err(draw_error)?;
        }

        draw_legend(&legend, &kinds)?;
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

/// The legend column: outcomes, throughput lines, fault kinds. Drawn beside the charts rather
/// than inside them so it never hides a point.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    kinds: &[(String, RGBColor, usize)],
) -> Result<(), PlotError> {
    let heading = (FONT, 17).into_font().style(FontStyle::Bold);
    let entry = (FONT, 16)
        .into_font()
        .into_text_style(area)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let swatch_x = 14;
    let text_x = 36;
    let mut y = 40;
    let section = |name: &str, y: &mut i32| -> Result<(), PlotError> {
        area.draw(&Text::new(name.to_string(), (6, *y), heading.clone()))
            .map_err(draw_error)?;
        *y += 28;
        Ok(())
    };

    section("Send outcome", &mut y)?;
    for (name, color) in [("ok", OK), ("fail", FAIL), ("info (unknown)", INFO)] {
        area.draw(&Circle::new((swatch_x, y), 4, color.filled()))
            .map_err(draw_error)?;
        area.draw(&Text::new(name, (text_x, y), entry.clone()))
            .map_err(draw_error)?;
        y += 22;
    }

    y += 20;
    section("Throughput", &mut y)?;
    for (name, color) in [("acked sends", ACKED), ("polled values", POLLED)] {
        area.draw(&PathElement::new(
            vec![(swatch_x - 8, y), (swatch_x + 8, y)],
            color.stroke_width(2),
        ))
        .map_err(draw_error)?;
        area.draw(&Text::new(name, (text_x, y), entry.clone()))
            .map_err(draw_error)?;
        y += 22;
    }

    y += 20;
    section("Faults", &mut y)?;
    if kinds.is_empty() {
        area.draw(&Text::new("none", (text_x, y), entry.clone()))
            .map_err(draw_error)?;
    }
    for (kind, color, count) in kinds {
        // A stronger tint than the shading: a small swatch at 0.2 would be hard to match.
        area.draw(&Rectangle::new(
            [(swatch_x - 8, y - 7), (swatch_x + 8, y + 7)],
            color.mix(0.5).filled(),
        ))
        .map_err(draw_error)?;
        area.draw(&Text::new(
            format!("{kind} ({count})"),
            (text_x, y),
            entry.clone(),
        ))
        .map_err(draw_error)?;
        y += 22;
    }
    Ok(())
}

/// Draws the timeline of the run stored in `results` (its history, and its nemesis log if there
/// is one: no log, no shading) to `results/timeline.svg`, and returns that path.
pub fn write_timeline(results: &Path, history: &History) -> Result<PathBuf, PlotError> {
    let log_path = results.join(NEMESIS_LOG);
    let faults = match std::fs::read_to_string(&log_path) {
        Ok(text) => parse_nemesis_log(&text).map_err(|source| PlotError::Nemesis {
            path: log_path.display().to_string(),
            source,
        })?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(PlotError::Read {
                path: log_path.display().to_string(),
                source,
            })
        }
    };
    let svg = render_svg(history, &faults)?;
    let path = results.join(TIMELINE_FILE);
    std::fs::write(&path, svg).map_err(|source| PlotError::Write {
        path: path.display().to_string(),
        source,
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Op;

    fn op(process: u64, kind: Kind, time_ms: u64, action: Action) -> Op {
        Op {
            process,
            kind,
            time_ns: time_ms * 1_000_000,
            action,
        }
    }

    fn send(values: &[u64]) -> Action {
        Action::Send {
            partition: 0,
            values: values.to_vec(),
            offsets: Vec::new(),
        }
    }

    fn poll(reads: usize) -> Action {
        Action::Poll {
            reads: (0..reads as u64).map(|i| (0, i, i)).collect(),
            reset: false,
        }
    }

    /// Three ok sends, one fail, one info, a send that never completes, polls, and a final
    /// read under process 0 right after process 0's unfinished send.
    fn sample() -> History {
        let ops = vec![
            op(1, Kind::Invoke, 100, send(&[1, 2])),
            op(1, Kind::Ok, 110, send(&[1, 2])),
            op(2, Kind::Invoke, 150, send(&[3])),
            op(1000, Kind::Invoke, 200, poll(0)),
            op(2, Kind::Fail, 400, send(&[3])),
            op(1000, Kind::Ok, 1_300, poll(3)),
            op(1, Kind::Invoke, 1_500, send(&[4])),
            op(1, Kind::Ok, 1_520, send(&[4])),
            op(3, Kind::Invoke, 2_000, send(&[5, 6, 7])),
            op(3, Kind::Info, 7_000, send(&[5, 6, 7])),
            op(1, Kind::Invoke, 7_100, send(&[8])),
            op(1, Kind::Ok, 7_200, send(&[8])),
            op(0, Kind::Invoke, 7_300, send(&[9])),
            op(
                0,
                Kind::Ok,
                30_000,
                Action::FinalRead {
                    node: 1,
                    partition: 0,
                    records: vec![(0, 1)],
                    target: 1,
                    reached: 1,
                    error: None,
                    out_of_service: false,
                    log_start: 0,
                },
            ),
        ];
        History { ops }
    }

    fn fault(start_s: f64, end_s: f64, label: &str) -> FaultInterval {
        FaultInterval {
            start_s,
            end_s,
            label: label.to_string(),
        }
    }

    /// Elements of `svg` with the given tag carrying every one of `attributes`.
    fn count(svg: &str, tag: &str, attributes: &[&str]) -> usize {
        svg.split('<')
            .filter(|element| element.starts_with(&format!("{tag} ")))
            .filter(|element| attributes.iter().all(|a| element.contains(a)))
            .count()
    }

    #[test]
    fn parses_nemesis_lines_and_keeps_the_label_whole() {
        let text = "12.034 15.210 Kill node 2\n\n  3 3.5   Partition isolate [1] | [2, 3]  \n\
                    20.000 21.000 Clock node 2 +37s\n";
        let faults = parse_nemesis_log(text).unwrap();
        assert_eq!(
            faults,
            vec![
                fault(12.034, 15.21, "Kill node 2"),
                fault(3.0, 3.5, "Partition isolate [1] | [2, 3]"),
                fault(20.0, 21.0, "Clock node 2 +37s"),
            ]
        );
        assert_eq!(faults[1].kind(), "Partition");
        assert_eq!(parse_nemesis_log("").unwrap(), Vec::new());
    }

    #[test]
    fn rejects_bad_nemesis_lines_with_their_line_number() {
        let cases: [(&str, NemesisLogError); 6] = [
            (
                "1.0 2.0 Kill node 1\n1.5\n",
                NemesisLogError::MissingTime {
                    line: 2,
                    field: "end",
                },
            ),
            (
                "\nabc 2.0 Kill node 1\n",
                NemesisLogError::BadTime {
                    line: 2,
                    field: "start",
                    text: "abc".into(),
                },
            ),
            (
                "1.0 NaN Kill node 1\n",
                NemesisLogError::BadTime {
                    line: 1,
                    field: "end",
                    text: "NaN".into(),
                },
            ),
            (
                "-1.0 2.0 Kill node 1\n",
                NemesisLogError::BadTime {
                    line: 1,
                    field: "start",
                    text: "-1.0".into(),
                },
            ),
            (
                "1.0 2.0 Kill\n5.0 4.0 Pause node 3\n",
                NemesisLogError::EndBeforeStart {
                    line: 2,
                    start_s: 5.0,
                    end_s: 4.0,
                },
            ),
            ("1.0 2.0   \n", NemesisLogError::MissingLabel { line: 1 }),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_nemesis_log(text), Err(expected), "{text:?}");
        }
        let message = parse_nemesis_log("1 2 Kill\n1 x Kill\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "line 2: end time \"x\" is not a finite, non-negative number of seconds"
        );
    }

    #[test]
    fn pairs_each_completion_with_its_process_invocation() {
        let sends = send_latencies(&sample());
        let summary: Vec<(u64, u64, Kind)> = sends
            .iter()
            .map(|s| {
                (
                    (s.invoked_s * 1e3).round() as u64,
                    s.latency_ms.round() as u64,
                    s.outcome,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (100, 10, Kind::Ok),
                (150, 250, Kind::Fail),
                (1_500, 20, Kind::Ok),
                (2_000, 5_000, Kind::Info),
                (7_100, 100, Kind::Ok),
            ]
        );
    }

    #[test]
    fn axis_numbers_are_short_and_exact() {
        let shown: Vec<String> = [0.001 * 1.000_000_000_1, 0.1, 1.5, 10.0, 10_000.0]
            .into_iter()
            .map(axis_number)
            .collect();
        assert_eq!(shown, ["0.001", "0.1", "1.5", "10", "10000"]);
    }

    #[test]
    fn latency_axis_spans_whole_decades_with_room_around_the_points() {
        let at = |latencies: &[f64]| {
            let sends: Vec<SendLatency> = latencies
                .iter()
                .map(|&latency_ms| SendLatency {
                    invoked_s: 0.0,
                    latency_ms,
                    outcome: Kind::Ok,
                })
                .collect();
            let (lo, hi) = latency_range_ms(&sends);
            (lo.log10().round() as i32, hi.log10().round() as i32)
        };
        assert_eq!(at(&[3.0, 40.0]), (0, 2));
        assert_eq!(at(&[10.0, 1000.0]), (0, 4));
        assert_eq!(at(&[0.0]), (-4, -2));
        assert_eq!(at(&[]), (0, 3));
    }

    #[test]
    fn throughput_counts_values_per_second_of_completion() {
        assert_eq!(
            throughput(&sample()),
            Throughput {
                acked: vec![2, 1, 0, 0, 0, 0, 0, 1],
                polled: vec![0, 3, 0, 0, 0, 0, 0, 0],
            }
        );
    }

    #[test]
    fn svg_shades_each_fault_in_both_charts_and_draws_each_completed_send() {
        let faults = [
            fault(0.5, 1.0, "Kill node 2"),
            fault(2.0, 6.0, "Pause node 1"),
            fault(6.5, 7.0, "Kill node 3"),
        ];
        let svg = render_svg(&sample(), &faults).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);

        let shaded = |color: RGBColor| {
            let fill = format!("fill=\"#{:02X}{:02X}{:02X}\"", color.0, color.1, color.2);
            count(&svg, "rect", &["opacity=\"0.2\"", &fill])
        };
        // Kinds take colours in order of first appearance; each fault is shaded once per chart.
        assert_eq!(shaded(FAULT_COLORS[0]), 4);
        assert_eq!(shaded(FAULT_COLORS[1]), 2);
        assert_eq!(count(&svg, "rect", &["opacity=\"0.2\""]), 6);

        // Data points are translucent; the legend's swatches are not.
        let points = |color: RGBColor| {
            let fill = format!("fill=\"#{:02X}{:02X}{:02X}\"", color.0, color.1, color.2);
            count(&svg, "circle", &["opacity=\"0.6\"", &fill])
        };
        assert_eq!(points(OK), 3);
        assert_eq!(points(FAIL), 1);
        assert_eq!(points(INFO), 1);
        assert_eq!(count(&svg, "circle", &["opacity=\"0.6\""]), 5);

        for text in [
            "Kill (2)",
            "Pause (1)",
            "latency (ms, log scale)",
            "values / s",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
    }

    #[test]
    fn svg_of_an_empty_run_without_faults_still_renders() {
        let svg = render_svg(&History::default(), &[]).unwrap();
        assert_eq!(count(&svg, "circle", &["opacity=\"0.6\""]), 0);
        assert_eq!(count(&svg, "rect", &["opacity=\"0.2\""]), 0);
        assert!(svg.contains("none"));
    }

    #[test]
    fn timeline_is_written_beside_the_history_with_or_without_a_nemesis_log() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let path = write_timeline(dir, &sample()).unwrap();
        assert_eq!(path, dir.join(TIMELINE_FILE));
        let svg = std::fs::read_to_string(&path).unwrap();
        assert_eq!(count(&svg, "rect", &["opacity=\"0.2\""]), 0);

        std::fs::write(dir.join(NEMESIS_LOG), "1.000 2.000 Kill node 1\n").unwrap();
        write_timeline(dir, &sample()).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert_eq!(count(&svg, "rect", &["opacity=\"0.2\""]), 2);

        std::fs::write(dir.join(NEMESIS_LOG), "1.000 2.000 Kill node 1\noops\n").unwrap();
        let error = write_timeline(dir, &sample()).unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "{} line 2: start time \"oops\" is not a finite, non-negative number of seconds",
                dir.join(NEMESIS_LOG).display()
            )
        );
    }
    /// The disk and one-way faults, as their nemeses log them (lines from a real run), are
    /// shaded like the old ones, each kind in a colour of its own.
    #[test]
    fn svg_shades_the_disk_and_one_way_faults_each_in_its_own_colour() {
        let text = "1.348 3.210 PowerLoss node 1 lost 3f/0e\n\
                    5.525 7.583 DiskStall node 3\n\
                    15.773 19.767 OneWay OneNodeOutbound cut 2>3\n\
                    20.872 27.481 Corrupt node 1 groups/0/meta.slots flip@904,361 (node 1 started on the damage)\n\
                    29.340 33.088 DiskFull node 1 (node 1 had exited)\n\
                    39.473 43.507 PowerLossAll node 1 lost 2f/0e node 2 lost 3f/0e node 3 lost 2f/0e\n\
                    46.460 49.451 OneWay LeaderToFollowers cut 3>1 3>2\n";
        let faults = parse_nemesis_log(text).unwrap();
        let svg = render_svg(&sample(), &faults).unwrap();
        let shaded = |color: RGBColor| {
            let fill = format!("fill=\"#{:02X}{:02X}{:02X}\"", color.0, color.1, color.2);
            count(&svg, "rect", &["opacity=\"0.2\"", &fill])
        };
        // Six kinds in order of first appearance; OneWay happened twice.
        for (kind, expected) in [2, 2, 4, 2, 2, 2].into_iter().enumerate() {
            assert_eq!(shaded(FAULT_COLORS[kind]), expected, "kind {kind}");
        }
        assert_eq!(count(&svg, "rect", &["opacity=\"0.2\""]), 14);
        for text in [
            "PowerLoss (1)",
            "DiskStall (1)",
            "OneWay (2)",
            "Corrupt (1)",
            "DiskFull (1)",
            "PowerLossAll (1)",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
    }
}
