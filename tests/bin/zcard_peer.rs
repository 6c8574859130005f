//! The second process of the guest driver tests (tests/driver.rs): it is
//! given a Unix socket as descriptor 3 and does one of:
//!
//! - `import`: receives a pool descriptor over the socket (SCM_RIGHTS),
//!   imports it on its own /dev/zcard0, checks the first bytes equal the
//!   expected hex argument, has the card COPY them to offset 4096 of the same
//!   pool, and answers `ok <crc32c>` of the bytes it saw.
//! - `snoop <offset>`: has no pool descriptor; tries to map the other
//!   process's pool at its mmap offset and to name its pool id 1 in an SQE;
//!   answers `refused <mmap errno> <cqe result>`.
//! - `flood`: creates a pool and keeps the queue full of COPY requests
//!   forever (the test kills it with SIGKILL); says `flooding` once the
//!   first batch is in flight.
//! - `memcg <rounds> <bytes>`: waits for `go` (the test has moved it into a
//!   memory cgroup), then runs `rounds` rounds of {create a pool of `bytes`,
//!   map it, touch every page, destroy it} keeping every mapping, and says
//!   `held <ok or errno of each round>`; on `release` unmaps them all, runs
//!   the rounds again unmapping each time and says `released <rounds that
//!   worked>`; on `tight` creates one more pool and answers `tight <ok or
//!   errno>`.
//! - `create <bytes>`: waits for `go` (the test has set its memory cgroup's
//!   limit), creates one pool of `bytes` and answers `create <ok or errno>`.

use std::io::{IoSliceMut, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use zcopy::card::{Buf, Card, Sqe};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // SAFETY: the test hands this process its socket as descriptor 3 and
    // nothing else in this process owns it.
    let sock = unsafe { UnixStream::from_raw_fd(3) };
    let reply = match args.get(1).map(String::as_str) {
        Some("import") => import(&sock, args.get(2).map_or("", String::as_str)),
        Some("snoop") => snoop(args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1 << 32)),
        Some("flood") => flood(&sock),
        Some("memcg") => memcg(
            &sock,
            args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1),
            args.get(3).and_then(|a| a.parse().ok()).unwrap_or(1 << 20),
        ),
        Some("create") => create(
            &sock,
            args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1 << 20),
        ),
        _ => Err(
            "usage: zcard-peer import HEX | snoop OFFSET | flood | memcg ROUNDS BYTES | create BYTES"
                .to_string(),
        ),
    };
    let line = reply.unwrap_or_else(|e| format!("error {e}"));
    let _ = writeln!(&sock, "{line}");
}

fn import(sock: &UnixStream, expect_hex: &str) -> Result<String, String> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .map_err(|e| format!("recvmsg: {e}"))?;
    let mut fd = None;
    for c in msg.cmsgs().map_err(|e| format!("cmsgs: {e}"))? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: SCM_RIGHTS just installed these descriptors in this
            // process; each is owned here alone.
            fd = fds.first().map(|&f| unsafe { OwnedFd::from_raw_fd(f) });
        }
    }
    let fd = fd.ok_or("no descriptor received")?;
    let card = Card::open_index(0).map_err(|e| e.to_string())?;
    let pool = card.import_pool(fd.as_fd()).map_err(|e| e.to_string())?;
    let map = pool.map().map_err(|e| e.to_string())?;
    let want: Vec<u8> = (0..expect_hex.len() / 2)
        .map(|i| u8::from_str_radix(&expect_hex[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    let mut seen = vec![0u8; want.len()];
    map.read(0, &mut seen).map_err(|e| e.to_string())?;
    if seen != want {
        return Err(format!("pool holds {seen:02x?}, expected {want:02x?}"));
    }
    let mut rings = card.setup_rings(4).map_err(|e| e.to_string())?;
    let len = want.len() as u32;
    let cqes = rings
        .run(
            &[
                Sqe::copy(Buf::new(&pool, 0), Buf::new(&pool, 4096), len),
                Sqe::crc32c(Buf::new(&pool, 0), len, 0),
            ],
            Duration::from_secs(20),
        )
        .map_err(|e| e.to_string())?;
    for c in &cqes {
        c.bytes().map_err(|e| e.to_string())?;
    }
    let crc = cqes.iter().find(|c| c.value != 0).map_or(0, |c| c.value);
    Ok(format!("ok {crc}"))
}

fn snoop(offset: u64) -> Result<String, String> {
    let card = Card::open_index(0).map_err(|e| e.to_string())?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/zcard0")
        .map_err(|e| e.to_string())?;
    let mapped = memmap2::MmapOptions::new()
        .offset(offset)
        .len(4096)
        .map_raw(&file);
    let mmap_errno = match mapped {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    };
    let mut rings = card.setup_rings(2).map_err(|e| e.to_string())?;
    let other = Buf { pool: 1, offset: 0 };
    let cqes = rings
        .run(&[Sqe::fill(other, 64, 0x4141)], Duration::from_secs(20))
        .map_err(|e| e.to_string())?;
    Ok(format!("refused {mmap_errno} {}", cqes[0].result))
}

fn flood(sock: &UnixStream) -> Result<String, String> {
    let card = Card::open_index(0).map_err(|e| e.to_string())?;
    let pool = card.create_pool(1 << 20).map_err(|e| e.to_string())?;
    let mut rings = card.setup_rings(32).map_err(|e| e.to_string())?;
    let mut said = false;
    loop {
        while rings
            .push(Sqe::copy(
                Buf::new(&pool, 0),
                Buf::new(&pool, 1 << 19),
                1 << 16,
            ))
            .is_ok()
        {}
        let _ = rings.submit();
        while rings.pop().is_some() {}
        if !said {
            writeln!(&*sock, "flooding").map_err(|e| e.to_string())?;
            said = true;
        }
    }
}

/// Reads one line from the test and checks it is `want`.
fn expect_line(sock: &UnixStream, want: &str) -> Result<(), String> {
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(sock), &mut line)
        .map_err(|e| e.to_string())?;
    if line.trim() == want {
        Ok(())
    } else {
        Err(format!("expected {want:?}, got {line:?}"))
    }
}

/// A pool of `bytes`, mapped, every page touched, then destroyed: the mapping.
fn create_touch_destroy(
    card: &Card,
    bytes: u64,
) -> Result<zcopy::card::PoolMap, zcopy::card::Error> {
    let pool = card.create_pool(bytes)?;
    let map = pool.map()?;
    for off in (0..bytes).step_by(4096) {
        map.write(off, &[1])?;
    }
    drop(pool);
    Ok(map)
}

fn outcome<T>(r: &Result<T, zcopy::card::Error>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => e
            .errno()
            .map_or_else(|| e.to_string(), |n| format!("{n:?}")),
    }
}

fn memcg(sock: &UnixStream, rounds: usize, bytes: u64) -> Result<String, String> {
    expect_line(sock, "go")?;
    let card = Card::open_index(0).map_err(|e| e.to_string())?;
    let mut held = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..rounds {
        let r = create_touch_destroy(&card, bytes);
        seen.push(outcome(&r));
        held.extend(r.ok());
    }
    writeln!(&*sock, "held {}", seen.join(",")).map_err(|e| e.to_string())?;
    expect_line(sock, "release")?;
    drop(held);
    let worked = (0..rounds)
        .filter(|_| create_touch_destroy(&card, bytes).is_ok())
        .count();
    writeln!(&*sock, "released {worked}").map_err(|e| e.to_string())?;
    expect_line(sock, "tight")?;
    Ok(format!("tight {}", outcome(&card.create_pool(bytes))))
}

fn create(sock: &UnixStream, bytes: u64) -> Result<String, String> {
    let card = Card::open_index(0).map_err(|e| e.to_string())?;
    // Everything mapped now is made resident before the test tightens the
    // memory cgroup: a page fault after that would meet memory.max and the
    // cgroup's OOM killer instead of the allocation under test.
    nix::sys::mman::mlockall(nix::sys::mman::MlockAllFlags::MCL_CURRENT)
        .map_err(|e| format!("mlockall: {e}"))?;
    writeln!(&mut &*sock, "ready").map_err(|e| format!("ready: {e}"))?;
    expect_line(sock, "go")?;
    Ok(format!("create {}", outcome(&card.create_pool(bytes))))
}
