//! `cli bench --plot run.svg`: a run's latency distribution as percentile curves, one per
//! series (hits, misses), the way HdrHistogram plots them.
//!
//! ```text
//!  latency (log) ┃                                   ╱ misses
//!                ┃ ─────────────────────────────────╱
//!                ┃ ─────────────────────────╱‾‾‾‾‾‾ hits
//!                0%        90%        99%        99.9%      99.99%
//! ```
//!
//! The percentile axis is stretched towards the tail (x = log10(1 / (1 − q))), so that the
//! 99.9th percentile gets as much room as the first ninety: the tail is what a cache is for.
//! A histogram of counts per latency (the text report's) would put the tail's few requests in
//! bars too short to see. Colours are the terminal's (hit green, miss red), and never alone:
//! the misses' line is dashed, and each curve is labelled at its end.

use std::path::Path;

use hdrhistogram::Histogram;
use svg::node::element::{Group, Line, Polyline, Text, Title};
use svg::Document;

/// One curve: its name, colour, dash pattern ("" for solid), and latencies in microseconds.
pub struct Series<'a> {
    pub name: &'a str,
    pub colour: &'a str,
    pub dash: &'a str,
    pub latency: &'a Histogram<u64>,
}

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 510.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 72.0;
const TOP: f64 = 72.0;
const BOTTOM: f64 = 420.0;
/// The right end of the percentile axis: 99.99%.
const NINES: f64 = 4.0;

/// Draws the curves and writes them to `path`.
pub fn save(path: &Path, title: &str, series: &[Series]) -> std::io::Result<()> {
    svg::save(path, &draw(title, series))
}

/// The picture, as a document.
pub fn draw(title: &str, series: &[Series]) -> Document {
    let shown: Vec<&Series> = series.iter().filter(|s| !s.latency.is_empty()).collect();
    let ms = |us: u64| (us.max(1) as f64) / 1000.0;
    let low = shown
        .iter()
        .map(|s| ms(s.latency.min()))
        .fold(f64::INFINITY, f64::min);
    let high = shown
        .iter()
        .map(|s| ms(s.latency.max()))
        .fold(0.0, f64::max);
    // Whole decades, so that the ticks fall on 0.1, 1, 10, 100 ms.
    let (from, to) = if shown.is_empty() {
        (-1.0, 3.0)
    } else {
        (
            low.log10().floor(),
            high.log10().ceil().max(low.log10().floor() + 1.0),
        )
    };
    let x = |nines: f64| LEFT + (WIDTH - LEFT - RIGHT) * nines / NINES;
    let y = |ms: f64| BOTTOM - (BOTTOM - TOP) * (ms.log10() - from) / (to - from);

    let mut doc = Document::new()
        .set("viewBox", (0, 0, WIDTH, HEIGHT))
        .set("width", WIDTH)
        .set("height", HEIGHT)
        .set("font-family", "DejaVu Sans, sans-serif")
        .add(Title::new(title))
        .add(
            svg::node::element::Rectangle::new()
                .set("width", WIDTH)
                .set("height", HEIGHT)
                .set("fill", "white"),
        )
        .add(text(LEFT, 32.0, title).set("font-size", 16).set("font-weight", "bold"))
        .add(
            text(
                LEFT,
                52.0,
                "latency at each percentile, the tail stretched: 90% to 99% takes as much room as 0% to 90%",
            )
            .set("font-size", 12)
            .set("fill", "#555"),
        );

    let mut axes = Group::new().set("font-size", 12).set("fill", "#333");
    for (nines, label) in [
        (0.0, "0%"),
        (1.0, "90%"),
        (2.0, "99%"),
        (3.0, "99.9%"),
        (4.0, "99.99%"),
    ] {
        axes = axes
            .add(grid(x(nines), TOP, x(nines), BOTTOM))
            .add(text(x(nines), BOTTOM + 18.0, label).set("text-anchor", "middle"));
    }
    let mut decade = from;
    while decade <= to + 1e-9 {
        let value = 10f64.powf(decade);
        let label = if value < 1.0 {
            format!("{value} ms")
        } else {
            format!("{value:.0} ms")
        };
        axes = axes
            .add(grid(LEFT, y(value), WIDTH - RIGHT, y(value)))
            .add(text(LEFT - 8.0, y(value) + 4.0, &label).set("text-anchor", "end"));
        decade += 1.0;
    }
    axes = axes.add(
        text(
            (LEFT + WIDTH - RIGHT) / 2.0,
            BOTTOM + 36.0,
            "percentile of requests",
        )
        .set("text-anchor", "middle"),
    );
    doc = doc.add(axes);

    for s in &shown {
        let points: Vec<String> = (0..=200)
            .map(|i| {
                let nines = NINES * f64::from(i) / 200.0;
                let q = 1.0 - 10f64.powf(-nines);
                let value = ms(s.latency.value_at_quantile(q));
                format!("{:.1},{:.1}", x(nines), y(value))
            })
            .collect();
        let end = ms(s.latency.max());
        let label = format!(
            "{} ({}): p50 {:.2} ms, p99 {:.2} ms",
            s.name,
            s.latency.len(),
            ms(s.latency.value_at_quantile(0.5)),
            ms(s.latency.value_at_quantile(0.99))
        );
        let mut line = Polyline::new()
            .set("points", points.join(" "))
            .set("fill", "none")
            .set("stroke", s.colour)
            .set("stroke-width", 2.5)
            .add(Title::new(label.as_str()));
        if !s.dash.is_empty() {
            line = line.set("stroke-dasharray", s.dash);
        }
        doc = doc.add(
            Group::new()
                .set("class", "series")
                .set("data-series", s.name)
                .add(line)
                .add(
                    // Its short name at the curve's end: "hits (main or hot cache)" is "hits".
                    text(
                        x(NINES) + 6.0,
                        y(end) + 4.0,
                        s.name.split(" (").next().unwrap_or(s.name),
                    )
                    .set("font-size", 13)
                    .set("fill", s.colour),
                ),
        );
    }
    // The legend: each series' line style, name, count and two percentiles, in words.
    let mut legend = Group::new().set("font-size", 12);
    for (i, s) in shown.iter().enumerate() {
        let ly = BOTTOM + 64.0 + 18.0 * i as f64;
        let mut sample = Line::new()
            .set("x1", LEFT)
            .set("y1", ly - 4.0)
            .set("x2", LEFT + 28.0)
            .set("y2", ly - 4.0)
            .set("stroke", s.colour)
            .set("stroke-width", 2.5);
        if !s.dash.is_empty() {
            sample = sample.set("stroke-dasharray", s.dash);
        }
        legend = legend.add(sample).add(text(
            LEFT + 36.0,
            ly,
            &format!(
                "{}: {} requests · p50 {:.2} ms · p99 {:.2} ms · max {:.2} ms",
                s.name,
                s.latency.len(),
                ms(s.latency.value_at_quantile(0.5)),
                ms(s.latency.value_at_quantile(0.99)),
                ms(s.latency.max())
            ),
        ));
    }
    if shown.is_empty() {
        legend = legend.add(text(LEFT, BOTTOM + 64.0, "no answers to plot"));
    }
    doc.add(legend)
}

fn text(x: f64, y: f64, content: &str) -> Text {
    Text::new(content).set("x", x).set("y", y)
}

fn grid(x1: f64, y1: f64, x2: f64, y2: f64) -> Line {
    Line::new()
        .set("x1", x1)
        .set("y1", y1)
        .set("x2", x2)
        .set("y2", y2)
        .set("stroke", "#e2e2e2")
        .set("stroke-width", 1)
}
