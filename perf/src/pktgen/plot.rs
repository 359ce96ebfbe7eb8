//! `--plot FILE.svg`: throughput over time (left) and the latency CDF
//! (right), with plotters' SVG backend only.

use std::path::Path;

use plotters::prelude::*;

use super::report::{intervals, Report};

/// Plotting failed (the file, or plotters).
#[derive(Debug, thiserror::Error)]
#[error("plot {path}: {message}")]
pub struct PlotError {
    path: String,
    message: String,
}

/// Per-interval rates from the cumulative timeline: (t, tx kpps, rx kpps).
pub fn rates(r: &Report) -> Vec<(f64, f64, f64)> {
    intervals(&r.timeline)
        .map(|i| (i.to, i.tx_pps / 1e3, i.rx_pps / 1e3))
        .collect()
}

pub fn write_svg(r: &Report, path: &Path) -> Result<(), PlotError> {
    draw(r, path).map_err(|e| PlotError {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn draw(r: &Report, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1200, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);

    let points = rates(r);
    let t_max = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let y_max = points.iter().map(|p| p.1.max(p.2)).fold(1.0, f64::max) * 1.1;
    let mut c = ChartBuilder::on(&left)
        .caption(
            format!("throughput, {} clients, size {}", r.clients, r.size),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..t_max, 0f64..y_max)?;
    c.configure_mesh()
        .x_desc("seconds")
        .y_desc("kpackets/s")
        .draw()?;
    c.draw_series(LineSeries::new(points.iter().map(|p| (p.0, p.1)), &BLUE))?
        .label("sent")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLUE));
    c.draw_series(LineSeries::new(points.iter().map(|p| (p.0, p.2)), &RED))?
        .label("received")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], RED));
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;

    let cdf = &r.latency_us.cdf;
    let lo = cdf.first().map_or(1.0, |p| p.0).max(0.1);
    let hi = cdf.last().map_or(10.0, |p| p.0).max(lo * 10.0);
    let mut c = ChartBuilder::on(&right)
        .caption(
            format!(
                "round-trip latency: p50 {:.0} us, p99 {:.0} us",
                r.latency_us.p50, r.latency_us.p99
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..1.0)?;
    c.configure_mesh()
        .x_desc("microseconds")
        .y_desc("fraction at or below")
        .draw()?;
    c.draw_series(LineSeries::new(cdf.iter().copied(), &BLUE))?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pktgen::report::Sample;

    #[test]
    fn writes_an_svg_with_both_charts() {
        let mut r = Report::default();
        for i in 0..5u64 {
            r.timeline.push(Sample {
                t: i as f64,
                sent: i * 1000,
                received: i * 990,
                ..Sample::default()
            });
        }
        r.latency_us.cdf = vec![(10.0, 0.1), (20.0, 0.5), (300.0, 1.0)];
        assert_eq!(rates(&r).len(), 4);
        assert!((rates(&r)[0].1 - 1.0).abs() < 1e-9);
        let path = std::env::temp_dir().join(format!("pktgen-plot-{}.svg", std::process::id()));
        write_svg(&r, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("throughput") && svg.contains("round-trip latency"));
        assert!(svg.matches("<polyline").count() >= 3, "three lines drawn");
    }
}
