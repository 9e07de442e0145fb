//! The SVG report: latency percentiles over time, and the latency distribution.

use std::path::Path;

use anyhow::{anyhow, Result};
use hdrhistogram::Histogram;
use plotters::prelude::*;

use crate::stats::Percentiles;

/// A line of the time chart: its name, colour, and the percentile it shows.
type Series = (&'static str, RGBColor, fn(&Percentiles) -> f64);

/// Draws both charts into one SVG file.
pub fn draw(
    path: &Path,
    title: &str,
    timeline: &[(u64, Percentiles)],
    overall: &Histogram<u64>,
) -> Result<()> {
    let root = SVGBackend::new(path, (1000, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let (top, bottom) = root.split_vertically(450);

    // Percentiles per second.
    let max_ms = timeline.iter().map(|(_, p)| p.max).fold(1.0_f64, f64::max) * 1.1;
    let max_s = timeline.last().map_or(1, |(s, _)| *s + 1);
    let mut chart = ChartBuilder::on(&top)
        .caption(format!("{title}: latency over time"), ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0u64..max_s, 0f64..max_ms)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("seconds since start (warm-up included)")
        .y_desc("latency (ms)")
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    let series: [Series; 4] = [
        ("p50", BLUE, |p| p.p50),
        ("p99", RED, |p| p.p99),
        ("p99.9", MAGENTA, |p| p.p999),
        ("max", BLACK, |p| p.max),
    ];
    for (name, color, pick) in series {
        chart
            .draw_series(LineSeries::new(
                timeline.iter().map(|(s, p)| (*s, pick(p))),
                color.stroke_width(2),
            ))
            .map_err(|e| anyhow!("{e}"))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;

    // The distribution: latency at each percentile, on a log scale of 1/(1-p).
    let points: Vec<(f64, f64)> = [
        0.0, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99999,
    ]
    .iter()
    .filter(|_| !overall.is_empty())
    .map(|q| {
        let x = 1.0 / (1.0 - q);
        (x, overall.value_at_quantile(*q) as f64 / 1000.0)
    })
    .collect();
    let y_max = points.iter().map(|p| p.1).fold(1.0_f64, f64::max) * 1.1;
    let mut dist = ChartBuilder::on(&bottom)
        .caption(
            format!("{title}: latency by percentile (measured window)"),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((1f64..100_000f64).log_scale(), 0f64..y_max)
        .map_err(|e| anyhow!("{e}"))?;
    dist.configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| format!("{:.3}%", 100.0 * (1.0 - 1.0 / x)))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    dist.draw_series(LineSeries::new(points.iter().copied(), RED.stroke_width(2)))
        .map_err(|e| anyhow!("{e}"))?;
    dist.draw_series(points.iter().map(|p| Circle::new(*p, 3, RED.filled())))
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
