//! The kernel lab's charts, drawn with `plotters` into SVG: lines over time, plain bars, and
//! bars split into per-worker shares. The model scenarios' bar charts are [`crate::chart`]'s.
//!
//! The rules are the lab's (see [`crate::chart`]): a title that says what is measured and
//! which way is better, two lines of conditions under it, a legend when there is more than one
//! series, values written on the chart rather than left to the eye, and a logarithmic axis
//! (with a tick per decade, and saying so) when the values span more than a factor of
//! [`LOG_SCALE_ABOVE`], as the accept queue does from a backlog of 16 to one of 4096.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::chart::{compact, LOG_SCALE_ABOVE};

/// Width of every chart.
const WIDTH: u32 = 960;
/// Title, "better" line, conditions.
const HEADER: u32 = 84;
const GREY: RGBColor = RGBColor(0x55, 0x55, 0x55);
const GRID: RGBColor = RGBColor(0xdd, 0xdd, 0xdd);
/// Distinct colours for series and workers (Okabe and Ito's palette, safe for colour blindness).
const PALETTE: [RGBColor; 8] = [
    RGBColor(0x00, 0x72, 0xb2),
    RGBColor(0xd5, 0x5e, 0x00),
    RGBColor(0x00, 0x9e, 0x73),
    RGBColor(0xcc, 0x79, 0xa7),
    RGBColor(0xe6, 0x9f, 0x00),
    RGBColor(0x56, 0xb4, 0xe9),
    RGBColor(0x99, 0x99, 0x99),
    RGBColor(0x00, 0x00, 0x00),
];

/// What a chart says about itself, above the plot.
#[derive(Clone, Debug, Default)]
pub struct Heading {
    /// What is measured.
    pub title: String,
    /// Which way is better, or how to read it.
    pub reading: String,
    /// The lab's conditions, two lines.
    pub conditions: [String; 2],
}

/// One line of a [`LineChart`].
#[derive(Clone, Debug)]
pub struct Series {
    /// Its name in the legend.
    pub name: String,
    /// (x, y) points, x increasing.
    pub points: Vec<(f64, f64)>,
}

/// Lines over time, with vertical markers for the experiment's events.
#[derive(Clone, Debug)]
pub struct LineChart {
    /// Title and conditions.
    pub heading: Heading,
    /// The x axis (seconds since the start, usually).
    pub x_axis: String,
    /// The y axis.
    pub y_axis: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Vertical dashed lines at these x, with a label.
    pub markers: Vec<(f64, String)>,
    /// Keep the y axis linear whatever the values span (percentages).
    pub linear: bool,
}

/// One bar of a [`BarChart`].
#[derive(Clone, Debug)]
pub struct Bar {
    /// The row's label.
    pub label: String,
    /// The bar's length.
    pub value: f64,
    /// Written right of the bar (the value, unless something says it better).
    pub text: String,
    /// Which palette colour.
    pub colour: usize,
}

/// Horizontal bars, one per row, linear from zero.
#[derive(Clone, Debug)]
pub struct BarChart {
    /// Title and conditions.
    pub heading: Heading,
    /// The value axis.
    pub axis: String,
    /// The rows, top to bottom.
    pub bars: Vec<Bar>,
}

/// Bars of 100%, one per row, split into each worker's share.
#[derive(Clone, Debug)]
pub struct SharesChart {
    /// Title and conditions.
    pub heading: Heading,
    /// (row label, count per worker); a row of all zeros is drawn as "no figure".
    pub rows: Vec<(String, Vec<u64>)>,
}

/// Draws a line chart into the SVG file `path`.
pub fn lines(chart: &LineChart, path: &Path) -> Result<(), String> {
    draw_lines(chart, path).map_err(|e| format!("chart {}: {e}", path.display()))
}

/// Draws a bar chart into the SVG file `path`.
pub fn bars(chart: &BarChart, path: &Path) -> Result<(), String> {
    draw_bars(chart, path).map_err(|e| format!("chart {}: {e}", path.display()))
}

/// Draws a shares chart into the SVG file `path`.
pub fn shares(chart: &SharesChart, path: &Path) -> Result<(), String> {
    draw_shares(chart, path).map_err(|e| format!("chart {}: {e}", path.display()))
}

type Result2 = Result<(), Box<dyn std::error::Error>>;

/// A row of colour keys under the heading, from `x`: a legend that never hides a line.
fn draw_keys(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    mut x: i32,
    keys: impl Iterator<Item = (String, RGBColor)>,
) -> Result2 {
    let small = TextStyle::from(("sans-serif", 13)).color(&GREY);
    let y = HEADER as i32 + 8;
    for (name, colour) in keys {
        area.draw(&Rectangle::new([(x, y), (x + 12, y + 12)], colour.filled()))?;
        area.draw(&Text::new(name.clone(), (x + 17, y - 1), small.clone()))?;
        x += 34 + 7 * name.chars().count() as i32;
    }
    Ok(())
}

fn draw_heading(area: &DrawingArea<SVGBackend<'_>, Shift>, heading: &Heading) -> Result2 {
    let title = ("sans-serif", 20).into_font().style(FontStyle::Bold);
    area.draw(&Text::new(heading.title.clone(), (16, 10), title))?;
    area.draw(&Text::new(
        heading.reading.clone(),
        (16, 36),
        ("sans-serif", 14),
    ))?;
    let small = TextStyle::from(("sans-serif", 13)).color(&GREY);
    area.draw(&Text::new(
        heading.conditions[0].clone(),
        (16, 56),
        small.clone(),
    ))?;
    area.draw(&Text::new(heading.conditions[1].clone(), (16, 72), small))?;
    Ok(())
}

/// The y mapping of a line chart: linear from zero, or log10 with a floor for zeros.
#[derive(Copy, Clone)]
struct YScale {
    log: bool,
    top: f64,
    floor: f64,
}

impl YScale {
    fn new(chart: &LineChart) -> YScale {
        let ys = chart
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1));
        let top = ys.clone().fold(0.0, f64::max);
        let low = ys.filter(|y| *y > 0.0).fold(f64::INFINITY, f64::min);
        let log = !chart.linear && top / low > LOG_SCALE_ABOVE;
        // Zeros sit a decade under the smallest value's decade, on the axis floor, so every
        // tick stays on a power of ten.
        let floor = if log {
            10f64.powf(low.log10().floor() - 1.0)
        } else {
            0.0
        };
        YScale {
            log,
            top: top.max(1.0),
            floor,
        }
    }

    fn at(&self, y: f64) -> f64 {
        match self.log {
            true => y.max(self.floor).log10(),
            false => y,
        }
    }

    fn range(&self) -> (f64, f64) {
        match self.log {
            true => (self.floor.log10(), self.top.log10() + 0.15),
            false => (0.0, self.top * 1.08),
        }
    }

    fn label(&self, v: f64) -> String {
        match (self.log, v.round()) {
            (true, e) if (v - e).abs() > 0.01 => String::new(),
            // The floor holds the zeros.
            (true, e) if (e - self.floor.log10()).abs() < 0.01 => "0".into(),
            (true, e) if e < 0.0 => format!("{:.*}", (-e) as usize, 10f64.powf(e)),
            (true, e) if e < 4.0 => format!("{:.0}", 10f64.powf(e)),
            (true, e) => compact(10f64.powf(e)),
            (false, r) if v.abs() >= 10.0 || (v - r).abs() < 1e-9 => format!("{r:.0}"),
            (false, _) => compact(v),
        }
    }
}

fn draw_lines(chart: &LineChart, path: &Path) -> Result2 {
    let root = SVGBackend::new(path, (WIDTH, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let (head, body) = root.split_vertically(HEADER + 26);
    let mut heading = chart.heading.clone();
    let y = YScale::new(chart);
    if y.log {
        heading.reading += " · log scale: each tick is ten times the last; 0 sits on the floor";
    }
    draw_heading(&head, &heading)?;
    let keys = chart.series.iter().enumerate();
    draw_keys(&head, 16, keys.map(|(i, s)| (s.name.clone(), colour(i))))?;
    let x_end = chart
        .series
        .iter()
        .flat_map(|s| s.points.last().map(|p| p.0))
        .chain(chart.markers.iter().map(|m| m.0))
        .fold(1.0, f64::max)
        * 1.03;
    let (y0, y1) = y.range();
    let mut plot = ChartBuilder::on(&body)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_end, y0..y1)?;
    let ticks = if y.log {
        (y1 - y0).floor() as usize + 1
    } else {
        8
    };
    plot.configure_mesh()
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .x_desc(chart.x_axis.clone())
        .y_desc(chart.y_axis.clone())
        .y_labels(ticks)
        .y_label_formatter(&|v| y.label(*v))
        .x_label_formatter(&|v| format!("{v:.1}"))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()?;
    for (i, (x, label)) in chart.markers.iter().enumerate() {
        let dashes = (0..40).map(|k| {
            let k = k as f64;
            let (a, b) = (y0 + (y1 - y0) * k / 40.0, y0 + (y1 - y0) * (k + 0.5) / 40.0);
            PathElement::new(vec![(*x, a), (*x, b)], GREY.stroke_width(1))
        });
        plot.draw_series(dashes)?;
        // Labels right of their line, or left of it near the right edge.
        let (side, shift) = match *x > 0.8 * x_end {
            true => (HPos::Right, -0.005),
            false => (HPos::Left, 0.005),
        };
        let style = TextStyle::from(("sans-serif", 12))
            .color(&GREY)
            .pos(Pos::new(side, VPos::Top));
        let at = (
            *x + x_end * shift,
            y1 - (y1 - y0) * (0.02 + 0.05 * i as f64),
        );
        plot.draw_series(std::iter::once(Text::new(label.clone(), at, style)))?;
    }
    for (i, series) in chart.series.iter().enumerate() {
        let points = series.points.iter().map(|&(x, v)| (x, y.at(v)));
        // Earlier lines wider, so a later one drawn over the same values leaves them visible.
        let width = 2 + (chart.series.len() - 1 - i) as u32;
        plot.draw_series(LineSeries::new(points, colour(i).stroke_width(width)))?;
    }
    root.present()?;
    Ok(())
}

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Layout shared by the two kinds of horizontal bars: label column, bar area, text column.
struct Rows {
    label_px: i32,
    left: i32,
    right: i32,
    top: i32,
    row_px: i32,
}

impl Rows {
    fn new<'a>(labels: impl Iterator<Item = &'a str>, text_px: i32) -> Rows {
        let longest = labels.map(|l| l.chars().count()).max().unwrap_or(8) as i32;
        let label_px = 24 + 8 * longest;
        Rows {
            label_px,
            left: label_px + 8,
            right: WIDTH as i32 - text_px,
            top: HEADER as i32 + 34,
            row_px: 34,
        }
    }

    fn height(&self, rows: usize) -> u32 {
        (self.top + self.row_px * rows as i32 + 16) as u32
    }

    /// The bar's box in row `r` for the fraction `from..to` of the bar area.
    fn span(&self, r: usize, from: f64, to: f64) -> [(i32, i32); 2] {
        let width = f64::from(self.right - self.left);
        let y = self.top + self.row_px * r as i32;
        [
            (self.left + (width * from) as i32, y + 5),
            (self.left + (width * to) as i32, y + self.row_px - 5),
        ]
    }

    fn label(&self, area: &DrawingArea<SVGBackend<'_>, Shift>, r: usize, text: &str) -> Result2 {
        let style = TextStyle::from(("sans-serif", 14)).pos(Pos::new(HPos::Right, VPos::Center));
        let y = self.top + self.row_px * r as i32 + self.row_px / 2;
        area.draw(&Text::new(text.to_string(), (self.label_px, y), style))?;
        Ok(())
    }
}

fn draw_bars(chart: &BarChart, path: &Path) -> Result2 {
    let rows = Rows::new(chart.bars.iter().map(|b| b.label.as_str()), 380);
    let root = SVGBackend::new(path, (WIDTH, rows.height(chart.bars.len()))).into_drawing_area();
    root.fill(&WHITE)?;
    draw_heading(&root, &chart.heading)?;
    let small = TextStyle::from(("sans-serif", 13)).color(&GREY);
    root.draw(&Text::new(
        chart.axis.clone(),
        (rows.left, HEADER as i32 + 8),
        small,
    ))?;
    let top = chart.bars.iter().map(|b| b.value).fold(0.0, f64::max);
    let text = TextStyle::from(("sans-serif", 13)).pos(Pos::new(HPos::Left, VPos::Center));
    for (r, bar) in chart.bars.iter().enumerate() {
        rows.label(&root, r, &bar.label)?;
        let fraction = if top > 0.0 { bar.value / top } else { 0.0 };
        let [a, b] = rows.span(r, 0.0, fraction.max(0.002));
        let colour = PALETTE[bar.colour % PALETTE.len()];
        root.draw(&Rectangle::new([a, b], colour.mix(0.85).filled()))?;
        let y = (a.1 + b.1) / 2;
        root.draw(&Text::new(bar.text.clone(), (b.0 + 8, y), text.clone()))?;
    }
    root.present()?;
    Ok(())
}

fn draw_shares(chart: &SharesChart, path: &Path) -> Result2 {
    let rows = Rows::new(chart.rows.iter().map(|r| r.0.as_str()), 40);
    let root = SVGBackend::new(path, (WIDTH, rows.height(chart.rows.len()))).into_drawing_area();
    root.fill(&WHITE)?;
    draw_heading(&root, &chart.heading)?;
    let workers = chart.rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let small = TextStyle::from(("sans-serif", 13)).color(&GREY);
    let keys = (0..workers).map(|w| (format!("worker {w}"), colour(w)));
    draw_keys(&root, rows.left, keys)?;
    let inside = TextStyle::from(("sans-serif", 12))
        .color(&WHITE)
        .pos(Pos::new(HPos::Center, VPos::Center));
    for (r, (label, counts)) in chart.rows.iter().enumerate() {
        rows.label(&root, r, label)?;
        let total: u64 = counts.iter().sum();
        if total == 0 {
            let [a, b] = rows.span(r, 0.0, 0.0);
            root.draw(&Text::new(
                "no figure",
                (a.0, (a.1 + b.1) / 2 - 6),
                small.clone(),
            ))?;
            continue;
        }
        let mut from = 0.0;
        for (w, &count) in counts.iter().enumerate() {
            let to = from + count as f64 / total as f64;
            let [a, b] = rows.span(r, from, to);
            root.draw(&Rectangle::new([a, b], PALETTE[w % PALETTE.len()].filled()))?;
            if b.0 - a.0 > 36 {
                let text = format!("{:.0}%", 100.0 * count as f64 / total as f64);
                root.draw(&Text::new(
                    text,
                    ((a.0 + b.0) / 2, (a.1 + b.1) / 2),
                    inside.clone(),
                ))?;
            }
            from = to;
        }
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_kinds_of_chart_draw_their_words() {
        let dir = std::env::temp_dir().join(format!("echo-bench-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let heading = Heading {
            title: "backlog: accept queue".into(),
            reading: "how to read it".into(),
            conditions: ["quick".into(), "2 cores".into()],
        };
        let chart = LineChart {
            heading: heading.clone(),
            x_axis: "seconds".into(),
            y_axis: "connections".into(),
            series: vec![
                Series {
                    name: "backlog 16".into(),
                    points: vec![(0.0, 0.0), (1.0, 17.0)],
                },
                Series {
                    name: "backlog 4096".into(),
                    points: vec![(0.0, 0.0), (1.0, 2048.0)],
                },
            ],
            markers: vec![(0.5, "SIGCONT".into())],
            linear: false,
        };
        lines(&chart, &dir.join("lines.svg")).unwrap();
        let svg = std::fs::read_to_string(dir.join("lines.svg")).unwrap();
        for word in ["backlog 4096", "SIGCONT", "log scale"] {
            assert!(svg.contains(word), "{word}");
        }
        let chart = BarChart {
            heading: heading.clone(),
            axis: "overflows".into(),
            bars: vec![Bar {
                label: "backlog 16".into(),
                value: 47.0,
                text: "47".into(),
                colour: 0,
            }],
        };
        bars(&chart, &dir.join("bars.svg")).unwrap();
        assert!(std::fs::read_to_string(dir.join("bars.svg"))
            .unwrap()
            .contains("47"));
        let chart = SharesChart {
            heading,
            rows: vec![
                ("shared-accept".into(), vec![0, 6, 0]),
                ("none".into(), vec![0, 0]),
            ],
        };
        shares(&chart, &dir.join("shares.svg")).unwrap();
        let svg = std::fs::read_to_string(dir.join("shares.svg")).unwrap();
        assert!(svg.contains("100%") && svg.contains("worker 2") && svg.contains("no figure"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
