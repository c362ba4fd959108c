//! Plots written by the trainer and sampler (plotters, PNG): the loss curve and, for 2-D data,
//! a scatter of samples coloured by label. Axis text needs a TrueType font: the first of a few
//! usual system paths (DejaVu Sans, Liberation Sans, Arial); without one the plots are drawn
//! without text.

use crate::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

#[cfg(not(target_arch = "wasm32"))]
const FONT_PATHS: [&str; 6] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Registers a system font once; false when none was found (always in a browser, which has
/// no font files to read: the page draws its own charts).
#[cfg(target_arch = "wasm32")]
fn font() -> bool {
    false
}

/// Registers a system font once; false when none was found.
#[cfg(not(target_arch = "wasm32"))]
fn font() -> bool {
    static FOUND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FOUND.get_or_init(|| {
        for p in FONT_PATHS {
            if let Ok(bytes) = std::fs::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

fn err<E: std::error::Error + Send + Sync + 'static>(path: &Path, e: E) -> Error {
    Error::io(path, "cannot draw the plot", e)
}

/// The RGB pixels of a plot of `size`, drawn in memory so that the PNG file is written whole
/// (a crash never leaves a partial plot).
fn pixels(size: (u32, u32)) -> Vec<u8> {
    vec![0; size.0 as usize * size.1 as usize * 3]
}

/// A white canvas on `pixels`; `path` names the plot in errors.
fn canvas<'a>(
    pixels: &'a mut [u8],
    size: (u32, u32),
    path: &Path,
) -> Result<DrawingArea<BitMapBackend<'a>, Shift>> {
    let root = BitMapBackend::with_buffer(pixels, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    Ok(root)
}

/// Encodes drawn `pixels` as PNG and writes them to `path` atomically.
fn save(path: &Path, pixels: Vec<u8>, size: (u32, u32)) -> Result<()> {
    let image = image::RgbImage::from_raw(size.0, size.1, pixels)
        .ok_or_else(|| Error::Shape(format!("a plot of {size:?} pixels has a short buffer")))?;
    let mut png = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| err(path, e))?;
    crate::files::write_atomic(path, png.get_ref())
}

/// A chart builder on `root` with a margin and, when a font is available, the title and room
/// for axis labels (`areas`: x, y label area sizes).
fn frame<'a, 'b>(
    root: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    title: &str,
    text: bool,
    areas: (u32, u32),
) -> ChartBuilder<'a, 'b, BitMapBackend<'b>> {
    let mut b = ChartBuilder::on(root);
    b.margin(12);
    if text {
        b.caption(title, ("sans-serif", 18))
            .x_label_area_size(areas.0)
            .y_label_area_size(areas.1);
    }
    b
}

/// Curves per step — each raw (light) and as its running mean over a window (dark) — on a
/// log-scale y; NaN values (steps where a curve is undefined) are left out.
pub fn loss_curve(
    path: &Path,
    title: &str,
    steps: &[u32],
    curves: &[(&str, Vec<f32>)],
) -> Result<()> {
    if steps.is_empty() {
        return Ok(());
    }
    let text = font();
    let window = (steps.len() / 50).max(1);
    let finite = || {
        curves
            .iter()
            .flat_map(|c| c.1.iter().copied())
            .filter(|v| v.is_finite())
    };
    let ymin = finite().filter(|v| *v > 0.0).fold(f32::INFINITY, f32::min);
    let ymax = finite().fold(0.0f32, f32::max);
    let (ymin, ymax) = if ymin.is_finite() && ymax > ymin {
        (ymin * 0.9, ymax * 1.1)
    } else {
        (1e-3, 1.0)
    };
    let xmax = *steps.last().unwrap() + 1;
    let size = (800, 480);
    let mut drawn = pixels(size);
    let root = canvas(&mut drawn, size, path)?;
    let mut b = frame(&root, title, text, (40, 60));
    let mut chart = b
        .build_cartesian_2d(0u32..xmax, (ymin..ymax).log_scale())
        .map_err(|e| err(path, e))?;
    if text {
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .draw()
            .map_err(|e| err(path, e))?;
    }
    let colours = [
        (RGBColor(170, 190, 230), RGBColor(20, 60, 160)),
        (RGBColor(240, 190, 160), RGBColor(190, 70, 20)),
        (RGBColor(170, 220, 170), RGBColor(30, 130, 40)),
    ];
    for (k, (name, values)) in curves.iter().enumerate() {
        let (light, dark) = colours[k % colours.len()];
        let points: Vec<(u32, f32)> = steps
            .iter()
            .copied()
            .zip(values.iter().copied())
            .filter(|p| p.1.is_finite() && p.1 > 0.0)
            .collect();
        let smooth: Vec<(u32, f32)> = (0..points.len())
            .map(|i| {
                let lo = i.saturating_sub(window - 1);
                let s: f32 = points[lo..=i].iter().map(|p| p.1).sum();
                (points[i].0, s / (i - lo + 1) as f32)
            })
            .collect();
        chart
            .draw_series(LineSeries::new(points, light))
            .map_err(|e| err(path, e))?;
        let series = chart
            .draw_series(LineSeries::new(smooth, dark.stroke_width(2)))
            .map_err(|e| err(path, e))?;
        if text {
            series
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], dark));
        }
    }
    if text && curves.len() > 1 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(path, e))?;
    }
    drop(chart);
    root.present().map_err(|e| err(path, e))?;
    drop(root);
    save(path, drawn, size)
}

/// A scatter of 2-D points coloured by label, with optional marked centres.
pub fn scatter(
    path: &Path,
    title: &str,
    points: &[[f32; 2]],
    labels: &[u32],
    centres: &[[f64; 2]],
) -> Result<()> {
    let text = font();
    let size = (560, 560);
    let mut drawn = pixels(size);
    let root = canvas(&mut drawn, size, path)?;
    let mut b = frame(&root, title, text, (30, 40));
    let mut chart = b
        .build_cartesian_2d(-1.5f32..1.5f32, -1.5f32..1.5f32)
        .map_err(|e| err(path, e))?;
    if text {
        chart.configure_mesh().draw().map_err(|e| err(path, e))?;
    }
    chart
        .draw_series(
            points
                .iter()
                .zip(labels)
                .map(|(p, &l)| Circle::new((p[0], p[1]), 2, Palette99::pick(l as usize).filled())),
        )
        .map_err(|e| err(path, e))?;
    chart
        .draw_series(centres.iter().enumerate().map(|(k, c)| {
            Cross::new(
                (c[0] as f32, c[1] as f32),
                6,
                Palette99::pick(k).stroke_width(2),
            )
        }))
        .map_err(|e| err(path, e))?;
    drop(chart);
    root.present().map_err(|e| err(path, e))?;
    drop(root);
    save(path, drawn, size)
}

/// One named series of a [`lines`] or [`bars`] plot.
pub struct Series {
    pub name: String,
    /// (x, y) points for lines; for bars, (mean, spread) per group.
    pub points: Vec<(f64, f64)>,
}

fn colour(k: usize) -> RGBColor {
    const C: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    C[k % C.len()]
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        (0.0, 1.0)
    } else if hi - lo < 1e-12 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    }
}

/// Ticks of a log axis at 1, 2 and 5 times the powers of ten within [lo, hi]: plotters' own
/// labels only the powers, which leaves a one-decade axis (20 … 200 images) with one label.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut v = Vec::new();
    let mut p = 10f64.powf(lo.max(1e-300).log10().floor());
    while p <= hi && v.len() < 64 {
        v.extend(
            [p, 2.0 * p, 5.0 * p]
                .into_iter()
                .filter(|x| (lo..=hi).contains(x)),
        );
        p *= 10.0;
    }
    v
}

/// An axis label: whole numbers without decimals, others to at most three decimals (below
/// 0.001 in scientific notation).
fn tick(x: f64) -> String {
    if x == x.round() && x.abs() < 1e9 {
        format!("{x:.0}")
    } else if x.abs() >= 1e-3 {
        let s = format!("{x:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{x:.1e}")
    }
}

/// Lines with points, one per series, with a legend; `log_x` draws x on a log scale (x > 0).
pub fn lines(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    log_x: bool,
    series: &[Series],
) -> Result<()> {
    let text = font();
    let all = || series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) = if log_x {
        let (a, b) = range(all().map(|p| p.0.max(1e-12).ln()));
        (a.exp(), b.exp())
    } else {
        range(all().map(|p| p.0))
    };
    let (y0, y1) = range(all().map(|p| p.1));
    let size = (800, 500);
    let mut drawn = pixels(size);
    let root = canvas(&mut drawn, size, path)?;
    let mut b = frame(&root, title, text, (40, 60));
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            if text {
                // Counts read better without a trailing ".0".
                chart
                    .configure_mesh()
                    .x_desc(x_desc)
                    .y_desc(y_desc)
                    .x_label_formatter(&|x: &f64| tick(*x))
                    .draw()
                    .map_err(|e| err(path, e))?;
            }
            for (k, s) in series.iter().enumerate() {
                let c = colour(k);
                let pts: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .copied()
                    .filter(|p| p.1.is_finite())
                    .collect();
                let line = chart
                    .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                    .map_err(|e| err(path, e))?;
                if text {
                    line.label(s.name.as_str()).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                    });
                }
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
                    .map_err(|e| err(path, e))?;
            }
            if text {
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()
                    .map_err(|e| err(path, e))?;
            }
        }};
    }
    if log_x {
        draw!(b
            .build_cartesian_2d(
                (x0..x1).log_scale().with_key_points(log_ticks(x0, x1)),
                y0..y1
            )
            .map_err(|e| err(path, e))?);
    } else {
        draw!(b
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(path, e))?);
    }
    root.present().map_err(|e| err(path, e))?;
    drop(root);
    save(path, drawn, size)
}

/// Grouped bars: one group per entry of `groups`, one bar per series (its points are
/// (mean, spread) per group), with ±spread whiskers and a legend.
pub fn bars(
    path: &Path,
    title: &str,
    y_desc: &str,
    groups: &[String],
    series: &[Series],
) -> Result<()> {
    let text = font();
    let top = series
        .iter()
        .flat_map(|s| s.points.iter())
        .map(|p| p.0 + p.1.max(0.0))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let top = if top > 0.0 { top * 1.15 } else { 1.0 };
    let size = (900, 500);
    let mut drawn = pixels(size);
    let root = canvas(&mut drawn, size, path)?;
    let mut b = frame(&root, title, text, (40, 60));
    let n = groups.len() as f64;
    let mut chart = b
        .build_cartesian_2d(0.0..n, 0.0..top)
        .map_err(|e| err(path, e))?;
    if text {
        let names = groups.to_vec();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(groups.len() * 2 + 1)
            .x_label_formatter(&move |x| {
                let i = x.floor() as usize;
                if (x - x.floor() - 0.5).abs() < 0.01 && i < names.len() {
                    names[i].clone()
                } else {
                    String::new()
                }
            })
            .y_desc(y_desc)
            .draw()
            .map_err(|e| err(path, e))?;
    }
    let w = 0.8 / series.len().max(1) as f64;
    for (k, s) in series.iter().enumerate() {
        let c = colour(k);
        let rects: Vec<_> = s
            .points
            .iter()
            .enumerate()
            .filter(|(_, p)| p.0.is_finite())
            .map(|(g, &(m, _))| {
                let x = g as f64 + 0.1 + k as f64 * w;
                Rectangle::new([(x, 0.0), (x + w * 0.9, m)], c.filled())
            })
            .collect();
        let drawn = chart.draw_series(rects).map_err(|e| err(path, e))?;
        if text {
            drawn
                .label(s.name.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
        }
        chart
            .draw_series(
                s.points
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.0.is_finite() && p.1 > 0.0)
                    .map(|(g, &(m, sd))| {
                        let x = g as f64 + 0.1 + (k as f64 + 0.45) * w;
                        PathElement::new(vec![(x, m - sd), (x, m + sd)], BLACK.stroke_width(1))
                    }),
            )
            .map_err(|e| err(path, e))?;
    }
    if text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(path, e))?;
    }
    drop(chart);
    root.present().map_err(|e| err(path, e))?;
    drop(root);
    save(path, drawn, size)
}

/// A sample grid (from [`super::images::grid`], one row per label) with each row's text on
/// its left — e.g. the label's name and training images — written to `path`. Without a
/// system font the rows are drawn without their text.
pub fn labelled_grid(path: &Path, grid: &image::RgbImage, row_text: &[String]) -> Result<()> {
    let rows = row_text.len().max(1) as u32;
    let row_h = grid.height().saturating_sub(1) / rows;
    let text = font();
    let margin = if text { 230 } else { 0 };
    let size = (margin + grid.width(), grid.height());
    let mut drawn = pixels(size);
    for (x, y, p) in grid.enumerate_pixels() {
        let at = 3 * (y as usize * size.0 as usize + (margin + x) as usize);
        drawn[at..at + 3].copy_from_slice(&p.0);
    }
    if text {
        let root = BitMapBackend::with_buffer(&mut drawn, size).into_drawing_area();
        root.draw(&Rectangle::new(
            [(0, 0), (margin as i32, size.1 as i32)],
            WHITE.filled(),
        ))
        .map_err(|e| err(path, e))?;
        let style = ("sans-serif", 14).into_font().color(&BLACK);
        for (r, t) in row_text.iter().enumerate() {
            let y = (r as u32 * row_h + row_h / 2) as i32 - 7;
            root.draw(&Text::new(t.clone(), (6, y), style.clone()))
                .map_err(|e| err(path, e))?;
        }
        root.present().map_err(|e| err(path, e))?;
    }
    save(path, drawn, size)
}

#[cfg(test)]
mod tests {
    use super::{labelled_grid, log_ticks, tick};

    /// The grid's pixels sit right of the text margin, unchanged; the margin is white where
    /// no text is drawn.
    #[test]
    fn a_labelled_grid_keeps_the_grid_and_adds_a_margin() {
        let grid = image::RgbImage::from_fn(9, 17, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let dir = std::env::temp_dir().join(format!("imba-grid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("g.png");
        labelled_grid(
            &path,
            &grid,
            &["a (3 images)".into(), "b (1 images)".into()],
        )
        .unwrap();
        let out = image::open(&path).unwrap().to_rgb8();
        let margin = out.width() - grid.width();
        assert_eq!(out.height(), grid.height());
        for (x, y, p) in grid.enumerate_pixels() {
            assert_eq!(out.get_pixel(margin + x, y), p, "({x}, {y})");
        }
        if margin > 0 {
            assert_eq!(out.get_pixel(margin - 1, 0).0, [255, 255, 255]);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn log_ticks_cover_one_decade_and_labels_drop_zeros() {
        assert_eq!(log_ticks(19.0, 210.0), vec![20.0, 50.0, 100.0, 200.0]);
        assert_eq!(log_ticks(0.3, 3.0), vec![0.5, 1.0, 2.0]);
        assert_eq!(tick(100.0), "100");
        assert_eq!(tick(0.25), "0.25");
        assert_eq!(tick(0.0001), "1.0e-4");
    }
}
