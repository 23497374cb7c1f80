//! SVG charts drawn with `plotters` (SVG backend only, its built-in text layout: no system
//! fonts, integer pixel coordinates), so the same numbers give the same bytes. Fixed sizes and a
//! fixed palette; colours follow the model's row in the report.

use plotters::coord::Shift;
use plotters::prelude::{
    Cartesian2d, ChartBuilder, ChartContext, Circle, Color, DrawingArea, IntoDrawingArea,
    IntoLogRange, LineSeries, PathElement, RGBColor, Ranged, SVGBackend, SeriesLabelPosition,
    BLACK, WHITE,
};

/// Tableau-10: distinguishable, colour-blind friendlier than the primaries.
pub const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// The paper's t-SNE colours: student red, teacher blue.
const STUDENT: RGBColor = RGBColor(214, 39, 40);
const TEACHER: RGBColor = RGBColor(31, 119, 180);
const FONT: &str = "sans-serif";
/// Lines with at most this many points also get a marker per point.
const MARKERS_UP_TO: usize = 12;

pub fn colour(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

fn err<E: std::fmt::Display>(e: E) -> String {
    format!("drawing an SVG chart: {e}")
}

/// Tick labels: at most 3 decimals, trailing zeros dropped.
fn tick(v: &f64) -> String {
    let a = v.abs();
    if a > 0.0 && a < 1e-2 {
        return format!("{v:.0e}");
    }
    let s = if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 || a == 0.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

/// Tick labels for a logarithmic axis over `range`: 1, 2 and 5 times the powers of ten when it
/// spans at most two decades, else the powers of ten only. Plotters puts key points at every
/// multiple of a decade (20000, 30000, …, 90000), whose labels would run into each other where
/// a decade is narrow.
fn log_tick(range: (f64, f64)) -> impl Fn(&f64) -> String {
    let mantissas: &'static [f64] = if range.1 / range.0 <= 100.0 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0]
    };
    move |v: &f64| {
        let e = v.log10().floor();
        if !e.is_finite() {
            return String::new();
        }
        // The key point, rounded off its float noise: a mantissa of this decade or the next.
        [e, e + 1.0]
            .iter()
            .flat_map(|&e| mantissas.iter().map(move |&m| m * 10f64.powf(e)))
            .find(|k| (v - k).abs() <= 1e-6 * k)
            .map_or(String::new(), |k| tick(&k))
    }
}

/// A range around finite values, padded by 5 % (1 around a single value).
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 1.0, hi + 1.0);
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad, hi + pad)
}

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Legend text; lines with the same name and colour share one legend entry.
    pub name: String,
    pub colour: usize,
    pub points: Vec<(f64, f64)>,
}

fn legend_once(lines: &[Line], i: usize) -> bool {
    !lines[..i]
        .iter()
        .any(|l| l.name == lines[i].name && l.colour == lines[i].colour)
}

fn finite(points: &[(f64, f64)], positive: bool) -> Vec<(f64, f64)> {
    points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite() && (!positive || *y > 0.0))
        .collect()
}

/// How a line chart looks.
struct Panel<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    /// Draw a legend (one entry per name and colour).
    legend: bool,
    /// The first line is the reference, drawn thick and black.
    black_first: bool,
    /// x values are whole numbers (epochs): no padding, ticks only at integers.
    integer_x: bool,
    /// Logarithmic y axis when the values span at least a decade (values ≤ 0 left out).
    log_y: bool,
}

/// Just under the power of ten at or below `v` (> 0).
fn decade_below(v: f64) -> f64 {
    10f64.powf(v.log10().floor()) * 0.999
}

fn integer_tick(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        String::new()
    }
}

/// The series' legend, framed, in the upper right corner.
fn legend<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    font: u32,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, font))
        .draw()
        .map_err(err)
}

/// Draws `lines` into a chart whose axes are already configured.
fn draw_lines<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    p: &Panel,
    lines: &[Line],
    pts: Vec<Vec<(f64, f64)>>,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, (l, q)) in lines.iter().zip(pts).enumerate() {
        let (c, w) = if p.black_first && i == 0 {
            (BLACK, 3)
        } else {
            (colour(l.colour), 2)
        };
        // Short curves (a few epochs) get markers, so that even a single point shows.
        if q.len() <= MARKERS_UP_TO {
            chart
                .draw_series(q.iter().map(|&pt| Circle::new(pt, 3, c.filled())))
                .map_err(err)?;
        }
        let s = chart
            .draw_series(LineSeries::new(q, c.stroke_width(w)))
            .map_err(err)?;
        if p.legend && legend_once(lines, i) {
            s.label(l.name.clone()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(w))
            });
        }
    }
    if p.legend {
        legend(chart, 12)?;
    }
    Ok(())
}

/// A line chart.
fn line_panel(
    area: &DrawingArea<SVGBackend, Shift>,
    p: &Panel,
    lines: &[Line],
) -> Result<(), String> {
    let pts: Vec<Vec<(f64, f64)>> = lines.iter().map(|l| finite(&l.points, p.log_y)).collect();
    let extent = |f: fn(&(f64, f64)) -> f64| {
        pts.iter()
            .flatten()
            .map(f)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            })
    };
    let (x0, x1) = if p.integer_x {
        match extent(|q| q.0) {
            (lo, hi) if lo.is_finite() && hi > lo => (lo, hi),
            (lo, _) if lo.is_finite() => (lo - 0.5, lo + 0.5),
            _ => (0.0, 1.0),
        }
    } else {
        span(pts.iter().flatten().map(|q| q.0))
    };
    let x_labels = if p.integer_x {
        ((x1 - x0).round() as usize + 1).clamp(2, 11)
    } else {
        10
    };
    let x_fmt: &dyn Fn(&f64) -> String = if p.integer_x { &integer_tick } else { &tick };
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(p.title, (FONT, 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52);
    let (lo, hi) = extent(|q| q.1);
    if p.log_y && lo.is_finite() && lo > 0.0 && hi / lo >= 10.0 {
        // From just under a power of ten, so that plotters labels the lowest decade too.
        let range = (decade_below(lo), hi * 1.2);
        let mut chart = builder
            .build_cartesian_2d(x0..x1, (range.0..range.1).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(p.x_desc)
            .y_desc(format!("{} (log scale)", p.y_desc))
            .x_labels(x_labels)
            .x_label_formatter(x_fmt)
            .y_label_formatter(&log_tick(range))
            .light_line_style(WHITE)
            .draw()
            .map_err(err)?;
        return draw_lines(&mut chart, p, lines, pts);
    }
    let (y0, y1) = span(pts.iter().flatten().map(|q| q.1));
    let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1).map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(p.x_desc)
        .y_desc(p.y_desc)
        .x_labels(x_labels)
        .x_label_formatter(x_fmt)
        .y_label_formatter(&tick)
        .light_line_style(WHITE)
        .draw()
        .map_err(err)?;
    draw_lines(&mut chart, p, lines, pts)
}

/// Training loss (left; log scale when it spans a decade) and validation MAE (right) per epoch,
/// one line per run (paper Figure 3). `train` and `val` hold the same runs in the same order.
pub fn curves_svg(title: &str, train: &[Line], val: &[Line]) -> Result<String, String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (1100, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, (FONT, 20)).map_err(err)?;
        let (left, right) = root.split_horizontally(550);
        let panel = |title, y_desc, legend, log_y| Panel {
            title,
            x_desc: "epoch",
            y_desc,
            legend,
            black_first: false,
            integer_x: true,
            log_y,
        };
        let train_panel = panel(
            "Training loss (each run's own objective)",
            "loss",
            false,
            true,
        );
        line_panel(&left, &train_panel, train)?;
        let val_panel = panel(
            "Validation MAE, mean over 9 steps",
            "MAE (mph)",
            true,
            false,
        );
        line_panel(&right, &val_panel, val)?;
        root.present().map_err(err)?;
    }
    Ok(buf)
}

/// True speed (black, first line) and each model's prediction over time (paper Figure 5).
pub fn prediction_svg(title: &str, lines: &[Line]) -> Result<String, String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (1000, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let panel = Panel {
            title,
            x_desc: "time of day of the predicted step (h)",
            y_desc: "speed (mph)",
            legend: true,
            black_first: true,
            integer_x: false,
            log_y: false,
        };
        line_panel(&root, &panel, lines)?;
        root.present().map_err(err)?;
    }
    Ok(buf)
}

/// One t-SNE panel: student and teacher points of the same samples.
#[derive(Debug, Clone, PartialEq)]
pub struct TsnePanel {
    pub title: String,
    pub student: Vec<[f64; 2]>,
    pub teacher: Vec<[f64; 2]>,
}

/// A grid of t-SNE panels (up to 3 per row): student red, teacher blue, as in the paper.
pub fn tsne_svg(title: &str, panels: &[TsnePanel]) -> Result<String, String> {
    let cols = panels.len().clamp(1, 3);
    let rows = panels.len().div_ceil(cols).max(1);
    let mut buf = String::new();
    {
        let size = (380 * cols as u32, 360 * rows as u32 + 40);
        let root = SVGBackend::with_string(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, (FONT, 20)).map_err(err)?;
        for (area, p) in root.split_evenly((rows, cols)).iter().zip(panels) {
            let all = p.student.iter().chain(&p.teacher);
            let (x0, x1) = span(all.clone().map(|q| q[0]));
            let (y0, y1) = span(all.map(|q| q[1]));
            let mut chart = ChartBuilder::on(area)
                .caption(&p.title, (FONT, 14))
                .margin(10)
                .x_label_area_size(24)
                .y_label_area_size(36)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_label_formatter(&tick)
                .y_label_formatter(&tick)
                .light_line_style(WHITE)
                .draw()
                .map_err(err)?;
            for (pts, c, name) in [
                (&p.teacher, TEACHER, "teacher"),
                (&p.student, STUDENT, "student"),
            ] {
                chart
                    .draw_series(
                        pts.iter()
                            .filter(|q| q[0].is_finite() && q[1].is_finite())
                            .map(|q| Circle::new((q[0], q[1]), 3, c.mix(0.8).filled())),
                    )
                    .map_err(err)?
                    .label(name)
                    .legend(move |(x, y)| Circle::new((x + 8, y), 3, c.filled()));
            }
            legend(&mut chart, 11)?;
        }
        root.present().map_err(err)?;
    }
    Ok(buf)
}

/// One point of a trade-off chart.
#[derive(Debug, Clone, PartialEq)]
pub struct TradeOff {
    /// Legend text (the report's row); points of one name share a colour.
    pub name: String,
    pub colour: usize,
    pub x: f64,
    pub y: f64,
    /// On the Pareto front: drawn filled with a black ring and joined by the front's line.
    pub front: bool,
}

/// One panel of a trade-off chart.
pub struct TradeOffPanel<'a> {
    pub title: &'a str,
    pub x_desc: &'a str,
    pub points: &'a [TradeOff],
    /// A logarithmic x axis when the values span a decade or more.
    pub log_x: bool,
}

/// Draws a trade-off panel: its axes, the front's staircase, the points and their legend.
fn draw_trade_off<'a, X>(
    chart: &mut ChartContext<
        'a,
        SVGBackend<'a>,
        Cartesian2d<X, plotters::coord::types::RangedCoordf64>,
    >,
    x_desc: &str,
    x_fmt: &dyn Fn(&f64) -> String,
    y_desc: &str,
    points: &[TradeOff],
) -> Result<(), String>
where
    X: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(x_fmt)
        .y_label_formatter(&tick)
        .light_line_style(WHITE)
        .draw()
        .map_err(err)?;
    let mut front: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.front)
        .map(|p| (p.x, p.y))
        .collect();
    front.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    // The front as a staircase: each better-but-larger point steps down.
    let mut stairs = Vec::new();
    for (i, &(x, y)) in front.iter().enumerate() {
        if i > 0 {
            stairs.push((x, front[i - 1].1));
        }
        stairs.push((x, y));
    }
    chart
        .draw_series(LineSeries::new(stairs, BLACK.mix(0.6).stroke_width(1)))
        .map_err(err)?;
    for (i, p) in points.iter().enumerate() {
        let c = colour(p.colour);
        let s = if p.front {
            chart.draw_series([
                Circle::new((p.x, p.y), 6, BLACK.filled()),
                Circle::new((p.x, p.y), 4, c.filled()),
            ])
        } else {
            chart.draw_series([Circle::new((p.x, p.y), 4, c.stroke_width(2))])
        }
        .map_err(err)?;
        if !points[..i].iter().any(|q| q.name == p.name) {
            s.label(p.name.clone())
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, c.filled()));
        }
    }
    legend(chart, 11)
}

/// Error against cost, one panel per cost (e.g. parameters, latency), the Pareto front of each
/// drawn as a staircase through its filled points. An x axis spanning at least a decade is
/// logarithmic where the panel allows it.
pub fn pareto_svg(title: &str, y_desc: &str, panels: &[TradeOffPanel]) -> Result<String, String> {
    let cols = panels.len().max(1) as u32;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (520 * cols, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, (FONT, 20)).map_err(err)?;
        for (area, p) in root.split_evenly((1, cols as usize)).iter().zip(panels) {
            let pts: Vec<TradeOff> = p
                .points
                .iter()
                .filter(|q| q.x.is_finite() && q.y.is_finite() && q.x > 0.0)
                .cloned()
                .collect();
            let (y0, y1) = span(pts.iter().map(|q| q.y));
            let (lo, hi) = pts.iter().fold((f64::INFINITY, 0.0f64), |(a, b), q| {
                (a.min(q.x), b.max(q.x))
            });
            let mut builder = ChartBuilder::on(area);
            builder
                .caption(p.title, (FONT, 15))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(52);
            if p.log_x && lo.is_finite() && hi / lo >= 10.0 {
                let range = (decade_below(lo), hi * 1.3);
                let mut chart = builder
                    .build_cartesian_2d((range.0..range.1).log_scale(), y0..y1)
                    .map_err(err)?;
                let x_desc = format!("{} (log scale)", p.x_desc);
                draw_trade_off(&mut chart, &x_desc, &log_tick(range), y_desc, &pts)?;
            } else {
                let (x0, x1) = span(pts.iter().map(|q| q.x));
                let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1).map_err(err)?;
                draw_trade_off(&mut chart, p.x_desc, &tick, y_desc, &pts)?;
            }
        }
        root.present().map_err(err)?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines() -> Vec<Line> {
        (0..3)
            .map(|i| Line {
                name: format!("model {i}"),
                colour: i,
                points: (1..=10)
                    .map(|e| (e as f64, 1.0 / (e as f64 + i as f64)))
                    .collect(),
            })
            .collect()
    }

    #[test]
    fn charts_are_svg_and_byte_stable() {
        let l = lines();
        let a = curves_svg("curves", &l, &l).unwrap();
        assert_eq!(a, curves_svg("curves", &l, &l).unwrap());
        assert!(a.starts_with("<svg") && a.trim_end().ends_with("</svg>"));
        assert!(a.contains("model 2"));
        let p = prediction_svg("pred", &l).unwrap();
        assert!(p.contains("speed (mph)"));
        let t = tsne_svg(
            "tsne",
            &[TsnePanel {
                title: "Student STCD".into(),
                student: vec![[0.0, 1.0], [1.0, 0.0]],
                teacher: vec![[0.5, 0.5]],
            }],
        )
        .unwrap();
        assert!(t.contains("Student STCD") && t.contains("<circle"));
        let pts = [
            TradeOff {
                name: "Teacher".into(),
                colour: 0,
                x: 330_000.0,
                y: 2.2,
                front: true,
            },
            TradeOff {
                name: "STCD".into(),
                colour: 1,
                x: 9_000.0,
                y: 2.5,
                front: true,
            },
            TradeOff {
                name: "W/O KD".into(),
                colour: 2,
                x: 9_000.0,
                y: 2.6,
                front: false,
            },
        ];
        let panel = TradeOffPanel {
            title: "size",
            x_desc: "parameters",
            points: &pts,
            log_x: true,
        };
        let a = pareto_svg("front", "MAE (mph)", &[panel]).unwrap();
        let again = pareto_svg(
            "front",
            "MAE (mph)",
            &[TradeOffPanel {
                title: "size",
                x_desc: "parameters",
                points: &pts,
                log_x: true,
            }],
        )
        .unwrap();
        assert_eq!(a, again);
        assert!(a.contains("(log scale)") && a.contains("W/O KD") && a.contains("<polyline"));
    }

    /// The numbers an SVG prints (its `<text>` elements that parse as numbers).
    fn numeric_labels(svg: &str) -> Vec<f64> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let inner = t.split_once('>')?.1.split_once("</text>")?.0;
                inner.trim().parse::<f64>().ok()
            })
            .collect()
    }

    #[test]
    fn log_axes_label_few_enough_ticks_not_to_collide() {
        // Sizes from 9,000 to 330,000 (the paper's students and teacher): the axis spans
        // 1,000 to 430,000, where plotters puts a key point at every multiple of each decade.
        let pts: Vec<TradeOff> = [9_000.0, 30_000.0, 45_000.0, 70_000.0, 330_000.0]
            .iter()
            .enumerate()
            .map(|(i, &x)| TradeOff {
                name: format!("m{i}"),
                colour: i,
                x,
                y: 2.0 + i as f64 * 0.1,
                front: i == 0,
            })
            .collect();
        let panel = TradeOffPanel {
            title: "size",
            x_desc: "parameters",
            points: &pts,
            log_x: true,
        };
        let svg = pareto_svg("front", "MAE (mph)", &[panel]).unwrap();
        let big: Vec<f64> = numeric_labels(&svg)
            .into_iter()
            .filter(|&v| v >= 100.0)
            .collect();
        assert_eq!(big, [1_000.0, 10_000.0, 100_000.0], "{svg}");
        // The training loss of the curves chart spans more than a decade: a log y axis (the
        // MAE panel beside it is linear). Over more than two decades, labelled at its decades
        // only; over fewer, at 1, 2 and 5 times them.
        let loss = lines();
        let mae: Vec<Line> = loss
            .iter()
            .map(|l| Line {
                points: l.points.iter().map(|&(e, y)| (e, 3.0 + y)).collect(),
                ..l.clone()
            })
            .collect();
        let svg = curves_svg("curves", &loss, &mae).unwrap();
        assert!(svg.contains("loss (log scale)"));
        let labels = numeric_labels(&svg);
        for v in [0.01, 0.1] {
            assert!(labels.contains(&v), "{v} not in {labels:?}");
        }
        for v in [0.02, 0.03, 0.05, 0.2, 0.3, 0.5] {
            assert!(!labels.contains(&v), "{v} in {labels:?}");
        }
        // 1/12 to 1, times 1.25: an axis from 0.1 to 1.5.
        let loss: Vec<Line> = loss
            .iter()
            .map(|l| Line {
                points: l.points.iter().map(|&(e, y)| (e, 1.25 * y)).collect(),
                ..l.clone()
            })
            .collect();
        let labels = numeric_labels(&curves_svg("curves", &loss, &mae).unwrap());
        for v in [0.1, 0.2, 0.5] {
            assert!(labels.contains(&v), "{v} not in {labels:?}");
        }
        for v in [0.3, 0.4, 0.6, 0.7, 0.8, 0.9] {
            assert!(!labels.contains(&v), "{v} in {labels:?}");
        }
    }

    #[test]
    fn empty_and_degenerate_data_still_draw() {
        let empty = [Line {
            name: "none".into(),
            colour: 0,
            points: vec![(1.0, f64::NAN)],
        }];
        assert!(curves_svg("x", &empty, &empty).is_ok());
        assert!(tsne_svg("x", &[]).is_ok());
        assert_eq!(tick(&0.25), "0.25");
        assert_eq!(tick(&3.0), "3");
        assert_eq!(tick(&0.0125), "0.013");
    }
}
