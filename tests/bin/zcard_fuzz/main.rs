//! zcard-fuzz: the user ABI of /dev/zcard0 under sustained, seeded fuzzing
//! (run in the guest by tests/fuzz.rs; docs/testing.md).
//!
//! ```text
//! zcard-fuzz [--seed S] [--calls N] [--workers W] [--only ROUND:WORKER] [--no-card-faults]
//! ```
//!
//! A coordinator keeps the **oracle**: a pool of known contents, exported to
//! the workers, that only valid requests read and nothing but the
//! coordinator writes. Each round it changes the oracle through the card
//! (FILL, COPY) and its mapping, checks it byte for byte, then forks W
//! workers. Each worker (`worker.rs`) opens its own files and throws
//! random and boundary ioctls, mmaps, SQEs and hostile ring indices at the
//! driver, forks children that share its files and kills them with SIGKILL;
//! the coordinator kills some workers with SIGKILL mid-flight too. While the
//! workers run, the card faults (`faults.rs`: seeded rules on its control
//! port: error statuses, delays, lost interrupts, a reset it asks for or a
//! stalled queue that times out), so a valid request may end with a card
//! fault's errno instead of its result. Every outcome is judged against
//! docs/uapi.md (`table.rs`). After each round the
//! oracle must be exactly what the coordinator made it; after the last, the
//! driver's counters (pools, pinned, in flight) must be back at baseline.
//!
//! The run is a function of the seed (`ZCOPY_FUZZ_SEED`, printed first):
//! every worker's calls, the oracle's contents and the calls at which
//! workers are killed. Only the interleaving of the processes differs from
//! run to run; `--only ROUND:WORKER` replays one worker of one round alone
//! (no kills), which is deterministic. `ZCOPY_FUZZ_CALLS` sizes the run.
//! Exit code 0: no violation; 1: violations (each printed with the seed, the
//! worker and the call); 2: usage.

mod faults;
mod rng;
mod sys;
mod table;
mod worker;

use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use zcopy::card::{Buf, Card, Counters, Sqe};
use zcopy_vm_tests::crc32c_reference;

use faults::CardFaults;
use rng::Rng;
use table::{documented, Shared, CALLS, MAX_WORKERS};
use worker::{Job, Worker};

/// Calls per worker per round.
const CALLS_PER_WORKER: u64 = 2500;
/// Storage each worker may write.
const STORAGE_SLOT: u64 = 256 << 10;

struct Config {
    seed: u64,
    calls: u64,
    workers: usize,
    only: Option<(u64, usize)>,
    card_faults: bool,
}

fn usage(msg: &str) -> ! {
    eprintln!("zcard-fuzz: {msg}");
    eprintln!(
        "usage: zcard-fuzz [--seed S] [--calls N] [--workers W] [--only ROUND:WORKER] \
         [--no-card-faults]"
    );
    std::process::exit(2);
}

fn number(what: &str, v: &str) -> u64 {
    v.parse()
        .unwrap_or_else(|_| usage(&format!("{what}: not a number: {v:?}")))
}

fn config() -> Config {
    let set = |v: Result<String, std::env::VarError>| v.ok().filter(|v| !v.is_empty());
    let mut c = Config {
        seed: set(std::env::var("ZCOPY_FUZZ_SEED")).map_or_else(
            || {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            },
            |v| number("ZCOPY_FUZZ_SEED", &v),
        ),
        calls: set(std::env::var("ZCOPY_FUZZ_CALLS"))
            .map_or(100_000, |v| number("ZCOPY_FUZZ_CALLS", &v)),
        workers: 4,
        only: None,
        card_faults: true,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--seed" => c.seed = number("--seed", val()),
            "--calls" => c.calls = number("--calls", val()),
            "--workers" => c.workers = number("--workers", val()) as usize,
            "--only" => {
                let v = val();
                let (r, w) = v
                    .split_once(':')
                    .unwrap_or_else(|| usage("--only takes ROUND:WORKER"));
                c.only = Some((number("--only", r), number("--only", w) as usize));
            }
            "--no-card-faults" => c.card_faults = false,
            _ => usage(&format!("unknown argument {a:?}")),
        }
    }
    if c.workers == 0 || c.workers > MAX_WORKERS {
        usage(&format!("--workers must be 1..={MAX_WORKERS}"));
    }
    c
}

/// Waits until nothing is in flight, pinned or alive on the card.
fn settle(deadline: Duration) -> Result<Counters, Counters> {
    let end = Instant::now() + deadline;
    loop {
        let c = Counters::read(0).expect("zcard0 counters in sysfs");
        if c.inflight == 0 && c.pools == 0 && c.pinned == 0 {
            return Ok(c);
        }
        if Instant::now() > end {
            return Err(c);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn main() {
    let cfg = config();
    println!(
        "zcard-fuzz: seed {} ({} calls, {} workers, card faults {}; replay: ZCOPY_FUZZ_SEED={})",
        cfg.seed,
        cfg.calls,
        cfg.workers,
        if cfg.card_faults { "on" } else { "off" },
        cfg.seed
    );
    let before = match settle(Duration::from_secs(20)) {
        Ok(c) => c,
        Err(c) => {
            eprintln!("zcard-fuzz: the card is not idle before the run: {c:?}");
            std::process::exit(1);
        }
    };
    let shared = Shared::map();
    let mut faults = cfg.card_faults.then(|| {
        CardFaults::new().unwrap_or_else(|e| {
            eprintln!("zcard-fuzz: cannot inject card faults: {e}");
            std::process::exit(1);
        })
    });
    let start = Instant::now();
    let mut failures = Vec::new();
    let (rounds, killed) = run(&cfg, shared, faults.as_mut(), &mut failures);
    let secs = start.elapsed().as_secs_f64();

    match settle(Duration::from_secs(20)) {
        Ok(after) => {
            if after.cq_overflows < before.cq_overflows {
                failures.push(format!("cq_overflows went down: {before:?} -> {after:?}"));
            }
        }
        Err(c) => failures.push(format!(
            "the driver's counters did not return to baseline: {c:?}"
        )),
    }
    report(&cfg, shared, rounds, killed, secs);
    if let Some(f) = &faults {
        let kinds: Vec<String> = f
            .injected()
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        println!(
            "zcard-fuzz: card faults: {} rules armed, injected: {}; {} CQEs ended with a card fault's errno",
            f.rules,
            if kinds.is_empty() {
                "none".to_string()
            } else {
                kinds.join(", ")
            },
            shared.faulted.load(Ordering::Relaxed)
        );
    }
    drop(faults);
    let violations = shared.violations.load(Ordering::Relaxed);
    for f in &failures {
        eprintln!("zcard-fuzz: FAILED: {f}");
    }
    if violations > 0 || !failures.is_empty() {
        eprintln!(
            "zcard-fuzz: {violations} violations, {} failures (replay: ZCOPY_FUZZ_SEED={})",
            failures.len(),
            cfg.seed
        );
        std::process::exit(1);
    }
}

/// The rounds: the oracle changed and checked, workers forked, some killed.
fn run(
    cfg: &Config,
    shared: &'static Shared,
    mut faults: Option<&mut CardFaults>,
    failures: &mut Vec<String>,
) -> (u64, u64) {
    let card = Card::open_index(0).unwrap_or_else(|e| {
        eprintln!("zcard-fuzz: {e} (is zcard.ko loaded on the card?)");
        std::process::exit(1);
    });
    let info = *card.info();
    let size = (u64::from(info.max_op_bytes) + 8192)
        .next_multiple_of(4096)
        .max(256 << 10);
    let oracle = card.create_pool(size).expect("the oracle pool");
    let omap = oracle.map().expect("mapping the oracle");
    let export = oracle.export().expect("exporting the oracle");
    let mut rings = card.setup_rings(8).expect("the coordinator's rings");
    let mut model = vec![0u8; size as usize];
    let mut rng = Rng::new(cfg.seed);
    let slots = (info.storage_capacity / STORAGE_SLOT).max(1);
    let mut round = 0u64;
    let mut killed = 0u64;
    let per_round = CALLS_PER_WORKER * cfg.workers as u64;
    let target = cfg.calls;
    let max_rounds = target.div_ceil(per_round) * 2 + 1;

    while shared.total_calls() < target && round < max_rounds {
        // The coordinator's own valid changes to the oracle.
        mutate_oracle(&mut rng, &oracle, &omap, &mut rings, &mut model, failures);
        check_oracle(
            &mut rng, &oracle, &omap, &mut rings, &model, round, "before", failures,
        );
        if let Some(f) = faults.as_deref_mut() {
            match f.arm(&mut rng) {
                Ok(rules) => println!("  round {round}: card faults {}", rules.join(" ")),
                Err(e) => failures.push(format!("round {round}: {e}")),
            }
        }
        let calls = CALLS_PER_WORKER
            .min(target.div_ceil(cfg.workers as u64))
            .max(1);
        let mut pids = Vec::new();
        for w in 0..cfg.workers {
            let seed = Rng::derive(cfg.seed, round, w as u64);
            // Kill one worker in three, somewhere in its calls.
            let kill_at = rng.one_in(3).then(|| rng.below(calls));
            if cfg.only.is_some_and(|o| o != (round, w)) {
                continue;
            }
            let kill_at = kill_at.filter(|_| cfg.only.is_none());
            let slot_start = shared.calls[w].load(Ordering::Relaxed);
            let storage = ((round * cfg.workers as u64 + w as u64) % slots) * STORAGE_SLOT;
            // SAFETY: this process has no other thread, so the child can go
            // on using everything (allocator included) as it is.
            let pid = unsafe { libc::fork() };
            if pid < 0 {
                failures.push(format!("fork: {}", std::io::Error::last_os_error()));
                continue;
            }
            if pid == 0 {
                // The coordinator's file is not the worker's to use.
                let own = card.as_fd().as_raw_fd();
                sys::close(own);
                let job = Job {
                    info,
                    shared,
                    slot: w,
                    oracle_fd: export.as_raw_fd(),
                    oracle: &model,
                    storage: (storage, STORAGE_SLOT.min(info.storage_capacity)),
                    seed,
                    calls,
                    label: format!(
                        "seed {} round {round} worker {w} (--only {round}:{w})",
                        cfg.seed
                    ),
                    parent_file: None,
                    card_faults: faults.is_some(),
                };
                Worker::new(job).run();
                // SAFETY: leaves without the parent's exit handlers and
                // without flushing its copy of the parent's stdout buffer.
                unsafe { libc::_exit(0) };
            }
            pids.push((pid, w, kill_at, slot_start, false));
        }
        // Wait, killing the chosen ones once they reach their call.
        while !pids.is_empty() {
            let mut i = 0;
            while i < pids.len() {
                let (pid, w, kill_at, start, sent) = pids[i];
                let mut status = 0;
                // SAFETY: our own child; `status` is valid to write.
                let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
                if r == pid {
                    if sent && libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL
                    {
                        killed += 1;
                    } else if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                        failures.push(format!(
                            "seed {} round {round} worker {w} ended with status {status:#x}{}",
                            cfg.seed,
                            if libc::WIFSIGNALED(status) {
                                format!(" (signal {})", libc::WTERMSIG(status))
                            } else {
                                String::new()
                            }
                        ));
                    }
                    pids.remove(i);
                    continue;
                }
                if let Some(k) = kill_at {
                    if !sent && shared.calls[w].load(Ordering::Relaxed) - start >= k {
                        // SAFETY: signals our own child, not yet reaped.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                        pids[i].4 = true;
                    }
                }
                i += 1;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Some(f) = faults.as_deref_mut() {
            if let Err(e) = f.disarm(&mut rings) {
                failures.push(format!("round {round}: {e}"));
            }
        }
        check_oracle(
            &mut rng, &oracle, &omap, &mut rings, &model, round, "after", failures,
        );
        round += 1;
        if cfg.only.is_some_and(|(r, _)| round > r) {
            break;
        }
    }
    drop(rings);
    drop(omap);
    drop(export);
    drop(oracle);
    drop(card);
    (round, killed)
}

/// Valid requests and CPU writes that change the oracle; the model follows.
fn mutate_oracle(
    rng: &mut Rng,
    pool: &zcopy::card::Pool,
    map: &zcopy::card::PoolMap,
    rings: &mut zcopy::card::Rings,
    model: &mut [u8],
    failures: &mut Vec<String>,
) {
    let size = model.len() as u64;
    let chunk = 16384u64.min(size / 4);
    // FILL a range.
    let at = rng.below(size - chunk);
    let len = 1 + rng.below(chunk);
    let pattern = rng.next_u64();
    let fill = Sqe::fill(Buf::new(pool, at), len as u32, pattern);
    // COPY one range onto another, apart.
    let src = rng.below(size / 2 - chunk);
    let dst = size / 2 + rng.below(size / 2 - chunk);
    let clen = 1 + rng.below(chunk);
    let copy = Sqe::copy(Buf::new(pool, src), Buf::new(pool, dst), clen as u32);
    for (sqe, what) in [(fill, "FILL"), (copy, "COPY")] {
        match rings.run(&[sqe], Duration::from_secs(30)) {
            Ok(c) if c.len() == 1 && c[0].result >= 0 => {}
            other => failures.push(format!("the coordinator's {what} of the oracle: {other:?}")),
        }
        if what == "FILL" {
            let p = pattern.to_le_bytes();
            for (k, b) in model[at as usize..(at + len) as usize]
                .iter_mut()
                .enumerate()
            {
                *b = p[k % 8];
            }
        } else {
            let s = model[src as usize..(src + clen) as usize].to_vec();
            model[dst as usize..(dst + clen) as usize].copy_from_slice(&s);
        }
    }
    // And some bytes by the CPU.
    let at = rng.below(size - 4096);
    let mut bytes = vec![0u8; 1 + rng.index(4096)];
    rng.fill(&mut bytes);
    map.write(at, &bytes).expect("writing the oracle");
    model[at as usize..at as usize + bytes.len()].copy_from_slice(&bytes);
}

/// The oracle, byte for byte, and the card's CRC of a random range of it.
#[allow(clippy::too_many_arguments)]
fn check_oracle(
    rng: &mut Rng,
    pool: &zcopy::card::Pool,
    map: &zcopy::card::PoolMap,
    rings: &mut zcopy::card::Rings,
    model: &[u8],
    round: u64,
    when: &str,
    failures: &mut Vec<String>,
) {
    let mut got = vec![0u8; model.len()];
    map.read(0, &mut got).expect("reading the oracle");
    if got != model {
        let at = got.iter().zip(model).position(|(a, b)| a != b).unwrap_or(0);
        let n = got.iter().zip(model).filter(|(a, b)| a != b).count();
        failures.push(format!(
            "round {round} {when}: the oracle differs from its model at byte {at} ({n} bytes differ)"
        ));
    }
    let size = model.len() as u64;
    let at = rng.below(size - 4096);
    let len = 1 + rng.below(4096);
    let sqe = Sqe::crc32c(Buf::new(pool, at), len as u32, 0);
    let want = crc32c_reference(0, &model[at as usize..(at + len) as usize]);
    match rings.run(&[sqe], Duration::from_secs(30)) {
        Ok(c) if c.len() == 1 && c[0].value == u64::from(want) => {}
        other => failures.push(format!(
            "round {round} {when}: the card's CRC32C of the oracle: {other:?}, model {want:#x}"
        )),
    }
}

fn errno_name(slot: usize) -> String {
    if slot == 0 {
        "ok".into()
    } else {
        format!("{}", nix::errno::Errno::from_raw(slot as i32))
    }
}

fn report(cfg: &Config, shared: &Shared, rounds: u64, killed: u64, secs: f64) {
    let calls = shared.total_calls();
    println!(
        "zcard-fuzz: seed {}: {calls} calls ({} SQEs) by {} in {rounds} rounds, \
         {killed} workers killed mid-flight, {} children forked ({} killed), {secs:.1} s \
         ({:.0} calls/s)",
        cfg.seed,
        shared.sqes.load(Ordering::Relaxed),
        match cfg.only {
            Some((r, w)) => format!("worker {w} of round {r} alone"),
            None => format!("{} workers", cfg.workers),
        },
        shared.forks.load(Ordering::Relaxed),
        shared.child_kills.load(Ordering::Relaxed),
        calls as f64 / secs.max(0.001)
    );
    let mut undocumented = Vec::new();
    for (i, call) in CALLS.iter().enumerate() {
        let mut parts = Vec::new();
        for (slot, n) in shared.outcomes[i].iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            if n == 0 {
                continue;
            }
            parts.push(format!("{} {n}", errno_name(slot)));
            if slot != 0 && !documented(*call).iter().any(|e| *e as i32 as usize == slot) {
                undocumented.push(format!("{call:?} {}", errno_name(slot)));
            }
        }
        if !parts.is_empty() {
            println!("  {:<11} {}", format!("{call:?}"), parts.join(", "));
        }
    }
    println!(
        "zcard-fuzz: errnos docs/uapi.md does not list: {}",
        if undocumented.is_empty() {
            "none".to_string()
        } else {
            undocumented.join(", ")
        }
    );
}
