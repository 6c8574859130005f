//! One end of the two-guest RDMA tests (make qemu-test-2node): the RDMA
//! channel across a real link between two kernels.
//!
//! ```text
//! rdma-node recv <listen-addr:port> <n>        accept, receive n messages (checked), expect Closed
//! rdma-node recv-forever <listen-addr:port>    accept, print "attached", receive until killed
//! rdma-node send <from-ip> <to-addr:port> <n>  connect, send n messages
//! rdma-node send-until-error <from-ip> <to-addr:port>
//!                                              send until the channel fails; it must be
//!                                              PeerDied within 3 s of the last good send
//! ```
//! Messages are the test pattern (tests/support/channel.rs) in 4 KiB
//! slots: random lengths, order and bytes checked. Prints one line (`ok
//! <n>`, `peer died after <n> (<ms> ms after the last send)`); exit 1 with
//! a message on stderr on any failure.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use zcopy::channel::{Builder, Error};
use zcopy::rdma::{BuilderExt, Listener};
use zcopy_vm_tests::channel::{check_message, send_message};

const SLOT: usize = 4096;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("recv") => recv(&args[1..], false),
        Some("recv-forever") => recv(&args[1..], true),
        Some("send") => send(&args[1..]),
        Some("send-until-error") => send_until_error(&args[1..]),
        _ => Err("usage: rdma-node recv|recv-forever|send|send-until-error ...".into()),
    };
    match r {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("rdma-node: {e}");
            std::process::exit(1);
        }
    }
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Result<T, String> {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("argument {}: {what}", i + 1))
}

fn recv(args: &[String], forever: bool) -> Result<String, String> {
    let addr: SocketAddr = arg(args, 0, "listen address:port")?;
    let n: Option<u64> = if forever {
        None
    } else {
        Some(arg(args, 1, "message count")?)
    };
    let l = Listener::bind(addr).map_err(|e| e.to_string())?;
    let rx = l
        .accept(Some(Duration::from_secs(120)))
        .map_err(|e| e.to_string())?;
    if forever {
        println!("attached");
    }
    let mut next = 0u64;
    while n.is_none_or(|n| next < n) {
        let s = rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|e| format!("after {next} messages: {e}"))?;
        let seq = check_message(&s, SLOT)?;
        if seq != next {
            return Err(format!("message {seq} arrived where {next} was due"));
        }
        next += 1;
    }
    let end = rx.recv_timeout(Duration::from_secs(60)).map(|s| s.len());
    match end {
        Err(Error::Closed) => Ok(format!("ok {next}")),
        other => Err(format!("after the last message: {other:?}")),
    }
}

fn connect(args: &[String]) -> Result<zcopy::rdma::Sender, String> {
    let from: IpAddr = arg(args, 0, "local ip")?;
    let to: SocketAddr = arg(args, 1, "peer address:port")?;
    // The listener may not be up yet: retry for a while.
    let t = Instant::now();
    loop {
        match Builder::new()
            .slot_size(SLOT)
            .slot_count(16)
            .connect_rdma(Some(from), to)
        {
            Ok(tx) => return Ok(tx),
            Err(e) if t.elapsed() < Duration::from_secs(60) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn send(args: &[String]) -> Result<String, String> {
    let n: u64 = arg(args, 2, "message count")?;
    let tx = connect(args)?;
    for seq in 0..n {
        send_message(&tx, seq).map_err(|e| format!("message {seq}: {e}"))?;
    }
    Ok(format!("ok {n}"))
}

fn send_until_error(args: &[String]) -> Result<String, String> {
    let tx = connect(args)?;
    let mut last = Instant::now();
    for seq in 0.. {
        match send_message(&tx, seq) {
            Ok(()) => last = Instant::now(),
            Err(Error::PeerDied { .. }) => {
                let after = last.elapsed();
                if after > Duration::from_secs(3) {
                    return Err(format!(
                        "the death was noticed {after:?} after the last send"
                    ));
                }
                return Ok(format!(
                    "peer died after {seq} ({} ms after the last send)",
                    after.as_millis()
                ));
            }
            Err(e) => return Err(format!("message {seq}: {e}")),
        }
    }
    unreachable!()
}
