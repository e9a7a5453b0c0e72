//! `--chart FILE`: a hand-written SVG. One panel per metric with a bar per path (the median) and a
//! whisker for the range over rounds, then the in-kernel costs as horizontal bars with the null
//! program's share in grey.

use std::fmt::Write as _;

use super::{Results, kernel_cost::KernelCosts, metrics::Metric, table::num};

const COLUMNS: usize = 3;
const PANEL_W: f64 = 400.0;
const PANEL_H: f64 = 250.0;
const TOP: f64 = 70.0;
const KERNEL_ROW_H: f64 = 26.0;

/// A stable colour per path name, so charts of different runs compare at a glance.
fn colour(path: &str) -> &'static str {
    match path {
        "native" => "#4e79a7",
        "kernel-vxlan" => "#f28e2b",
        "netd-overlay" => "#59a14f",
        "docker-overlay" => "#e15759",
        "kernel-macvlan" => "#76b7b2",
        "netd-macvlan" => "#b07aa1",
        _ => "#9c755f",
    }
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn render(results: &Results) -> String {
    let paths = results.samples.paths();
    let metric_rows = Metric::ALL.len().div_ceil(COLUMNS);
    let kernel_rows = results.kernel.as_ref().map_or(0, |k| k.rows.len());
    let kernel_h = if kernel_rows > 0 {
        60.0 + kernel_rows as f64 * KERNEL_ROW_H
    } else {
        0.0
    };
    let width = COLUMNS as f64 * PANEL_W;
    let height = TOP + metric_rows as f64 * PANEL_H + kernel_h + 20.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="20" y="28" font-size="18" font-weight="bold">netd benchmark: {} rounds of {} s, bars = median, whiskers = min-max</text>"#,
        results.samples.rounds(),
        results.config.seconds
    );
    for (i, path) in paths.iter().enumerate() {
        let x = 20.0 + i as f64 * 150.0;
        let _ = writeln!(
            svg,
            r#"<rect x="{x}" y="42" width="12" height="12" fill="{}"/>"#,
            colour(path)
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="53" font-size="13">{}</text>"#,
            x + 18.0,
            esc(path)
        );
    }
    for (i, metric) in Metric::ALL.iter().enumerate() {
        let x = (i % COLUMNS) as f64 * PANEL_W;
        let y = TOP + (i / COLUMNS) as f64 * PANEL_H;
        metric_panel(&mut svg, results, *metric, x, y);
    }
    if let Some(kernel) = &results.kernel {
        kernel_panel(&mut svg, kernel, TOP + metric_rows as f64 * PANEL_H, width);
    }
    svg.push_str("</svg>\n");
    svg
}

fn metric_panel(svg: &mut String, results: &Results, metric: Metric, x: f64, y: f64) {
    let s = &results.samples;
    let better = if metric.higher_is_better() {
        " (higher is better)"
    } else if metric.lower_is_better() {
        " (lower is better)"
    } else {
        ""
    };
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" font-size="12" font-weight="bold">{} [{}]{}</text>"#,
        x + 20.0,
        y + 20.0,
        esc(metric.label()),
        metric.unit(),
        better
    );
    let (left, right, top, bottom) = (x + 30.0, x + PANEL_W - 20.0, y + 45.0, y + PANEL_H - 45.0);
    let summaries: Vec<_> = s
        .paths()
        .iter()
        .map(|p| (*p, s.summary(p, metric)))
        .collect();
    let max = summaries
        .iter()
        .filter_map(|(_, s)| s.map(|s| s.max))
        .fold(0.0_f64, f64::max);
    let scale = if max > 0.0 {
        (bottom - top) / (max * 1.1)
    } else {
        0.0
    };
    let _ = writeln!(
        svg,
        r##"<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#333"/>"##
    );
    let slot = (right - left) / summaries.len().max(1) as f64;
    let rotate = summaries.len() > 4;
    for (i, (path, summary)) in summaries.iter().enumerate() {
        let cx = left + slot * (i as f64 + 0.5);
        let label_y = bottom + 16.0;
        if rotate {
            let _ = writeln!(
                svg,
                r#"<text x="{cx}" y="{label_y}" font-size="10" text-anchor="end" transform="rotate(-25 {cx} {label_y})">{}</text>"#,
                esc(path)
            );
        } else {
            let _ = writeln!(
                svg,
                r#"<text x="{cx}" y="{label_y}" font-size="11" text-anchor="middle">{}</text>"#,
                esc(path)
            );
        }
        let Some(summary) = summary else {
            let _ = writeln!(
                svg,
                r#"<text x="{cx}" y="{}" font-size="11" text-anchor="middle">no data</text>"#,
                bottom - 6.0
            );
            continue;
        };
        let bar_w = slot * 0.55;
        let h = summary.median * scale;
        let _ = writeln!(
            svg,
            r#"<rect x="{}" y="{}" width="{bar_w}" height="{h}" fill="{}"/>"#,
            cx - bar_w / 2.0,
            bottom - h,
            colour(path)
        );
        let (y_min, y_max) = (bottom - summary.min * scale, bottom - summary.max * scale);
        let _ = writeln!(
            svg,
            r##"<path d="M{cx} {y_min}V{y_max}M{} {y_min}h10M{} {y_max}h10" stroke="#222" fill="none"/>"##,
            cx - 5.0,
            cx - 5.0
        );
        let _ = writeln!(
            svg,
            r#"<text x="{cx}" y="{}" font-size="11" text-anchor="middle">{}</text>"#,
            y_max - 5.0,
            num(summary.median)
        );
    }
}

fn kernel_panel(svg: &mut String, kernel: &KernelCosts, y: f64, width: f64) {
    let _ = writeln!(
        svg,
        r#"<text x="20" y="{}" font-size="13" font-weight="bold">in-kernel cost per packet, ns (grey: the null program of the same method; TEST_RUN x{} loops, TEST_RUN x1 on fresh packets, bpf_stats on live traffic)</text>"#,
        y + 20.0,
        kernel.repeat
    );
    let (label_x, bar_x, bar_max) = (20.0, 380.0, width - 640.0);
    let max = kernel
        .rows
        .iter()
        .filter_map(|r| r.ns().map(|s| s.max))
        .fold(0.0_f64, f64::max);
    let scale = if max > 0.0 { bar_max / max } else { 0.0 };
    for (i, row) in kernel.rows.iter().enumerate() {
        let Some(ns) = row.ns() else { continue };
        let ry = y + 40.0 + i as f64 * KERNEL_ROW_H;
        let _ = writeln!(
            svg,
            r#"<text x="{label_x}" y="{}" font-size="12">{}: {}</text>"#,
            ry + 14.0,
            row.method.name(),
            esc(row.label)
        );
        let total = ns.median * scale;
        let (null_w, colour) = match row.above_null() {
            Some(above) => (((ns.median - above.median) * scale).max(0.0), "#59a14f"),
            None => (total, "#bab0ac"),
        };
        let _ = writeln!(
            svg,
            r#"<rect x="{bar_x}" y="{ry}" width="{total}" height="18" fill="{colour}"/>"#
        );
        let _ = writeln!(
            svg,
            r##"<rect x="{bar_x}" y="{ry}" width="{null_w}" height="18" fill="#bab0ac"/>"##
        );
        let text = match row.above_null() {
            Some(above) => format!("{:.0} ns ({:+.0} above null)", ns.median, above.median),
            None => format!("{:.0} ns", ns.median),
        };
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" font-size="12">{text}</text>"#,
            bar_x + total + 8.0,
            ry + 14.0
        );
    }
}
