//! Plots written by the trainer and sampler (plotters, PNG): the loss curve and, for 2-D data,
//! a scatter of samples coloured by label. Axis text needs a TrueType font: the first of a few
//! usual system paths (DejaVu Sans, Liberation Sans, Arial); without one the plots are drawn
//! without text.

use crate::{Error, Result};
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

const FONT_PATHS: [&str; 6] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Registers a system font once; false when none was found.
fn font() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
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

fn err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.display().to_string(),
        problem: format!("cannot draw the plot ({e})"),
    }
}

/// The loss per step (light) and its running mean over `window` steps (dark), log-scale y.
pub fn loss_curve(path: &Path, title: &str, steps: &[u32], loss: &[f32]) -> Result<()> {
    if steps.is_empty() {
        return Ok(());
    }
    let text = font();
    let window = (steps.len() / 50).max(1);
    let smooth: Vec<(u32, f32)> = (0..steps.len())
        .map(|i| {
            let lo = i.saturating_sub(window - 1);
            let s: f32 = loss[lo..=i].iter().sum();
            (steps[i], s / (i - lo + 1) as f32)
        })
        .collect();
    let ymin = loss
        .iter()
        .copied()
        .filter(|v| *v > 0.0)
        .fold(f32::INFINITY, f32::min);
    let ymax = loss.iter().copied().fold(0.0f32, f32::max);
    let (ymin, ymax) = if ymin.is_finite() && ymax > ymin {
        (ymin * 0.9, ymax * 1.1)
    } else {
        (1e-3, 1.0)
    };
    let xmax = *steps.last().unwrap() + 1;
    let root = BitMapBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let mut b = ChartBuilder::on(&root);
    b.margin(12);
    if text {
        b.caption(title, ("sans-serif", 20))
            .x_label_area_size(40)
            .y_label_area_size(60);
    }
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
    chart
        .draw_series(LineSeries::new(
            steps.iter().copied().zip(loss.iter().copied()),
            RGBColor(170, 190, 230),
        ))
        .map_err(|e| err(path, e))?;
    chart
        .draw_series(LineSeries::new(
            smooth,
            RGBColor(20, 60, 160).stroke_width(2),
        ))
        .map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))
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
    let root = BitMapBackend::new(path, (560, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let mut b = ChartBuilder::on(&root);
    b.margin(12);
    if text {
        b.caption(title, ("sans-serif", 18))
            .x_label_area_size(30)
            .y_label_area_size(40);
    }
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
    root.present().map_err(|e| err(path, e))
}
