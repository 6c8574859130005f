//! iceoryx2 publish-subscribe as a baseline (feature `iceoryx2`): two
//! services (ping, pong), one publisher and one subscriber each, busy
//! polling, the publisher blocking rather than losing samples. Like the
//! zcopy runs, a message of any size has only its first 64 bytes written.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::publish_subscribe::PortFactory;

use super::HEADER;

type Svc = PortFactory<ipc::Service, [u8], ()>;
type Pub = Publisher<ipc::Service, [u8], ()>;
type Sub = Subscriber<ipc::Service, [u8], ()>;
type R<T> = Result<T, String>;

const HELLO: u64 = u64::MAX - 1;

/// Bumped before every fork, so parent and child agree on fresh service names.
pub static RUN: AtomicU64 = AtomicU64::new(0);

fn e(e: impl std::fmt::Debug) -> String {
    format!("iceoryx2: {e:?}")
}

/// The two service names of this run; `child`: called in the forked child.
fn names(child: bool) -> (String, String) {
    let parent = if child {
        nix::unistd::getppid()
    } else {
        nix::unistd::getpid()
    };
    let run = RUN.load(Ordering::Relaxed);
    (
        format!("zcopy-bench-{parent}-{run}-ping"),
        format!("zcopy-bench-{parent}-{run}-pong"),
    )
}

fn service(node: &Node<ipc::Service>, name: &str, buffer: usize) -> R<Svc> {
    node.service_builder(&ServiceName::new(name).map_err(e)?)
        .publish_subscribe::<[u8]>()
        .max_publishers(1)
        .max_subscribers(1)
        .history_size(0)
        .subscriber_max_buffer_size(buffer)
        .enable_safe_overflow(false)
        .open_or_create()
        .map_err(e)
}

fn publisher(svc: &Svc, size: usize) -> R<Pub> {
    svc.publisher_builder()
        .initial_max_slice_len(size)
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()
        .map_err(e)
}

fn send(p: &Pub, size: usize, seq: u64) -> R<()> {
    let mut s = p.loan_slice_uninit(size).map_err(e)?;
    let buf = s.payload_mut();
    let hdr = seq.to_le_bytes();
    for (i, b) in buf[..size.min(HEADER)].iter_mut().enumerate() {
        b.write(if i < 8 { hdr[i] } else { i as u8 });
    }
    // SAFETY: u8 has no invalid values; bytes past the header are whatever
    // the shared memory holds, which is what a zero-copy run measures.
    let s = unsafe { s.assume_init() };
    s.send().map_err(e)?;
    Ok(())
}

fn recv_spin(sub: &Sub) -> R<u64> {
    loop {
        for _ in 0..2000 {
            if let Some(s) = sub.receive().map_err(e)? {
                return Ok(u64::from_le_bytes(
                    s.payload()[..8].try_into().expect("8 bytes"),
                ));
            }
            std::hint::spin_loop();
        }
        std::thread::yield_now();
    }
}

/// Sends HELLO until the peer echoes it: until a subscriber has read once,
/// samples may be dropped rather than block.
fn handshake(publ: &Pub, sub: &Sub, size: usize) -> R<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        send(publ, size, HELLO)?;
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(2) {
            if let Some(s) = sub.receive().map_err(e)? {
                if s.payload()[..8] == HELLO.to_le_bytes() {
                    return Ok(());
                }
            }
        }
    }
    Err("iceoryx2: the peer never answered".into())
}

fn node() -> R<Node<ipc::Service>> {
    set_log_level(LogLevel::Error);
    NodeBuilder::new().create::<ipc::Service>().map_err(e)
}

/// Parent side: one-way latencies, or [total ns] for a stream of `n`.
pub fn ping(size: usize, n: usize, stream: bool) -> R<Vec<u64>> {
    let node = node()?;
    let (a, b) = names(false);
    let tx = service(&node, &a, 16)?;
    let rx = service(&node, &b, 16)?;
    let sub = rx.subscriber_builder().create().map_err(e)?;
    let publ = publisher(&tx, size)?;
    handshake(&publ, &sub, size)?;
    let mut out = Vec::with_capacity(n);
    if stream {
        let t = Instant::now();
        for seq in 0..n as u64 {
            send(&publ, size, seq)?;
        }
        while recv_spin(&sub)? != u64::MAX {}
        out.push(t.elapsed().as_nanos() as u64);
    } else {
        for seq in 0..n as u64 {
            let t = Instant::now();
            send(&publ, size, seq)?;
            while recv_spin(&sub)? != seq {}
            out.push(t.elapsed().as_nanos() as u64 / 2);
        }
        send(&publ, size, u64::MAX)?;
    }
    Ok(out)
}

/// Child side.
pub fn pong(size: usize, n: usize, stream: bool) -> R<()> {
    let node = node()?;
    let (a, b) = names(true);
    let rx = service(&node, &a, 16)?;
    let tx = service(&node, &b, 16)?;
    let sub = rx.subscriber_builder().create().map_err(e)?;
    let publ = publisher(&tx, size)?;
    let mut got = 0;
    loop {
        let seq = recv_spin(&sub)?;
        if seq == HELLO {
            send(&publ, size, HELLO)?;
            continue;
        }
        if seq == u64::MAX {
            return Ok(());
        }
        if stream {
            got += 1;
            if got == n {
                send(&publ, size, u64::MAX)?;
                return Ok(());
            }
        } else {
            send(&publ, size, seq)?;
        }
    }
}
