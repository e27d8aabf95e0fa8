//! The timeline of a run, as an SVG picture: answers per second over time, stacked by
//! where they came from, with the run's faults as shaded bands, and the p99 latency below.
//!
//! ```text
//!  answers/s ┃      ░░stall 8002░░          ░partition 8001░
//!            ┃ ▇▇▇▇▇░▇▇▇▇▇▇▇▇▇▇▇▇░▇▇▇▇▇▇▇▇▇▇░▇▇▇▇▇▇▇▇▇▇▇▇▇░▇▇▇▇   hit · peer · db · error
//!  p99 (log) ┃ ───────╱‾‾‾‾‾‾‾╲──────────────╱‾‾‾‾‾╲──────
//!            0 s                                          30 s
//! ```
//!
//! Colours mean what they mean in the terminal (hit green, peer yellow, database red), and
//! never alone: the legend names each series, and they are always stacked in the same
//! order, bottom to top. Drawn with the `svg` crate, not by formatting strings, so every
//! text is escaped and every element closed.

use std::path::Path;

use svg::node::element::{Group, Line, Polyline, Rectangle, Text, Title};
use svg::Document;

use super::bench::Timeline;

/// A shaded interval: a fault, from `from_s` to `to_s` seconds into the run.
#[derive(Debug, Clone)]
pub struct Band {
    pub from_s: f64,
    pub to_s: f64,
    pub label: String,
}

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 480.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const BARS: (f64, f64) = (96.0, 310.0);
const P99: (f64, f64) = (336.0, 436.0);

/// The series, bottom to top: name, colour (the terminal's), and the count in a bin.
type Series = (&'static str, &'static str, fn(&super::bench::Bin) -> u64);
const SERIES: [Series; 4] = [
    ("hit (main or hot cache)", "#2e9e44", |b| b.hit),
    ("peer", "#e0a800", |b| b.peer),
    ("database", "#d62728", |b| b.db),
    ("error or not found", "#3b3b3b", |b| b.failed),
];

/// Draws the timeline and writes it to `path`.
pub fn save(path: &Path, title: &str, timeline: &Timeline, bands: &[Band]) -> std::io::Result<()> {
    svg::save(path, &draw(title, timeline, bands))
}

/// The picture, as a document.
pub fn draw(title: &str, timeline: &Timeline, bands: &[Band]) -> Document {
    let bin_s = timeline.bin_ms as f64 / 1000.0;
    let span = (timeline.bins.len() as f64 * bin_s)
        .max(bands.iter().map(|b| b.to_s).fold(0.0, f64::max))
        .max(1.0);
    let x = |t: f64| LEFT + (WIDTH - LEFT - RIGHT) * t / span;
    let mut doc = Document::new()
        .set("viewBox", (0, 0, WIDTH, HEIGHT))
        .set("width", WIDTH)
        .set("height", HEIGHT)
        .set("font-family", "DejaVu Sans, Verdana, sans-serif")
        .set("font-size", 12)
        .add(
            Rectangle::new()
                .set("width", WIDTH)
                .set("height", HEIGHT)
                .set("fill", "white"),
        )
        .add(
            text(LEFT, 20.0, title)
                .set("font-size", 14)
                .set("font-weight", "bold"),
        );

    // The legend, in stacking order.
    let mut lx = LEFT;
    for (name, colour, _) in SERIES {
        doc = doc
            .add(swatch(lx, 32.0, colour))
            .add(text(lx + 16.0, 42.0, name));
        lx += 24.0 + name.len() as f64 * 6.6;
    }
    doc = doc
        .add(
            swatch(lx, 32.0, "#7f7f7f")
                .set("fill-opacity", 0.25)
                .set("stroke", "#555")
                .set("stroke-dasharray", "3 2"),
        )
        .add(text(lx + 16.0, 42.0, "fault"));

    // The fault bands, behind the bars, each labelled (two rows, so neighbours do not collide).
    for (i, band) in bands.iter().enumerate() {
        let (x0, x1) = (x(band.from_s), x(band.to_s));
        let shaded = Rectangle::new()
            .set("class", "fault")
            .set("x", x0)
            .set("y", BARS.0 - 30.0)
            .set("width", (x1 - x0).max(1.0))
            .set("height", P99.1 - BARS.0 + 30.0)
            .set("fill", "#7f7f7f")
            .set("fill-opacity", 0.18)
            .set("stroke", "#555")
            .set("stroke-dasharray", "3 2")
            .add(Title::new(format!(
                "{} from {:.1} s to {:.1} s",
                band.label, band.from_s, band.to_s
            )));
        let row = if i % 2 == 0 { 0.0 } else { 12.0 };
        // About 5.6 px a character at 10 px: a label that would run off the right edge
        // ends at it instead.
        let label = if x0 + 2.0 + band.label.chars().count() as f64 * 5.6 > WIDTH - RIGHT {
            text(WIDTH - RIGHT, BARS.0 - 18.0 + row, &band.label).set("text-anchor", "end")
        } else {
            text(x0 + 2.0, BARS.0 - 18.0 + row, &band.label)
        };
        doc = doc.add(shaded).add(label.set("font-size", 10));
    }

    // Answers per second, stacked.
    let rate =
        |b: &super::bench::Bin| SERIES.iter().map(|(_, _, n)| n(b)).sum::<u64>() as f64 / bin_s;
    let top = nice(timeline.bins.iter().map(rate).fold(1.0, f64::max));
    let y = |r: f64| BARS.1 - (BARS.1 - BARS.0) * r / top;
    let mut bars = Group::new().set("class", "answers");
    for bin in &timeline.bins {
        let (x0, x1) = (x(bin.t_s), x(bin.t_s + bin_s));
        let mut below = 0.0;
        for (name, colour, count) in SERIES {
            let r = count(bin) as f64 / bin_s;
            if r == 0.0 {
                continue;
            }
            bars = bars.add(
                Rectangle::new()
                    .set("x", x0)
                    .set("y", y(below + r))
                    .set("width", (x1 - x0 - 0.5).max(0.5))
                    .set("height", y(below) - y(below + r))
                    .set("fill", colour)
                    .add(Title::new(format!(
                        "{:.2} s: {} {name}",
                        bin.t_s,
                        count(bin)
                    ))),
            );
            below += r;
        }
    }
    doc = doc.add(bars);
    for tick in [0.0, top / 2.0, top] {
        doc = doc.add(rule(y(tick))).add(
            text(LEFT - 6.0, y(tick) + 4.0, &format!("{tick:.0}/s")).set("text-anchor", "end"),
        );
    }
    doc = doc.add(
        text(12.0, (BARS.0 + BARS.1) / 2.0, "answers per second")
            .set(
                "transform",
                format!("rotate(-90 12 {})", (BARS.0 + BARS.1) / 2.0),
            )
            .set("text-anchor", "middle"),
    );

    // p99 latency per interval, on a log scale from 1 ms to 10 s.
    let ly = |ms: f64| {
        let decades = ms.clamp(1.0, 10_000.0).log10() / 4.0;
        P99.1 - (P99.1 - P99.0) * decades
    };
    for (ms, label) in [
        (1.0, "1 ms"),
        (10.0, "10 ms"),
        (100.0, "100 ms"),
        (1000.0, "1 s"),
        (10_000.0, "10 s"),
    ] {
        doc = doc.add(rule(ly(ms))).add(
            text(LEFT - 6.0, ly(ms) + 4.0, label)
                .set("text-anchor", "end")
                .set("font-size", 10),
        );
    }
    let points: Vec<String> = timeline
        .bins
        .iter()
        .map(|b| format!("{:.1},{:.1}", x(b.t_s + bin_s / 2.0), ly(b.p99_ms)))
        .collect();
    doc = doc
        .add(
            Polyline::new()
                .set("class", "p99")
                .set("points", points.join(" "))
                .set("fill", "none")
                .set("stroke", "#1f4e9c")
                .set("stroke-width", 2),
        )
        .add(
            text(
                LEFT + 4.0,
                P99.0 - 4.0,
                "p99 latency per interval (log scale)",
            )
            .set("fill", "#1f4e9c"),
        );

    // The time axis.
    let step = [1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0]
        .into_iter()
        .find(|s| span / s <= 12.0)
        .unwrap_or(600.0);
    let mut t = 0.0;
    while t <= span + 1e-9 {
        doc = doc.add(text(x(t), P99.1 + 16.0, &format!("{t:.0}")).set("text-anchor", "middle"));
        t += step;
    }
    doc.add(
        text(
            (LEFT + WIDTH - RIGHT) / 2.0,
            P99.1 + 34.0,
            "seconds into the run",
        )
        .set("text-anchor", "middle"),
    )
}

fn text(x: f64, y: f64, content: &str) -> Text {
    Text::new(content).set("x", x).set("y", y)
}

fn swatch(x: f64, y: f64, colour: &str) -> Rectangle {
    Rectangle::new()
        .set("x", x)
        .set("y", y)
        .set("width", 12)
        .set("height", 12)
        .set("fill", colour)
}

fn rule(y: f64) -> Line {
    Line::new()
        .set("x1", LEFT)
        .set("x2", WIDTH - RIGHT)
        .set("y1", y)
        .set("y2", y)
        .set("stroke", "#ddd")
}

/// The smallest of 1, 2 or 5 × 10ⁿ at or above `value`: a round top for an axis.
fn nice(value: f64) -> f64 {
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|v| *v >= value)
        .unwrap_or(10.0 * power)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::bench::Bin;

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice(170.0), 200.0);
        assert_eq!(nice(200.0), 200.0);
        assert_eq!(nice(7.0), 10.0);
    }

    #[test]
    fn every_band_and_series_is_drawn_and_labelled() {
        let bins = (0..8)
            .map(|i| Bin {
                t_s: f64::from(i) * 0.25,
                hit: 40,
                peer: 5,
                db: 1,
                failed: u64::from(i == 3),
                p99_ms: 2.0,
            })
            .collect();
        let timeline = Timeline { bin_ms: 250, bins };
        let bands = [Band {
            from_s: 0.5,
            to_s: 1.5,
            label: "stall 8002".to_owned(),
        }];
        let svg = draw("a run", &timeline, &bands).to_string();
        let doc = roxmltree::Document::parse(&svg).expect("the SVG is well-formed XML");
        let faults: Vec<_> = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("fault"))
            .collect();
        assert_eq!(faults.len(), 1);
        let texts: Vec<&str> = doc
            .descendants()
            .filter_map(|n| n.text())
            .map(str::trim)
            .collect();
        assert!(texts.contains(&"stall 8002"), "{texts:?}");
        for (name, colour, _) in SERIES {
            assert!(texts.contains(&name), "{name}");
            assert!(
                doc.descendants()
                    .any(|n| n.attribute("fill") == Some(colour)),
                "{colour}"
            );
        }
    }
}
