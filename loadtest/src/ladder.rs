//! `parley-load ladder OUT.svg RUN.json...`: delivered against offered rate
//! for a ladder of fan-out runs (as `loadtest/compare.sh` makes them), one
//! chart per room size, one line per server, beside the line where
//! everything offered is delivered.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use plotters::prelude::*;
use serde::Deserialize;

/// What the ladder needs of one run's `--json` report.
#[derive(Debug, Deserialize)]
pub struct Run {
    pub protocol: String,
    pub room_size: usize,
    pub rate: f64,
    pub sent: u64,
    pub delivered: u64,
    pub expected_deliveries: u64,
    pub duration_s: f64,
}

impl Run {
    /// Messages per second whose every delivery arrived: the offered rate
    /// scaled by the share of expected deliveries that were made.
    pub fn delivered_msgs_per_s(&self) -> f64 {
        if self.expected_deliveries == 0 {
            return 0.0;
        }
        self.sent as f64 / self.duration_s * (self.delivered as f64 / self.expected_deliveries as f64)
    }

    fn server(&self) -> &'static str {
        match self.protocol.as_str() {
            "irc" => "ngircd",
            _ => "Parley",
        }
    }
}

pub fn load(paths: &[PathBuf]) -> Result<Vec<Run>> {
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_slice(&text)
                .with_context(|| format!("reading {} as a parley-load report", p.display()))
        })
        .collect()
}

/// One chart's lines: each server's (offered, delivered) points.
type Servers<'a> = BTreeMap<&'a str, Vec<(f64, f64)>>;

/// Draws the ladder into `out`.
pub fn draw(out: &Path, runs: &[Run]) -> Result<()> {
    if runs.is_empty() {
        bail!("no runs to draw");
    }
    // room size -> server -> (offered, delivered), by offered rate.
    let mut charts: BTreeMap<usize, Servers> = BTreeMap::new();
    for run in runs {
        charts
            .entry(run.room_size)
            .or_default()
            .entry(run.server())
            .or_default()
            .push((run.rate, run.delivered_msgs_per_s()));
    }
    let height = 450 * charts.len() as u32;
    let root = SVGBackend::new(out, (1000, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let areas = root.split_evenly((charts.len(), 1));
    for (area, (room_size, servers)) in areas.iter().zip(&charts) {
        let max_x = servers.values().flatten().map(|p| p.0).fold(1.0_f64, f64::max) * 1.05;
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("fan-out in rooms of {room_size}: delivered against offered"),
                ("sans-serif", 22),
            )
            .margin(15)
            .margin_right(30)
            .x_label_area_size(40)
            .y_label_area_size(75)
            .build_cartesian_2d(0f64..max_x, 0f64..max_x)
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc("offered (messages/s)")
            .y_desc("delivered to every member (messages/s)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .draw_series(LineSeries::new(
                [(0.0, 0.0), (max_x, max_x)],
                RGBColor(160, 160, 160).stroke_width(1),
            ))
            .map_err(|e| anyhow!("{e}"))?
            .label("everything offered")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RGBColor(160, 160, 160)));
        for (server, points) in servers {
            let mut points = points.clone();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let color = if *server == "Parley" { BLUE } else { RED };
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
                .map_err(|e| anyhow!("{e}"))?
                .label(*server)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart
                .draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .map_err(|e| anyhow!("{e}"))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(protocol: &str, rate: f64, delivered: u64) -> Run {
        Run {
            protocol: protocol.into(),
            room_size: 10,
            rate,
            sent: (rate * 5.0) as u64,
            delivered,
            expected_deliveries: (rate * 5.0) as u64 * 10,
            duration_s: 5.0,
        }
    }

    #[test]
    fn delivered_messages_are_the_offered_rate_scaled_by_what_arrived() {
        assert_eq!(run("parley", 1000.0, 50_000).delivered_msgs_per_s(), 1000.0);
        assert_eq!(run("irc", 1000.0, 25_000).delivered_msgs_per_s(), 500.0);
    }

    #[test]
    fn a_ladder_is_drawn() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ladder.svg");
        let runs = vec![
            run("parley", 1000.0, 50_000),
            run("parley", 2000.0, 80_000),
            run("irc", 1000.0, 45_000),
        ];
        draw(&out, &runs).unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.contains("ngircd") && svg.contains("Parley") && svg.contains("rooms of 10"));
    }
}
