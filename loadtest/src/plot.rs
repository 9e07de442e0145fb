//! The SVG report: latency percentiles over time, and the latency distribution.

use std::path::Path;

use anyhow::{anyhow, Result};
use hdrhistogram::Histogram;
use plotters::prelude::*;

use crate::stats::Percentiles;

/// A line of the time chart: its name, colour, and the percentile it shows.
type Series = (&'static str, RGBColor, fn(&Percentiles) -> f64);

/// Where the run's parts lie on the time axis, in seconds from the start.
#[derive(Clone, Copy, Debug)]
pub struct Phases {
    pub warmup_s: f64,
    pub measured_s: f64,
    /// The last second reported, plus one.
    pub end_s: u64,
}

/// Draws both charts into one SVG file. `timeline` holds only seconds in
/// which something arrived.
pub fn draw(
    path: &Path,
    title: &str,
    timeline: &[(u64, Percentiles)],
    phases: Phases,
    overall: &Histogram<u64>,
) -> Result<()> {
    let root = SVGBackend::new(path, (1000, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let (top, bottom) = root.split_vertically(450);

    // Percentiles per second.
    let max_ms = timeline.iter().map(|(_, p)| p.max).fold(1.0_f64, f64::max) * 1.1;
    let max_s = phases.end_s.max(1) as f64;
    let mut chart = ChartBuilder::on(&top)
        .caption(format!("{title}: latency over time"), ("sans-serif", 22))
        .margin(15)
        .margin_right(30)
        .x_label_area_size(40)
        .y_label_area_size(75)
        .build_cartesian_2d(0f64..max_s, 0f64..max_ms)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("seconds since start (grey: warm-up, then drain after sending stopped)")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    // Shade the seconds outside the measured window.
    let measured_end = (phases.warmup_s + phases.measured_s).min(max_s);
    let shade = RGBColor(225, 225, 225).mix(0.6).filled();
    let unmeasured = [(0.0, phases.warmup_s.min(max_s)), (measured_end, max_s)];
    chart
        .draw_series(
            unmeasured
                .iter()
                .filter(|(from, to)| to > from)
                .map(|&(from, to)| Rectangle::new([(from, 0.0), (to, max_ms)], shade)),
        )
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
                // Each second's figures sit at its middle.
                timeline.iter().map(|(s, p)| (*s as f64 + 0.5, pick(p))),
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
        .margin_right(30)
        .x_label_area_size(40)
        .y_label_area_size(75)
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
