//! `raftlog bench plot`: one SVG picture of benchmark reports — each scenario's latency
//! percentile spectrum (HdrHistogram's plot: the tail spread out, log latency) above its
//! throughput — so that runs of `benchmarks/run.sh` can be compared at a glance.
//!
//! Input is what the benchmarks write: a `benchmarks/run.sh` results file (`{"scenarios":
//! [{"id", "description", "report"}]}`) or the `--json` report of a single `raftlog bench`.

use std::path::PathBuf;

use anyhow::Context;
use plotters::prelude::*;
use serde_json::Value;

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 900;
const FONT: &str = "sans-serif";
/// Series colours (matplotlib's tab10), one per scenario, the same in both panels.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
/// Percentiles are drawn on the "nines" axis, -log10(1 - p/100): 90 % at 1, 99 % at 2, ...
/// up to 99.99 % at 4; the maximum sits one step further right.
const NINES_MAX: f64 = 4.0;
const MAX_POSITION: f64 = NINES_MAX + 1.0;
/// A log axis cannot show zero; a latency under a microsecond is drawn at one.
const LATENCY_MS_MIN: f64 = 0.001;
/// Height of one legend entry, in pixels.
const LEGEND_ROW_PIXELS: f64 = 19.0;
/// Legend entries longer than this are cut, so the legend stays inside the chart.
const LABEL_CHARS_MAX: usize = 90;

/// Arguments of `raftlog bench plot`.
#[derive(clap::Args)]
pub struct PlotArgs {
    /// A `benchmarks/run.sh` results file, or the `--json` report of one `raftlog bench` run.
    input: PathBuf,
    /// Where to write the picture [default: the input's path with the extension .svg].
    #[arg(long, short)]
    output: Option<PathBuf>,
}

/// One scenario as plotted.
#[derive(Debug, PartialEq)]
struct Scenario {
    /// The scenario, and what its latency is of (produce request, fetch, ...).
    label: String,
    records_per_sec: f64,
    mb_per_sec: f64,
    /// (percentile, ms), ascending by percentile.
    spectrum: Vec<(f64, f64)>,
}

pub(super) fn run(args: PlotArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("read {}", args.input.display()))?;
    let results: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", args.input.display()))?;
    let fallback_label = args.input.file_stem().map_or_else(
        || "report".to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    let scenarios = scenarios(&results, &fallback_label)
        .with_context(|| format!("{} is not a benchmark report", args.input.display()))?;
    let title = match results.get("date").and_then(Value::as_str) {
        Some(date) => format!("raftlog benchmarks, {date}"),
        None => format!("raftlog benchmark: {fallback_label}"),
    };
    let svg = render_svg(&title, &scenarios)?;
    let output = args
        .output
        .unwrap_or_else(|| args.input.with_extension("svg"));
    std::fs::write(&output, &svg).with_context(|| format!("write {}", output.display()))?;
    eprintln!("wrote {}", output.display());
    Ok(())
}

/// The scenarios of a results file, or the one of a single report.
fn scenarios(results: &Value, fallback_label: &str) -> anyhow::Result<Vec<Scenario>> {
    let Some(list) = results.get("scenarios") else {
        return Ok(vec![scenario(results, fallback_label.to_string())?]);
    };
    let list = list.as_array().context("\"scenarios\" is not a list")?;
    anyhow::ensure!(!list.is_empty(), "\"scenarios\" is empty");
    list.iter()
        .enumerate()
        .map(|(i, entry)| {
            let id = entry.get("id").and_then(Value::as_str).unwrap_or("?");
            let label = match entry.get("description").and_then(Value::as_str) {
                Some(description) => format!("{id}: {description}"),
                None => id.to_string(),
            };
            let report = entry
                .get("report")
                .with_context(|| format!("scenario {} ({id}) has no \"report\"", i + 1))?;
            scenario(report, label).with_context(|| format!("scenario {} ({id})", i + 1))
        })
        .collect()
}

fn scenario(report: &Value, label: String) -> anyhow::Result<Scenario> {
    let number = |key: &str| {
        report
            .get(key)
            .and_then(Value::as_f64)
            .with_context(|| format!("no number \"{key}\""))
    };
    let latency_of = match report.get("mode").and_then(Value::as_str) {
        Some("produce") => "produce request",
        Some("consume") => "fetch",
        Some("e2e") => "send to seen by a consumer",
        Some(other) => anyhow::bail!("unknown mode \"{other}\""),
        None => anyhow::bail!("no \"mode\""),
    };
    let latency = report.get("latency_ms").unwrap_or(&Value::Null);
    let spectrum = match latency.get("spectrum").and_then(Value::as_array) {
        Some(points) => points
            .iter()
            .map(|point| {
                let field = |key| point.get(key).and_then(Value::as_f64);
                field("percentile")
                    .zip(field("ms"))
                    .context("a spectrum point lacks \"percentile\" or \"ms\"")
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
        // Reports written before the spectrum existed still have the summary percentiles.
        None => [
            (50.0, "p50"),
            (90.0, "p90"),
            (99.0, "p99"),
            (99.9, "p999"),
            (100.0, "max"),
        ]
        .into_iter()
        .filter_map(|(percentile, key)| Some((percentile, latency.get(key)?.as_f64()?)))
        .collect(),
    };
    Ok(Scenario {
        label: shorten(&format!("{label} ({latency_of})")),
        records_per_sec: number("records_per_sec")?,
        mb_per_sec: number("mb_per_sec")?,
        spectrum,
    })
}

fn shorten(label: &str) -> String {
    if label.chars().count() <= LABEL_CHARS_MAX {
        return label.to_string();
    }
    let cut: String = label.chars().take(LABEL_CHARS_MAX - 1).collect();
    format!("{cut}…")
}

/// Where a percentile sits on the x axis.
fn percentile_position(percentile: f64) -> f64 {
    if percentile >= 100.0 {
        return MAX_POSITION;
    }
    (-(1.0 - percentile / 100.0).log10()).clamp(0.0, NINES_MAX)
}

/// The label of an x-axis position: percentiles at whole nines, "max" at the end.
fn position_label(position: f64) -> String {
    if (position - MAX_POSITION).abs() < 1e-9 {
        return "max".to_string();
    }
    if (position - position.round()).abs() > 1e-9 || position > NINES_MAX {
        return String::new();
    }
    match position.round() as u32 {
        0 => "0%".to_string(),
        1 => "90%".to_string(),
        2 => "99%".to_string(),
        nines => format!("99.{}%", "9".repeat(nines as usize - 2)),
    }
}

fn draw_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("draw the plot: {error}")
}

fn render_svg(title: &str, scenarios: &[Scenario]) -> anyhow::Result<String> {
    let color = |i: usize| COLORS[i % COLORS.len()];
    let latencies = || {
        scenarios
            .iter()
            .flat_map(|s| s.spectrum.iter().map(|(_, ms)| ms.max(LATENCY_MS_MIN)))
    };
    let lo_ms = latencies().fold(f64::INFINITY, f64::min);
    let hi_ms = latencies().fold(0.0, f64::max);
    // Headroom above the highest line holds the legend: it takes `legend_share` of the
    // plot's height, so the axis goes that much further up (in log terms) than the data.
    let legend_share = (LEGEND_ROW_PIXELS * (scenarios.len() as f64 + 1.0) / 480.0).min(0.6);
    let (lo_ms, hi_ms) = if lo_ms.is_finite() && hi_ms > 0.0 {
        let (lo_ms, hi_ms) = (lo_ms / 1.5, hi_ms * 1.5);
        let headroom = (hi_ms / lo_ms).powf(legend_share / (1.0 - legend_share));
        (lo_ms, hi_ms * headroom)
    } else {
        (0.1, 100.0)
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let root = root
            .titled(title, (FONT, 24).into_font().style(FontStyle::Bold))
            .map_err(draw_error)?;
        let (top, bottom) = root.split_vertically(root.dim_in_pixel().1 * 62 / 100);

        let mut spectrum = ChartBuilder::on(&top)
            .caption("Latency by percentile", (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..MAX_POSITION + 0.05, (lo_ms..hi_ms).log_scale())
            .map_err(draw_error)?;
        spectrum
            .configure_mesh()
            .x_labels(2 * MAX_POSITION as usize + 1)
            .x_label_formatter(&|v| position_label(*v))
            .y_label_formatter(&|v| format!("{v}"))
            .x_desc("percentile")
            .y_desc("latency (ms, log scale)")
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .light_line_style(BLACK.mix(0.05))
            .draw()
            .map_err(draw_error)?;
        for (i, scenario) in scenarios.iter().enumerate() {
            let points: Vec<(f64, f64)> = scenario
                .spectrum
                .iter()
                .map(|(p, ms)| (percentile_position(*p), ms.max(LATENCY_MS_MIN)))
                .collect();
            let style = ShapeStyle::from(color(i)).stroke_width(2);
            spectrum
                .draw_series(LineSeries::new(points.clone(), style))
                .map_err(draw_error)?
                .label(scenario.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color(i).stroke_width(3))
                });
            spectrum
                .draw_series(
                    points
                        .into_iter()
                        .map(|point| Circle::new(point, 3, color(i).filled())),
                )
                .map_err(draw_error)?;
        }
        spectrum
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(draw_error)?;

        let mb_max = scenarios
            .iter()
            .map(|s| s.mb_per_sec)
            .fold(0.0, f64::max)
            .max(1.0);
        let rows = scenarios.len() as f64;
        let mut throughput = ChartBuilder::on(&bottom)
            .caption(
                "Throughput (MB/s of record values; records/s at the bar)",
                (FONT, 18),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..mb_max * 1.25, 0.0..rows)
            .map_err(draw_error)?;
        throughput
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .x_desc("MB/s")
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .light_line_style(BLACK.mix(0.05))
            .draw()
            .map_err(draw_error)?;
        // First scenario on top, as in the results table.
        let row = |i: usize| rows - 1.0 - i as f64;
        throughput
            .draw_series(scenarios.iter().enumerate().map(|(i, s)| {
                Rectangle::new(
                    [(0.0, row(i) + 0.15), (s.mb_per_sec, row(i) + 0.85)],
                    color(i).mix(0.8).filled(),
                )
            }))
            .map_err(draw_error)?;
        throughput
            .draw_series(scenarios.iter().enumerate().map(|(i, s)| {
                let id = s.label.split(':').next().unwrap_or_default();
                Text::new(
                    format!(
                        "{id}: {} records/s, {:.1} MB/s",
                        thousands(s.records_per_sec),
                        s.mb_per_sec
                    ),
                    (s.mb_per_sec + mb_max * 0.01, row(i) + 0.7),
                    (FONT, 13),
                )
            }))
            .map_err(draw_error)?;
    }
    Ok(svg)
}

/// 123456.7 as "123,457".
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn report(mode: &str) -> Value {
        json!({
            "mode": mode, "records_per_sec": 1087.6, "mb_per_sec": 1.114,
            "latency_ms": {"p50": 0.88, "p90": 1.14, "p99": 1.65, "p999": 3.5, "max": 8.3,
                "spectrum": [{"percentile": 0.0, "ms": 0.4}, {"percentile": 50.0, "ms": 0.88},
                             {"percentile": 100.0, "ms": 8.3}]},
        })
    }

    #[test]
    fn percentiles_sit_on_the_nines_axis_and_the_max_beyond_it() {
        assert_eq!(percentile_position(0.0), 0.0);
        assert!((percentile_position(90.0) - 1.0).abs() < 1e-9);
        assert!((percentile_position(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(percentile_position(99.999), NINES_MAX);
        assert_eq!(percentile_position(100.0), MAX_POSITION);
        assert_eq!(position_label(0.0), "0%");
        assert_eq!(position_label(2.0), "99%");
        assert_eq!(position_label(3.0), "99.9%");
        assert_eq!(position_label(1.5), "");
        assert_eq!(position_label(MAX_POSITION), "max");
    }

    #[test]
    fn a_results_file_and_a_single_report_are_both_read() -> anyhow::Result<()> {
        let results = json!({"scenarios": [
            {"id": "a", "description": "one producer", "report": report("produce")},
            {"id": "c", "report": report("consume")},
        ]});
        let read = scenarios(&results, "file")?;
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].label, "a: one producer (produce request)");
        assert_eq!(read[1].label, "c (fetch)");
        assert_eq!(
            read[0].spectrum,
            vec![(0.0, 0.4), (50.0, 0.88), (100.0, 8.3)]
        );

        let single = scenarios(&report("e2e"), "run-7")?;
        assert_eq!(single[0].label, "run-7 (send to seen by a consumer)");
        Ok(())
    }

    #[test]
    fn reports_without_a_spectrum_plot_their_summary_percentiles() -> anyhow::Result<()> {
        let mut old = report("produce");
        if let Some(latency) = old["latency_ms"].as_object_mut() {
            latency.remove("spectrum");
        }
        let read = scenarios(&old, "old")?;
        let percentiles: Vec<f64> = read[0].spectrum.iter().map(|(p, _)| *p).collect();
        assert_eq!(percentiles, vec![50.0, 90.0, 99.0, 99.9, 100.0]);
        Ok(())
    }

    #[test]
    fn what_is_not_a_report_is_refused_with_the_reason() {
        let missing_mode = scenarios(&json!({"records_per_sec": 1.0}), "x");
        assert!(format!("{:#}", missing_mode.unwrap_err()).contains("no \"mode\""));
        let empty = scenarios(&json!({"scenarios": []}), "x");
        assert!(format!("{:#}", empty.unwrap_err()).contains("empty"));
        let no_report = scenarios(&json!({"scenarios": [{"id": "b"}]}), "x");
        assert!(format!("{:#}", no_report.unwrap_err()).contains("scenario 1 (b)"));
    }

    #[test]
    fn the_picture_names_every_scenario() -> anyhow::Result<()> {
        let results = json!({"scenarios": [
            {"id": "a", "description": "one producer", "report": report("produce")},
            {"id": "c", "description": "one consumer", "report": report("consume")},
        ]});
        let svg = render_svg("t", &scenarios(&results, "file")?)?;
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("a: one producer (produce request)"));
        assert!(svg.contains("c: 1,088 records/s, 1.1 MB/s"));
        Ok(())
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1087.6), "1,088");
        assert_eq!(thousands(1234567.0), "1,234,567");
    }
}
