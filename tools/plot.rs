//! `polygrad bench --plot` (time against n) and `polygrad error --plot` (error against the
//! largest logit): lines on log-log axes, into SVG or PNG.

use std::path::Path;

use plotters::prelude::*;

/// One line of the plot: its label, its (x, y) points, its colour (an index into plotters'
/// palette; lines may share one) and whether it is dashed.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub color: usize,
    pub dashed: bool,
}

/// What the axes show.
pub struct Axes<'a> {
    pub x: &'a str,
    pub y: &'a str,
}

/// TrueType fonts tried, in order, for the plot's text (plotters draws text with ab_glyph, which
/// needs a font file; Debian's fonts-dejavu-core provides the first).
const FONT_FILES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Registers the first font found as "sans-serif" (once per process).
fn register_font() -> Result<(), String> {
    static REGISTERED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let (path, bytes) = FONT_FILES
                .iter()
                .find_map(|p| std::fs::read(p).ok().map(|b| (p, b)))
                .ok_or_else(|| {
                    format!(
                        "no TrueType font for the plot's text; looked for {}",
                        FONT_FILES.join(", ")
                    )
                })?;
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes.leak())
                .map_err(|_| format!("{path} is not a font plotters can read"))
        })
        .clone()
}

/// Whether a plot can be drawn into `path`, before any measurement: its extension names a
/// format (returns true for SVG, false for PNG) and a font for its text is found.
pub fn check(path: &Path) -> Result<bool, String> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let svg = match ext.as_deref() {
        Some("svg") => true,
        Some("png") => false,
        _ => return Err("the plot's file name must end in .svg or .png".into()),
    };
    register_font()?;
    Ok(svg)
}

/// Runs `$draw` on a drawing area of `$size` over a temporary file beside `$path` (SVG where
/// `$svg`, else PNG: the bitmap encoder picks the format by extension, so the temporary name
/// keeps it) and renames it into place; on failure removes it. A macro because the two
/// backends are different types.
macro_rules! render {
    ($path:expr, $svg:expr, $size:expr, |$area:ident| $draw:expr) => {{
        let tmp = $path.with_extension(if $svg { "partial.svg" } else { "partial.png" });
        let drawn = if $svg {
            let $area = SVGBackend::new(&tmp, $size).into_drawing_area();
            $draw
        } else {
            let $area = BitMapBackend::new(&tmp, $size).into_drawing_area();
            $draw
        };
        match drawn.and_then(|()| std::fs::rename(&tmp, $path).map_err(|e| e.to_string())) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }};
}

/// Draws `series` into `path` (SVG or PNG, by extension), replacing it whole: the plot is drawn
/// to a temporary file beside it and renamed into place.
pub fn plot(path: &Path, (title, axes): (&str, Axes), series: &[Series]) -> Result<(), String> {
    let svg = check(path)?;
    let points = || series.iter().flat_map(|s| s.points.iter());
    if points().any(|&(n, ms)| n <= 0.0 || ms <= 0.0 || !ms.is_finite()) || points().count() == 0 {
        return Err("nothing positive to plot on log axes".into());
    }
    render!(path, svg, (900, 600), |area| draw(
        area,
        (title, &axes),
        series
    ))
}

fn draw<B: DrawingBackend>(
    area: DrawingArea<B, plotters::coord::Shift>,
    (title, axes): (&str, &Axes),
    series: &[Series],
) -> Result<(), String>
where
    B::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<B::ErrorType>| e.to_string();
    area.fill(&WHITE).map_err(err)?;
    let all = || series.iter().flat_map(|s| s.points.iter());
    let (n_min, n_max) = all().fold((f64::MAX, 0f64), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    let (t_min, t_max) = all().fold((f64::MAX, 0f64), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    let mut chart = ChartBuilder::on(&area)
        .caption(title, ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (n_min / 1.5..n_max * 1.5).log_scale(),
            (t_min / 2.0..t_max * 2.0).log_scale(),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(axes.x)
        .y_desc(axes.y)
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for s in series {
        let color = Palette99::pick(s.color).to_rgba();
        let style = color.stroke_width(2);
        let drawn = if s.dashed {
            let line = DashedLineSeries::new(s.points.clone(), 8, 5, style);
            chart.draw_series(line)
        } else {
            chart.draw_series(LineSeries::new(s.points.clone(), style))
        };
        let dashed = s.dashed;
        drawn
            .map_err(err)?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                let end = if dashed { x + 8 } else { x + 20 };
                PathElement::new([(x, y), (end, y)], style)
            });
        chart
            .draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    area.present().map_err(err)
}

/// A tick label: 1e-5 for small values, 0.25 or 1500 otherwise (no float noise).
fn tick(v: &f64) -> String {
    if *v != 0.0 && v.abs() < 1e-2 {
        return format!("{v:.0e}");
    }
    let fixed = format!("{v:.3}");
    fixed
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_string()
}

/// One training run's curves: its label and (step, loss, accuracy) per logged step.
pub struct Curves {
    pub label: String,
    pub points: Vec<(f64, f64, f64)>,
}

/// Loss and accuracy (0 to 1) against the step, side by side, one line per run,
/// into SVG or PNG, replacing `path` whole.
pub fn plot_training(path: &Path, title: &str, runs: &[Curves]) -> Result<(), String> {
    let svg = check(path)?;
    let all = || runs.iter().flat_map(|r| r.points.iter());
    if all().count() == 0 || all().any(|p| !(p.1 > 0.0 && p.1.is_finite())) {
        return Err("no finite positive losses to plot".into());
    }
    render!(path, svg, (1200, 500), |area| draw_training(
        area, title, runs
    ))
}

fn draw_training<B: DrawingBackend>(
    area: DrawingArea<B, plotters::coord::Shift>,
    title: &str,
    runs: &[Curves],
) -> Result<(), String>
where
    B::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<B::ErrorType>| e.to_string();
    area.fill(&WHITE).map_err(err)?;
    let area = area.titled(title, ("sans-serif", 22)).map_err(err)?;
    let (left, right) = area.split_horizontally(600);
    let all = || runs.iter().flat_map(|r| r.points.iter());
    let last_step = all().fold(1f64, |m, p| m.max(p.0));
    let hi = all().fold(0f64, |hi, p| hi.max(p.1));
    let mut loss = ChartBuilder::on(&left)
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..last_step, 0f64..hi * 1.05)
        .map_err(err)?;
    loss.configure_mesh()
        .x_desc("step")
        .y_desc("loss (cross-entropy)")
        .y_label_formatter(&tick)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    let mut acc = ChartBuilder::on(&right)
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..last_step, 0f64..1f64)
        .map_err(err)?;
    acc.configure_mesh()
        .x_desc("step")
        .y_desc("accuracy")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for (i, run) in runs.iter().enumerate() {
        let style = Palette99::pick(i).to_rgba().stroke_width(2);
        let line = LineSeries::new(run.points.iter().map(|p| (p.0, p.1)), style);
        loss.draw_series(line)
            .map_err(err)?
            .label(run.label.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        acc.draw_series(LineSeries::new(
            run.points.iter().map(|p| (p.0, p.2)),
            style,
        ))
        .map_err(err)?;
    }
    loss.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    area.present().map_err(err)
}
