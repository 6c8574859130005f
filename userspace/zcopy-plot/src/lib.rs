//! The charts of the zcopy tools and benchmarks, as SVG documents.
//!
//! Two kinds, both drawn by [plotters] through its SVG backend alone:
//!
//! - [`Lines`]: one line per series over message size (bytes, a log scale
//!   with a tick at every measured size), for latency and throughput
//!   against size. The value axis turns logarithmic when the data spans
//!   more than a decade, and is linear from zero otherwise.
//! - [`Bars`]: one horizontal bar per label on a linear axis from zero,
//!   the value written at the end of each bar.
//!
//! Every series' legend entry is drawn by plotters from the style the
//! series itself was drawn with, so a legend colour is the line's colour
//! by construction. Tick labels carry their unit ([`Unit`]).
//!
//! Text goes into the SVG as `<text>` elements, anchored (start, middle,
//! end) for the viewer to lay out with its own fonts; plotters only
//! estimates text extents (for the legend box and the label areas), so
//! the build needs no font library.
//!
//! The charts are plain data (serde), so a chart can be kept as JSON and
//! drawn again: `cargo run -p zcopy-plot --example render -- chart.json
//! out.svg`.

#![deny(missing_docs)]

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::{Deserialize, Serialize};

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No finite value to draw (a log axis also needs it positive).
    #[error("{0}: no value to plot")]
    NoData(String),
    /// plotters refused a drawing step.
    #[error("drawing {0}: {1}")]
    Draw(String, String),
}

/// What a value axis measures; its tick labels and the bar values carry
/// the unit, scaled to a readable prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Seconds, written as ns, µs, ms or s.
    Seconds,
    /// Bytes per second (decimal prefixes): B/s, kB/s, MB/s, GB/s, TB/s.
    BytesPerSecond,
    /// Bytes per second (binary prefixes): B/s, KiB/s, MiB/s, GiB/s,
    /// TiB/s. perftest's "MB/sec" is this MiB/s.
    BinaryBytesPerSecond,
    /// Events per second, named by the string: `PerSecond("ops")` writes
    /// "12 k ops/s".
    PerSecond(String),
}

impl Unit {
    /// `v` with its unit, three significant digits at most: "542 ns",
    /// "1.27 ms", "48.4 MB/s", "47.5 MiB/s", "95.3 k ops/s".
    pub fn format(&self, v: f64) -> String {
        let (div, unit) = self.prefix(v);
        format!("{} {unit}", significant(v / div))
    }

    /// The prefix `v` is written with: its divisor and the unit's name.
    fn prefix(&self, v: f64) -> (f64, String) {
        let a = v.abs();
        let pick = |steps: &[(f64, &str)]| {
            steps
                .iter()
                .find(|(d, _)| a >= *d)
                .or(steps.last())
                .map_or((1.0, String::new()), |(d, n)| (*d, n.to_string()))
        };
        match self {
            Unit::Seconds if a == 0.0 => (1.0, "s".into()),
            Unit::Seconds => pick(&[(1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")]),
            Unit::BytesPerSecond => pick(&[
                (1e12, "TB/s"),
                (1e9, "GB/s"),
                (1e6, "MB/s"),
                (1e3, "kB/s"),
                (1.0, "B/s"),
            ]),
            Unit::BinaryBytesPerSecond => pick(&[
                (1099511627776.0, "TiB/s"),
                (1073741824.0, "GiB/s"),
                (1048576.0, "MiB/s"),
                (1024.0, "KiB/s"),
                (1.0, "B/s"),
            ]),
            Unit::PerSecond(what) => {
                let (d, p) = pick(&[
                    (1e12, "T "),
                    (1e9, "G "),
                    (1e6, "M "),
                    (1e3, "k "),
                    (1.0, ""),
                ]);
                (d, format!("{p}{what}/s"))
            }
        }
    }

    /// Round values for a log axis around `lo` ..= `hi`: every power of
    /// ten, or for binary prefixes 1, 10 and 100 of each.
    fn round_values(&self, lo: f64, hi: f64) -> Vec<f64> {
        let (d0, d1) = (lo.log10().floor() as i32 - 1, hi.log10().ceil() as i32 + 1);
        let mut v: Vec<f64> = match self {
            Unit::BinaryBytesPerSecond => (0..=4)
                .flat_map(|k| (0..3).map(move |j| 10f64.powi(j) * 1024f64.powi(k)))
                .chain((d0.min(0)..0).map(|d| 10f64.powi(d)))
                .collect(),
            _ => (d0..=d1).map(|d| 10f64.powi(d)).collect(),
        };
        v.sort_by(f64::total_cmp);
        v
    }
}

/// `v` with at most three significant digits, no trailing zeros.
fn significant(v: f64) -> String {
    let a = v.abs();
    let decimals = if a >= 100.0 || a == 0.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        3
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A byte count as a size label: "64 B", "4 KiB", "1 MiB", "1.5 MiB".
pub fn size(bytes: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < units.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{} {}", significant(v), units[unit])
}

/// One line of a [`Lines`] chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Its legend entry.
    pub name: String,
    /// (message size in bytes, value in the chart's unit); points that
    /// cannot be drawn (not finite, or not positive on a log axis) are
    /// left out.
    pub points: Vec<(f64, f64)>,
}

/// Lines over message size: latency or throughput against size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lines {
    /// The caption.
    pub title: String,
    /// A line under the caption (how it was measured); empty for none.
    pub note: String,
    /// What the value axis shows (its unit is in the tick labels), e.g.
    /// "one-way latency, p50 (lower is better)".
    pub value: String,
    /// What the sizes are, e.g. "message size" (the axis adds "log
    /// scale").
    pub sizes: String,
    /// The values' unit.
    pub unit: Unit,
    /// The lines, in legend order.
    pub series: Vec<Series>,
}

/// Horizontal bars on a linear axis from zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bars {
    /// The caption.
    pub title: String,
    /// A line under the caption (how it was measured); empty for none.
    pub note: String,
    /// What the value axis shows, e.g. "time (lower is better)".
    pub value: String,
    /// The values' unit.
    pub unit: Unit,
    /// (label, value), top to bottom.
    pub bars: Vec<(String, f64)>,
}

/// Line colours, in series order (the Tableau 10 palette: distinct on
/// white and for the common colour-vision deficiencies as far as ten
/// colours go).
const PALETTE: [RGBColor; 10] = [
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

/// The colour of series `i`: its line, its points and its legend entry.
fn series_color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Series past the palette's ten take its colours again, drawn dashed
/// with triangles, so that the first twenty all look different.
fn series_dashed(i: usize) -> bool {
    i >= PALETTE.len()
}

const GRID: RGBColor = RGBColor(225, 225, 225);
const FONT: &str = "sans-serif";
/// Font sizes as plotters takes them (the SVG gets them divided by 1.24).
const TITLE_SIZE: u32 = 24;
const NOTE_SIZE: u32 = 17;
const LABEL_SIZE: u32 = 16;
const DESC_SIZE: u32 = 17;
const LEGEND_SIZE: u32 = 17;
/// The width of a chart's plot, legend aside.
const WIDTH: u32 = 860;

/// About how wide `text` is in the note's font, in pixels (a generous
/// average glyph width: the viewer's font decides).
fn note_width(text: &str) -> u32 {
    (text.chars().count() as f64 * NOTE_SIZE as f64 / 1.24 * 0.56) as u32
}

/// A drawing error with the step that failed.
fn draw_err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> Error + '_ {
    move |e| Error::Draw(what.to_string(), e.to_string())
}

/// The value axis: its range, its ticks, and whether it is logarithmic.
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    log: bool,
}

impl Axis {
    /// A log axis from a round value to a round value (see
    /// [`Unit::round_values`]) when `values` span more than a decade, else
    /// a linear one from zero; ticks at round values of `unit`.
    fn for_values(values: &[f64], allow_log: bool, unit: &Unit) -> Axis {
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if allow_log && lo > 0.0 && hi / lo > 10.0 {
            let round = unit.round_values(lo, hi);
            let bottom = round.iter().copied().rfind(|r| *r <= lo * 1.0001);
            let top = round.iter().copied().find(|r| *r >= hi / 1.0001);
            if let (Some(bottom), Some(top)) = (bottom, top) {
                let mut ticks: Vec<f64> = round
                    .iter()
                    .copied()
                    .filter(|r| *r >= bottom && *r <= top)
                    .collect();
                // Few decades: 2 and 5 times each as well.
                if (top / bottom).log10() <= 2.01 {
                    let more: Vec<f64> = ticks
                        .iter()
                        .flat_map(|t| [2.0 * t, 5.0 * t])
                        .filter(|t| *t < top)
                        .collect();
                    ticks.extend(more);
                    ticks.sort_by(f64::total_cmp);
                }
                return Axis {
                    lo: bottom,
                    hi: top,
                    ticks,
                    log: true,
                };
            }
        }
        let hi = if hi > 0.0 { hi } else { 1.0 };
        // Round steps in the unit the labels are written in.
        let (div, _) = unit.prefix(hi);
        let raw = hi / div / 5.0;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * mag)
            * div;
        let n = (hi / step).ceil() as usize;
        // Room past the longest bar or the highest point.
        let top = if (n as f64) * step < hi * 1.08 {
            (n + 1) as f64 * step
        } else {
            n as f64 * step
        };
        Axis {
            lo: 0.0,
            hi: top,
            ticks: (0..)
                .map(|i| i as f64 * step)
                .take_while(|t| *t <= top * 1.0001)
                .collect(),
            log: false,
        }
    }
}

/// An axis (linear or log) with ticks where we put them: at the measured
/// sizes, at whole decades, at round steps.
struct Ticked<R> {
    inner: R,
    ticks: Vec<f64>,
}

impl<R: Ranged<ValueType = f64>> Ranged for Ticked<R> {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        self.ticks.clone()
    }

    fn range(&self) -> Range<f64> {
        self.inner.range()
    }
}

/// Draws `chart` as an SVG document.
pub fn lines(chart: &Lines) -> Result<String, Error> {
    let drawable = |p: &(f64, f64)| p.0 > 0.0 && p.0.is_finite() && p.1.is_finite();
    let all: Vec<(f64, f64)> = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(drawable)
        .collect();
    let values: Vec<f64> = all.iter().map(|p| p.1).collect();
    if values.is_empty() {
        return Err(Error::NoData(chart.title.clone()));
    }
    let any_zero_or_less = values.iter().any(|v| *v <= 0.0);
    let y = Axis::for_values(&values, !any_zero_or_less, &chart.unit);
    let keep = |p: &(f64, f64)| drawable(p) && (!y.log || p.1 > 0.0);

    let mut sizes: Vec<f64> = all.iter().map(|p| p.0).collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    let (x0, x1) = (sizes[0] / 1.6, sizes[sizes.len() - 1] * 1.6);

    let names = chart.series.iter().map(|s| s.name.chars().count()).max();
    let legend_w = 64 + 8 * names.unwrap_or(0) as u32;
    let height = if chart.note.is_empty() { 480 } else { 504 };
    let mut svg = String::new();
    {
        let width = (WIDTH + legend_w).max(note_width(&chart.note) + 40);
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err("the background"))?;
        let x_axis = Ticked {
            inner: LogCoord::from((x0..x1).log_scale()),
            ticks: sizes.clone(),
        };
        if y.log {
            let y_axis = Ticked {
                inner: LogCoord::from((y.lo..y.hi).log_scale()),
                ticks: y.ticks.clone(),
            };
            draw_lines(chart, &root, x_axis, y_axis, &y, legend_w, &keep)?;
        } else {
            let y_axis = Ticked {
                inner: RangedCoordf64::from(y.lo..y.hi),
                ticks: y.ticks.clone(),
            };
            draw_lines(chart, &root, x_axis, y_axis, &y, legend_w, &keep)?;
        }
        root.present().map_err(draw_err("the chart"))?;
    }
    Ok(svg)
}

/// Writes the caption and the note across the top of `root`; the area
/// under them.
fn header<'a>(
    root: &DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
    title: &str,
    note: &str,
) -> Result<DrawingArea<SVGBackend<'a>, plotters::coord::Shift>, Error> {
    let root = root
        .titled(title, (FONT, TITLE_SIZE))
        .map_err(draw_err("the title"))?;
    if note.is_empty() {
        return Ok(root);
    }
    let (line, body) = root.split_vertically(26);
    let style = TextStyle::from((FONT, NOTE_SIZE).into_font())
        .color(&RGBColor(85, 85, 85))
        .pos(Pos::new(HPos::Center, VPos::Top));
    let (w, _) = line.dim_in_pixel();
    line.draw_text(note, &style, (w as i32 / 2, 0))
        .map_err(draw_err("the note"))?;
    Ok(body)
}

/// The body of [`lines`], for either kind of value axis.
fn draw_lines<X, Y>(
    chart: &Lines,
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    x_axis: X,
    y_axis: Y,
    y: &Axis,
    legend_w: u32,
    keep: &dyn Fn(&(f64, f64)) -> bool,
) -> Result<(), Error>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let body = header(root, &chart.title, &chart.note)?;
    let (plot, legend) = body.split_horizontally(WIDTH);
    let mut c = ChartBuilder::on(&plot)
        .margin(12)
        .x_label_area_size(54)
        .y_label_area_size(100)
        .build_cartesian_2d(x_axis, y_axis)
        .map_err(draw_err("the axes"))?;
    let unit = chart.unit.clone();
    c.configure_mesh()
        .x_desc(format!("{} (log scale)", chart.sizes))
        .y_desc(if y.log {
            format!("{} (log scale)", chart.value)
        } else {
            chart.value.clone()
        })
        .x_label_formatter(&|v| size(*v))
        .y_label_formatter(&|v| unit.format(*v))
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .label_style((FONT, LABEL_SIZE))
        .axis_desc_style((FONT, DESC_SIZE))
        .draw()
        .map_err(draw_err("the grid"))?;
    for (i, s) in chart.series.iter().enumerate() {
        let color = series_color(i);
        let pts: Vec<(f64, f64)> = s.points.iter().copied().filter(|p| keep(p)).collect();
        if pts.is_empty() {
            continue;
        }
        let style = color.stroke_width(2);
        if series_dashed(i) {
            c.draw_series(DashedLineSeries::new(pts.iter().copied(), 7, 5, style))
                .map_err(draw_err(&s.name))?;
            c.draw_series(
                pts.iter()
                    .map(|&p| TriangleMarker::new(p, 4, color.filled())),
            )
            .map_err(draw_err(&s.name))?;
        } else {
            c.draw_series(LineSeries::new(pts.iter().copied(), style))
                .map_err(draw_err(&s.name))?;
            c.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(draw_err(&s.name))?;
        }
    }
    // The legend, right of the plot and outside the lines: each entry
    // drawn with its series' own colour.
    let legend_font =
        TextStyle::from((FONT, LEGEND_SIZE).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let drawn: Vec<(usize, &Series)> = chart
        .series
        .iter()
        .enumerate()
        .filter(|(_, s)| s.points.iter().any(keep))
        .collect();
    let (x, y0, row) = (10, 12 + 8, 24);
    let box_h = row * drawn.len() as i32 + 8;
    legend
        .draw(&Rectangle::new(
            [(x - 6, y0 - 4), (legend_w as i32 - 8, y0 + box_h - 4)],
            BLACK.mix(0.3).stroke_width(1),
        ))
        .map_err(draw_err("the legend"))?;
    for (k, (i, s)) in drawn.into_iter().enumerate() {
        let color = series_color(i);
        let y = y0 + 8 + row * k as i32;
        if series_dashed(i) {
            for (a, b) in [(x, x + 8), (x + 20, x + 28)] {
                legend
                    .draw(&PathElement::new(
                        vec![(a, y), (b, y)],
                        color.stroke_width(3),
                    ))
                    .map_err(draw_err("the legend"))?;
            }
            legend
                .draw(&TriangleMarker::new((x + 14, y), 4, color.filled()))
                .map_err(draw_err("the legend"))?;
        } else {
            legend
                .draw(&PathElement::new(
                    vec![(x, y), (x + 28, y)],
                    color.stroke_width(3),
                ))
                .map_err(draw_err("the legend"))?;
            legend
                .draw(&Circle::new((x + 14, y), 3, color.filled()))
                .map_err(draw_err("the legend"))?;
        }
        legend
            .draw_text(&s.name, &legend_font, (x + 36, y))
            .map_err(draw_err("the legend"))?;
    }
    Ok(())
}

/// Draws `chart` as an SVG document.
pub fn bars(chart: &Bars) -> Result<String, Error> {
    let shown: Vec<&(String, f64)> = chart
        .bars
        .iter()
        .filter(|b| b.1.is_finite() && b.1 >= 0.0)
        .collect();
    if shown.is_empty() {
        return Err(Error::NoData(chart.title.clone()));
    }
    let values: Vec<f64> = shown.iter().map(|b| b.1).collect();
    let x = Axis::for_values(&values, false, &chart.unit);
    let label_w = 24 + 9 * shown.iter().map(|b| b.0.chars().count()).max().unwrap_or(0) as u32;
    let row = 40;
    let top = if chart.note.is_empty() { 0 } else { 26 };
    let height = 110 + top + row * shown.len() as u32;
    let mut svg = String::new();
    {
        let width = WIDTH.max(note_width(&chart.note) + 40);
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err("the background"))?;
        let area = header(&root, &chart.title, &chart.note)?;
        // Row i (from the top) spans n-1-i .. n-i on the y axis; its
        // label sits at the middle.
        let n = shown.len();
        let x_axis = Ticked {
            inner: RangedCoordf64::from(x.lo..x.hi),
            ticks: x.ticks.clone(),
        };
        let y_axis = Ticked {
            inner: RangedCoordf64::from(0.0..n as f64),
            ticks: (0..n).map(|r| r as f64 + 0.5).collect(),
        };
        let mut c = ChartBuilder::on(&area)
            .margin(12)
            .margin_right(40)
            .x_label_area_size(54)
            .y_label_area_size(label_w)
            .build_cartesian_2d(x_axis, y_axis)
            .map_err(draw_err("the axes"))?;
        let unit = chart.unit.clone();
        let label = |v: &f64| {
            let from_bottom = v.floor() as usize;
            n.checked_sub(from_bottom + 1)
                .and_then(|i| shown.get(i))
                .map(|b| b.0.clone())
                .unwrap_or_default()
        };
        c.configure_mesh()
            .disable_y_mesh()
            .x_desc(&chart.value)
            .x_label_formatter(&|v| unit.format(*v))
            .y_label_formatter(&label)
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .label_style((FONT, LABEL_SIZE))
            .axis_desc_style((FONT, DESC_SIZE))
            .draw()
            .map_err(draw_err("the grid"))?;
        let color = series_color(0);
        let value_font =
            TextStyle::from((FONT, LABEL_SIZE).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        for (i, (_, v)) in shown.iter().enumerate() {
            let bottom = (n - 1 - i) as f64;
            c.draw_series(std::iter::once(Rectangle::new(
                [(0.0, bottom + 0.18), (*v, bottom + 0.82)],
                color.filled(),
            )))
            .map_err(draw_err("a bar"))?;
            c.draw_series(std::iter::once(
                EmptyElement::at((*v, bottom + 0.5))
                    + Text::new(chart.unit.format(*v), (6, 0), value_font.clone()),
            ))
            .map_err(draw_err("a value"))?;
        }
        root.present().map_err(draw_err("the chart"))?;
    }
    Ok(svg)
}

/// Either kind of chart, as kept in JSON: `{"lines": {...}}` or
/// `{"bars": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Chart {
    /// A [`Lines`] chart.
    Lines(Lines),
    /// A [`Bars`] chart.
    Bars(Bars),
}

impl Chart {
    /// Draws the chart as an SVG document.
    pub fn render(&self) -> Result<String, Error> {
        match self {
            Chart::Lines(c) => lines(c),
            Chart::Bars(c) => bars(c),
        }
    }
}
