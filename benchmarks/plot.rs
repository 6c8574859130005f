//! SVG line plots for the benchmark reports (no plotting dependency).

use std::fmt::Write as _;

/// A log-log line plot: x = message size, one line per series.
pub fn svg(title: &str, unit: &str, series: &[(String, Vec<(f64, f64)>)]) -> String {
    let (w, h, l, r, t, b) = (760.0, 460.0, 70.0, 170.0, 40.0, 50.0);
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .filter(|p| p.1 > 0.0)
        .collect();
    let lx = |v: f64| v.log10();
    let (x0, x1) = all.iter().fold((f64::MAX, f64::MIN), |a, p| {
        (a.0.min(lx(p.0)), a.1.max(lx(p.0)))
    });
    let (y0, y1) = all.iter().fold((f64::MAX, f64::MIN), |a, p| {
        (a.0.min(lx(p.1)), a.1.max(lx(p.1)))
    });
    let (y0, y1) = (y0.floor(), y1.ceil().max(y0.floor() + 1.0));
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let px = |v: f64| l + (lx(v) - x0) / (x1 - x0) * (w - l - r);
    let py = |v: f64| h - b - (lx(v) - y0) / (y1 - y0) * (h - t - b);
    let colors = [
        "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
        "#17becf",
    ];
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15">{title}</text>
<line x1="{l}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{l}" y1="{t}" x2="{l}" y2="{}" stroke="black"/>
"#,
        (l + w - r) / 2.0,
        h - b,
        w - r,
        h - b,
        h - b
    );
    let mut e = y0;
    while e <= y1 {
        let y = py(10f64.powf(e));
        let _ = writeln!(
            s,
            r##"<line x1="{l}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{} {unit}</text>"##,
            w - r,
            l - 6.0,
            y + 4.0,
            fmt_num(10f64.powf(e))
        );
        e += 1.0;
    }
    let mut sizes: Vec<f64> = all.iter().map(|p| p.0).collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    for x in sizes {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            px(x),
            h - b + 18.0,
            size(x as usize)
        );
    }
    for (i, (name, pts)) in series.iter().enumerate() {
        let pts: Vec<_> = pts.iter().filter(|p| p.1 > 0.0).collect();
        if pts.is_empty() {
            continue;
        }
        let c = colors[i % colors.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|p| format!("{:.1},{:.1}", px(p.0), py(p.1)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for p in &pts {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"/>"#,
                px(p.0),
                py(p.1)
            );
        }
        let ly = t + 10.0 + i as f64 * 18.0;
        let _ = writeln!(
            s,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{c}" stroke-width="3"/><text x="{}" y="{}">{name}</text>"#,
            w - r + 10.0,
            w - r + 30.0,
            w - r + 36.0,
            ly + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A number for an axis label.
pub fn fmt_num(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// A byte count as a label: "64 B", "4 KiB", "1 MiB".
pub fn size(s: usize) -> String {
    if s >= 1 << 20 {
        format!("{} MiB", s >> 20)
    } else if s >= 1 << 10 {
        format!("{} KiB", s >> 10)
    } else {
        format!("{s} B")
    }
}

/// A horizontal bar chart: one bar per `(label, value)`, the value printed
/// at the bar's end with `unit`; `note` goes under the title.
pub fn bars(title: &str, note: &str, unit: &str, bars: &[(String, f64)]) -> String {
    let (w, l, r, t, row) = (760.0, 230.0, 110.0, 56.0, 30.0);
    let h = t + row * bars.len() as f64 + 20.0;
    let max = bars
        .iter()
        .map(|b| b.1)
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>
<text x="{}" y="40" text-anchor="middle" fill="#555">{}</text>
"##,
        w / 2.0,
        escape(title),
        w / 2.0,
        escape(note)
    );
    for (i, (label, value)) in bars.iter().enumerate() {
        let y = t + row * i as f64;
        let len = value / max * (w - l - r);
        let c = if i == 0 { "#7f7f7f" } else { "#1f77b4" };
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text><rect x="{l}" y="{y}" width="{len:.1}" height="{}" fill="{c}"/><text x="{:.1}" y="{}">{} {unit}</text>"#,
            l - 8.0,
            y + row * 0.55,
            escape(label),
            row * 0.7,
            l + len + 6.0,
            y + row * 0.55,
            if *value >= 100.0 {
                format!("{value:.0}")
            } else {
                format!("{value:.2}")
            },
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Text made safe for SVG.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
