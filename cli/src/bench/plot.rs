//! `bench --plot DIR`: the scenarios' results as SVG line charts
//! (plotters' SVG backend; text stays SVG text, so no font files are
//! needed). One chart per file; every implementation is its own series.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::shared::Error;

/// One line of a chart: its legend and its points, in x order.
#[derive(Debug, Clone)]
pub(super) struct Series {
    pub(super) name: String,
    pub(super) points: Vec<(f64, f64)>,
}

/// A chart a scenario produced.
#[derive(Debug, Clone)]
pub(super) struct Chart {
    /// File name without the extension.
    pub(super) file: String,
    pub(super) title: String,
    pub(super) x_label: String,
    pub(super) y_label: String,
    /// Powers of two and ten on the x axis (sizes, connection counts).
    pub(super) log_x: bool,
    pub(super) series: Vec<Series>,
}

/// Series colours, in order; the first is ours.
const COLOURS: [RGBColor; 8] = [
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
];

/// Writes every chart to `dir` (created if missing) as `<file>.svg`;
/// returns the paths written.
pub(super) fn write_all(dir: &Path, charts: &[Chart]) -> Result<Vec<PathBuf>, Error> {
    std::fs::create_dir_all(dir)
        .map_err(|err| Error::msg(format!("cannot create {}: {err}", dir.display())))?;
    charts
        .iter()
        .filter(|chart| chart.series.iter().any(|s| !s.points.is_empty()))
        .map(|chart| {
            let path = dir.join(format!("{}.svg", chart.file));
            draw(&path, chart)
                .map_err(|err| Error::msg(format!("cannot draw {}: {err}", path.display())))?;
            Ok(path)
        })
        .collect()
}

fn draw(path: &Path, chart: &Chart) -> Result<(), Box<dyn std::error::Error>> {
    let points = || chart.series.iter().flat_map(|s| s.points.iter().copied());
    let (x_min, x_max) = bounds(points().map(|p| p.0));
    let y_max = bounds(points().map(|p| p.1)).1 * 1.1;
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(&chart.title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70);
    if chart.log_x {
        let mut plot =
            builder.build_cartesian_2d((x_min..x_max.max(x_min * 2.0)).log_scale(), 0f64..y_max)?;
        plot.configure_mesh()
            .x_desc(chart.x_label.as_str())
            .y_desc(chart.y_label.as_str())
            .x_label_formatter(&|x| short(*x))
            .draw()?;
        lines(&mut plot, chart)?;
    } else {
        let mut plot = builder.build_cartesian_2d(x_min..x_max.max(x_min + 1.0), 0f64..y_max)?;
        plot.configure_mesh()
            .x_desc(chart.x_label.as_str())
            .y_desc(chart.y_label.as_str())
            .draw()?;
        lines(&mut plot, chart)?;
    }
    root.present()?;
    Ok(())
}

/// Draws the series with points and a legend, whatever the x axis.
fn lines<'a, X>(
    plot: &mut ChartContext<
        'a,
        SVGBackend<'a>,
        Cartesian2d<X, plotters::coord::types::RangedCoordf64>,
    >,
    chart: &Chart,
) -> Result<(), Box<dyn std::error::Error>>
where
    X: Ranged<ValueType = f64>,
{
    for (i, series) in chart.series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        plot.draw_series(LineSeries::new(
            series.points.iter().copied(),
            colour.stroke_width(2),
        ))?
        .label(series.name.as_str())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
        plot.draw_series(
            series
                .points
                .iter()
                .map(|&p| Circle::new(p, 3, colour.filled())),
        )?;
    }
    plot.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// 64, 1K, 64K, 1M: axis labels for sizes and counts.
fn short(x: f64) -> String {
    match x {
        x if x >= 1_048_576.0 => format!("{}M", (x / 1_048_576.0).round()),
        x if x >= 1024.0 => format!("{}K", (x / 1024.0).round()),
        x => format!("{}", x.round()),
    }
}
