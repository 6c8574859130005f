//! Driver benchmark, run in the guest by `make bench` (ci/bench-driver.sh):
//! 4 KiB COPY through the rings at queue depth 1 and 32, ops/s and ioctls
//! per op. Prints a table and writes JSON (path in `argv[1]`, else stdout
//! only) and, beside it, a bar chart of ops/s (the same path ending in
//! .svg). Under TCG the absolute numbers are indicative; the ratio is the
//! point.

use std::time::{Duration, Instant};

use zcopy::card::{Buf, Card, Rings, Sqe};

const OP: u32 = 4096;

struct Run {
    depth: u32,
    ops: u64,
    ioctls: u64,
    secs: f64,
}

fn run(
    rings: &mut Rings,
    src: &zcopy::card::Pool,
    dst: &zcopy::card::Pool,
    depth: u32,
    time: Duration,
) -> Run {
    let (mut ops, mut ioctls) = (0u64, 0u64);
    let start = Instant::now();
    let mut i = 0u64;
    while start.elapsed() < time {
        for _ in 0..depth {
            let at = (i % 256) * u64::from(OP);
            rings
                .push(Sqe::copy(Buf::new(src, at), Buf::new(dst, at), OP))
                .expect("SQ room for one batch");
            i += 1;
        }
        // One ENTER submits the batch and waits for all of it.
        rings
            .submit_and_wait(depth, Some(Duration::from_secs(30)))
            .expect("ENTER");
        ioctls += 1;
        while let Some(c) = rings.pop() {
            assert_eq!(c.result, OP as i32, "COPY failed: {c:?}");
            ops += 1;
        }
    }
    Run {
        depth,
        ops,
        ioctls,
        secs: start.elapsed().as_secs_f64(),
    }
}

fn main() {
    let secs: u64 = std::env::var("ZCOPY_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let card = Card::open_index(0).expect("/dev/zcard0");
    let src = card.create_pool(1 << 20).expect("pool");
    let dst = card.create_pool(1 << 20).expect("pool");
    src.map()
        .expect("map")
        .write(0, &vec![0x5a; 1 << 20])
        .expect("write");
    let mut rings = card.setup_rings(32).expect("rings");
    run(&mut rings, &src, &dst, 1, Duration::from_millis(300)); // warm-up
    let runs = [1, 32].map(|d| run(&mut rings, &src, &dst, d, Duration::from_secs(secs)));
    let qd1 = runs[0].ops as f64 / runs[0].secs;
    println!("| queue depth | ops/s | ioctls/op | vs QD1 |");
    println!("| ---: | ---: | ---: | ---: |");
    let mut json = Vec::new();
    for r in &runs {
        let rate = r.ops as f64 / r.secs;
        let per = r.ioctls as f64 / r.ops as f64;
        println!(
            "| {} | {:.0} | {:.3} | {:.2}x |",
            r.depth,
            rate,
            per,
            rate / qd1
        );
        json.push(format!(
            r#"{{"op":"copy","bytes":{OP},"depth":{},"ops":{},"seconds":{:.3},"ops_per_sec":{:.1},"ioctls_per_op":{:.4},"speedup_vs_qd1":{:.3}}}"#,
            r.depth, r.ops, r.secs, rate, per, rate / qd1
        ));
    }
    let text = format!("[{}]\n", json.join(","));
    let Some(path) = std::env::args().nth(1) else {
        print!("{text}");
        return;
    };
    std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let per_op: Vec<String> = runs
        .iter()
        .map(|r| format!("QD{} {:.3}", r.depth, r.ioctls as f64 / r.ops as f64))
        .collect();
    let chart = zcopy_plot::Bars {
        title: format!(
            "zcard.ko's rings: {} COPY by queue depth (higher is better)",
            zcopy_plot::size(f64::from(OP))
        ),
        note: format!(
            "one ENTER submits a batch of d requests and waits for all d; {secs} s per depth; \
             ioctls per op: {}",
            per_op.join(", ")
        ),
        value: "COPY requests completed per second".into(),
        unit: zcopy_plot::Unit::PerSecond("ops".into()),
        bars: runs
            .iter()
            .map(|r| (format!("queue depth {}", r.depth), r.ops as f64 / r.secs))
            .collect(),
    };
    let svg_path = std::path::Path::new(&path).with_extension("svg");
    let svg = zcopy_plot::bars(&chart).unwrap_or_else(|e| panic!("the plot: {e}"));
    std::fs::write(&svg_path, svg).unwrap_or_else(|e| panic!("{}: {e}", svg_path.display()));
    println!("\nwrote {path} and {}", svg_path.display());
}
