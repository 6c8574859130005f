//! Results: a table on stdout, JSON, SVG plots, and the goals checked
//! against the baselines of the same run.

use std::path::Path;

use serde_json::{json, Value};

use crate::mech::{Mech, Pin, HEADER};
use zcopy_bench::plot::{size, svg};

/// One (mechanism, pinning, size) point.
#[derive(Debug)]
pub struct Point {
    pub mech: Mech,
    pub pin: Pin,
    pub size: usize,
    /// p50, p99, p99.9 one-way ns, or why not measured.
    pub lat: Result<[u64; 3], String>,
    /// Messages per second, or why not measured.
    pub tput: Result<f64, String>,
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

impl Point {
    pub fn new(
        mech: Mech,
        pin: Pin,
        size: usize,
        lat: Result<Vec<u64>, String>,
        tput: Result<f64, String>,
    ) -> Point {
        let lat = lat.and_then(|mut v| {
            if v.is_empty() {
                return Err("no samples".into());
            }
            v.sort_unstable();
            Ok([pct(&v, 0.5), pct(&v, 0.99), pct(&v, 0.999)])
        });
        Point {
            mech,
            pin,
            size,
            lat,
            tput,
        }
    }

    pub fn line(&self) -> String {
        let lat = match &self.lat {
            Ok([a, b, c]) => format!("{:>10} {:>10} {:>10}", ns(*a), ns(*b), ns(*c)),
            Err(e) => format!("{:>32}", short(e)),
        };
        let tput = match &self.tput {
            Ok(m) => format!("{:>12.0} {:>9.2}", m, m * self.size as f64 / 1e9),
            Err(e) => format!("{:>22}", short(e)),
        };
        format!(
            "{:<15} {:<6} {:>9} {lat} {tput}",
            self.mech.name(),
            self.pin.name(),
            size(self.size)
        )
    }

    fn json(&self) -> Value {
        json!({
            "mechanism": self.mech.name(),
            "pin": self.pin.name(),
            "size": self.size,
            "zero_copy": self.mech.zero_copy(),
            "p50_ns": self.lat.as_ref().ok().map(|l| l[0]),
            "p99_ns": self.lat.as_ref().ok().map(|l| l[1]),
            "p999_ns": self.lat.as_ref().ok().map(|l| l[2]),
            "latency_error": self.lat.as_ref().err(),
            "msgs_per_s": self.tput.as_ref().ok(),
            "gb_per_s": self.tput.as_ref().ok().map(|m| m * self.size as f64 / 1e9),
            "throughput_error": self.tput.as_ref().err(),
        })
    }
}

fn short(e: &str) -> String {
    let e: String = e.chars().take(30).collect();
    format!("n/a ({e})")
}

fn ns(v: u64) -> String {
    if v >= 1_000_000 {
        format!("{:.2} ms", v as f64 / 1e6)
    } else if v >= 1000 {
        format!("{:.2} µs", v as f64 / 1e3)
    } else {
        format!("{v} ns")
    }
}

fn p50(points: &[Point], m: &str, pin: Pin, size: usize) -> Option<u64> {
    points
        .iter()
        .find(|p| p.mech.name() == m && p.pin == pin && p.size == size)
        .and_then(|p| p.lat.as_ref().ok().map(|l| l[0]))
}

fn rate(points: &[Point], m: &str, pin: Pin, size: usize) -> Option<f64> {
    points
        .iter()
        .find(|p| p.mech.name() == m && p.pin == pin && p.size == size)
        .and_then(|p| p.tput.as_ref().ok().copied())
}

/// The goals, each checked against figures of this run.
fn goals(points: &[Point]) -> Vec<Value> {
    let mut out = Vec::new();
    let pin = Pin::Cross;
    let small = 64;
    let big = points.iter().map(|p| p.size).max().unwrap_or(small);
    let z = p50(points, "zcopy-busy", pin, small);
    let mut goal =
        |name: &str, ours: Option<f64>, theirs: Option<f64>, ok: &dyn Fn(f64, f64) -> bool| {
            let met = match (ours, theirs) {
                (Some(a), Some(b)) => Some(ok(a, b)),
                _ => None,
            };
            out.push(json!({ "goal": name, "ours": ours, "reference": theirs, "met": met }));
        };
    goal(
        "64 B one-way p50 (cross-core) ≤ 1.5 × the bare shared flag",
        z.map(|v| v as f64),
        p50(points, "floor", pin, small).map(|v| v as f64),
        &|a, b| a <= 1.5 * b,
    );
    goal(
        "64 B one-way p50 (cross-core) ≤ iceoryx2",
        z.map(|v| v as f64),
        p50(points, "iceoryx2", pin, small).map(|v| v as f64),
        &|a, b| a <= b,
    );
    goal(
        "64 B one-way p50 (cross-core) ≥ 10 × lower than the Unix socket",
        z.map(|v| v as f64),
        p50(points, "uds", pin, small).map(|v| v as f64),
        &|a, b| a * 10.0 <= b,
    );
    goal(
        "largest size p50 within 2 × the 64 B p50 (cross-core)",
        p50(points, "zcopy-busy", pin, big).map(|v| v as f64),
        z.map(|v| v as f64),
        &|a, b| a <= 2.0 * b,
    );
    goal(
        "64 B throughput (cross-core) ≥ iceoryx2",
        rate(points, "zcopy-busy", pin, small),
        rate(points, "iceoryx2", pin, small),
        &|a, b| a >= b,
    );
    out
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
        c.lines()
            .find(|l| l.starts_with("model name"))
            .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
    });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .ok();
    json!({
        "cpus": crate::mech::online_cpus(),
        "cpu_model": cpu,
        "kernel": kernel,
    })
}

/// Prints the table and goals; writes ipc.json, ipc-latency.svg and
/// ipc-throughput.svg under `out`.
pub fn write(points: &[Point], out: &Path, quick: bool) -> Result<(), String> {
    println!(
        "\nzcopy IPC bench: one-way latency (ping-pong / 2) and one-way throughput; zero-copy \
         mechanisms touch a {HEADER}-byte header, the others copy every byte{}",
        if quick {
            " — QUICK RUN, not a measurement"
        } else {
            ""
        }
    );
    println!(
        "{:<15} {:<6} {:>9} {:>10} {:>10} {:>10} {:>12} {:>9}",
        "mechanism", "pin", "size", "p50", "p99", "p99.9", "msgs/s", "GB/s"
    );
    for p in points {
        println!("{}", p.line());
    }
    let goals = goals(points);
    println!("\ngoals (against this run's figures):");
    for g in &goals {
        let verdict = match g["met"].as_bool() {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not measured",
        };
        println!("  {:<70} {verdict}", g["goal"].as_str().unwrap_or(""));
    }
    let doc = json!({
        "bench": "zcopy-ipc",
        "quick": quick,
        "machine": machine(),
        "points": points.iter().map(Point::json).collect::<Vec<_>>(),
        "goals": goals,
    });
    let write = |name: &str, text: String| {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {}", path.display());
        Ok::<(), String>(())
    };
    write(
        "ipc.json",
        serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?,
    )?;
    for pin in [Pin::Cross, Pin::Same] {
        let series = |f: &dyn Fn(&Point) -> Option<f64>| -> Vec<(String, Vec<(f64, f64)>)> {
            let mut names: Vec<&str> = points.iter().map(|p| p.mech.name()).collect();
            names.dedup();
            names
                .into_iter()
                .map(|n| {
                    let pts = points
                        .iter()
                        .filter(|p| p.mech.name() == n && p.pin == pin)
                        .filter_map(|p| f(p).map(|v| (p.size as f64, v)))
                        .collect();
                    (n.to_string(), pts)
                })
                .collect()
        };
        let lat = series(&|p| p.lat.as_ref().ok().map(|l| l[0] as f64 / 1000.0));
        if lat.iter().any(|(_, v)| !v.is_empty()) {
            write(
                &format!("ipc-latency-{}.svg", pin.name()),
                svg(
                    &format!("one-way latency p50, {} core", pin.name()),
                    "µs",
                    &lat,
                ),
            )?;
        }
        let tput = series(&|p| p.tput.as_ref().ok().map(|m| m * p.size as f64 / 1e9));
        if tput.iter().any(|(_, v)| !v.is_empty()) {
            write(
                &format!("ipc-throughput-{}.svg", pin.name()),
                svg(
                    &format!("one-way throughput, {} core", pin.name()),
                    "GB/s",
                    &tput,
                ),
            )?;
        }
    }
    Ok(())
}
