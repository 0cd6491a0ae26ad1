//! SVG bar charts of the lab's results, drawn with `plotters`.
//!
//! One chart per scenario and figure, drawn for a person who opens it without the tables:
//!
//! - **Horizontal bars**, one row per model in the lab's order (the same model at the same
//!   place in every chart), so long names read without rotation. Colour says the group:
//!   rawloop models blue, variants purple, peers orange.
//! - **A scale that shows every bar.** When the medians span more than a factor of 25 (idle
//!   memory goes from 150 B to 150 kB per connection), the value axis is logarithmic with a tick
//!   per decade and says so; otherwise it is linear from zero, where lengths compare directly.
//! - **The median is written in a column right of the bars**, level with its bar, and a whisker
//!   runs from the smallest to the largest run, so a reader sees whether two bars differ by more
//!   than the noise. A whisker that runs past the axis (one run far slower than the others) ends
//!   in an arrow instead of squeezing every bar.
//! - **The title says which way is better** ("lower is better") and two lines under it give the
//!   conditions: quick or full lab, runs per model, date, machine, pinning.
//! - **Paired bars** put two series in each row (the greedy scenario: cheap clients alone, then
//!   next to greedy ones), with the ratio of the second to the first after the pair.
//!
//! Only the SVG backend is compiled, without font-kit: text goes into the file as `<text>`
//! elements for the viewer to render, so no system font is needed to draw the charts.

use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::models::Group;

/// A model's figure in one series: the median and the range of its runs.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Value {
    /// Median of the runs: the bar's length.
    pub median: f64,
    /// Smallest run: start of the whisker.
    pub low: f64,
    /// Largest run: end of the whisker.
    pub high: f64,
}

/// One row of bars: a model and its value in each series (`None`: no figure, e.g. it failed).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The model's name, left of the bars.
    pub label: String,
    /// Its group, which sets the colour.
    pub group: Group,
    /// One per series.
    pub values: Vec<Option<Value>>,
}

/// Everything one chart shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    /// What is measured, e.g. `pingpong: server CPU per message`.
    pub title: String,
    /// The value axis: the unit and what it counts.
    pub axis: String,
    /// Throughput is better high; latency, CPU and memory low.
    pub higher_is_better: bool,
    /// The lab's conditions, two lines under the title.
    pub conditions: [String; 2],
    /// Names of the series when there are two or more (a legend is drawn), else empty.
    pub series: Vec<String>,
    /// One per model.
    pub rows: Vec<Row>,
}

/// How the value axis maps values to lengths.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Scale {
    /// From zero, proportional.
    Linear,
    /// Logarithmic, a tick per decade.
    Log,
}

/// Medians further apart than this factor get a logarithmic axis: on a linear one the smallest
/// bar would be under 4% of the longest and unreadable.
pub const LOG_SCALE_ABOVE: f64 = 25.0;

/// rawloop's models, their variants, and the peers.
const MODEL_COLOUR: RGBColor = RGBColor(0x2b, 0x6c, 0xb0);
const VARIANT_COLOUR: RGBColor = RGBColor(0x80, 0x5a, 0xd5);
const PEER_COLOUR: RGBColor = RGBColor(0xd9, 0x82, 0x2b);
const GRID: RGBColor = RGBColor(0xdd, 0xdd, 0xdd);
const GREY: RGBColor = RGBColor(0x55, 0x55, 0x55);

/// Width of every chart; the height grows with the rows.
const WIDTH: u32 = 960;
/// Title, "better" line, two lines of conditions and the legend.
const HEADER: u32 = 104;
/// The value axis with its tick labels and description.
const AXIS: u32 = 48;
/// The column of values right of the plot.
const VALUES: u32 = 120;

/// Draws `chart` into the SVG file `path`; returns the scale it chose.
pub fn draw(chart: &Chart, path: &Path) -> Result<Scale, String> {
    let scale = scale_for(chart);
    draw_with(chart, path, scale).map_err(|e| format!("chart {}: {e}", path.display()))?;
    Ok(scale)
}

/// Linear unless the medians span more than [`LOG_SCALE_ABOVE`].
pub fn scale_for(chart: &Chart) -> Scale {
    let medians = chart
        .rows
        .iter()
        .flat_map(|r| r.values.iter().flatten())
        .map(|v| v.median)
        .filter(|v| v.is_finite() && *v > 0.0);
    let (low, high) = medians.fold((f64::INFINITY, 0.0_f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if high / low > LOG_SCALE_ABOVE {
        Scale::Log
    } else {
        Scale::Linear
    }
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

/// `10^exponent` as a tick label: 0.1, 1, 10, 100, 1k, 10k, 100k, 1M...
fn decade(exponent: i32) -> String {
    let (unit, shift) = match exponent {
        9.. => ("G", 9),
        6.. => ("M", 6),
        3.. => ("k", 3),
        _ => ("", 0),
    };
    match exponent - shift {
        e if e >= 0 => format!("{}{unit}", 10u64.pow(e as u32)),
        e => format!("{:.*}", (-e) as usize, 10f64.powi(e)),
    }
}

/// The value axis: its range in plotted units (values, or their log10) and its ticks.
struct Axis {
    scale: Scale,
    start: f64,
    end: f64,
    ticks: usize,
}

impl Axis {
    fn new(chart: &Chart, scale: Scale) -> Axis {
        let values: Vec<f64> = chart
            .rows
            .iter()
            .flat_map(|r| r.values.iter().flatten())
            .flat_map(|v| [v.median, v.low])
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect();
        let top = values.iter().copied().fold(0.0, f64::max);
        // Whiskers may stretch the axis a little, but a far outlier must not squeeze every
        // bar: past this the whisker is cut and ends in an arrow.
        let highs = chart.rows.iter().flat_map(|r| r.values.iter().flatten());
        let high = highs
            .map(|v| v.high)
            .filter(|v| v.is_finite())
            .fold(top, f64::max)
            .min(top * 1.25);
        match scale {
            Scale::Linear => Axis {
                scale,
                start: 0.0,
                end: if high > 0.0 { high * 1.05 } else { 1.0 },
                ticks: 8,
            },
            Scale::Log => {
                let bottom = values.iter().copied().fold(f64::INFINITY, f64::min);
                let start = bottom.log10().floor();
                let end = high.log10() + 0.1;
                // One tick per whole decade: plotters never picks a finer step than a
                // decade when asked for no more points than there are decades.
                let ticks = (end - start).floor() as usize + 1;
                Axis {
                    scale,
                    start,
                    end,
                    ticks,
                }
            }
        }
    }

    /// A value's position on the axis, clamped to it.
    fn at(&self, value: f64) -> f64 {
        let plotted = match self.scale {
            Scale::Linear => value,
            Scale::Log if value > 0.0 => value.log10(),
            Scale::Log => self.start,
        };
        plotted.clamp(self.start, self.end)
    }

    /// Whether `value` lies past the end of the axis.
    fn cuts(&self, value: f64) -> bool {
        let plotted = match self.scale {
            Scale::Linear => value,
            Scale::Log => value.log10(),
        };
        plotted > self.end
    }

    fn label(&self, plotted: f64) -> String {
        match self.scale {
            Scale::Linear => compact(plotted),
            Scale::Log => decade(plotted.round() as i32),
        }
    }
}

fn draw_with(chart: &Chart, path: &Path, scale: Scale) -> Result<(), Box<dyn std::error::Error>> {
    let rows = chart.rows.len().max(1);
    let per_row = chart
        .rows
        .iter()
        .map(|r| r.values.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let row_px = if per_row > 1 {
        20 * per_row as u32 + 14
    } else {
        30
    };
    let height = HEADER + row_px * rows as u32 + AXIS + 12;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (head, body) = root.split_vertically(HEADER);
    draw_header(&head, chart, scale)?;
    let axis = Axis::new(chart, scale);
    let longest = chart.rows.iter().map(|r| r.label.chars().count()).max();
    let label_px = 24 + 8 * longest.unwrap_or(8) as u32;
    let mut plot = ChartBuilder::on(&body)
        .margin_left(8)
        .margin_right(VALUES)
        .margin_bottom(8)
        .x_label_area_size(AXIS - 8)
        .y_label_area_size(label_px)
        .build_cartesian_2d(axis.start..axis.end, (0..rows - 1).into_segmented())?;
    let axis_desc = match scale {
        Scale::Linear => chart.axis.clone(),
        Scale::Log => format!("{} (log scale)", chart.axis),
    };
    plot.configure_mesh()
        .disable_y_mesh()
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .x_desc(axis_desc)
        .x_labels(axis.ticks)
        .x_label_formatter(&|v| axis.label(*v))
        .y_labels(rows)
        .y_label_formatter(&|y| match y {
            SegmentValue::CenterOf(i) => chart
                .rows
                .get(rows - 1 - i)
                .map(|r| r.label.clone())
                .unwrap_or_default(),
            _ => String::new(),
        })
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 14))
        .draw()?;
    let (_, plot_height) = plot.plotting_area().dim_in_pixel();
    let row_height = plot_height as f64 / rows as f64;
    for (r, row) in chart.rows.iter().enumerate() {
        // plotters counts segments upwards: the first model goes in the top segment.
        let segment = rows - 1 - r;
        draw_row(&mut plot, &axis, row, segment, row_height, per_row)?;
    }
    root.present()?;
    Ok(())
}

type Plot<'a> = ChartContext<
    'a,
    SVGBackend<'a>,
    Cartesian2d<
        plotters::coord::types::RangedCoordf64,
        plotters::coord::ranged1d::SegmentedCoord<plotters::coord::types::RangedCoordusize>,
    >,
>;

/// The bars of one model: for each series a bar, its whisker, its value, and after the last
/// one of a pair the ratio to the first.
fn draw_row(
    plot: &mut Plot<'_>,
    axis: &Axis,
    row: &Row,
    segment: usize,
    row_height: f64,
    per_row: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let pad = 5.0;
    let bar_height = (row_height - 2.0 * pad) / per_row as f64;
    let colour = match row.group {
        Group::Model => MODEL_COLOUR,
        Group::Variant => VARIANT_COLOUR,
        Group::Peer => PEER_COLOUR,
    };
    let first = row.values.first().copied().flatten();
    for (s, value) in row.values.iter().enumerate() {
        // Pixel margins that leave this series' slot of the row: slot 0 on top.
        let top = pad + s as f64 * bar_height;
        let bottom = row_height - top - bar_height;
        let centre = top + bar_height / 2.0 - row_height / 2.0;
        let (lo, hi) = (
            SegmentValue::Exact(segment),
            SegmentValue::Exact(segment + 1),
        );
        let mid = SegmentValue::CenterOf(segment);
        let text_style =
            TextStyle::from(("sans-serif", 13)).pos(Pos::new(HPos::Left, VPos::Center));
        let Some(value) = value.filter(|v| v.median.is_finite()) else {
            let note = EmptyElement::at((axis.start, mid.clone()))
                + Text::new("no figure", (6, centre as i32), text_style.color(&GREY));
            plot.draw_series(std::iter::once(note))?;
            continue;
        };
        // Lighter first bar of a pair: the baseline, the darker one the case under test.
        let fill = if per_row > 1 && s == 0 {
            colour.mix(0.4)
        } else {
            colour.mix(0.9)
        };
        let mut bar = Rectangle::new(
            [
                (axis.start, lo.clone()),
                (axis.at(value.median), hi.clone()),
            ],
            fill.filled(),
        );
        bar.set_margin(top.round() as u32, bottom.round() as u32, 0, 0);
        let whisker_top = (top + bar_height / 2.0 - 1.0).round() as u32;
        let whisker_bottom = (row_height - top - bar_height / 2.0 - 1.0).round() as u32;
        let mut whisker = Rectangle::new(
            [(axis.at(value.low), lo), (axis.at(value.high), hi)],
            BLACK.filled(),
        );
        whisker.set_margin(whisker_top, whisker_bottom, 0, 0);
        plot.draw_series([bar, whisker])?;
        if axis.cuts(value.high) {
            // The slowest run lies past the axis: an arrowhead at the end says so.
            let arrow = EmptyElement::at((axis.end, mid.clone()))
                + Polygon::new(
                    vec![
                        (-7, centre as i32 - 4),
                        (0, centre as i32),
                        (-7, centre as i32 + 4),
                    ],
                    BLACK.filled(),
                );
            plot.draw_series(std::iter::once(arrow))?;
        }
        let mut label = compact(value.median);
        if let (true, Some(first)) = (s > 0, first.filter(|f| f.median > 0.0)) {
            label += &format!(" (×{:.1})", value.median / first.median);
        }
        let text =
            EmptyElement::at((axis.end, mid)) + Text::new(label, (10, centre as i32), text_style);
        plot.draw_series(std::iter::once(text))?;
    }
    Ok(())
}

/// Title, which way is better, the conditions, and the legend.
fn draw_header(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    chart: &Chart,
    scale: Scale,
) -> Result<(), Box<dyn std::error::Error>> {
    let title = ("sans-serif", 20).into_font().style(FontStyle::Bold);
    area.draw(&Text::new(chart.title.clone(), (16, 10), title))?;
    let mut better = match chart.higher_is_better {
        true => "higher is better".to_string(),
        false => "lower is better".to_string(),
    };
    if scale == Scale::Log {
        better += " · log scale: each tick is ten times the last";
    }
    let small = TextStyle::from(("sans-serif", 13)).color(&GREY);
    area.draw(&Text::new(better, (16, 36), ("sans-serif", 14)))?;
    area.draw(&Text::new(
        chart.conditions[0].clone(),
        (16, 56),
        small.clone(),
    ))?;
    area.draw(&Text::new(
        chart.conditions[1].clone(),
        (16, 72),
        small.clone(),
    ))?;
    let mut x = 16;
    let groups = [
        (Group::Model, "rawloop model", MODEL_COLOUR),
        (Group::Variant, "variant", VARIANT_COLOUR),
        (Group::Peer, "peer (tokio, std)", PEER_COLOUR),
    ];
    let mut keys: Vec<(String, RGBAColor)> = groups
        .iter()
        .filter(|(g, _, _)| chart.rows.iter().any(|r| r.group == *g))
        .map(|(_, name, colour)| (name.to_string(), colour.mix(0.9)))
        .collect();
    if chart.series.len() > 1 {
        keys.push((format!("light: {}", chart.series[0]), GREY.mix(0.4)));
        keys.push((format!("dark: {}", chart.series[1]), GREY.mix(0.9)));
    }
    for (name, colour) in keys {
        area.draw(&Rectangle::new([(x, 88), (x + 12, 100)], colour.filled()))?;
        area.draw(&Text::new(name.clone(), (x + 17, 87), small.clone()))?;
        x += 30 + 7 * name.chars().count() as i32;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(label: &str, group: Group, medians: &[f64]) -> Row {
        Row {
            label: label.into(),
            group,
            values: medians
                .iter()
                .map(|&m| {
                    m.is_finite().then_some(Value {
                        median: m,
                        low: m * 0.9,
                        high: m * 1.1,
                    })
                })
                .collect(),
        }
    }

    fn chart(rows: Vec<Row>, series: &[&str]) -> Chart {
        Chart {
            title: "idle-memory: server memory per idle connection".into(),
            axis: "bytes per connection (PSS)".into(),
            higher_is_better: false,
            conditions: ["quick run".into(), "2 cores".into()],
            series: series.iter().map(|s| s.to_string()).collect(),
            rows,
        }
    }

    #[test]
    fn compact_numbers() {
        assert_eq!(compact(1_234_567.0), "1.23M");
        assert_eq!(compact(45_678.0), "45.7k");
        assert_eq!(compact(123.4), "123");
        assert_eq!(compact(4.5678), "4.57");
        assert_eq!(compact(0.0), "0");
    }

    #[test]
    fn values_that_span_decades_get_a_log_axis_and_every_bar_is_drawn() {
        let dir = std::env::temp_dir().join(format!("echo-bench-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let memory = chart(
            vec![
                row("event-loop", Group::Model, &[159.0]),
                row("process-per-conn", Group::Model, &[147_600.0]),
                row("reactor-pool-oneshot", Group::Variant, &[170.0]),
                row("tokio-mt", Group::Peer, &[14_100.0]),
                row("broken", Group::Model, &[f64::NAN]),
            ],
            &[],
        );
        let path = dir.join("memory.svg");
        assert_eq!(draw(&memory, &path).unwrap(), Scale::Log);
        let svg = std::fs::read_to_string(&path).unwrap();
        for text in [
            "event-loop",
            "147.6k",
            "tokio-mt",
            "no figure",
            "lower is better",
            "log scale",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        let paired = chart(
            vec![
                row("event-loop", Group::Model, &[1_834.0, 15_000.0]),
                row("tokio-ct", Group::Peer, &[1_927.0, 10_500.0]),
            ],
            &["alone", "with greedy clients"],
        );
        assert_eq!(
            draw(&paired, &dir.join("paired.svg")).unwrap(),
            Scale::Linear
        );
        let svg = std::fs::read_to_string(dir.join("paired.svg")).unwrap();
        assert!(
            svg.contains("(×8.2)") && svg.contains("light: alone"),
            "{svg}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
