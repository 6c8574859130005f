//! The other process of the channel tests: takes or gives a channel over
//! the Unix socket on descriptor 3 and sends or receives the test pattern.
//!
//! ```text
//! channel-peer <shm|card|rdma> recv <n>       receive n messages, check order and bytes
//! channel-peer <shm|card|rdma> hold <k>       receive k, keep them, print "held", sleep
//! channel-peer <shm|card|rdma> recv-forever   receive and check until killed
//! channel-peer <shm|card|rdma> send <n> <size>  offer (8 slots of size), send n
//! channel-peer <shm|card|rdma> send-forever <size>  offer, send until killed
//! channel-peer named <name>                  create /dev/shm/zcopy.<name>, print "created", sleep
//! channel-peer named-recv <name> <n>         open it by name, receive n
//! ```
//! Prints one line (`ok <n>`, `held`, `shared`, `attached`) on stdout; exit 1 with a
//! message on stderr on any failure.

use std::os::unix::net::UnixStream;

use zcopy::channel::{Builder, Receiver, Rx};
use zcopy_vm_tests::channel::{check_message, send_message, Harness, Rdma};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // For the transport modes the parent put the socket on descriptor 3
    // (spawn_with_fd3).
    let sock = || {
        zcopy::channel::inherited_socket(3)
            .map(UnixStream::from)
            .map_err(|e| format!("descriptor 3: {e}"))
    };
    let r = match args.first().map(String::as_str) {
        Some("shm") => sock().and_then(|s| run::<zcopy::channel::Shm>(&s, &args[1..])),
        Some("card") => sock().and_then(|s| run::<zcopy::channel::CardSlots>(&s, &args[1..])),
        Some("rdma") => sock().and_then(|s| run::<Rdma>(&s, &args[1..])),
        Some("named") => named(&args[1..]),
        Some("named-recv") => Receiver::open_named(&args[1])
            .map_err(|e| e.to_string())
            .and_then(|rx| receive(&rx, Some(num(&args[1..], 1)?))),
        _ => Err("usage: channel-peer <shm|card|rdma> <mode> ...".into()),
    };
    match r {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("channel-peer: {e}");
            std::process::exit(1);
        }
    }
}

fn named(args: &[String]) -> Result<String, String> {
    let name = args.first().ok_or("a name")?;
    let _tx = Builder::new()
        .create_named(name)
        .map_err(|e| e.to_string())?;
    println!("created");
    loop {
        std::thread::park();
    }
}

fn num(args: &[String], i: usize) -> Result<u64, String> {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("argument {i}: a number"))
}

fn run<T: Harness>(sock: &UnixStream, args: &[String]) -> Result<String, String> {
    let ctx = T::context();
    match args.first().map(String::as_str) {
        Some("recv") => {
            let rx = T::accept(&ctx, sock).map_err(|e| e.to_string())?;
            receive(&rx, Some(num(args, 1)?))
        }
        Some("recv-forever") => {
            let rx = T::accept(&ctx, sock).map_err(|e| e.to_string())?;
            println!("attached");
            receive(&rx, None)
        }
        Some("hold") => {
            let rx = T::accept(&ctx, sock).map_err(|e| e.to_string())?;
            let mut held = Vec::new();
            for _ in 0..num(args, 1)? {
                held.push(rx.recv().map_err(|e| e.to_string())?);
            }
            println!("held");
            loop {
                std::thread::park();
            }
        }
        Some("send") => {
            let tx = T::offer(&ctx, num(args, 2)? as usize, 8, sock).map_err(|e| e.to_string())?;
            for seq in 0..num(args, 1)? {
                send_message(&tx, seq).map_err(|e| format!("message {seq}: {e}"))?;
            }
            Ok(format!("ok {}", num(args, 1)?))
        }
        Some("send-forever") => {
            let tx = T::offer(&ctx, num(args, 1)? as usize, 8, sock).map_err(|e| e.to_string())?;
            println!("shared");
            for seq in 0.. {
                send_message(&tx, seq).map_err(|e| format!("message {seq}: {e}"))?;
            }
            unreachable!()
        }
        _ => Err(format!("unknown mode {args:?}")),
    }
}

fn receive<R: Rx>(rx: &R, n: Option<u64>) -> Result<String, String> {
    let slot = rx.slot_size();
    let mut next = 0u64;
    while n.is_none_or(|n| next < n) {
        let sample = rx
            .recv()
            .map_err(|e| format!("after {next} messages: {e}"))?;
        let seq = check_message(&sample, slot)?;
        if seq != next {
            return Err(format!("message {seq} arrived where {next} was due"));
        }
        next += 1;
    }
    Ok(format!("ok {next}"))
}
