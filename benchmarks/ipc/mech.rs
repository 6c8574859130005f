//! The mechanisms, each a ping and a pong side run in two processes made
//! by fork(): the parent pings (and measures), the child pongs.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use nix::sched::{sched_setaffinity, CpuSet};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};
use zcopy::channel::{Builder, Receiver, Sender, Shm};

/// A way of moving a message from one process to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mech {
    /// A bare shared-memory flag: the floor any shared-memory IPC can reach.
    Floor,
    /// The flag after the sender wrote every byte of a shared buffer.
    FloorFill,
    /// The flag, with a header on its own line that the sender writes
    /// before it and the receiver reads after it: the floor of any IPC
    /// whose receiver reads what the sender wrote.
    FloorHeader,
    /// The flag naming which of two header lines the sender wrote, the one
    /// the receiver then reads (both prefetched while it polls): the floor
    /// of any IPC whose message is found through an index, as a zero-copy
    /// channel's ring entry names its slot. The header's address comes
    /// from the flag's value, so its line cannot start moving before the
    /// flag's arrives.
    FloorIndex,
    /// zcopy channel, busy-polling.
    ZcopyBusy,
    /// zcopy channel, busy-polling, the sender writing every byte of the slot.
    ZcopyFill,
    /// zcopy channel, blocking `recv` (its bounded spin and yield, then the
    /// futex).
    ZcopyBlocking,
    /// zcopy channel, sleeping in the futex at once (no spin, no yield).
    ZcopyFutex,
    /// The same rings with the payload copied in and out (a copying shm ring).
    CopyRing,
    /// pipe(2).
    Pipe,
    /// Unix domain stream socket.
    Uds,
    /// POSIX message queue.
    Mq,
    /// iceoryx2 publish-subscribe, busy-polling.
    #[cfg(feature = "iceoryx2")]
    Iceoryx2,
}

/// Which cores the two processes run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// Parent on CPU 0, child on CPU 1.
    Cross,
    /// Both on CPU 0.
    Same,
}

impl Pin {
    pub fn parse(s: &str) -> Result<Pin, String> {
        match s {
            "cross" => Ok(Pin::Cross),
            "same" => Ok(Pin::Same),
            _ => Err(format!("pin {s:?}: cross or same")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Pin::Cross => "cross",
            Pin::Same => "same",
        }
    }

    fn cpus(self) -> (usize, usize) {
        match self {
            Pin::Cross => (0, 1),
            Pin::Same => (0, 0),
        }
    }
}

/// Bytes of each message a zero-copy mechanism touches.
pub const HEADER: usize = 64;

impl Mech {
    pub fn all() -> Vec<Mech> {
        vec![
            Mech::Floor,
            Mech::FloorFill,
            Mech::FloorHeader,
            Mech::FloorIndex,
            Mech::ZcopyBusy,
            Mech::ZcopyFill,
            Mech::ZcopyBlocking,
            Mech::ZcopyFutex,
            Mech::CopyRing,
            Mech::Pipe,
            Mech::Uds,
            Mech::Mq,
            #[cfg(feature = "iceoryx2")]
            Mech::Iceoryx2,
        ]
    }

    pub fn parse(s: &str) -> Result<Mech, String> {
        Mech::all()
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                format!(
                    "mechanism {s:?}: one of {:?}",
                    Mech::all().iter().map(|m| m.name()).collect::<Vec<_>>()
                )
            })
    }

    pub fn name(self) -> &'static str {
        match self {
            Mech::Floor => "floor",
            Mech::FloorFill => "floor-fill",
            Mech::FloorHeader => "floor-header",
            Mech::FloorIndex => "floor-index",
            Mech::ZcopyBusy => "zcopy-busy",
            Mech::ZcopyFill => "zcopy-fill",
            Mech::ZcopyBlocking => "zcopy-blocking",
            Mech::ZcopyFutex => "zcopy-futex",
            Mech::CopyRing => "copy-ring",
            Mech::Pipe => "pipe",
            Mech::Uds => "uds",
            Mech::Mq => "mq",
            #[cfg(feature = "iceoryx2")]
            Mech::Iceoryx2 => "iceoryx2",
        }
    }

    /// The name with what it is, for a plot's legend.
    pub fn label(self) -> &'static str {
        match self {
            Mech::Floor => "floor (a bare shared flag)",
            Mech::FloorFill => "floor-fill (flag, every byte written)",
            Mech::FloorHeader => "floor-header (flag, a header line read)",
            Mech::FloorIndex => "floor-index (flag naming the header line read)",
            Mech::ZcopyBusy => "zcopy-busy (busy-poll)",
            Mech::ZcopyFill => "zcopy-fill (busy-poll, every byte written)",
            Mech::ZcopyBlocking => "zcopy-blocking (spin, yield, then futex)",
            Mech::ZcopyFutex => "zcopy-futex (futex at once)",
            Mech::CopyRing => "copy-ring (copying shm ring)",
            Mech::Pipe => "pipe",
            Mech::Uds => "uds (Unix socket)",
            Mech::Mq => "mq (POSIX mq)",
            #[cfg(feature = "iceoryx2")]
            Mech::Iceoryx2 => "iceoryx2",
        }
    }

    /// Moves the payload without copying it.
    pub fn zero_copy(self) -> bool {
        match self {
            Mech::Floor
            | Mech::FloorFill
            | Mech::FloorHeader
            | Mech::FloorIndex
            | Mech::ZcopyBusy
            | Mech::ZcopyFill
            | Mech::ZcopyBlocking
            | Mech::ZcopyFutex => true,
            #[cfg(feature = "iceoryx2")]
            Mech::Iceoryx2 => true,
            _ => false,
        }
    }

    /// The sender writes every byte of each message (the copying ways,
    /// and the zero-copy ways' full-fill variants).
    pub fn writes_all(self) -> bool {
        !self.zero_copy() || matches!(self, Mech::FloorFill | Mech::ZcopyFill)
    }

    /// One-way latencies (round trip / 2) in ns, or why not measured.
    pub fn latency(self, size: usize, pin: Pin, iters: usize) -> Result<Vec<u64>, String> {
        // Writing 4 MiB takes a while: fewer rounds, same bytes order.
        let iters = if !self.writes_all() {
            iters
        } else {
            iters.min((1usize << 30) / size).max(50)
        };
        let warm = iters / 10 + 10;
        two_processes(self, size, pin, Job::Latency(iters + warm)).map(|mut v| {
            v.drain(..warm.min(v.len()));
            v
        })
    }

    /// Messages per second streaming one way, or why not measured.
    pub fn throughput(self, size: usize, pin: Pin, count: usize) -> Result<f64, String> {
        if matches!(
            self,
            Mech::Floor | Mech::FloorFill | Mech::FloorHeader | Mech::FloorIndex
        ) {
            return Err("a flag carries no stream".into());
        }
        let count = if !self.writes_all() {
            count
        } else {
            count.min((2usize << 30) / size).max(100)
        };
        let v = two_processes(self, size, pin, Job::Stream(count))?;
        let ns = *v.first().ok_or("no time")?;
        Ok(count as f64 / (ns as f64 / 1e9))
    }
}

#[derive(Debug, Clone, Copy)]
enum Job {
    /// This many round trips.
    Latency(usize),
    /// This many messages one way, then one ack.
    Stream(usize),
}

fn pin_to(cpu: usize) -> Result<(), String> {
    let mut set = CpuSet::new();
    set.set(cpu).map_err(|e| e.to_string())?;
    sched_setaffinity(Pid::from_raw(0), &set).map_err(|e| format!("pinning to CPU {cpu}: {e}"))
}

/// Busy-waits for `f`, yielding the CPU now and then (so a peer on the
/// same core gets to run).
fn spin_until<T>(mut f: impl FnMut() -> Option<T>) -> T {
    loop {
        for _ in 0..2000 {
            if let Some(v) = f() {
                return v;
            }
            std::hint::spin_loop();
        }
        std::thread::yield_now();
    }
}

/// What both processes need set up before fork.
struct Shared {
    ctl: (UnixStream, UnixStream),
    pipes: Option<[(std::os::fd::OwnedFd, std::os::fd::OwnedFd); 2]>,
    uds: Option<(UnixStream, UnixStream)>,
    mq: Option<(nix::mqueue::MqdT, nix::mqueue::MqdT)>,
    flag: Option<memmap2::MmapMut>,
}

fn prepare(m: Mech, size: usize) -> Result<Shared, String> {
    let e = |e: std::io::Error| e.to_string();
    let mut s = Shared {
        ctl: UnixStream::pair().map_err(e)?,
        pipes: None,
        uds: None,
        mq: None,
        flag: None,
    };
    match m {
        Mech::Pipe => {
            let a = nix::unistd::pipe().map_err(|e| e.to_string())?;
            let b = nix::unistd::pipe().map_err(|e| e.to_string())?;
            for p in [&a, &b] {
                // A bigger pipe buffer (1 MiB, the default unprivileged max).
                // SAFETY: fcntl on a pipe we own; no memory passed.
                unsafe { libc::fcntl(p.1.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
            }
            s.pipes = Some([a, b]);
        }
        Mech::Uds => s.uds = Some(UnixStream::pair().map_err(e)?),
        Mech::Mq => {
            let max: usize = std::fs::read_to_string("/proc/sys/fs/mqueue/msgsize_max")
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(8192);
            if size > max {
                return Err(format!("message size above fs.mqueue.msgsize_max ({max})"));
            }
            use nix::mqueue::{mq_open, mq_unlink, MQ_OFlag, MqAttr};
            use nix::sys::stat::Mode;
            let attr = MqAttr::new(0, 8, size as _, 0);
            let open = |tag: &str| {
                let name = format!("/zcopy-bench-{}-{tag}", std::process::id());
                let q = mq_open(
                    name.as_str(),
                    MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL | MQ_OFlag::O_RDWR,
                    Mode::S_IRUSR | Mode::S_IWUSR,
                    Some(&attr),
                )
                .map_err(|e| format!("mq_open: {e}"));
                let _ = mq_unlink(name.as_str());
                q
            };
            s.mq = Some((open("a")?, open("b")?));
        }
        Mech::Floor | Mech::FloorFill | Mech::FloorHeader | Mech::FloorIndex => {
            // The flags' page, then (fill) one buffer per direction
            // (MAP_SHARED over a memfd: fork keeps it shared).
            // SAFETY: a NUL-terminated name; returns a new descriptor or -1.
            let raw =
                unsafe { libc::memfd_create(c"zcopy-bench-flag".as_ptr(), libc::MFD_CLOEXEC) };
            if raw < 0 {
                return Err(e(std::io::Error::last_os_error()));
            }
            // SAFETY: a descriptor the kernel just gave us.
            let file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(raw) };
            let len = if m == Mech::FloorFill {
                4096 + 2 * size.next_multiple_of(4096)
            } else {
                4096
            };
            file.set_len(len as u64).map_err(e)?;
            // SAFETY: the memfd is ours alone and `len` bytes long; nothing
            // truncates it while mapped.
            s.flag =
                Some(unsafe { memmap2::MmapOptions::new().len(len).map_mut(&file) }.map_err(e)?);
        }
        _ => {}
    }
    Ok(s)
}

fn two_processes(m: Mech, size: usize, pin: Pin, job: Job) -> Result<Vec<u64>, String> {
    let shared = prepare(m, size)?;
    #[cfg(feature = "iceoryx2")]
    ice::RUN.fetch_add(1, Ordering::Relaxed);
    let (pcpu, ccpu) = pin.cpus();
    // SAFETY: this program is single-threaded here; the child only runs
    // the pong side and leaves through _exit.
    match unsafe { fork() }.map_err(|e| e.to_string())? {
        ForkResult::Child => {
            let code = match pin_to(ccpu).and_then(|_| pong(m, size, job, &shared)) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("pong {}: {e}", m.name());
                    1
                }
            };
            // SAFETY: _exit ends the child without running the parent's
            // destructors a second time.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            let r = pin_to(pcpu).and_then(|_| ping(m, size, job, &shared));
            if r.is_err() {
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
            }
            let st = waitpid(child, None).map_err(|e| e.to_string())?;
            let _ = pin_to_all();
            match st {
                nix::sys::wait::WaitStatus::Exited(_, 0) => r,
                other => r.and(Err(format!("pong side: {other:?}"))),
            }
        }
    }
}

fn pin_to_all() -> Result<(), String> {
    let mut set = CpuSet::new();
    for c in 0..online_cpus() {
        let _ = set.set(c);
    }
    sched_setaffinity(Pid::from_raw(0), &set).map_err(|e| e.to_string())
}

/// CPUs online (not the affinity mask, which the runs narrow).
pub fn online_cpus() -> usize {
    // SAFETY: sysconf reads a system value; no memory passed.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

fn ioe(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn channel_out(ctl: &UnixStream, size: usize) -> Result<Sender<Shm>, String> {
    let tx = Builder::new()
        .slot_size(size)
        .slot_count(64)
        .create()
        .map_err(ioe)?;
    tx.share(ctl).map_err(ioe)?;
    Ok(tx)
}

fn channel_in(ctl: &UnixStream) -> Result<Receiver<Shm>, String> {
    Receiver::from_socket(ctl).map_err(ioe)
}

/// Parent side: returns one-way latencies, or [total ns] for a stream.
fn ping(m: Mech, size: usize, job: Job, s: &Shared) -> Result<Vec<u64>, String> {
    let ctl = &s.ctl.0;
    let mut out = Vec::new();
    match m {
        Mech::Floor | Mech::FloorFill | Mech::FloorHeader | Mech::FloorIndex => {
            let map = s.flag.as_ref().ok_or("no map")?;
            let (a, b) = flags(map);
            let (ha, hb) = headers(map);
            let (ia, ib) = (index_lines(map, 0), index_lines(map, 1));
            let header = m == Mech::FloorHeader;
            let indexed = m == Mech::FloorIndex;
            let out_buf = fill_buffer(map, m, size, 0);
            let Job::Latency(n) = job else {
                return Err("n/a".into());
            };
            for i in 1..=n as u64 {
                let t = Instant::now();
                if let Some(buf) = out_buf {
                    write_all(buf, size, i);
                }
                if header {
                    ha.store(i, Ordering::Relaxed);
                }
                if indexed {
                    ia[(i & 1) as usize].store(i, Ordering::Relaxed);
                }
                a.store(i, Ordering::Release);
                let v = spin_until(|| {
                    if indexed {
                        ib.iter().for_each(|w| prefetch(w));
                    }
                    let v = b.load(Ordering::Acquire);
                    (v == i).then_some(v)
                });
                if header && hb.load(Ordering::Relaxed) != i {
                    return Err(format!("round {i}: wrong header"));
                }
                if indexed && read_indexed(&ib, v) != i {
                    return Err(format!("round {i}: wrong indexed header"));
                }
                out.push(t.elapsed().as_nanos() as u64 / 2);
            }
        }
        Mech::ZcopyBusy
        | Mech::ZcopyFill
        | Mech::ZcopyBlocking
        | Mech::ZcopyFutex
        | Mech::CopyRing => {
            let tx = channel_out(ctl, size)?;
            let rx = channel_in(ctl)?;
            let blocking = set_blocking(m, &tx, &rx);
            let copy = m == Mech::CopyRing;
            let fill = m == Mech::ZcopyFill;
            let src = vec![7u8; size];
            let mut dst = vec![0u8; size];
            let send = |i: u64| -> Result<(), String> {
                let mut l = tx.loan().map_err(ioe)?;
                if copy {
                    l.as_mut_slice()[..size].copy_from_slice(&src);
                }
                if fill {
                    l.as_mut_slice()[..size].fill(i as u8);
                }
                l.as_mut_slice()[..8].copy_from_slice(&i.to_le_bytes());
                l.send(size).map_err(ioe)
            };
            match job {
                Job::Latency(n) => {
                    for i in 0..n as u64 {
                        let t = Instant::now();
                        send(i)?;
                        let sample = if blocking {
                            rx.recv().map_err(ioe)?
                        } else {
                            spin_until(|| rx.try_recv().transpose()).map_err(ioe)?
                        };
                        if copy {
                            dst.copy_from_slice(&sample);
                        }
                        if sample[..8] != i.to_le_bytes() {
                            return Err(format!("round {i}: wrong echo"));
                        }
                        drop(sample);
                        out.push(t.elapsed().as_nanos() as u64 / 2);
                    }
                }
                Job::Stream(n) => {
                    let t = Instant::now();
                    for i in 0..n as u64 {
                        send(i)?;
                    }
                    rx.recv().map_err(ioe)?;
                    out.push(t.elapsed().as_nanos() as u64);
                }
            }
            // Done with every sample: the pong side may go.
            (&s.ctl.0).write_all(&[1]).map_err(ioe)?;
        }
        Mech::Pipe | Mech::Uds | Mech::Mq => {
            let mut buf = vec![7u8; size];
            let mut io = Io::new(m, s, true)?;
            match job {
                Job::Latency(n) => {
                    for i in 0..n as u64 {
                        let t = Instant::now();
                        buf[..8].copy_from_slice(&i.to_le_bytes());
                        io.send(&buf)?;
                        io.recv(&mut buf)?;
                        out.push(t.elapsed().as_nanos() as u64 / 2);
                    }
                }
                Job::Stream(n) => {
                    let t = Instant::now();
                    for _ in 0..n {
                        io.send(&buf)?;
                    }
                    io.recv(&mut buf[..8])?;
                    out.push(t.elapsed().as_nanos() as u64);
                }
            }
        }
        #[cfg(feature = "iceoryx2")]
        Mech::Iceoryx2 => {
            return crate::mech::ice::ping(size, job_n(job), matches!(job, Job::Stream(_)))
        }
    }
    Ok(out)
}

#[cfg(feature = "iceoryx2")]
fn job_n(job: Job) -> usize {
    match job {
        Job::Latency(n) | Job::Stream(n) => n,
    }
}

/// Child side.
fn pong(m: Mech, size: usize, job: Job, s: &Shared) -> Result<(), String> {
    let ctl = &s.ctl.1;
    match m {
        Mech::Floor | Mech::FloorFill | Mech::FloorHeader | Mech::FloorIndex => {
            let map = s.flag.as_ref().ok_or("no map")?;
            let (a, b) = flags(map);
            let (ha, hb) = headers(map);
            let (ia, ib) = (index_lines(map, 0), index_lines(map, 1));
            let header = m == Mech::FloorHeader;
            let indexed = m == Mech::FloorIndex;
            let out_buf = fill_buffer(map, m, size, 1);
            let Job::Latency(n) = job else { return Ok(()) };
            for i in 1..=n as u64 {
                let v = spin_until(|| {
                    if indexed {
                        ia.iter().for_each(|w| prefetch(w));
                    }
                    let v = a.load(Ordering::Acquire);
                    (v == i).then_some(v)
                });
                if header && ha.load(Ordering::Relaxed) != i {
                    return Err(format!("round {i}: wrong header"));
                }
                if indexed && read_indexed(&ia, v) != i {
                    return Err(format!("round {i}: wrong indexed header"));
                }
                if let Some(buf) = out_buf {
                    write_all(buf, size, i);
                }
                if header {
                    hb.store(i, Ordering::Relaxed);
                }
                if indexed {
                    ib[(i & 1) as usize].store(i, Ordering::Relaxed);
                }
                b.store(i, Ordering::Release);
            }
        }
        Mech::ZcopyBusy
        | Mech::ZcopyFill
        | Mech::ZcopyBlocking
        | Mech::ZcopyFutex
        | Mech::CopyRing => {
            let rx = channel_in(ctl)?;
            let tx = channel_out(ctl, size)?;
            let blocking = set_blocking(m, &tx, &rx);
            let copy = m == Mech::CopyRing;
            let fill = m == Mech::ZcopyFill;
            let mut dst = vec![0u8; size];
            let src = vec![9u8; size];
            let recv = || -> Result<_, String> {
                if blocking {
                    rx.recv().map_err(ioe)
                } else {
                    spin_until(|| rx.try_recv().transpose()).map_err(ioe)
                }
            };
            let (n, echo) = match job {
                Job::Latency(n) => (n, true),
                Job::Stream(n) => (n, false),
            };
            for _ in 0..n {
                let sample = recv()?;
                if copy {
                    dst.copy_from_slice(&sample);
                }
                let mut head = [0u8; 8];
                head.copy_from_slice(&sample[..8]);
                if echo {
                    let mut l = tx.loan().map_err(ioe)?;
                    if copy {
                        l.as_mut_slice()[..size].copy_from_slice(&src);
                    }
                    if fill {
                        l.as_mut_slice()[..size].fill(head[0]);
                    }
                    l.as_mut_slice()[..8].copy_from_slice(&head);
                    l.send(size).map_err(ioe)?;
                }
                // An echo server answers first and gives the slot back after.
                drop(sample);
            }
            if !echo {
                tx.send_copy(b"done").map_err(ioe)?;
            }
            // Let the parent finish with its samples before the channel
            // closes under it.
            let mut b = [0u8; 1];
            let _ = (&s.ctl.1).read(&mut b);
        }
        Mech::Pipe | Mech::Uds | Mech::Mq => {
            let mut buf = vec![0u8; size];
            let mut io = Io::new(m, s, false)?;
            match job {
                Job::Latency(n) => {
                    for _ in 0..n {
                        io.recv(&mut buf)?;
                        io.send(&buf)?;
                    }
                }
                Job::Stream(n) => {
                    for _ in 0..n {
                        io.recv(&mut buf)?;
                    }
                    io.send(&buf[..8])?;
                }
            }
        }
        #[cfg(feature = "iceoryx2")]
        Mech::Iceoryx2 => {
            return crate::mech::ice::pong(size, job_n(job), matches!(job, Job::Stream(_)))
        }
    }
    Ok(())
}

/// Whether `m` receives by blocking `recv`, and how it waits: the
/// library's default spin and yield for [`Mech::ZcopyBlocking`], neither
/// for [`Mech::ZcopyFutex`].
fn set_blocking(m: Mech, tx: &Sender<Shm>, rx: &Receiver<Shm>) -> bool {
    if m == Mech::ZcopyFutex {
        tx.set_spin(0);
        rx.set_spin(0);
        tx.set_yield(std::time::Duration::ZERO);
        rx.set_yield(std::time::Duration::ZERO);
    }
    matches!(m, Mech::ZcopyBlocking | Mech::ZcopyFutex)
}

/// The floor's buffer for direction `dir` (0: ping → pong) when `m` writes
/// every byte: after the flags' page, one page-aligned buffer each way.
fn fill_buffer(map: &memmap2::MmapMut, m: Mech, size: usize, dir: usize) -> Option<*mut u8> {
    (m == Mech::FloorFill).then(|| {
        map.as_ptr()
            .wrapping_add(4096 + dir * size.next_multiple_of(4096))
            .cast_mut()
    })
}

/// Writes every byte of a message of `size` bytes at `buf` (round `i`).
fn write_all(buf: *mut u8, size: usize, i: u64) {
    // SAFETY: `buf` is one of the mapping's two buffers of at least `size`
    // bytes (fill_buffer); this side alone writes it, and the peer reads
    // it only after the flag store that follows (Release/Acquire).
    unsafe { std::ptr::write_bytes(buf, i as u8, size) };
}

fn flags(map: &memmap2::MmapMut) -> (&AtomicU64, &AtomicU64) {
    (word_at(map, 0), word_at(map, 64))
}

/// The floor-header's header each way (ping → pong first), each on its
/// own line, apart from the flags'.
fn headers(map: &memmap2::MmapMut) -> (&AtomicU64, &AtomicU64) {
    (word_at(map, 128), word_at(map, 192))
}

/// The floor-index's two header lines for direction `dir` (0: ping →
/// pong), apart from the other lines.
fn index_lines(map: &memmap2::MmapMut, dir: usize) -> [&AtomicU64; 2] {
    [word_at(map, 256 + 128 * dir), word_at(map, 320 + 128 * dir)]
}

/// The header the flag's value `v` names: line `v & 1`. `v` goes through
/// `black_box`, so the compiler cannot put the value it was compared with
/// in its place: the line's address depends on the loaded flag, as a
/// slot's does on its ring entry.
fn read_indexed(lines: &[&AtomicU64; 2], v: u64) -> u64 {
    lines[(std::hint::black_box(v) & 1) as usize].load(Ordering::Relaxed)
}

/// Starts loading the line of `w` (a hint), as a zcopy receiver does for
/// the slots it expects while it polls.
fn prefetch(w: &AtomicU64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint: it does not fault and changes no memory.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(w.as_ptr().cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = w;
}

/// The u64 at `offset` (< 512) of the flags' page.
fn word_at(map: &memmap2::MmapMut, offset: usize) -> &AtomicU64 {
    assert!(offset < 512 && offset % 64 == 0 && map.len() >= 4096);
    let p = map.as_ptr().wrapping_add(offset).cast::<AtomicU64>();
    // SAFETY: the mapping is at least 4096 bytes, page aligned and shared
    // between the two processes; offsets below 512 and multiples of 64
    // (checked above) are 8-aligned u64s on their own lines, only ever accessed
    // through these atomics; the mapping outlives the reference (it
    // borrows it).
    unsafe { &*p }
}

/// The copying baselines behind one send/recv pair.
enum Io<'a> {
    Fds(std::fs::File, std::fs::File),
    Sock(&'a UnixStream),
    Mq(&'a nix::mqueue::MqdT, &'a nix::mqueue::MqdT, Vec<u8>),
}

impl<'a> Io<'a> {
    fn new(m: Mech, s: &'a Shared, parent: bool) -> Result<Io<'a>, String> {
        Ok(match m {
            Mech::Pipe => {
                let [a, b] = s.pipes.as_ref().ok_or("no pipes")?;
                let (w, r) = if parent { (&a.1, &b.0) } else { (&b.1, &a.0) };
                let dup = |f: &std::os::fd::OwnedFd| {
                    f.as_fd()
                        .try_clone_to_owned()
                        .map(std::fs::File::from)
                        .map_err(ioe)
                };
                Io::Fds(dup(w)?, dup(r)?)
            }
            Mech::Uds => {
                let (a, b) = s.uds.as_ref().ok_or("no sockets")?;
                Io::Sock(if parent { a } else { b })
            }
            _ => {
                let (a, b) = s.mq.as_ref().ok_or("no queues")?;
                let scratch =
                    vec![0u8; nix::mqueue::mq_getattr(a).map_err(ioe)?.msgsize() as usize];
                if parent {
                    Io::Mq(a, b, scratch)
                } else {
                    Io::Mq(b, a, scratch)
                }
            }
        })
    }

    fn send(&mut self, buf: &[u8]) -> Result<(), String> {
        match self {
            Io::Fds(w, _) => w.write_all(buf).map_err(ioe),
            Io::Sock(s) => (&**s).write_all(buf).map_err(ioe),
            Io::Mq(out, _, _) => nix::mqueue::mq_send(out, buf, 0).map_err(ioe),
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<(), String> {
        match self {
            Io::Fds(_, r) => r.read_exact(buf).map_err(ioe),
            Io::Sock(s) => (&**s).read_exact(buf).map_err(ioe),
            Io::Mq(_, inq, full) => {
                let mut prio = 0;
                let n = nix::mqueue::mq_receive(inq, full, &mut prio).map_err(ioe)?;
                let k = n.min(buf.len());
                buf[..k].copy_from_slice(&full[..k]);
                Ok(())
            }
        }
    }
}

#[cfg(feature = "iceoryx2")]
pub mod ice;

/// CPU a receiver spends waiting for a sender that sends nothing, over
/// `window`, as a share of that time: (a blocking `recv`: its bounded
/// spin, then the futex; busy-polling `try_recv`). Both ends in this
/// thread: the sender is there and idle.
pub fn idle_cpu(window: std::time::Duration) -> Result<(f64, f64), String> {
    let (tx, rx) = local_pair()?;
    let share = |f: &dyn Fn() -> Result<(), String>| -> Result<f64, String> {
        let (cpu, wall) = (thread_cpu()?, Instant::now());
        f()?;
        Ok((thread_cpu()? - cpu) / wall.elapsed().as_secs_f64())
    };
    let blocking = share(&|| match rx.recv_timeout(window) {
        Err(zcopy::channel::Error::Timeout) => Ok(()),
        Err(e) => Err(ioe(e)),
        Ok(_) => Err("a message from an idle sender".into()),
    })?;
    let busy = share(&|| {
        let t = Instant::now();
        while t.elapsed() < window {
            if rx.try_recv().map_err(ioe)?.is_some() {
                return Err("a message from an idle sender".into());
            }
        }
        Ok(())
    })?;
    drop(tx);
    Ok((blocking, busy))
}

/// This thread's CPU time so far, in seconds.
fn thread_cpu() -> Result<f64, String> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).map_err(ioe)?;
    Ok(t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
}

/// `rounds` rounds of the cross-core latency of each (mechanism, size) of
/// `points`, back to back within a round, `iters` round trips each: the
/// p50 of each, one row per round.
pub fn rounds(
    points: &[(Mech, usize)],
    rounds: usize,
    iters: usize,
) -> Result<Vec<Vec<u64>>, String> {
    (0..rounds)
        .map(|_| {
            points
                .iter()
                .map(|&(m, size)| {
                    let mut v = m.latency(size, Pin::Cross, iters)?;
                    v.sort_unstable();
                    crate::report::p50_of(&v).ok_or_else(|| "no samples".into())
                })
                .collect()
        })
        .collect()
}

/// What the figures above are made of, in one thread (no cache line
/// crosses a core): ns per 64 B message through a zcopy channel (loan,
/// write the header, send, `try_recv`, read the header, drop), and ns per
/// round trip's timing (`Instant::now` and `elapsed`, as each latency
/// sample takes). Medians of 5 runs of `n`.
pub fn one_thread(n: u64) -> Result<(f64, f64), String> {
    let (tx, rx) = local_pair()?;
    let mut msg = Vec::new();
    let mut clock = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for i in 0..n {
            let mut l = tx.loan().map_err(ioe)?;
            l.as_mut_slice()[..8].copy_from_slice(&i.to_le_bytes());
            l.send(HEADER).map_err(ioe)?;
            let s = rx.try_recv().map_err(ioe)?.ok_or("no message")?;
            if s[..8] != i.to_le_bytes() {
                return Err(format!("message {i}: wrong header"));
            }
        }
        msg.push(t.elapsed().as_nanos() as f64 / n as f64);
        let t = Instant::now();
        let mut sum = 0u128;
        for _ in 0..n {
            sum += std::hint::black_box(Instant::now()).elapsed().as_nanos();
        }
        std::hint::black_box(sum);
        clock.push(t.elapsed().as_nanos() as f64 / n as f64);
    }
    Ok((crate::report::median(&msg), crate::report::median(&clock)))
}

/// Both ends of a channel of 64 slots of 64 B, in this process.
fn local_pair() -> Result<(Sender<Shm>, Receiver<Shm>), String> {
    let (a, b) = UnixStream::pair().map_err(ioe)?;
    let tx = Builder::new()
        .slot_size(HEADER)
        .slot_count(64)
        .create()
        .map_err(ioe)?;
    tx.share(&a).map_err(ioe)?;
    let rx = Receiver::from_socket(&b).map_err(ioe)?;
    Ok((tx, rx))
}
