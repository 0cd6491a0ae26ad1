//! SVG bar charts of the lab's results, drawn with `plotters`.
//!
//! One chart per scenario and figure: a bar per model at the median of its runs, a whisker from
//! the fastest to the slowest run (so a reader sees at once whether two bars differ by more than
//! the noise), and the median written above the bar. Models are drawn in the lab's order, so the
//! same model sits at the same place in every chart, and peers get a different colour.
//!
//! Only the SVG backend is compiled, without font-kit: text goes into the file as `<text>`
//! elements for the viewer to render, so no system font is needed to draw the charts.

use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One bar: a model's median and the range of its runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    /// The model's name, under the bar.
    pub label: String,
    /// Median of the runs: the bar's height.
    pub median: f64,
    /// Smallest run: bottom of the whisker.
    pub low: f64,
    /// Largest run: top of the whisker.
    pub high: f64,
    /// A peer (tokio, std) rather than one of rawloop's models: drawn in another colour.
    pub peer: bool,
}

/// rawloop's models.
const MODEL_COLOUR: RGBColor = RGBColor(0x2b, 0x6c, 0xb0);
/// The peers.
const PEER_COLOUR: RGBColor = RGBColor(0xd9, 0x82, 0x2b);

/// Draws `bars` into the SVG file `path`, titled `title`, the value axis labelled `unit`.
pub fn bar_chart(path: &Path, title: &str, unit: &str, bars: &[Bar]) -> Result<(), String> {
    draw(path, title, unit, bars).map_err(|e| format!("chart {}: {e}", path.display()))
}

fn draw(
    path: &Path,
    title: &str,
    unit: &str,
    bars: &[Bar],
) -> Result<(), Box<dyn std::error::Error>> {
    let width = 160 + 110 * bars.len().max(1) as u32;
    let root = SVGBackend::new(path, (width, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = bars
        .iter()
        .map(|b| b.high.max(b.median))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    // Head room for the value printed above the tallest bar.
    let y_max = if top > 0.0 { top * 1.18 } else { 1.0 };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        // A segmented range `a..b` has one slot per value of `a..=b`: n bars need `0..n-1`.
        .build_cartesian_2d(
            (0..bars.len().saturating_sub(1)).into_segmented(),
            0.0..y_max,
        )?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(unit)
        .y_label_formatter(&|v| compact(*v))
        .x_labels(bars.len().max(1))
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                bars.get(*i).map(|b| b.label.clone()).unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        })
        .draw()?;
    chart.draw_series(
        bars.iter()
            .enumerate()
            .filter(|(_, b)| b.median.is_finite())
            .map(|(i, bar)| {
                let colour = if bar.peer { PEER_COLOUR } else { MODEL_COLOUR };
                let mut rect = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), bar.median),
                    ],
                    colour.mix(0.85).filled(),
                );
                rect.set_margin(0, 0, 14, 14);
                rect
            }),
    )?;
    chart.draw_series(
        bars.iter()
            .enumerate()
            .filter(|(_, b)| b.low.is_finite())
            .map(|(i, bar)| {
                PathElement::new(
                    vec![
                        (SegmentValue::CenterOf(i), bar.low),
                        (SegmentValue::CenterOf(i), bar.high),
                    ],
                    BLACK.stroke_width(2),
                )
            }),
    )?;
    chart.draw_series(
        bars.iter()
            .enumerate()
            .filter(|(_, b)| b.median.is_finite())
            .map(|(i, bar)| {
                let y = bar.high.max(bar.median) + y_max * 0.02;
                let style =
                    TextStyle::from(("sans-serif", 13)).pos(Pos::new(HPos::Center, VPos::Bottom));
                Text::new(compact(bar.median), (SegmentValue::CenterOf(i), y), style)
            }),
    )?;
    root.present()?;
    Ok(())
}

/// A number in few characters: 1234567 -> "1.23M", 0.456 -> "0.456".
pub fn compact(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_numbers() {
        assert_eq!(compact(1_234_567.0), "1.23M");
        assert_eq!(compact(45_678.0), "45.7k");
        assert_eq!(compact(123.4), "123");
        assert_eq!(compact(4.5678), "4.57");
        assert_eq!(compact(0.0), "0");
    }

    #[test]
    fn a_chart_is_written_as_svg() {
        let dir = std::env::temp_dir().join(format!("echo-bench-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.svg");
        let bars = vec![
            Bar {
                label: "event-loop".into(),
                median: 100.0,
                low: 90.0,
                high: 120.0,
                peer: false,
            },
            Bar {
                label: "tokio-mt".into(),
                median: 80.0,
                low: 70.0,
                high: 85.0,
                peer: true,
            },
            Bar {
                label: "broken".into(),
                median: f64::NAN,
                low: f64::NAN,
                high: f64::NAN,
                peer: false,
            },
        ];
        bar_chart(&path, "pingpong: throughput", "msg/s", &bars).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("event-loop") && svg.contains("tokio-mt"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
