//! Results: a table on stdout, JSON, SVG plots, and the goals checked
//! against the baselines of the same run.

use std::path::Path;

use serde_json::{json, Value};

use crate::mech::{Mech, Pin, HEADER};
use zcopy_plot::{size, Lines, Series, Unit};
use zcopy_units::verdict::{judge, quartiles, Verdict, MIN_RUNS};

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

/// The p50 of sorted samples, as every figure of the bench takes it.
pub fn p50_of(sorted: &[u64]) -> Option<u64> {
    (!sorted.is_empty()).then(|| pct(sorted, 0.5))
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
            size(self.size as f64)
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

/// The small and the large size the goals read.
const SMALL: usize = 64;
const BIG: usize = 4 << 20;

/// "340 ns vs 240 ns (1.42×)": a goal's two figures and their ratio.
fn figures(unit: &str, ours: f64, theirs: f64) -> String {
    let v = |x: f64| match unit {
        "ns" => ns(x.round() as u64),
        "cpu" => format!("{:.2} %", 100.0 * x),
        _ => format!("{:.2} M/s", x / 1e6),
    };
    if unit == "cpu" {
        // A share of a core, and how many times less the first uses.
        let times = if ours > 0.0 {
            theirs / ours
        } else {
            f64::INFINITY
        };
        return format!("{} vs {} of a core (1/{times:.0})", v(ours), v(theirs));
    }
    let r = ours / theirs;
    if r < 0.1 {
        return format!("{} vs {} (1/{:.0})", v(ours), v(theirs), 1.0 / r);
    }
    format!("{} vs {} ({r:.2}×)", v(ours), v(theirs))
}

/// The goal that compares the busy channel with the bare flag at 64 B.
const FLOOR_GOAL: &str = "64 B one-way p50 (cross-core) ≤ 1.5 × the bare shared flag";
/// The goal that compares a blocking recv with busy-polling at 64 B.
const BLOCKING_GOAL: &str = "64 B blocking recv p50 (cross-core, busy sender) ≤ 2 × busy-poll";
/// The goal that compares 4 MiB with 64 B.
const SIZE_GOAL: &str = "4 MiB one-way p50 within 2 × the 64 B p50 (cross-core)";
/// The goal that compares the channel with the floor when both write
/// every byte of a 4 MiB message.
const FILL_GOAL: &str = "4 MiB, sender writes every byte: p50 ≤ 1.2 × the floor doing the same";

/// The cross-core points the paired goals read (and the header and index
/// floors beside the bare one), measured in alternating rounds. The bare
/// floor comes again after the points that take a few milliseconds
/// each: the two brackets of [`Rounds::moved`].
pub const PAIRED: [(Mech, usize); 9] = [
    (Mech::Floor, SMALL),
    (Mech::FloorHeader, SMALL),
    (Mech::FloorIndex, SMALL),
    (Mech::ZcopyBusy, SMALL),
    (Mech::ZcopyBlocking, SMALL),
    (Mech::ZcopyBusy, BIG),
    (Mech::Floor, SMALL),
    (Mech::FloorFill, BIG),
    (Mech::ZcopyFill, BIG),
];

/// A goal's ratios from paired rounds ([`Rounds::paired`]).
#[derive(Debug, Clone)]
struct Paired {
    /// Medians of the two points over the rounds kept (None: none kept).
    ours: Option<f64>,
    theirs: Option<f64>,
    /// One ratio per round kept.
    ratios: Vec<f64>,
    /// Rounds left out: the host moved the CPUs within them.
    left_out: usize,
}

/// Cross-core one-way p50s measured in alternating rounds
/// ([`crate::mech::rounds`]): points measured back to back share the
/// host's placement of the two CPUs, which can change between two points
/// of a run (a cache-line transfer then costs 5 times more or less).
#[derive(Debug, Clone, Default)]
pub struct Rounds {
    /// The (mechanism, size) points, in the order of each round.
    pub points: Vec<(Mech, usize)>,
    /// One row per round, a p50 per point (ns).
    pub p50: Vec<Vec<u64>>,
}

impl Rounds {
    /// Where the first measurement of a point lies in a round.
    fn position(&self, m: Mech, size: usize) -> Option<usize> {
        self.points.iter().position(|&p| p == (m, size))
    }

    fn column(&self, m: Mech, size: usize) -> Option<Vec<u64>> {
        let i = self.position(m, size)?;
        let c: Vec<u64> = self.p50.iter().map(|r| r[i]).collect();
        (!c.is_empty()).then_some(c)
    }

    /// The positions of the bare floor's two measurements in a round,
    /// when it has two.
    fn brackets(&self) -> Option<(usize, usize)> {
        let first = self.position(Mech::Floor, SMALL)?;
        let last = self
            .points
            .iter()
            .rposition(|&p| p == (Mech::Floor, SMALL))?;
        (last > first).then_some((first, last))
    }

    /// Per round: whether the host moved the two CPUs between the bare
    /// floor's two measurements (they lie more than [`PLACEMENT_SPREAD`]
    /// times apart), so that the points between them may have been
    /// measured in two placements. All false without a second floor.
    pub fn moved(&self) -> Vec<bool> {
        let Some((first, last)) = self.brackets() else {
            return vec![false; self.p50.len()];
        };
        self.p50
            .iter()
            .map(|r| {
                let (a, b) = (r[first].max(1) as f64, r[last].max(1) as f64);
                a.max(b) > PLACEMENT_SPREAD * a.min(b)
            })
            .collect()
    }

    /// Medians of `a` and `b` and the ratio a/b of each round, leaving out
    /// the rounds [`Rounds::moved`] names when both points lie between
    /// the floor's two measurements.
    fn paired(&self, a: (Mech, usize), b: (Mech, usize)) -> Option<Paired> {
        let (x, y) = (self.column(a.0, a.1)?, self.column(b.0, b.1)?);
        let bracketed = match (
            self.brackets(),
            self.position(a.0, a.1),
            self.position(b.0, b.1),
        ) {
            (Some((first, last)), Some(i), Some(j)) => {
                (first..=last).contains(&i) && (first..=last).contains(&j)
            }
            _ => false,
        };
        let moved = self.moved();
        let kept: Vec<(u64, u64)> = x
            .iter()
            .zip(&y)
            .zip(&moved)
            .filter(|(_, &m)| !(bracketed && m))
            .map(|((&p, &q), _)| (p, q))
            .collect();
        let f = |c: Vec<f64>| (!c.is_empty()).then(|| median(&c));
        Some(Paired {
            ours: f(kept.iter().map(|&(p, _)| p as f64).collect()),
            theirs: f(kept.iter().map(|&(_, q)| q as f64).collect()),
            ratios: kept
                .iter()
                .map(|&(p, q)| p as f64 / q.max(1) as f64)
                .collect(),
            left_out: x.len() - kept.len(),
        })
    }

    /// A floor variant (the header, the indexed header) against the bare
    /// floor, at 64 B: the median of the rounds' ratios (None when every
    /// round was left out).
    pub fn floor_cost(&self, m: Mech) -> Option<f64> {
        let r = self.paired((m, SMALL), (Mech::Floor, SMALL))?.ratios;
        (!r.is_empty()).then(|| median(&r))
    }

    fn json(&self) -> Value {
        json!({
            "points": self.points.iter().map(|(m, size)| json!({"mechanism": m.name(), "size": size})).collect::<Vec<_>>(),
            "p50_ns": self.p50,
            "moved": self.moved(),
        })
    }
}

/// How far the table's cross-core floor may lie from the rounds' before
/// the report says the host moved the two CPUs between them.
const PLACEMENT_SPREAD: f64 = 1.5;

/// The table's cross-core floor (64 B p50) and the span of the rounds'
/// (ns), when the table's lies more than [`PLACEMENT_SPREAD`] times
/// outside that span: the host put the two CPUs elsewhere between the
/// table's pass and the rounds, a cache-line transfer cost another price
/// there, and a goal read off two rows of the table may compare two
/// placements (the paired goals do not).
fn placement_moved(points: &[Point], rounds: &Rounds) -> Option<(u64, u64, u64)> {
    let table = p50(points, "floor", Pin::Cross, SMALL)?;
    let c = rounds.column(Mech::Floor, SMALL)?;
    let (lo, hi) = (*c.iter().min()?, *c.iter().max()?);
    let t = table as f64;
    (t * PLACEMENT_SPREAD < lo as f64 || t > hi as f64 * PLACEMENT_SPREAD)
        .then_some((table, lo, hi))
}

/// The median of `v` (the mean of the middle two of an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The goals, each checked against figures of this run; a goal whose
/// figures this run did not measure (a size or a mechanism left out) is
/// not judged, and neither is any goal of a quick run. `idle`: the CPU
/// share of a receiver waiting on an idle sender, blocking and
/// busy-polling ([`crate::mech::idle_cpu`]). The latency goals that
/// compare two points are judged on `rounds` when it has both: on the
/// quartiles of the rounds' ratios (`zcopy_units::verdict`).
fn goals(points: &[Point], rounds: &Rounds, idle: Option<(f64, f64)>, quick: bool) -> Vec<Value> {
    let mut out = Vec::new();
    let pin = Pin::Cross;
    let (small, big) = (SMALL, BIG);
    let z = p50(points, "zcopy-busy", pin, small);
    // A goal judged on paired rounds: its figures, and the benches'
    // verdict on the quartiles of the rounds' ratios (`ok` reads a ratio
    // against 1).
    let paired = |name: &str, a: (Mech, usize), b: (Mech, usize), ok: &dyn Fn(f64, f64) -> bool| {
        let Paired {
            ours,
            theirs,
            ratios,
            left_out,
        } = rounds.paired(a, b)?;
        let verdict = judge(&ratios, |r| ok(r, 1.0));
        let kept = if left_out == 0 {
            format!("{} rounds", ratios.len())
        } else {
            format!(
                "{} of {} rounds ({left_out} left out: the host moved the CPUs within them)",
                ratios.len(),
                ratios.len() + left_out
            )
        };
        let (value, r, q) = match (ours, theirs) {
            (Some(x), Some(y)) => {
                let r = median(&ratios);
                let (lo, hi) = ratios
                    .iter()
                    .fold((f64::MAX, 0f64), |(l, h), &v| (l.min(v), h.max(v)));
                let (q1, q3) = quartiles(&ratios).unwrap_or((r, r));
                // The quartiles are what the verdict reads; all the rounds'
                // span beside them, so an outlier shows without seeming to
                // decide.
                let value = format!(
                    "{} vs {}; {kept}: median {r:.2}×, quartiles {q1:.2}–{q3:.2}×, \
                     all {lo:.2}–{hi:.2}×",
                    ns(x.round() as u64),
                    ns(y.round() as u64),
                );
                (value, Some(r), Some([q1, q3]))
            }
            // Every round left out.
            _ => (kept, None, None),
        };
        let text = match verdict {
            _ if quick => "not judged (a quick run)".to_string(),
            Verdict::Met => "met".into(),
            Verdict::NotMet => "NOT met".into(),
            Verdict::Straddles(lo, hi) => format!("no verdict: quartiles {lo:.2}–{hi:.2}×"),
            Verdict::TooFew(n) => format!("no verdict: {n} rounds, a verdict needs {MIN_RUNS}"),
        };
        Some(json!({
            "goal": name, "value": value, "ours": ours, "reference": theirs, "unit": "ns",
            "ratio": r, "ratios": ratios, "quartiles": q, "left_out": left_out,
            "met": verdict.met().filter(|_| !quick), "verdict": text
        }))
    };
    let judged_on_rounds = [
        paired(
            FLOOR_GOAL,
            (Mech::ZcopyBusy, small),
            (Mech::Floor, small),
            &|a, b| a <= 1.5 * b,
        ),
        paired(
            BLOCKING_GOAL,
            (Mech::ZcopyBlocking, small),
            (Mech::ZcopyBusy, small),
            &|a, b| a <= 2.0 * b,
        ),
        paired(
            SIZE_GOAL,
            (Mech::ZcopyBusy, big),
            (Mech::ZcopyBusy, small),
            &|a, b| a <= 2.0 * b,
        ),
        paired(
            FILL_GOAL,
            (Mech::ZcopyFill, big),
            (Mech::FloorFill, big),
            &|a, b| a <= 1.2 * b,
        ),
    ];
    let mut goal =
        |name: &str, ours: Option<f64>, theirs: Option<f64>, ok: &dyn Fn(f64, f64) -> bool| {
            let judged = judged_on_rounds
                .iter()
                .flatten()
                .find(|g| g["goal"] == name);
            if let Some(g) = judged {
                out.push(g.clone());
                return;
            }
            let unit = if name.contains("throughput") {
                "msgs/s"
            } else if name.contains("CPU") {
                "cpu"
            } else {
                "ns"
            };
            let (met, value) = match (ours, theirs) {
                (Some(a), Some(b)) if b > 0.0 => {
                    (Some(ok(a, b)).filter(|_| !quick), figures(unit, a, b))
                }
                _ if name.contains("iceoryx2") && !cfg!(feature = "iceoryx2") => (
                    None,
                    "not measured: built without iceoryx2 (make bench-ipc builds it)".into(),
                ),
                _ => (None, "not measured in this run".to_string()),
            };
            out.push(json!({
                "goal": name, "value": value, "ours": ours, "reference": theirs, "unit": unit,
                "met": met
            }));
        };
    goal(
        FLOOR_GOAL,
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
        SIZE_GOAL,
        p50(points, "zcopy-busy", pin, big).map(|v| v as f64),
        z.map(|v| v as f64),
        &|a, b| a <= 2.0 * b,
    );
    goal(
        FILL_GOAL,
        p50(points, "zcopy-fill", pin, big).map(|v| v as f64),
        p50(points, "floor-fill", pin, big).map(|v| v as f64),
        &|a, b| a <= 1.2 * b,
    );
    goal(
        BLOCKING_GOAL,
        p50(points, "zcopy-blocking", pin, small).map(|v| v as f64),
        z.map(|v| v as f64),
        &|a, b| a <= 2.0 * b,
    );
    goal(
        "idle sender: blocking recv's CPU ≤ 1/100 of busy-polling's",
        idle.map(|(blocking, _)| blocking),
        idle.map(|(_, busy)| busy),
        &|a, b| a * 100.0 <= b,
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
pub fn write(
    points: &[Point],
    rounds: &Rounds,
    one_thread: Option<(f64, f64)>,
    idle: Option<(f64, f64)>,
    out: &Path,
    quick: bool,
) -> Result<(), String> {
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
    let goals = goals(points, rounds, idle, quick);
    if let Some((msg, clock)) = one_thread {
        println!(
            "\nin one thread, no cache line crossing cores: a 64 B message (loan, send, \
             try_recv, drop) {msg:.1} ns; the timing of each round trip {clock:.1} ns \
             (every latency sample, the floor's too, includes half of it)"
        );
    }
    if let Some(r) = rounds.floor_cost(Mech::FloorHeader) {
        println!(
            "the bare flag with a header line the receiver reads: {r:.2}× the bare flag \
             (64 B, cross-core, median of the rounds)"
        );
    }
    if let Some(r) = rounds.floor_cost(Mech::FloorIndex) {
        println!(
            "the bare flag naming the header line the receiver reads (as a ring entry names \
             its slot): {r:.2}× the bare flag (64 B, cross-core, median of the rounds)"
        );
    }
    let moved = placement_moved(points, rounds);
    if let Some((table, lo, hi)) = moved {
        println!(
            "the host moved the two CPUs within this run: the table's cross-core floor (64 B \
             p50) is {}, the rounds' {}–{}; a goal read off two rows of the table may compare \
             two placements (the goals judged on rounds compare like with like)",
            ns(table),
            ns(lo),
            ns(hi)
        );
    }
    println!("\ngoals (against this run's figures):");
    for g in &goals {
        let verdict = match (g["verdict"].as_str(), g["met"].as_bool()) {
            (Some(v), _) => v,
            (None, Some(true)) => "met",
            (None, Some(false)) => "NOT met",
            (None, None) if quick && g["reference"].is_number() && g["ours"].is_number() => {
                "not judged (a quick run)"
            }
            (None, None) => "not measured",
        };
        println!(
            "  {:<78} {:<32} {verdict}",
            g["goal"].as_str().unwrap_or(""),
            g["value"].as_str().unwrap_or("")
        );
    }
    let doc = json!({
        "bench": "zcopy-ipc",
        "quick": quick,
        "machine": machine(),
        "points": points.iter().map(Point::json).collect::<Vec<_>>(),
        "rounds": rounds.json(),
        "header_cost": rounds.floor_cost(Mech::FloorHeader),
        "index_cost": rounds.floor_cost(Mech::FloorIndex),
        "placement_moved": moved.map(|(table, lo, hi)| json!({
            "table_floor_ns": table, "rounds_floor_ns": [lo, hi],
        })),
        "one_thread": one_thread.map(|(msg, clock)| json!({
            "message_ns": msg, "timing_ns": clock,
        })),
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
    for (name, chart) in charts(points, quick) {
        let svg = zcopy_plot::lines(&chart).map_err(|e| format!("{name}: {e}"))?;
        write(&name, svg)?;
    }
    Ok(())
}

/// The plots of a run: (file name, chart) for latency and throughput at
/// each pinning that has a measured point; one series per mechanism, in
/// the order the run measured them, in every chart (one without a figure
/// there is not drawn, and keeps its place so that each mechanism has the
/// same colour in every plot).
pub fn charts(points: &[Point], quick: bool) -> Vec<(String, Lines)> {
    let mut mechs: Vec<Mech> = Vec::new();
    for p in points {
        if !mechs.contains(&p.mech) {
            mechs.push(p.mech);
        }
    }
    let quick = if quick {
        " (QUICK RUN, not a measurement)"
    } else {
        ""
    };
    let mut out = Vec::new();
    for pin in [Pin::Cross, Pin::Same] {
        let series = |f: &dyn Fn(&Point) -> Option<f64>| -> Vec<Series> {
            mechs
                .iter()
                .map(|&m| Series {
                    name: m.label().to_string(),
                    points: points
                        .iter()
                        .filter(|p| p.mech == m && p.pin == pin)
                        .filter_map(|p| f(p).map(|v| (p.size as f64, v)))
                        .collect(),
                })
                .collect()
        };
        let measured = |s: &[Series]| s.iter().any(|s| !s.points.is_empty());
        let cores = match pin {
            Pin::Cross => "two processes on two cores",
            Pin::Same => "two processes on one core",
        };
        let lat = series(&|p| p.lat.as_ref().ok().map(|l| l[0] as f64 / 1e9));
        if measured(&lat) {
            out.push((
                format!("ipc-latency-{}.svg", pin.name()),
                Lines {
                    title: format!("IPC one-way latency, {cores} (lower is better)"),
                    note: format!(
                        "ping-pong round trip / 2; zero-copy ways touch a {HEADER}-byte header, \
                         the others copy every byte{quick}"
                    ),
                    value: "one-way latency, p50".into(),
                    sizes: "message size".into(),
                    unit: Unit::Seconds,
                    series: lat,
                },
            ));
        }
        let tput = series(&|p| p.tput.as_ref().ok().map(|m| m * p.size as f64));
        if measured(&tput) {
            out.push((
                format!("ipc-throughput-{}.svg", pin.name()),
                Lines {
                    title: format!("IPC one-way throughput, {cores} (higher is better)"),
                    note: format!(
                        "message bytes delivered per second; zero-copy ways hand the payload \
                         over in place (a {HEADER}-byte header touched){quick}"
                    ),
                    value: "throughput".into(),
                    sizes: "message size".into(),
                    unit: Unit::BytesPerSecond,
                    series: tput,
                },
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(mech: Mech, pin: Pin, size: usize, ns: u64) -> Point {
        Point::new(mech, pin, size, Ok(vec![ns]), Ok(1e6))
    }

    /// The goal named `name` among `all`.
    fn find(all: &[Value], name: &str) -> Value {
        all.iter().find(|g| g["goal"] == name).unwrap().clone()
    }

    #[test]
    fn each_plot_has_one_line_per_mechanism_with_its_own_pinning() {
        let mut points = Vec::new();
        for pin in [Pin::Cross, Pin::Same] {
            for m in [Mech::Floor, Mech::ZcopyBusy, Mech::Pipe] {
                for size in [64, 4096] {
                    let ns = if pin == Pin::Cross { 100 } else { 50_000 };
                    points.push(point(m, pin, size, ns));
                }
            }
        }
        let charts = charts(&points, false);
        let names: Vec<&str> = charts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "ipc-latency-cross.svg",
                "ipc-throughput-cross.svg",
                "ipc-latency-same.svg",
                "ipc-throughput-same.svg"
            ]
        );
        for (name, chart) in &charts {
            let legend: Vec<&str> = chart.series.iter().map(|s| s.name.as_str()).collect();
            assert_eq!(
                legend,
                [
                    Mech::Floor.label(),
                    Mech::ZcopyBusy.label(),
                    Mech::Pipe.label()
                ],
                "{name}"
            );
            for s in &chart.series {
                assert_eq!(s.points.len(), 2, "{name} {}: its own pinning only", s.name);
            }
        }
        let lat = &charts[0].1.series[0].points;
        assert_eq!(lat, &[(64.0, 100e-9), (4096.0, 100e-9)]);
        assert_eq!(charts[2].1.series[0].points[0], (64.0, 50e-6));
    }

    #[test]
    fn the_full_fill_goal_is_judged_on_its_rounds() {
        // The table's single points (1.33×) were taken in a slow phase of
        // the host; the rounds, each pair back to back, decide.
        let (mib4, us) = (4 << 20, 1000);
        let points = vec![
            point(Mech::FloorFill, Pin::Cross, mib4, 56 * us),
            point(Mech::ZcopyFill, Pin::Cross, mib4, 75 * us),
        ];
        let fill = |p50: Vec<Vec<u64>>| {
            let rounds = Rounds {
                points: vec![(Mech::FloorFill, mib4), (Mech::ZcopyFill, mib4)],
                p50,
            };
            let all = goals(&points, &rounds, None, false);
            find(&all, FILL_GOAL)
        };
        let met = fill(vec![
            vec![50 * us, 52 * us],
            vec![80 * us, 84 * us],
            vec![51 * us, 53 * us],
            vec![50 * us, 55 * us],
        ]);
        assert_eq!(met["met"], true, "{met}");
        assert_eq!(met["verdict"], "met");
        let not_met = fill(vec![
            vec![50 * us, 65 * us],
            vec![50 * us, 66 * us],
            vec![51 * us, 67 * us],
        ]);
        assert_eq!(not_met["verdict"], "NOT met", "{not_met}");
        // Without rounds of the two points, the table's figures.
        let all = goals(&points, &Rounds::default(), None, false);
        let table = find(&all, FILL_GOAL);
        assert_eq!(table["met"], false, "{table}");
    }

    #[test]
    fn a_round_whose_floor_moved_is_left_out_of_the_goals_it_brackets() {
        let (mib4, us) = (4 << 20, 1000);
        let points = vec![
            point(Mech::Floor, Pin::Cross, 64, 60),
            point(Mech::ZcopyBusy, Pin::Cross, 64, 100),
        ];
        // Rounds 2 and 4: the floor at the round's start was measured in
        // the dear placement, the channel and the floor after it in the
        // cheap one. Kept, they put the rounds on both sides of the goal.
        let rounds = Rounds {
            points: vec![
                (Mech::Floor, 64),
                (Mech::ZcopyBusy, 64),
                (Mech::Floor, 64),
                (Mech::FloorFill, mib4),
                (Mech::ZcopyFill, mib4),
            ],
            p50: vec![
                vec![60, 100, 62, 50 * us, 52 * us],
                vec![240, 90, 60, 50 * us, 51 * us],
                vec![60, 100, 60, 50 * us, 53 * us],
                vec![250, 100, 60, 50 * us, 52 * us],
                vec![65, 105, 64, 50 * us, 51 * us],
            ],
        };
        assert_eq!(rounds.moved(), [false, true, false, true, false]);
        let all = goals(&points, &rounds, None, false);
        let floor = find(&all, FLOOR_GOAL);
        assert_eq!(floor["verdict"], "NOT met", "{floor}");
        assert_eq!(floor["left_out"], 2, "{floor}");
        assert!(
            floor["value"]
                .as_str()
                .unwrap()
                .contains("3 of 5 rounds (2 left out: the host moved the CPUs within them)"),
            "{floor}"
        );
        // The fill points come after the second floor: every round counts.
        let fill = find(&all, FILL_GOAL);
        assert_eq!(fill["left_out"], 0, "{fill}");
        assert_eq!(fill["ratios"].as_array().unwrap().len(), 5, "{fill}");
        assert_eq!(
            rounds.json()["moved"],
            json!([false, true, false, true, false])
        );

        // Every round moved: no verdict, and no figures to give.
        let all_moved = Rounds {
            points: rounds.points.clone(),
            p50: vec![vec![240, 100, 60, 50 * us, 52 * us]; 4],
        };
        let all = goals(&points, &all_moved, None, false);
        let floor = find(&all, FLOOR_GOAL);
        assert_eq!(floor["verdict"], "no verdict: 0 rounds, a verdict needs 3");
        assert_eq!(floor["met"], Value::Null);
        assert_eq!(all_moved.floor_cost(Mech::ZcopyBusy), None);
    }

    #[test]
    fn paired_rounds_judge_on_the_quartiles_of_their_ratios() {
        // The single points were measured in another placement than
        // most rounds: the rounds decide.
        let points = vec![
            point(Mech::Floor, Pin::Cross, 64, 250),
            point(Mech::ZcopyBusy, Pin::Cross, 64, 340),
            point(Mech::ZcopyBusy, Pin::Cross, 4 << 20, 100),
        ];
        let rounds = Rounds {
            points: vec![
                (Mech::Floor, 64),
                (Mech::ZcopyBusy, 64),
                (Mech::ZcopyBlocking, 64),
                (Mech::ZcopyBusy, 4 << 20),
            ],
            p50: vec![
                vec![50, 100, 150, 105],
                vec![250, 340, 360, 330],
                vec![50, 95, 150, 95],
                vec![50, 100, 150, 100],
                vec![50, 95, 150, 100],
            ],
        };
        let all = goals(&points, &rounds, None, false);
        let floor = find(&all, FLOOR_GOAL);
        // The round in the other placement (1.36×) is an outlier the
        // quartiles leave out.
        assert_eq!(floor["met"], false, "{floor}");
        assert_eq!(floor["verdict"], "NOT met");
        assert_eq!(
            floor["value"],
            "100 ns vs 50 ns; 5 rounds: median 1.90×, quartiles 1.90–2.00×, all 1.36–2.00×"
        );
        assert_eq!(find(&all, BLOCKING_GOAL)["met"], true);
        // 4 MiB against 64 B of the same rounds, not the single points
        // (340 ns at 64 B, 100 ns at 4 MiB).
        let size = find(&all, SIZE_GOAL);
        assert_eq!(size["met"], true, "{size}");
        assert!(
            size["value"].as_str().unwrap().contains("median 1.00×"),
            "{size}"
        );
        let quick = goals(&points, &rounds, None, true);
        assert!(quick.iter().all(|g| g["met"].is_null()));
        assert_eq!(
            find(&quick, FLOOR_GOAL)["verdict"],
            "not judged (a quick run)"
        );

        // A median that meets the goal (1.49×) is no verdict when the
        // rounds fall on both sides of it.
        let rounds = Rounds {
            points: vec![(Mech::Floor, 64), (Mech::ZcopyBusy, 64)],
            p50: vec![vec![40, 58], vec![60, 95], vec![100, 149]],
        };
        let floor = find(&goals(&points, &rounds, None, false), FLOOR_GOAL);
        assert!(floor["met"].is_null(), "{floor}");
        assert_eq!(floor["verdict"], "no verdict: quartiles 1.45–1.58×");
        assert_eq!(
            floor["value"],
            "95 ns vs 60 ns; 3 rounds: median 1.49×, quartiles 1.45–1.58×, all 1.45–1.58×"
        );
        // Every round within it: met.
        let rounds = Rounds {
            points: vec![(Mech::Floor, 64), (Mech::ZcopyBusy, 64)],
            p50: vec![vec![40, 58], vec![60, 84], vec![100, 149]],
        };
        let floor = find(&goals(&points, &rounds, None, false), FLOOR_GOAL);
        assert_eq!(floor["met"], true, "{floor}");
    }

    #[test]
    fn a_table_floor_far_from_the_rounds_says_the_cpus_moved() {
        let rounds = Rounds {
            points: vec![(Mech::Floor, 64), (Mech::ZcopyBusy, 64)],
            p50: vec![vec![130, 250], vec![175, 300], vec![150, 270]],
        };
        let table = |ns| vec![point(Mech::Floor, Pin::Cross, 64, ns)];
        // Within 1.5× of the rounds' span at either end: the same placement.
        assert_eq!(placement_moved(&table(90), &rounds), None);
        assert_eq!(placement_moved(&table(150), &rounds), None);
        assert_eq!(placement_moved(&table(260), &rounds), None);
        // A line several times cheaper in the table's pass, or dearer.
        assert_eq!(placement_moved(&table(37), &rounds), Some((37, 130, 175)));
        assert_eq!(placement_moved(&table(300), &rounds), Some((300, 130, 175)));
        // Nothing to compare: no table floor, or no rounds.
        assert_eq!(placement_moved(&[], &rounds), None);
        assert_eq!(placement_moved(&table(37), &Rounds::default()), None);
    }

    #[test]
    fn goals_judge_the_sizes_they_name_and_never_a_quick_run() {
        let points = vec![
            point(Mech::Floor, Pin::Cross, 64, 200),
            point(Mech::ZcopyBusy, Pin::Cross, 64, 280),
            point(Mech::ZcopyBusy, Pin::Cross, 65536, 290),
        ];
        let starting = |goals: &[Value], start: &str| -> Value {
            goals
                .iter()
                .find(|g| g["goal"].as_str().unwrap().starts_with(start))
                .unwrap()
                .clone()
        };
        let none = Rounds::default();
        let full = goals(&points, &none, None, false);
        let floor = starting(&full, "64 B one-way p50 (cross-core) ≤ 1.5");
        assert_eq!(floor["met"], true);
        assert_eq!(floor["value"], "280 ns vs 200 ns (1.40×)");
        assert_eq!(figures("ns", 100.0, 21_000.0), "100 ns vs 21.00 µs (1/210)");
        let big = starting(&full, "4 MiB one-way p50");
        assert!(big["met"].is_null(), "64 KiB is not 4 MiB: {big}");
        assert_eq!(big["value"], "not measured in this run");
        let idle = starting(
            &goals(&points, &none, Some((0.002, 0.99)), false),
            "idle sender",
        );
        assert_eq!(idle["met"], true, "{idle}");
        assert_eq!(idle["value"], "0.20 % vs 99.00 % of a core (1/495)");
        let idle = starting(
            &goals(&points, &none, Some((0.05, 0.99)), false),
            "idle sender",
        );
        assert_eq!(idle["met"], false, "{idle}");
        let quick = starting(
            &goals(&points, &none, None, true),
            "64 B one-way p50 (cross-core) ≤ 1.5",
        );
        assert!(quick["met"].is_null(), "{quick}");
        assert_eq!(
            quick["value"], floor["value"],
            "a quick run still shows its figures"
        );
    }

    #[test]
    fn a_mechanism_without_figures_has_no_line() {
        let points = vec![
            point(Mech::ZcopyBusy, Pin::Cross, 64, 500),
            Point::new(
                Mech::Mq,
                Pin::Cross,
                65536,
                Err("too big".into()),
                Err("too big".into()),
            ),
        ];
        let charts = charts(&points, true);
        assert_eq!(charts.len(), 2, "cross only");
        let series = &charts[0].1.series;
        assert_eq!(series.len(), 2, "a place for each mechanism");
        assert!(series[1].points.is_empty(), "{series:?}");
        assert!(charts[0].1.note.contains("QUICK RUN"));
    }
}
