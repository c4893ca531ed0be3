//! The grid's two pictures, drawn with `plotters` into PNG files:
//!
//! * `grid-latency.png`: for each operation, the distribution of its
//!   latency per file size (the fraction of operations done within a time,
//!   on a logarithmic time axis), cold and warm operations alike;
//! * `grid-members.png`: members seen alive over the run (the mean over
//!   running nodes, and the lowest and highest any node saw) against the
//!   members actually up, with churn steps and phases marked.
//!
//! Text needs a TrueType font: the first of a few usual system paths, or
//! the file named by `GRAPEVINE_FONT`.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::grid::proto::OpRecord;
use crate::grid::report::{size_label, Report};

/// What the nodes saw at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Seconds since the run started.
    pub t: f64,
    /// Nodes running.
    pub running: u64,
    /// Fewest other members alive any running node saw.
    pub alive_min: u64,
    /// Most.
    pub alive_max: u64,
    /// Mean over running nodes.
    pub alive_mean: f64,
}

const FONTS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Register a system font as "sans-serif" (once).
///
/// # Errors
/// No font found or readable.
pub fn font() -> Result<()> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let candidates: Vec<String> = std::env::var("GRAPEVINE_FONT")
            .into_iter()
            .chain(FONTS.iter().map(|s| s.to_string()))
            .collect();
        for p in &candidates {
            if let Ok(bytes) = std::fs::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(format!(
            "no TrueType font for the pictures: tried {candidates:?}; set GRAPEVINE_FONT"
        ))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn subtitle(r: &Report) -> String {
    format!(
        "{} nodes, {} processes, {} clients, churn {}%/step",
        r.nodes, r.procs, r.clients, r.churn_pct
    )
}

/// Latency distribution per operation and size.
///
/// # Errors
/// No font; the file cannot be written; no operations.
pub fn latency(path: &Path, ops: &[OpRecord], r: &Report) -> Result<()> {
    font()?;
    let done: Vec<&OpRecord> = ops.iter().filter(|o| o.ok && !o.readback).collect();
    if done.is_empty() {
        bail!("no successful operations to draw");
    }
    let lo = done.iter().map(|o| o.ms).fold(f64::MAX, f64::min).max(0.1);
    let hi = done.iter().map(|o| o.ms).fold(0.0, f64::max).max(lo * 10.0);
    let mut sizes: Vec<u64> = done.iter().map(|o| o.size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let root = BitMapBackend::new(path, (1500, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, body) = root.split_vertically(50);
    top.titled(
        &format!("Operation latency, {}", subtitle(r)),
        ("sans-serif", 22),
    )?;
    let panels = body.split_evenly((1, 3));
    for (panel, op) in panels.iter().zip(["put", "get", "check"]) {
        let mut chart = ChartBuilder::on(panel)
            .caption(op, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((lo..hi).log_scale(), 0.0..1.0)?;
        chart
            .configure_mesh()
            .x_desc("latency, ms (log scale)")
            .y_desc("fraction of operations done")
            .label_style(("sans-serif", 13))
            .draw()?;
        for (i, size) in sizes.iter().enumerate() {
            let mut v: Vec<f64> = done
                .iter()
                .filter(|o| o.op == op && o.size == *size)
                .map(|o| o.ms.max(lo))
                .collect();
            if v.is_empty() {
                continue;
            }
            v.sort_by(f64::total_cmp);
            let n = v.len() as f64;
            let colour = COLOURS[i % COLOURS.len()];
            let pts: Vec<(f64, f64)> = v
                .iter()
                .enumerate()
                .map(|(k, ms)| (*ms, (k + 1) as f64 / n))
                .collect();
            chart
                .draw_series(LineSeries::new(pts, colour.stroke_width(2)))?
                .label(format!("{} (n={})", size_label(*size), v.len()))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .label_font(("sans-serif", 13))
            .draw()?;
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Members seen alive over the run, through the churn.
///
/// # Errors
/// No font; the file cannot be written; no samples.
pub fn members(path: &Path, samples: &[Sample], marks: &[(f64, String)], r: &Report) -> Result<()> {
    font()?;
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        bail!("no samples to draw");
    };
    let ymax = samples
        .iter()
        .map(|s| s.alive_max.max(s.running))
        .max()
        .unwrap_or(1) as f64
        * 1.05;
    let root = BitMapBackend::new(path, (1500, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Members seen alive, {}", subtitle(r)),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(first.t..last.t.max(first.t + 1.0), 0.0..ymax)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the first node started")
        .y_desc("other members seen alive")
        .label_style(("sans-serif", 13))
        .draw()?;
    let band: Vec<(f64, f64)> = samples
        .iter()
        .map(|s| (s.t, s.alive_max as f64))
        .chain(samples.iter().rev().map(|s| (s.t, s.alive_min as f64)))
        .collect();
    chart
        .draw_series(std::iter::once(Polygon::new(band, COLOURS[0].mix(0.25))))?
        .label("lowest to highest any node saw")
        .legend(|(x, y)| {
            Rectangle::new([(x, y - 5), (x + 18, y + 5)], COLOURS[0].mix(0.25).filled())
        });
    chart
        .draw_series(LineSeries::new(
            samples.iter().map(|s| (s.t, s.alive_mean)),
            COLOURS[0].stroke_width(2),
        ))?
        .label("mean over running nodes")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], COLOURS[0].stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            samples
                .iter()
                .map(|s| (s.t, s.running.saturating_sub(1) as f64)),
            BLACK.stroke_width(1),
        ))?
        .label("members up (truth)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.stroke_width(1)));
    for (i, (t, what)) in marks.iter().enumerate() {
        let colour = if what.starts_with('-') {
            COLOURS[3]
        } else if what.starts_with('+') {
            COLOURS[2]
        } else {
            RGBColor(120, 120, 120)
        };
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(*t, 0.0), (*t, ymax)],
            colour.mix(0.6).stroke_width(1),
        )))?;
        let y = ymax * (0.08 + 0.05 * (i % 4) as f64);
        chart.draw_series(std::iter::once(Text::new(
            what.clone(),
            (*t, y),
            ("sans-serif", 13).into_font().color(&colour),
        )))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .label_font(("sans-serif", 13))
        .draw()?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::report::{build, Measured};

    fn png_size(path: &Path) -> (u32, u32) {
        let b = std::fs::read(path).unwrap();
        assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
        let be = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
        (be(16), be(20))
    }

    /// Both pictures are drawn from records like a run's. Without a font
    /// this cannot run: it fails under CI=true, and says so elsewhere.
    #[test]
    fn both_pictures_are_drawn() {
        if let Err(e) = font() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{e}");
            eprintln!("skipped: {e}");
            return;
        }
        let ops: Vec<OpRecord> = (0..300)
            .map(|i| OpRecord {
                client: 0,
                op: ["put", "get", "check"][i % 3].into(),
                size: [4096, 1 << 20][i % 2],
                file: i as u64,
                start_ms: 0,
                lag_ms: 0.0,
                ms: 1.0 + (i % 50) as f64,
                class: "cold".into(),
                handshakes: 1,
                listings: 0,
                datagram_listings: 0,
                servers: 10,
                ok: true,
                beyond_repair: false,
                readback: false,
                shares_found: None,
                error: None,
            })
            .collect();
        let r = build(Measured::default(), &ops);
        let dir = tempfile::tempdir().unwrap();
        let lat = dir.path().join("lat.png");
        latency(&lat, &ops, &r).unwrap();
        assert_eq!(png_size(&lat), (1500, 560));
        let samples: Vec<Sample> = (0..100)
            .map(|t| Sample {
                t: t as f64,
                running: if (40..60).contains(&t) { 90 } else { 100 },
                alive_min: 85,
                alive_max: 99,
                alive_mean: 95.0,
            })
            .collect();
        let mem = dir.path().join("mem.png");
        members(
            &mem,
            &samples,
            &[(40.0, "-10".into()), (60.0, "+10".into())],
            &r,
        )
        .unwrap();
        assert_eq!(png_size(&mem), (1500, 600));
        assert!(members(&mem, &[], &[], &r).is_err(), "nothing to draw");
    }
}
