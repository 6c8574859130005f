//! `zcopy bench shm|card|rdma|all`: the project's benchmarks behind one
//! command. Each bench is its own binary with its own table, JSON, plots
//! and in-run baselines; this module finds the binary, checks that the
//! machine has what the bench needs, runs it with the output directory
//! (with `--short`, only the points its goals read; with `--quick`, small
//! settings), and checks it wrote its JSON.
//!
//! - shm: `zcopy-ipc-bench` (crate `zcopy-bench`), zcopy channels against
//!   pipe, Unix socket, POSIX mq, a copying ring and a bare shared flag.
//! - card: `zcard-bench` (crate `zcopy-bench`), COPY through zcard.ko's
//!   rings at queue depth 1 and 32; needs `/dev/zcard0`.
//! - rdma: `zcopy-rdma-bench` (crate `zcopy-bench`), the RDMA channel
//!   against perftest; needs the guest's Soft-RoCE pair `zrxe0`/`zrxe1`.
//!
//! All three are built by the crate `zcopy-bench` (`benchmarks/`), which
//! zcopy does not depend on: the binaries are looked for next to the
//! running `zcopy` (cargo builds them into the same `target/<profile>/`),
//! or in `$ZCOPY_BENCH_DIR`.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant, SystemTime};

use clap::{Args, ValueEnum};

use crate::failure::{Failure, Result, MISSING};
use crate::output::print;

/// The environment variable naming the directory of the bench binaries.
pub const BENCH_DIR_ENV: &str = "ZCOPY_BENCH_DIR";

/// `--help` of `zcopy bench`: what runs, what `--quick` passes, examples.
pub const LONG_ABOUT: &str = "\
Runs the project's benchmarks. Each prints its table, writes JSON (and SVG plots) into
--out, and measures its baselines in the same run.

  shm   zcopy-ipc-bench: zcopy channels against a bare shared flag, pipe, Unix socket,
        POSIX mq and a copying ring, two processes on two cores and on one core
        (ipc.json, ipc-latency-*.svg, ipc-throughput-*.svg)
  card  zcard-bench: 4 KiB COPY through zcard.ko's rings at queue depth 1 and 32
        (zcard-driver.json, zcard-driver.svg); needs /dev/zcard0: the zcopy guest
  rdma  zcopy-rdma-bench: the RDMA channel against ib_write_bw, ib_send_lat and
        ib_write_lat (rdma.json, rdma-bandwidth.svg); needs the Soft-RoCE pair
        zrxe0/zrxe1 (169.254.77.1/.2) and perftest: the zcopy guest
  all   each in turn; one this machine cannot run (no card, no RDMA pair) is
        reported as skipped with the reason, and the others still run

The bench binaries are looked for next to this zcopy (cargo builds them into the same
target/<profile>/ directory: cargo build -p zcopy-bench --bins), or in $ZCOPY_BENCH_DIR.

--short measures only the points the bench's goals read, by the full bench's method and
iterations (make demo runs it). A goal measured in rounds (shm's paired ones, every rdma
one) is judged on the quartiles of its rounds (met or not met when they lie on one side
of it, no verdict when they straddle it), so a short run gives the full bench's verdict
or none:
  shm   --pin cross --sizes 64,4194304
  card  (the full settings)
  rdma  --volume 32M (every size, a quarter of the bytes; the whole latency run)
--quick passes small settings: a smoke run, not a measurement; it prints its figures and
judges no goal (well under a minute each, even in the emulated guest):
  shm   --quick --sizes 64,4096,65536
  card  ZCOPY_BENCH_SECS=1 (seconds per queue depth; a ZCOPY_BENCH_SECS already set wins)
  rdma  --quick
Arguments after -- go to the bench binary (shm and rdma; see its --help) and replace
the --short or --quick setting of the same option.

all exits 0 when every bench this machine can run ran (skipped ones are listed),
1 when one failed, 3 when none could run.

Examples:
  zcopy bench shm                            the full IPC bench, results in target/bench/
  zcopy bench all --quick --out /tmp/bench   every bench this machine can run, small settings
  zcopy bench shm -- --mech zcopy-busy,pipe --pin cross
  zcopy bench rdma --quick -- --lat-iters 1000
  make qemu-exec CMD='target/debug/zcopy bench all --quick'   (the guest: card and rdma too)";

/// Which bench to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// IPC on this machine: zcopy channels against pipe, Unix socket, POSIX mq, ...
    Shm,
    /// zcard.ko's rings at queue depth 1 and 32 (needs /dev/zcard0).
    Card,
    /// The RDMA channel against perftest (needs the guest's zrxe0/zrxe1).
    Rdma,
    /// shm, card and rdma in turn, skipping what this machine cannot run.
    All,
}

/// `zcopy bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which bench.
    #[arg(value_enum)]
    pub kind: Kind,
    /// Where the JSON and SVG files go (created if missing).
    #[arg(long, value_name = "DIR", default_value = "target/bench", value_parser = parse_dir)]
    pub out: PathBuf,
    /// Small, fast settings: a smoke run, not a measurement (no verdicts).
    #[arg(long, conflicts_with = "short")]
    pub quick: bool,
    /// Only the points the goals read, measured as the full bench does.
    #[arg(long)]
    pub short: bool,
    /// Arguments for the bench binary (shm, rdma), after `--`.
    #[arg(last = true, value_name = "BENCH_ARGS")]
    pub extra: Vec<OsString>,
}

/// A non-empty directory path.
fn parse_dir(s: &str) -> std::result::Result<PathBuf, String> {
    if s.is_empty() {
        Err("an empty path; name a directory (example: --out target/bench)".into())
    } else {
        Ok(PathBuf::from(s))
    }
}

/// One bench binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bench {
    /// `shm`, `card`, `rdma`.
    name: &'static str,
    /// The binary's name.
    binary: &'static str,
    /// The cargo package that builds it.
    package: &'static str,
    /// The JSON file it writes into the output directory.
    json: &'static str,
}

const SHM: Bench = Bench {
    name: "shm",
    binary: "zcopy-ipc-bench",
    package: "zcopy-bench",
    json: "ipc.json",
};
const CARD: Bench = Bench {
    name: "card",
    binary: "zcard-bench",
    package: "zcopy-bench",
    json: "zcard-driver.json",
};
const RDMA: Bench = Bench {
    name: "rdma",
    binary: "zcopy-rdma-bench",
    package: "zcopy-bench",
    json: "rdma.json",
};

/// Settings of a bench binary: (option, value; None for a flag).
type Settings = &'static [(&'static str, Option<&'static str>)];

/// `--quick` settings of zcopy-ipc-bench.
const SHM_QUICK: Settings = &[("--quick", None), ("--sizes", Some("64,4096,65536"))];
/// `--short` settings of zcopy-ipc-bench: the goals read 64 B and 4 MiB,
/// across cores.
const SHM_SHORT: Settings = &[("--pin", Some("cross")), ("--sizes", Some("64,4194304"))];
/// `--quick` settings of zcopy-rdma-bench: its own small ones.
const RDMA_QUICK: Settings = &[("--quick", None)];
/// `--short` settings of zcopy-rdma-bench: every bandwidth size (the goal
/// holds at every size) with a quarter of the volume (8192 messages at
/// 4 KiB, 100 from 1 MiB), and the full latency run (its two sizes, 2000
/// round trips: a few seconds even under TCG).
const RDMA_SHORT: Settings = &[("--volume", Some("32M"))];
/// zcard-bench's seconds per queue depth under `--quick` (its default is 5).
const CARD_QUICK_SECS: &str = "1";

/// How one bench of `all` ended.
enum Outcome {
    /// It ran; the files it wrote.
    Done(Duration, Vec<String>),
    /// This machine cannot run it: why, and what to do.
    Skipped(String),
    /// It failed.
    Failed(String),
}

/// `zcopy bench`.
pub fn run(args: &BenchArgs) -> Result<()> {
    let benches: &[Bench] = match args.kind {
        Kind::Shm => &[SHM],
        Kind::Card => &[CARD],
        Kind::Rdma => &[RDMA],
        Kind::All => &[SHM, CARD, RDMA],
    };
    check_extra(args)?;
    if let [bench] = benches {
        let (took, files) = run_one(*bench, args)?;
        return print(&format!(
            "zcopy bench {}: done in {:.1} s{}\n",
            bench.name,
            took.as_secs_f64(),
            wrote(&args.out, &files)
        ));
    }
    let outcomes: Vec<(Bench, Outcome)> = benches
        .iter()
        .map(|&b| {
            let o = match run_one(b, args) {
                Ok((took, files)) => Outcome::Done(took, files),
                Err(f) if f.code == MISSING => Outcome::Skipped(f.message),
                Err(f) => Outcome::Failed(f.message),
            };
            if let Outcome::Skipped(why) | Outcome::Failed(why) = &o {
                eprintln!("zcopy bench {}: {why}", b.name);
            }
            (b, o)
        })
        .collect();
    print(&summary(&outcomes, &args.out))?;
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Failed(_)))
        .map(|(b, _)| b.name)
        .collect();
    if !failed.is_empty() {
        return Err(Failure::failed(format!(
            "bench {} failed (above)",
            failed.join(", ")
        )));
    }
    if outcomes
        .iter()
        .all(|(_, o)| matches!(o, Outcome::Skipped(_)))
    {
        return Err(Failure::missing(
            "no bench could run on this machine (above)",
        ));
    }
    Ok(())
}

/// Arguments after `--` go to one bench binary that takes options.
fn check_extra(args: &BenchArgs) -> Result<()> {
    if args.extra.is_empty() {
        return Ok(());
    }
    match args.kind {
        Kind::All => Err(Failure::usage(
            "arguments after -- go to one bench binary: use zcopy bench shm or rdma with them",
        )),
        Kind::Card => Err(Failure::usage(
            "zcard-bench takes no options (ZCOPY_BENCH_SECS sets its seconds per queue depth)",
        )),
        Kind::Shm | Kind::Rdma if has_option(&args.extra, "--out") => Err(Failure::usage(
            "--out is zcopy bench's own option: put it before --",
        )),
        Kind::Shm | Kind::Rdma => Ok(()),
    }
}

/// Whether `extra` sets `option` (`--opt VALUE` or `--opt=VALUE`).
fn has_option(extra: &[OsString], option: &str) -> bool {
    extra.iter().any(|a| {
        let a = a.as_encoded_bytes();
        a.strip_prefix(option.as_bytes())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"="))
    })
}

/// Whether `extra` asks the bench for its help or version (it then writes no JSON).
fn asks_for_help(extra: &[OsString]) -> bool {
    extra.iter().any(|a| {
        ["-h", "--help", "-V", "--version"]
            .map(OsStr::new)
            .contains(&a.as_os_str())
    })
}

/// Checks the platform, finds the binary, runs it; the time it took and
/// the files it wrote (the JSON among them).
fn run_one(bench: Bench, args: &BenchArgs) -> Result<(Duration, Vec<String>)> {
    platform(bench)?;
    let exe = locate(bench)?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| Failure::failed(format!("{}: {e}", args.out.display())))?;
    let mut cmd = command(bench, &exe, args);
    print(&format!(
        "== zcopy bench {}: {}\n",
        bench.name,
        shown(&cmd, args.quick && bench == CARD)
    ))?;
    let start = SystemTime::now();
    let t0 = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| Failure::failed(format!("{}: {e}", exe.display())))?;
    let took = t0.elapsed();
    if !status.success() {
        return Err(Failure::failed(format!(
            "{} {}",
            bench.binary,
            ended(status)
        )));
    }
    if asks_for_help(&args.extra) {
        return Ok((took, Vec::new()));
    }
    // File times come from a coarse clock: a second of slack.
    let since = start.checked_sub(Duration::from_secs(1)).unwrap_or(start);
    let files = written_since(&args.out, since);
    if !files.iter().any(|f| f == bench.json) {
        return Err(Failure::failed(format!(
            "{} exited 0 but wrote no {}",
            bench.binary,
            args.out.join(bench.json).display()
        )));
    }
    Ok((took, files))
}

/// The bench's command line: output directory, `--short` or `--quick` settings the
/// extra arguments do not replace, then the extra arguments.
fn command(bench: Bench, exe: &Path, args: &BenchArgs) -> Command {
    let mut cmd = Command::new(exe);
    let settings: Settings = match (bench, args.quick, args.short) {
        (SHM, true, _) => SHM_QUICK,
        (SHM, _, true) => SHM_SHORT,
        (RDMA, true, _) => RDMA_QUICK,
        (RDMA, _, true) => RDMA_SHORT,
        _ => &[],
    };
    if bench == CARD {
        cmd.arg(args.out.join(bench.json));
        if args.quick && std::env::var_os("ZCOPY_BENCH_SECS").is_none() {
            cmd.env("ZCOPY_BENCH_SECS", CARD_QUICK_SECS);
        }
        return cmd;
    }
    cmd.arg("--out").arg(&args.out);
    for (option, value) in settings {
        if !has_option(&args.extra, option) {
            cmd.arg(option);
            cmd.args(value);
        }
    }
    cmd.args(&args.extra);
    cmd
}

/// The command as a shell line, for the header.
fn shown(cmd: &Command, quick_secs: bool) -> String {
    let mut words: Vec<String> = Vec::new();
    if quick_secs {
        words.push(format!("ZCOPY_BENCH_SECS={CARD_QUICK_SECS}"));
    }
    words.push(cmd.get_program().to_string_lossy().into_owned());
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}

/// "exited with status 1", "was killed by signal 9".
fn ended(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code} (its message is above)"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        (None, None) => format!("ended with {status}"),
    }
}

/// Files of `dir` modified at or after `since`, sorted.
fn written_since(dir: &Path, since: SystemTime) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<String> = entries
        .flatten()
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since)
        })
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    files.sort();
    files
}

/// "; in DIR: a.json, b.svg" (nothing when no file).
fn wrote(out: &Path, files: &[String]) -> String {
    if files.is_empty() {
        String::new()
    } else {
        format!("; in {}: {}", out.display(), files.join(", "))
    }
}

/// What `all` prints at the end: one line per bench.
fn summary(outcomes: &[(Bench, Outcome)], out: &Path) -> String {
    let mut s = String::from("\n== zcopy bench all\n");
    for (b, o) in outcomes {
        s += &match o {
            Outcome::Done(took, files) => format!(
                "  {:<5} done     {:.1} s{}\n",
                b.name,
                took.as_secs_f64(),
                wrote(out, files)
            ),
            Outcome::Skipped(why) => format!("  {:<5} skipped  {why}\n", b.name),
            Outcome::Failed(why) => format!("  {:<5} FAILED   {why}\n", b.name),
        };
    }
    s
}

/// The directory of the bench binaries: `$ZCOPY_BENCH_DIR`, else the
/// running zcopy's own directory; and whether it came from the variable.
fn bench_dir() -> Result<(PathBuf, bool)> {
    if let Some(dir) = std::env::var_os(BENCH_DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok((PathBuf::from(dir), true));
    }
    let exe = std::env::current_exe().map_err(|e| {
        Failure::failed(format!(
            "where is this zcopy? ({e}); set {BENCH_DIR_ENV} to the bench binaries' directory"
        ))
    })?;
    match exe.parent() {
        Some(dir) => Ok((dir.to_path_buf(), false)),
        None => Err(Failure::failed(format!(
            "{} has no directory; set {BENCH_DIR_ENV}",
            exe.display()
        ))),
    }
}

/// The bench's binary, or a failure naming the cargo command that builds it.
fn locate(bench: Bench) -> Result<PathBuf> {
    let (dir, from_env) = bench_dir()?;
    let exe = dir.join(bench.binary);
    if exe.is_file() {
        return Ok(exe);
    }
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("release") => " --release",
        _ => "",
    };
    let whence = if from_env {
        format!("${BENCH_DIR_ENV}")
    } else {
        format!("next to zcopy; {BENCH_DIR_ENV} names another directory")
    };
    Err(Failure::failed(format!(
        "{} not found in {} ({whence}): build it with `cargo build{profile} -p {} --bin {}`",
        bench.binary,
        dir.display(),
        bench.package,
        bench.binary
    )))
}

/// What the bench needs from the machine: a card, the RDMA pair and perftest.
fn platform(bench: Bench) -> Result<()> {
    match bench {
        CARD => crate::platform::open_card().map(drop),
        RDMA => {
            crate::platform::rxe_pair()?;
            crate::platform::perftest(std::env::var_os("PATH").as_deref())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::NO_CARD;

    fn args(kind: Kind, quick: bool, extra: &[&str]) -> BenchArgs {
        BenchArgs {
            kind,
            out: PathBuf::from("/tmp/out"),
            quick,
            short: false,
            extra: extra.iter().map(OsString::from).collect(),
        }
    }

    fn argv(cmd: &Command) -> Vec<String> {
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn quick_settings_give_way_to_extra_arguments() {
        let exe = Path::new("/x/zcopy-ipc-bench");
        let cmd = command(SHM, exe, &args(Kind::Shm, true, &[]));
        assert_eq!(
            argv(&cmd),
            ["--out", "/tmp/out", "--quick", "--sizes", "64,4096,65536"]
        );
        let cmd = command(
            SHM,
            exe,
            &args(Kind::Shm, true, &["--sizes=64", "--pin", "cross"]),
        );
        assert_eq!(
            argv(&cmd),
            [
                "--out",
                "/tmp/out",
                "--quick",
                "--sizes=64",
                "--pin",
                "cross"
            ]
        );
        let cmd = command(SHM, exe, &args(Kind::Shm, false, &["--iters", "10"]));
        assert_eq!(argv(&cmd), ["--out", "/tmp/out", "--iters", "10"]);
        let cmd = command(RDMA, exe, &args(Kind::Rdma, true, &["--lat-iters", "9"]));
        assert_eq!(
            argv(&cmd),
            ["--out", "/tmp/out", "--quick", "--lat-iters", "9"]
        );
        let mut short = args(Kind::Rdma, false, &[]);
        short.short = true;
        assert_eq!(
            argv(&command(RDMA, exe, &short)),
            ["--out", "/tmp/out", "--volume", "32M"]
        );
        short.extra = vec!["--volume=8M".into()];
        assert_eq!(
            argv(&command(RDMA, exe, &short)),
            ["--out", "/tmp/out", "--volume=8M"]
        );
        short.kind = Kind::Shm;
        short.extra.clear();
        assert_eq!(
            argv(&command(SHM, exe, &short)),
            [
                "--out",
                "/tmp/out",
                "--pin",
                "cross",
                "--sizes",
                "64,4194304"
            ]
        );
        let cmd = command(CARD, exe, &args(Kind::Card, false, &[]));
        assert_eq!(argv(&cmd), ["/tmp/out/zcard-driver.json"]);
    }

    #[test]
    fn extra_arguments_are_checked() {
        assert!(check_extra(&args(Kind::Shm, false, &["--mech", "pipe"])).is_ok());
        assert!(check_extra(&args(Kind::Card, false, &[])).is_ok());
        for (kind, extra) in [
            (Kind::All, &["--sizes", "64"][..]),
            (Kind::Card, &["5"][..]),
            (Kind::Shm, &["--out", "x"][..]),
            (Kind::Rdma, &["--out=x"][..]),
        ] {
            let f = check_extra(&args(kind, false, extra)).unwrap_err();
            assert_eq!(f.code, crate::failure::USAGE, "{kind:?} {extra:?}");
        }
        assert!(!has_option(&[OsString::from("--outside")], "--out"));
        assert!(asks_for_help(&[OsString::from("--help")]));
        assert!(!asks_for_help(&[OsString::from("--helpful")]));
    }

    #[test]
    fn all_sums_up_each_bench() {
        let outcomes = vec![
            (
                SHM,
                Outcome::Done(
                    Duration::from_millis(1500),
                    vec!["ipc.json".into(), "ipc-latency-cross.svg".into()],
                ),
            ),
            (CARD, Outcome::Skipped(NO_CARD.into())),
            (
                RDMA,
                Outcome::Failed("zcopy-rdma-bench exited with status 1".into()),
            ),
        ];
        let s = summary(&outcomes, Path::new("target/bench"));
        assert!(
            s.contains(
                "  shm   done     1.5 s; in target/bench: ipc.json, ipc-latency-cross.svg\n"
            ),
            "{s}"
        );
        assert!(s.contains(&format!("  card  skipped  {NO_CARD}\n")), "{s}");
        assert!(
            s.contains("  rdma  FAILED   zcopy-rdma-bench exited"),
            "{s}"
        );
    }
}
