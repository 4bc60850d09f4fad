//! The report's figures as PNGs: ROC curves, reliability diagrams and the
//! band confusion matrix, drawn with plotters into memory.
//!
//! The font is DejaVu Sans compiled into the binary, so a plot looks the
//! same on a server without fonts as on a laptop.

use std::collections::BTreeMap;
use std::sync::Once;

use plotters::prelude::*;

use super::compare::Figures;

const SIZE: (u32, u32) = (720, 540);
const FONT: &str = "sans-serif";
/// Colour-blind-safe (Okabe–Ito) colours, one per target.
const PALETTE: [RGBColor; 4] =
    [RGBColor(0, 114, 178), RGBColor(213, 94, 0), RGBColor(0, 158, 115), RGBColor(204, 121, 167)];

static FONTS: Once = Once::new();

fn register_fonts() {
    FONTS.call_once(|| {
        // Only fails on a malformed font; the crate's bytes are fixed.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

/// ROC curves of every target, one line each, with the AUC in the legend.
pub fn roc(title: &str, figures: &BTreeMap<&'static str, Figures>) -> Result<Vec<u8>, String> {
    render(|area| {
        let mut chart =
            unit_square(area, title, "1 − specificity (false positive rate)", "Sensitivity (true positive rate)")?;
        for (i, f) in figures.values().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let points: Vec<(f64, f64)> = f
                .roc
                .false_positive_rate
                .iter()
                .zip(&f.roc.true_positive_rate)
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|(&x, &y)| (x, y))
                .collect();
            let label = format!("{}: AUC {} ({} cases)", f.title, number(f.auc.auc), f.cases - f.cases_without_score);
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                .map_err(text)?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(3)));
        }
        legend(&mut chart)
    })
}

/// Reliability diagrams: mean predicted probability against the observed
/// share of positives, per bin; a calibrated model lies on the diagonal.
pub fn calibration(title: &str, figures: &BTreeMap<&'static str, Figures>) -> Result<Vec<u8>, String> {
    render(|area| {
        let mut chart = unit_square(area, title, "Mean predicted probability", "Observed share positive")?;
        for (i, f) in figures.values().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let points: Vec<(f64, f64)> = f.calibration.iter().map(|b| (b.mean_predicted, b.observed)).collect();
            chart.draw_series(LineSeries::new(points.clone(), colour.stroke_width(2))).map_err(text)?;
            chart
                .draw_series(points.into_iter().map(|p| Circle::new(p, 4, colour.filled())))
                .map_err(text)?
                .label(f.title)
                .legend(move |(x, y)| Circle::new((x + 9, y), 4, colour.filled()));
        }
        legend(&mut chart)
    })
}

/// Reference outcome (rows) against pipeline band (columns), counts in the
/// cells, shaded by each row's share.
pub fn confusion(
    title: &str,
    rows: &[String],
    columns: &[String],
    counts: &BTreeMap<String, BTreeMap<String, u64>>,
) -> Result<Vec<u8>, String> {
    render(|area| {
        let area = area.titled(title, (FONT, 22)).map_err(text)?;
        let (width, height) = area.dim_in_pixel();
        let (left, top, bottom) = (150i32, 70i32, 40i32);
        let cell_w = (width as i32 - left - 20) / columns.len().max(1) as i32;
        let cell_h = (height as i32 - top - bottom) / rows.len().max(1) as i32;
        let label = (FONT, 13).into_font();
        area.draw(&Text::new("pipeline band →", (left, 8), (FONT, 14).into_font())).map_err(text)?;
        area.draw(&Text::new("reference ↓", (8, top - 24), (FONT, 14).into_font())).map_err(text)?;
        for (j, column) in columns.iter().enumerate() {
            area.draw(&Text::new(column.clone(), (left + j as i32 * cell_w + 4, top - 24), label.clone()))
                .map_err(text)?;
        }
        for (i, row) in rows.iter().enumerate() {
            let y = top + i as i32 * cell_h;
            area.draw(&Text::new(row.clone(), (8, y + cell_h / 2 - 7), label.clone())).map_err(text)?;
            let cells = counts.get(row);
            let total: u64 = cells.map_or(0, |c| c.values().sum());
            for (j, column) in columns.iter().enumerate() {
                let n = cells.and_then(|c| c.get(column)).copied().unwrap_or(0);
                let share = if total > 0 { n as f64 / total as f64 } else { 0.0 };
                let x = left + j as i32 * cell_w;
                let shade = RGBColor(0, 114, 178).mix(0.1 + 0.9 * share);
                area.draw(&Rectangle::new([(x, y), (x + cell_w - 2, y + cell_h - 2)], shade.filled())).map_err(text)?;
                let ink = if share > 0.5 { WHITE } else { BLACK };
                let font = (FONT, 16).into_font().color(&ink);
                area.draw(&Text::new(n.to_string(), (x + cell_w / 2 - 10, y + cell_h / 2 - 8), font)).map_err(text)?;
            }
        }
        Ok(())
    })
}

/// Axes from 0 to 1 both ways, with the diagonal: where a useless ROC curve
/// and a perfectly calibrated model lie.
fn unit_square<'a, 'b: 'a>(
    area: &'a DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>,
    title: &str,
    x: &str,
    y: &str,
) -> Result<Chart<'a, 'b>, String> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)
        .map_err(text)?;
    chart
        .configure_mesh()
        .x_desc(x)
        .y_desc(y)
        .label_style((FONT, 14))
        .light_line_style(BLACK.mix(0.04))
        .draw()
        .map_err(text)?;
    chart.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3))).map_err(text)?;
    Ok(chart)
}

type Chart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

fn legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(text)
}

/// Draws on a white canvas and encodes it as PNG.
fn render(
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
) -> Result<Vec<u8>, String> {
    register_fonts();
    let mut pixels = vec![255u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let area = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
        area.fill(&WHITE).map_err(text)?;
        draw(&area)?;
        area.present().map_err(text)?;
    }
    let mut encoded = Vec::new();
    let mut encoder = png::Encoder::new(&mut encoded, SIZE.0, SIZE.1);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(text)?;
    writer.write_image_data(&pixels).map_err(text)?;
    writer.finish().map_err(text)?;
    Ok(encoded)
}

fn text(err: impl std::fmt::Display) -> String {
    err.to_string()
}

/// Three decimals, or "n/a" for an undefined figure.
pub fn number(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.3}")
    } else {
        "n/a".into()
    }
}
