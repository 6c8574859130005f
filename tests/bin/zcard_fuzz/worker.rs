//! One fuzzing process: its own files on /dev/zcard0, pools, mappings and
//! rings, and a seeded stream of calls at them. Each call's outcome is
//! judged against docs/uapi.md: an errno the docs do not list for that call,
//! a call the docs say succeeds that fails (or the other way round), a CQE
//! with another result than the docs' check order gives, or data that a
//! valid request should have moved and did not, is a violation.
//!
//! The oracle pool (the coordinator's, imported here through its exported
//! descriptor) is only ever read by valid requests and mappings; requests
//! that name it as a destination are all invalid, so after the round it must
//! hold exactly what the coordinator put there.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use zcopy::card::uapi::{
    ZcardEnter, ZcardEventfd, ZcardInfo, ZcardPoolCreate, ZcardPoolExport, ZcardPoolImport,
    ZcardRingSetup, ZcardSqe, ZCARD_EXPORT_CLOEXEC, ZCARD_OFF_RINGS, ZCARD_OP_COPY, ZCARD_OP_COUNT,
    ZCARD_OP_CRC32C, ZCARD_OP_FILL, ZCARD_OP_FLUSH, ZCARD_OP_NOP, ZCARD_OP_STORAGE_READ,
    ZCARD_OP_STORAGE_WRITE,
};
use zcopy_vm_tests::crc32c_reference;

use crate::faults::CARD_FAULT_ERRNOS;
use crate::rng::Rng;
use crate::sys::{self, RawRing, Scratch, DIR_NONE, DIR_READ, DIR_WRITE};
use crate::table::{documented, Call, Shared};

const PAGE: u64 = 4096;
const NR_INFO: u8 = 0;
const NR_CREATE: u8 = 1;
const NR_DESTROY: u8 = 2;
const NR_EXPORT: u8 = 3;
const NR_IMPORT: u8 = 4;
const NR_SETUP: u8 = 5;
const NR_ENTER: u8 = 6;
const NR_EVENTFD: u8 = 7;

/// (nr, direction, struct size, call) of every zcard ioctl.
const IOCTLS: [(u8, u64, usize, Call); 8] = [
    (NR_INFO, DIR_READ, 128, Call::Info),
    (NR_CREATE, DIR_READ | DIR_WRITE, 56, Call::PoolCreate),
    (NR_DESTROY, DIR_WRITE, 4, Call::PoolDestroy),
    (NR_EXPORT, DIR_READ | DIR_WRITE, 32, Call::PoolExport),
    (NR_IMPORT, DIR_READ | DIR_WRITE, 48, Call::PoolImport),
    (NR_SETUP, DIR_READ | DIR_WRITE, 104, Call::RingSetup),
    (NR_ENTER, DIR_READ | DIR_WRITE, 40, Call::Enter),
    (NR_EVENTFD, DIR_WRITE, 8, Call::SetEventfd),
];

/// What the coordinator hands a worker.
pub struct Job<'a> {
    /// The card's INFO.
    pub info: ZcardInfo,
    /// The counters of the run.
    pub shared: &'static Shared,
    /// This worker's counter slot.
    pub slot: usize,
    /// The oracle pool's exported descriptor.
    pub oracle_fd: i32,
    /// The oracle's contents.
    pub oracle: &'a [u8],
    /// Card storage this worker may write: (offset, length).
    pub storage: (u64, u64),
    /// The worker's seed.
    pub seed: u64,
    /// Calls to make.
    pub calls: u64,
    /// Names the worker in messages.
    pub label: String,
    /// A forked child (no storage, no children of its own) and the file of
    /// its parent it shares.
    pub parent_file: Option<i32>,
    /// The card faults on purpose (`faults.rs`): a request that reaches it
    /// may end with a card fault's errno.
    pub card_faults: bool,
}

/// A pool id on one of the worker's files.
#[derive(Debug, Clone, Copy)]
struct PoolEnt {
    id: u32,
    size: u64,
    offset: u64,
    /// The id names the oracle (imported, or an import of an export of it).
    oracle: bool,
    /// A read-write mapping of the whole pool, when it has one.
    map: Option<usize>,
}

/// What a mapping shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Content {
    /// The oracle from this byte on.
    Oracle(u64),
    /// A pool of ours (contents not modelled).
    Pool,
    /// A ring area (or part of one): the kernel may write it at any time.
    Ring,
}

#[derive(Debug, Clone, Copy)]
struct Map {
    addr: usize,
    len: usize,
    content: Content,
    readable: bool,
    /// Made through a file opened O_RDONLY.
    read_only_file: bool,
    /// A pool's RW mapping recorded in its PoolEnt: unmapped only with it.
    primary: bool,
}

/// What a CQE is checked against besides its result.
#[derive(Debug, Clone)]
enum Check {
    None,
    /// value must be this CRC.
    Crc(u32),
    /// After completion, memory at addr must hold these bytes.
    Bytes(usize, Vec<u8>),
}

#[derive(Debug, Clone)]
struct Pending {
    sqe: ZcardSqe,
    expect: i32,
    check: Check,
}

/// The worker.
pub struct Worker<'a> {
    job: Job<'a>,
    rng: Rng,
    f: i32,
    ring: Option<RawRing>,
    sq_tail: u32,
    cq_head: u32,
    pools: Vec<PoolEnt>,
    gone: Vec<u32>,
    exports: Vec<(i32, bool)>,
    maps: Vec<Map>,
    efd: i32,
    scratch: Scratch,
    next_ud: u64,
    child: Option<(libc::pid_t, u64)>,
    calls: u64,
    printed: u32,
    /// A stored copy of oracle bytes: (storage offset, oracle offset, len).
    stored: Option<(u64, u64, u32)>,
    /// The same for a write not yet completed.
    stored_next: Option<(u64, u64, u32)>,
    /// A storage write of the last batch ended with a card fault: what
    /// this worker's storage holds is not known any more.
    storage_lost: bool,
}

impl<'a> Worker<'a> {
    /// Opens the worker's file and sets up its rings and first pools.
    pub fn new(job: Job<'a>) -> Worker<'a> {
        let rng = Rng::new(job.seed);
        let f = sys::open("/dev/zcard0", libc::O_RDWR).expect("open /dev/zcard0");
        let efd = sys::eventfd().expect("an eventfd");
        let scratch = Scratch::new(&[
            libc::PROT_READ | libc::PROT_WRITE,
            libc::PROT_READ,
            libc::PROT_NONE,
        ]);
        let mut w = Worker {
            job,
            rng,
            f,
            ring: None,
            sq_tail: 0,
            cq_head: 0,
            pools: Vec::new(),
            gone: Vec::new(),
            exports: Vec::new(),
            maps: Vec::new(),
            efd,
            scratch,
            next_ud: 1,
            child: None,
            calls: 0,
            printed: 0,
            stored: None,
            stored_next: None,
            storage_lost: false,
        };
        let sq = 1u32 << w.rng.below(7);
        let cq = if w.rng.one_in(2) {
            0
        } else {
            sq << w.rng.below(2)
        };
        w.setup_main_ring(sq, cq);
        w.import_oracle();
        for _ in 0..2 {
            let size = PAGE << w.rng.below(7);
            w.create_mapped_pool(size);
        }
        w
    }

    /// Makes the worker's calls, then tears everything down.
    pub fn run(mut self) {
        while self.calls < self.job.calls {
            self.step();
            self.reap_child(false);
        }
        self.reap_child(true);
        self.drain(false);
        for m in std::mem::take(&mut self.maps) {
            let _ = sys::munmap(m.addr, m.len);
        }
        for (fd, _) in std::mem::take(&mut self.exports) {
            sys::close(fd);
        }
        sys::close(self.f);
        sys::close(self.efd);
    }

    fn tick(&mut self) {
        self.calls += 1;
        self.job.shared.calls[self.job.slot].fetch_add(1, Ordering::Relaxed);
    }

    fn violation(&mut self, msg: String) {
        self.job.shared.violations.fetch_add(1, Ordering::Relaxed);
        if self.printed < 20 {
            self.printed += 1;
            // One write, so the lines of processes running at once do not
            // interleave.
            let line = format!(
                "zcard-fuzz: VIOLATION [{}, call {}]: {msg}\n",
                self.job.label, self.calls
            );
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }

    /// Counts an outcome and flags an errno docs/uapi.md does not list for
    /// the call.
    fn judge<T>(&mut self, call: Call, r: &Result<T, Errno>, what: &dyn Fn() -> String) {
        self.tick();
        let outcome = match r {
            Ok(_) => Ok(()),
            Err(e) => Err(*e),
        };
        self.job.shared.count(call, outcome);
        if let Err(e) = outcome {
            if !documented(call).contains(&e) {
                self.violation(format!("undocumented errno {e} from {call:?}: {}", what()));
            }
        }
    }

    /// Judges, and also insists on the one outcome docs/uapi.md gives.
    fn expect<T>(
        &mut self,
        call: Call,
        r: &Result<T, Errno>,
        want: Result<(), Errno>,
        what: &dyn Fn() -> String,
    ) {
        self.judge(call, r, what);
        let got = match r {
            Ok(_) => Ok(()),
            Err(e) => Err(*e),
        };
        if got != want {
            self.violation(format!(
                "{call:?} gave {got:?}, docs/uapi.md says {want:?}: {}",
                what()
            ));
        }
    }

    fn step(&mut self) {
        let forkable = self.job.parent_file.is_none() && self.child.is_none();
        match self.rng.below(100) {
            0..=13 => self.ioctl_structured(),
            14..=21 => self.ioctl_garbage(),
            22..=33 => self.mmap_fuzz(),
            34..=41 => self.map_action(),
            42..=69 => self.sqe_batch(),
            70..=72 => self.hostile_sq_tail(),
            73..=75 => self.hostile_cq_head(),
            76 => self.scribble_kernel_words(),
            77..=78 if forkable => self.fork_child(),
            79..=80 => self.second_file_flood(),
            81..=82 => self.read_only_file(),
            83 => self.emfile(),
            84..=87 => self.pool_churn(),
            88..=89 => self.ring_dontneed(),
            90..=93 if self.job.parent_file.is_some() => self.parent_file_calls(),
            _ => self.sqe_batch(),
        }
    }

    // ---- setup helpers -------------------------------------------------

    fn setup_main_ring(&mut self, sq: u32, cq: u32) {
        let mut rs = ZcardRingSetup {
            sq_entries: sq,
            cq_entries: cq,
            ..Default::default()
        };
        let r = sys::ioctl(self.f, setup_req(), &mut rs as *mut _ as usize);
        self.expect(Call::RingSetup, &r, Ok(()), &|| format!("sq {sq} cq {cq}"));
        if r.is_err() {
            return;
        }
        self.check_geometry(&rs, sq, cq);
        let m = sys::mmap(
            rs.ring_size as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            self.f,
            ZCARD_OFF_RINGS,
        );
        self.expect(Call::Mmap, &m, Ok(()), &|| "the rings, exact size".into());
        if let Ok(base) = m {
            self.ring = Some(RawRing { base, rs });
        }
    }

    fn check_geometry(&mut self, rs: &ZcardRingSetup, sq: u32, cq: u32) {
        let want_cq = if cq == 0 {
            (2 * sq).min(self.job.info.max_ring_entries)
        } else {
            cq
        };
        let o = rs.off;
        let lines = [
            o.sq_tail / 64,
            o.sq_head / 64,
            o.cq_tail / 64,
            o.cq_head / 64,
        ];
        let distinct = (0..4).all(|i| (0..i).all(|j| lines[i] != lines[j]));
        let end = u64::from(o.cqes) + u64::from(rs.cq_entries) * 32;
        let ok = rs.size as usize == std::mem::size_of::<ZcardRingSetup>()
            && rs.cq_entries == want_cq
            && distinct
            && u64::from(o.sqes) + u64::from(sq) * 64 <= u64::from(o.cqes)
            && end <= rs.ring_size
            && rs.ring_size % PAGE == 0;
        if !ok {
            self.violation(format!("RING_SETUP({sq}, {cq}) returned {rs:?}"));
        }
    }

    fn import_oracle(&mut self) {
        let fd = self.job.oracle_fd;
        if let Some(e) = self.import(self.f, fd, true) {
            if e.oracle {
                self.pools.push(e);
            }
        }
    }

    /// Imports `fd` on `file`; the entry is returned (and not recorded).
    fn import(&mut self, file: i32, fd: i32, oracle: bool) -> Option<PoolEnt> {
        let mut pi = ZcardPoolImport {
            fd,
            ..Default::default()
        };
        let r = sys::ioctl(file, import_req(), &mut pi as *mut _ as usize);
        self.expect(Call::PoolImport, &r, Ok(()), &|| format!("export fd {fd}"));
        r.ok().map(|_| PoolEnt {
            id: pi.pool_id,
            size: pi.size,
            offset: pi.mmap_offset,
            oracle,
            map: None,
        })
    }

    fn create_mapped_pool(&mut self, size: u64) -> Option<PoolEnt> {
        let mut pc = ZcardPoolCreate {
            size,
            ..Default::default()
        };
        let r = sys::ioctl(self.f, create_req(), &mut pc as *mut _ as usize);
        self.judge(Call::PoolCreate, &r, &|| format!("size {size}"));
        r.ok()?;
        let mut e = PoolEnt {
            id: pc.pool_id,
            size,
            offset: pc.mmap_offset,
            oracle: false,
            map: None,
        };
        let m = sys::mmap(
            size as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            self.f,
            pc.mmap_offset,
        );
        self.expect(Call::Mmap, &m, Ok(()), &|| {
            format!("new pool of {size}, exact")
        });
        if let Ok(addr) = m {
            e.map = Some(addr);
            self.maps.push(Map {
                addr,
                len: size as usize,
                content: Content::Pool,
                readable: true,
                read_only_file: false,
                primary: true,
            });
        }
        self.pools.push(e);
        Some(e)
    }

    fn pool_by_id(&self, id: u32) -> Option<PoolEnt> {
        self.pools.iter().copied().find(|p| p.id == id)
    }

    fn forget_pool(&mut self, id: u32) {
        if let Some(i) = self.pools.iter().position(|p| p.id == id) {
            let p = self.pools.remove(i);
            // The mapping stays; it is no longer the pool's primary one.
            if let Some(addr) = p.map {
                for m in self.maps.iter_mut().filter(|m| m.addr == addr) {
                    m.primary = false;
                }
            }
            self.gone.push(id);
            if self.gone.len() > 16 {
                self.gone.remove(0);
            }
        }
    }

    fn oracle_ent(&self) -> Option<PoolEnt> {
        self.pools.iter().copied().find(|p| p.oracle)
    }

    fn mapped_own(&mut self) -> Option<PoolEnt> {
        let c: Vec<PoolEnt> = self
            .pools
            .iter()
            .copied()
            .filter(|p| !p.oracle && p.map.is_some())
            .collect();
        (!c.is_empty()).then(|| c[self.rng.index(c.len())])
    }

    fn any_id(&mut self) -> u32 {
        match self.rng.below(8) {
            0..=3 if !self.pools.is_empty() => {
                let i = self.rng.index(self.pools.len());
                self.pools[i].id
            }
            4 if !self.gone.is_empty() => {
                let i = self.rng.index(self.gone.len());
                self.gone[i]
            }
            5 => 0,
            6 => u32::MAX - self.rng.below(4) as u32,
            _ => self.rng.edge_u32(64),
        }
    }

    // ---- ioctls --------------------------------------------------------

    fn ioctl_structured(&mut self) {
        match self.rng.below(8) {
            0 => self.info_call(),
            1 | 2 => self.create_call(),
            3 => self.destroy_call(),
            4 => self.export_call(),
            5 => self.import_call(),
            6 => self.setup_call(),
            _ => {
                if self.rng.one_in(2) {
                    self.enter_call()
                } else {
                    self.eventfd_call()
                }
            }
        }
    }

    fn info_call(&mut self) {
        let mut info = ZcardInfo::default();
        let r = sys::ioctl(self.f, info_req(), &mut info as *mut _ as usize);
        self.expect(Call::Info, &r, Ok(()), &|| "INFO".into());
        if r.is_ok() && bytes_of(&info) != bytes_of(&self.job.info) {
            self.violation(format!("INFO changed: {info:?}"));
        }
    }

    fn create_call(&mut self) {
        let align = u64::from(self.job.info.pool_align);
        let max = self.job.info.max_pool_bytes;
        let size = match self.rng.below(12) {
            0 => 0,
            1 => 1,
            2 => align - 1,
            3 => align + 1,
            4 => max + align,
            5 => u64::MAX,
            6 => !(align - 1),
            7 if self.rng.one_in(50) => max,
            8 => self.rng.edge_u64(max),
            _ => align << self.rng.below(7),
        };
        let mut pc = ZcardPoolCreate {
            size,
            ..Default::default()
        };
        if self.rng.one_in(6) {
            pc.flags = self.rng.edge_u32(0).max(1);
        }
        if self.rng.one_in(6) {
            pc.reserved[self.rng.index(4)] = self.rng.edge_u64(0).max(1);
        }
        let valid =
            pc.flags == 0 && pc.reserved == [0; 4] && size != 0 && size % align == 0 && size <= max;
        let r = sys::ioctl(self.f, create_req(), &mut pc as *mut _ as usize);
        let what = || format!("POOL_CREATE {pc:?}");
        if valid {
            // ENOMEM (the pinned limit, memory) is the only way it fails.
            self.judge(Call::PoolCreate, &r, &what);
            if let Err(e) = r {
                if e != Errno::ENOMEM {
                    self.violation(format!("valid POOL_CREATE failed with {e}: {}", what()));
                }
            }
        } else {
            self.expect(Call::PoolCreate, &r, Err(Errno::EINVAL), &what);
        }
        if r.is_ok() {
            self.adopt_created(pc);
        }
    }

    /// Records a pool an ioctl created; big or surplus ones go at once.
    fn adopt_created(&mut self, pc: ZcardPoolCreate) {
        if pc.mmap_offset % PAGE != 0 {
            self.violation(format!("POOL_CREATE gave an unaligned mmap offset: {pc:?}"));
        }
        let e = PoolEnt {
            id: pc.pool_id,
            size: pc.size,
            offset: pc.mmap_offset,
            oracle: false,
            map: None,
        };
        self.pools.push(e);
        if pc.size > 1 << 20 || self.pools.len() > 8 {
            if pc.size > 1 << 20 && self.rng.one_in(4) {
                // Map it and touch the last page before it goes.
                let m = sys::mmap(
                    pc.size as usize,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    self.f,
                    pc.mmap_offset,
                );
                self.expect(Call::Mmap, &m, Ok(()), &|| "a big pool, exact".into());
                if let Ok(a) = m {
                    // SAFETY: the mapping is readable and pc.size long.
                    let b = unsafe { sys::read_byte(a + pc.size as usize - 1) };
                    if b != 0 {
                        self.violation("a new pool is not zero-filled".into());
                    }
                    let r = sys::munmap(a, pc.size as usize);
                    self.judge(Call::Munmap, &r, &|| "big pool".into());
                }
            }
            self.destroy(e.id);
        }
    }

    fn destroy(&mut self, id: u32) {
        let known = self.pool_by_id(id).is_some();
        let r = sys::ioctl(self.f, destroy_req(), &id as *const u32 as usize);
        let want = if known { Ok(()) } else { Err(Errno::ENOENT) };
        self.expect(Call::PoolDestroy, &r, want, &|| {
            format!("POOL_DESTROY {id}")
        });
        if r.is_ok() {
            self.forget_pool(id);
        }
    }

    fn destroy_call(&mut self) {
        let mut id = self.any_id();
        // Keep the oracle's import most of the time.
        if self.pool_by_id(id).is_some_and(|p| p.oracle) && !self.rng.one_in(8) {
            id = 0;
        }
        self.destroy(id);
        if self.oracle_ent().is_none() {
            self.import_oracle();
        }
    }

    fn export_call(&mut self) {
        let id = self.any_id();
        let mut pe = ZcardPoolExport {
            pool_id: id,
            flags: if self.rng.one_in(2) {
                ZCARD_EXPORT_CLOEXEC
            } else {
                0
            },
            fd: self.rng.next_u64() as i32,
            ..Default::default()
        };
        if self.rng.one_in(6) {
            pe.flags = self.rng.edge_u32(1) | 2;
        }
        if self.rng.one_in(8) {
            pe.reserved0 = self.rng.edge_u32(0).max(1);
        }
        if self.rng.one_in(8) {
            pe.reserved[self.rng.index(2)] = 1 << self.rng.below(64);
        }
        let fields_ok =
            pe.flags & !ZCARD_EXPORT_CLOEXEC == 0 && pe.reserved0 == 0 && pe.reserved == [0; 2];
        let ent = self.pool_by_id(id);
        let r = sys::ioctl(self.f, export_req(), &mut pe as *mut _ as usize);
        let what = || format!("POOL_EXPORT {pe:?}");
        match (fields_ok, ent.is_some()) {
            (true, true) => self.expect(Call::PoolExport, &r, Ok(()), &what),
            (true, false) => self.expect(Call::PoolExport, &r, Err(Errno::ENOENT), &what),
            (false, true) => self.expect(Call::PoolExport, &r, Err(Errno::EINVAL), &what),
            (false, false) => self.judge(Call::PoolExport, &r, &what),
        }
        if r.is_ok() {
            if !sys::fd_open(pe.fd) {
                self.violation(format!(
                    "POOL_EXPORT returned fd {} that is not open",
                    pe.fd
                ));
                return;
            }
            self.exports.push((pe.fd, ent.is_some_and(|p| p.oracle)));
            if self.exports.len() > 6 {
                let (fd, _) = self.exports.remove(0);
                sys::close(fd);
            }
        }
    }

    fn import_call(&mut self) {
        let closed = sys::lowest_free_fd();
        let (fd, export) = match self.rng.below(9) {
            0..=2 if !self.exports.is_empty() => {
                let (fd, oracle) = self.exports[self.rng.index(self.exports.len())];
                (fd, Some(oracle))
            }
            3 => (self.job.oracle_fd, Some(true)),
            4 => (self.f, None),
            5 => (self.efd, None),
            6 => (closed, None),
            7 => (-1, None),
            _ => (self.rng.pick(&[i32::MAX, i32::MIN, 1 << 20]), None),
        };
        let mut pi = ZcardPoolImport {
            fd,
            ..Default::default()
        };
        if self.rng.one_in(6) {
            pi.flags = self.rng.edge_u32(0).max(1);
        }
        if self.rng.one_in(8) {
            pi.reserved0 = 1;
        }
        if self.rng.one_in(8) {
            pi.reserved[self.rng.index(2)] = u64::MAX;
        }
        let fields_ok = pi.flags == 0 && pi.reserved0 == 0 && pi.reserved == [0; 2];
        let open = fd >= 0 && sys::fd_open(fd);
        let r = sys::ioctl(self.f, import_req(), &mut pi as *mut _ as usize);
        let what = || format!("POOL_IMPORT {pi:?}");
        let want = match (fields_ok, open, export) {
            (false, true, Some(_)) => Some(Err(Errno::EINVAL)),
            (false, _, _) => None,
            (true, false, _) => Some(Err(Errno::EBADF)),
            (true, true, None) => Some(Err(Errno::EINVAL)),
            (true, true, Some(_)) => Some(Ok(())),
        };
        match want {
            Some(w) => self.expect(Call::PoolImport, &r, w, &what),
            None => {
                self.judge(Call::PoolImport, &r, &what);
                if r.is_ok() {
                    self.violation(format!("POOL_IMPORT succeeded: {}", what()));
                }
            }
        }
        if r.is_ok() {
            let oracle = export.unwrap_or(false);
            if oracle && pi.size != self.job.oracle.len() as u64 {
                self.violation(format!("the oracle imported with size {}", pi.size));
            }
            self.pools.push(PoolEnt {
                id: pi.pool_id,
                size: pi.size,
                offset: pi.mmap_offset,
                oracle,
                map: None,
            });
            if self.pools.len() > 10 {
                let id = self
                    .pools
                    .iter()
                    .find(|p| !p.oracle && p.map.is_none())
                    .map(|p| p.id);
                if let Some(id) = id {
                    self.destroy(id);
                }
            }
        }
    }

    fn ring_geometry(&mut self) -> (u32, u32) {
        let max = self.job.info.max_ring_entries;
        let sq = match self.rng.below(6) {
            0 => 0,
            1 => max,
            2 => max * 2,
            3 => 3 << self.rng.below(8),
            4 => self.rng.edge_u32(max),
            _ => 1 << self.rng.below(8),
        };
        let cq = match self.rng.below(6) {
            0 | 1 => 0,
            2 => sq / 2,
            3 => self.rng.edge_u32(max),
            _ => sq.wrapping_shl(self.rng.below(3) as u32),
        };
        (sq, cq)
    }

    fn geometry_ok(&self, sq: u32, cq: u32) -> bool {
        let max = self.job.info.max_ring_entries;
        let cq = if cq == 0 {
            (2 * u64::from(sq)).min(u64::from(max)) as u32
        } else {
            cq
        };
        sq != 0
            && sq.is_power_of_two()
            && sq <= max
            && cq.is_power_of_two()
            && cq >= sq
            && cq <= max
    }

    fn setup_call(&mut self) {
        let (sq, cq) = self.ring_geometry();
        let mut rs = ZcardRingSetup {
            sq_entries: sq,
            cq_entries: cq,
            ..Default::default()
        };
        if self.rng.one_in(8) {
            rs.flags = 1 << self.rng.below(32);
        }
        if self.rng.one_in(8) {
            rs.reserved[self.rng.index(4)] = 1;
        }
        let ok = self.geometry_ok(sq, cq) && rs.flags == 0 && rs.reserved == [0; 4];
        // On a new file it succeeds; on the worker's own it is EBUSY.
        let fresh = self.rng.one_in(2);
        let file = if fresh {
            let r = sys::open("/dev/zcard0", libc::O_RDWR);
            self.judge(Call::Open, &r, &|| "open".into());
            match r {
                Ok(fd) => fd,
                Err(_) => return,
            }
        } else {
            self.f
        };
        let r = sys::ioctl(file, setup_req(), &mut rs as *mut _ as usize);
        let want = match (ok, fresh) {
            (false, _) => Err(Errno::EINVAL),
            (true, true) => Ok(()),
            (true, false) => Err(Errno::EBUSY),
        };
        self.expect(Call::RingSetup, &r, want, &|| {
            format!("RING_SETUP {sq} {cq} fresh {fresh}")
        });
        if fresh {
            if r.is_ok() {
                self.check_geometry(&rs, sq, cq);
                // A second setup on the same file is EBUSY.
                let mut again = ZcardRingSetup {
                    sq_entries: 1,
                    ..Default::default()
                };
                let r2 = sys::ioctl(file, setup_req(), &mut again as *mut _ as usize);
                self.expect(Call::RingSetup, &r2, Err(Errno::EBUSY), &|| {
                    "second setup".into()
                });
                self.map_then_close(file, rs.ring_size);
            } else {
                // ENTER on a file without rings is ENXIO.
                let mut en = ZcardEnter::default();
                let r = sys::ioctl(file, enter_req(), &mut en as *mut _ as usize);
                self.expect(Call::Enter, &r, Err(Errno::ENXIO), &|| {
                    "ENTER before setup".into()
                });
                let m = sys::mmap(
                    4096,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    file,
                    ZCARD_OFF_RINGS,
                );
                self.expect(Call::Mmap, &m, Err(Errno::ENXIO), &|| {
                    "rings before setup".into()
                });
                if let Ok(a) = m {
                    let _ = sys::munmap(a, 4096);
                }
            }
            sys::close(file);
        }
    }

    /// Maps a fresh file's rings, which then outlive the file.
    fn map_then_close(&mut self, file: i32, size: u64) {
        let m = sys::mmap(
            size as usize,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file,
            ZCARD_OFF_RINGS,
        );
        self.expect(Call::Mmap, &m, Ok(()), &|| "fresh rings, exact".into());
        if let Ok(addr) = m {
            self.add_map(Map {
                addr,
                len: size as usize,
                content: Content::Ring,
                readable: true,
                read_only_file: false,
                primary: false,
            });
        }
    }

    fn add_map(&mut self, m: Map) {
        self.maps.push(m);
        if self.maps.len() > 24 {
            if let Some(i) = self.maps.iter().position(|m| !m.primary) {
                let m = self.maps.remove(i);
                let r = sys::munmap(m.addr, m.len);
                self.judge(Call::Munmap, &r, &|| "oldest".into());
            }
        }
    }

    fn enter_call(&mut self) {
        let Some(cq) = self.ring.as_ref().map(|r| r.rs.cq_entries) else {
            return;
        };
        self.drain(false);
        let mut en = ZcardEnter {
            to_submit: self.rng.edge_u32(8),
            min_complete: self.rng.edge_u32(cq),
            timeout_ns: self.rng.pick(&[0, 1, 1000, 1_000_000, u64::MAX, 1 << 63]),
            ..Default::default()
        };
        if self.rng.one_in(8) {
            en.flags = 1 << self.rng.below(32);
        }
        if self.rng.one_in(8) {
            en.reserved[self.rng.index(2)] = 1;
        }
        let e0 = en;
        let r = sys::ioctl(self.f, enter_req(), &mut en as *mut _ as usize);
        let what = || format!("ENTER {e0:?} on an idle ring");
        let want = if en.flags != 0 || en.reserved != [0; 2] || en.min_complete > cq {
            Err(Errno::EINVAL)
        } else if en.min_complete == 0 {
            Ok(())
        } else {
            // Nothing in flight and the CQ empty: more than can come.
            Err(Errno::EAGAIN)
        };
        if self.child.is_none() && self.job.parent_file.is_none() {
            self.expect(Call::Enter, &r, want, &what);
        } else {
            self.judge(Call::Enter, &r, &what);
        }
        if r.is_ok() && en.submitted != 0 && self.child.is_none() {
            self.violation(format!("ENTER on an empty SQ consumed {}", en.submitted));
        }
    }

    fn eventfd_call(&mut self) {
        let closed = sys::lowest_free_fd();
        let fd = match self.rng.below(7) {
            0 | 1 => self.efd,
            2 => -1,
            3 => self.rng.pick(&[-2, i32::MIN]),
            4 => self.f,
            5 => closed,
            _ => self.exports.first().map_or(self.job.oracle_fd, |e| e.0),
        };
        let mut ef = ZcardEventfd { fd, reserved0: 0 };
        if self.rng.one_in(6) {
            ef.reserved0 = self.rng.edge_u32(0).max(1);
        }
        let r = sys::ioctl(self.f, eventfd_req(), &ef as *const _ as usize);
        let what = || format!("SET_EVENTFD {ef:?}");
        if ef.reserved0 != 0 {
            self.expect(Call::SetEventfd, &r, Err(Errno::EINVAL), &what);
        } else if fd == self.efd || fd == -1 {
            self.expect(Call::SetEventfd, &r, Ok(()), &what);
        } else if fd == closed {
            self.expect(Call::SetEventfd, &r, Err(Errno::EBADF), &what);
        } else if fd >= 0 {
            self.expect(Call::SetEventfd, &r, Err(Errno::EINVAL), &what);
        } else {
            self.judge(Call::SetEventfd, &r, &what);
            if r.is_ok() {
                self.violation(format!("SET_EVENTFD accepted {fd}"));
            }
        }
    }

    /// Random structs, bad pointers, wrong sizes and unknown numbers.
    fn ioctl_garbage(&mut self) {
        let (nr, dir, size, call) = self.rng.pick(&IOCTLS);
        let s = &self.scratch;
        let (rw, ro, none) = (s.base, s.base + 4096, s.base + 8192);
        match self.rng.below(6) {
            0 | 1 => {
                // The right number, random bytes (the oracle's import stays).
                let mut buf = [0u8; 128];
                self.rng.fill(&mut buf[..size]);
                if nr == NR_DESTROY
                    && self
                        .pools
                        .iter()
                        .any(|p| p.id == u32::from_le_bytes(buf[..4].try_into().unwrap()))
                {
                    buf[..4].copy_from_slice(&0u32.to_le_bytes());
                }
                if nr == NR_ENTER {
                    self.drain(false);
                }
                let before = sys::lowest_free_fd();
                let r = sys::ioctl(self.f, zcard_req(nr, dir, size), buf.as_mut_ptr() as usize);
                self.judge(call, &r, &|| {
                    format!("{call:?} with random bytes {:02x?}", &buf[..size])
                });
                if r.is_ok() {
                    self.adopt_garbage_success(nr, &buf, before);
                }
            }
            2 => {
                // A pointer the kernel cannot use.
                let ptr = self.rng.pick(&[
                    0,
                    16,
                    none,
                    none + 4096 - 8,
                    rw + 4096 - size / 2,
                    0xffff_8880_0000_0000,
                    usize::MAX - 7,
                ]);
                // `rw + 4096 - size/2` straddles into the read-only page.
                let straddle = ptr == rw + 4096 - size / 2;
                if straddle && nr == NR_DESTROY {
                    return;
                }
                if straddle {
                    // SAFETY: the first half lies in the writable scratch page.
                    unsafe { std::ptr::write_bytes(ptr as *mut u8, 0xff, size / 2) };
                }
                let before = sys::lowest_free_fd();
                let r = sys::ioctl(self.f, zcard_req(nr, dir, size), ptr);
                let what = || format!("{call:?} at address {ptr:#x}");
                if straddle {
                    // Half of it is 0xff, half readable (not writable).
                    self.judge(call, &r, &what);
                } else {
                    self.expect(call, &r, Err(Errno::EFAULT), &what);
                }
                if r.is_err() && sys::lowest_free_fd() != before {
                    self.violation(format!("a failed {call:?} left a descriptor behind"));
                }
            }
            3 => {
                // A valid struct in read-only memory: the kernel cannot write
                // the result back.
                if dir == DIR_WRITE || nr == NR_SETUP || nr == NR_ENTER {
                    return;
                }
                let mut buf = [0u8; 128];
                match nr {
                    NR_CREATE => buf[..8].copy_from_slice(&PAGE.to_le_bytes()),
                    NR_EXPORT | NR_IMPORT => {
                        if nr == NR_EXPORT {
                            let id = self.oracle_ent().map_or(1, |o| o.id);
                            buf[..4].copy_from_slice(&id.to_le_bytes());
                        } else {
                            buf[..4].copy_from_slice(&self.job.oracle_fd.to_le_bytes());
                        }
                    }
                    _ => {}
                }
                mprotect_scratch(ro, libc::PROT_READ | libc::PROT_WRITE);
                // SAFETY: the page was just made writable; `size` <= 128.
                unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), ro as *mut u8, size) };
                mprotect_scratch(ro, libc::PROT_READ);
                let before = sys::lowest_free_fd();
                let r = sys::ioctl(self.f, zcard_req(nr, dir, size), ro);
                self.expect(call, &r, Err(Errno::EFAULT), &|| {
                    format!("{call:?} on a read-only struct")
                });
                if sys::lowest_free_fd() != before {
                    self.violation(format!("a failed {call:?} left a descriptor behind"));
                }
            }
            4 => {
                // The right number with another size or direction.
                let (d2, s2) = loop {
                    let d2 = self
                        .rng
                        .pick(&[DIR_NONE, DIR_READ, DIR_WRITE, DIR_READ | DIR_WRITE]);
                    let s2 = self.rng.pick(&[0, 4, 8, size - 1, size + 8, 4096, 16383]);
                    if (d2, s2) != (dir, size) {
                        break (d2, s2);
                    }
                };
                let r = sys::ioctl(self.f, zcard_req(nr, d2, s2), rw);
                self.expect(Call::OtherIoctl, &r, Err(Errno::ENOTTY), &|| {
                    format!("nr {nr} dir {d2} size {s2}")
                });
            }
            _ => {
                // A number the driver does not have.
                let magic = self.rng.pick(&[0xcd, 0xcc]);
                let nr = if magic == 0xcd {
                    8 + self.rng.below(248) as u8
                } else {
                    self.rng.below(256) as u8
                };
                let req = sys::ioc(self.rng.below(4), magic, nr, self.rng.below(256));
                let r = sys::ioctl(self.f, req, rw);
                self.expect(Call::OtherIoctl, &r, Err(Errno::ENOTTY), &|| {
                    format!("request {req:#x}")
                });
            }
        }
    }

    /// A random struct that happened to be a valid call: keep the books.
    fn adopt_garbage_success(&mut self, nr: u8, buf: &[u8; 128], fd_before: i32) {
        match nr {
            NR_CREATE => {
                let pc: ZcardPoolCreate = from_bytes(buf);
                self.adopt_created(pc);
            }
            NR_IMPORT => {
                let pi: ZcardPoolImport = from_bytes(buf);
                let oracle =
                    pi.fd == self.job.oracle_fd || self.exports.iter().any(|e| e.0 == pi.fd && e.1);
                self.pools.push(PoolEnt {
                    id: pi.pool_id,
                    size: pi.size,
                    offset: pi.mmap_offset,
                    oracle,
                    map: None,
                });
            }
            NR_EXPORT => {
                let pe: ZcardPoolExport = from_bytes(buf);
                if pe.fd == fd_before || sys::fd_open(pe.fd) {
                    sys::close(pe.fd);
                }
            }
            NR_DESTROY => {
                let id = u32::from_le_bytes(buf[..4].try_into().unwrap());
                self.forget_pool(id);
            }
            NR_SETUP | NR_ENTER => {
                self.violation(format!("random bytes made a valid ioctl {nr}: {buf:02x?}"));
            }
            _ => {}
        }
    }

    // ---- mmap ----------------------------------------------------------

    fn mmap_fuzz(&mut self) {
        self.drain(false);
        let ring_size = self.ring.as_ref().map(|r| r.rs.ring_size);
        // (offset, the size that maps it, what it shows)
        let (off, target, content): (u64, Option<u64>, Content) = match self.rng.below(9) {
            0 | 1 => (ZCARD_OFF_RINGS, ring_size, Content::Ring),
            2..=4 if !self.pools.is_empty() => {
                let p = self.pools[self.rng.index(self.pools.len())];
                (
                    p.offset,
                    Some(p.size),
                    if p.oracle {
                        Content::Oracle(0)
                    } else {
                        Content::Pool
                    },
                )
            }
            5 if !self.gone.is_empty() => {
                let id = self.gone[self.rng.index(self.gone.len())];
                let live = self.pool_by_id(id);
                (u64::from(id) << 32, live.map(|p| p.size), Content::Pool)
            }
            6 => {
                let id = self.any_id();
                let live = self.pool_by_id(id);
                let off = (u64::from(id) << 32) | (PAGE << self.rng.below(20));
                (
                    off,
                    live.filter(|_| off == u64::from(id) << 32).map(|p| p.size),
                    Content::Pool,
                )
            }
            7 => (
                self.rng.pick(&[1, 512, 4095, u64::MAX]),
                None,
                Content::Pool,
            ),
            _ => (
                self.rng.next_u64() & !(PAGE - 1) & ((1 << 62) - 1),
                None,
                Content::Pool,
            ),
        };
        let target = if content == Content::Pool
            && target.is_none()
            && off >> 32 != 0
            && off & 0xffff_ffff == 0
        {
            self.pool_by_id((off >> 32) as u32).map(|p| p.size)
        } else {
            target
        };
        let base = target.unwrap_or(PAGE);
        let len: u64 = match self.rng.below(8) {
            0..=3 => base,
            4 => base.saturating_sub(PAGE),
            5 => base + PAGE,
            6 => base - PAGE + 1,
            _ => self.rng.pick(&[0, 1, 1 << 46, u64::MAX - 4095, u64::MAX]),
        };
        let prot = self.rng.pick(&[
            libc::PROT_READ,
            libc::PROT_READ,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::PROT_NONE,
            libc::PROT_WRITE,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
        ]);
        let flags = self.rng.pick(&[
            libc::MAP_SHARED,
            libc::MAP_SHARED,
            libc::MAP_SHARED_VALIDATE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            libc::MAP_SHARED | libc::MAP_NORESERVE,
            libc::MAP_PRIVATE,
        ]);
        // MAP_SHARED_VALIDATE (3) is a shared mapping too.
        let shared = flags & 3 != libc::MAP_PRIVATE;
        // A private writable map of 2^46 bytes only makes the kernel log
        // its overcommit refusal; the driver refuses private maps anyway.
        let len = if !shared && len > 1 << 40 { base } else { len };
        let exec = prot & libc::PROT_EXEC != 0;
        let rounded = len.checked_add(PAGE - 1).map(|l| l & !(PAGE - 1));
        let shape_ok = len != 0 && off % PAGE == 0 && rounded == target && target.is_some();
        let r = sys::mmap(len as usize, prot, flags, self.f, off);
        let what = || {
            format!("mmap(len {len:#x}, prot {prot:#x}, flags {flags:#x}, off {off:#x}), maps {target:?}")
        };
        if shape_ok && shared && !exec {
            self.expect(Call::Mmap, &r, Ok(()), &what);
        } else if shape_ok && shared && exec {
            self.expect(Call::Mmap, &r, Err(Errno::EPERM), &what);
        } else if shape_ok && !exec {
            self.expect(Call::Mmap, &r, Err(Errno::EINVAL), &what);
        } else {
            self.judge(Call::Mmap, &r, &what);
            if r.is_ok() {
                self.violation(format!("mmap succeeded: {}", what()));
            }
        }
        if let Ok(addr) = r {
            self.add_map(Map {
                addr,
                len: rounded.unwrap_or(PAGE) as usize,
                content,
                readable: prot & libc::PROT_READ != 0,
                read_only_file: false,
                primary: false,
            });
        }
    }

    fn map_action(&mut self) {
        if self.maps.is_empty() {
            return;
        }
        self.drain(false);
        let i = self.rng.index(self.maps.len());
        let m = self.maps[i];
        match self.rng.below(7) {
            0 | 1 => self.check_map(m),
            2 => {
                let pages = m.len / 4096;
                let (start, n) = if pages > 1 && self.rng.one_in(2) {
                    let s = self.rng.index(pages);
                    (s, 1 + self.rng.index(pages - s))
                } else {
                    (0, pages)
                };
                let before = m.readable.then(|| {
                    // SAFETY: a readable mapping of ours, m.len long.
                    unsafe { sys::read_bytes(m.addr, m.len) }
                });
                let r = sys::madvise(m.addr + start * 4096, n * 4096, libc::MADV_DONTNEED);
                self.expect(Call::Madvise, &r, Ok(()), &|| {
                    format!("MADV_DONTNEED of {m:?}")
                });
                if let Some(before) = before {
                    // SAFETY: as above; the pages come back on access.
                    let after = unsafe { sys::read_bytes(m.addr, m.len) };
                    if m.content != Content::Ring && before != after {
                        self.violation(format!("MADV_DONTNEED changed the contents of {m:?}"));
                    }
                    self.check_map(m);
                }
            }
            3 => {
                let add = if m.read_only_file && self.rng.one_in(2) {
                    libc::PROT_READ | libc::PROT_WRITE
                } else {
                    libc::PROT_READ | libc::PROT_EXEC
                };
                let r = sys::mprotect(m.addr, m.len, add);
                self.judge(Call::Mprotect, &r, &|| {
                    format!("mprotect({add:#x}) of {m:?}")
                });
                if r.is_ok() {
                    self.violation(format!("mprotect added {add:#x} to {m:?}"));
                }
            }
            4 if !m.primary => {
                let prot = self.rng.pick(&[libc::PROT_READ, libc::PROT_NONE]);
                let r = sys::mprotect(m.addr, m.len, prot);
                self.expect(Call::Mprotect, &r, Ok(()), &|| {
                    format!("mprotect({prot:#x}) of {m:?}")
                });
                if r.is_ok() {
                    self.maps[i].readable = prot != libc::PROT_NONE;
                }
            }
            5 if !m.primary && m.len > 4096 => {
                // Unmap one end; the rest stays mapped and readable.
                let front = self.rng.one_in(2);
                let at = if front { m.addr } else { m.addr + m.len - 4096 };
                let r = sys::munmap(at, 4096);
                self.expect(Call::Munmap, &r, Ok(()), &|| format!("one page of {m:?}"));
                if r.is_ok() {
                    let e = &mut self.maps[i];
                    e.len -= 4096;
                    if front {
                        e.addr += 4096;
                        if let Content::Oracle(o) = e.content {
                            e.content = Content::Oracle(o + 4096);
                        }
                    }
                    let e = self.maps[i];
                    self.check_map(e);
                }
            }
            _ if !m.primary => {
                self.maps.remove(i);
                let r = sys::munmap(m.addr, m.len);
                self.expect(Call::Munmap, &r, Ok(()), &|| format!("{m:?}"));
            }
            _ => self.check_map(m),
        }
    }

    /// An oracle view must show the oracle's bytes; any other view must be
    /// readable to its end.
    fn check_map(&mut self, m: Map) {
        if !m.readable {
            return;
        }
        match m.content {
            Content::Oracle(from) => {
                let from = from as usize;
                let want = &self.job.oracle[from..from + m.len];
                // SAFETY: a readable mapping of ours, m.len long.
                let got = unsafe { sys::read_bytes(m.addr, m.len) };
                if got != want {
                    let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
                    let n = got.iter().zip(want).filter(|(a, b)| a != b).count();
                    let (g, w) = (got[at], want[at]);
                    self.violation(format!(
                        "a view of the oracle differs at byte {} ({n} bytes differ; {g:#x}, \
                         model {w:#x}): {m:?}",
                        from + at
                    ));
                }
            }
            Content::Ring if m.addr == self.ring.as_ref().map_or(0, |r| r.base) => {
                let tail = self
                    .ring
                    .as_ref()
                    .unwrap()
                    .sq_tail()
                    .load(Ordering::Acquire);
                if tail != self.sq_tail {
                    self.violation(format!(
                        "the SQ tail reads {tail}, written {}",
                        self.sq_tail
                    ));
                }
            }
            _ => {
                // SAFETY: readable, m.len long.
                let _ = unsafe { sys::read_byte(m.addr) };
                // SAFETY: as above.
                let _ = unsafe { sys::read_byte(m.addr + m.len - 1) };
            }
        }
    }

    fn ring_dontneed(&mut self) {
        let Some((base, size)) = self
            .ring
            .as_ref()
            .map(|r| (r.base, r.rs.ring_size as usize))
        else {
            return;
        };
        self.drain(false);
        let r = sys::madvise(base, size, libc::MADV_DONTNEED);
        self.expect(Call::Madvise, &r, Ok(()), &|| {
            "MADV_DONTNEED of the rings".into()
        });
        let ring = self.ring.as_ref().unwrap();
        let (t, h) = (
            ring.sq_tail().load(Ordering::Acquire),
            ring.cq_head().load(Ordering::Acquire),
        );
        if (t, h) != (self.sq_tail, self.cq_head) {
            self.violation(format!(
                "after MADV_DONTNEED the rings read sq_tail {t} cq_head {h}, written {} {}",
                self.sq_tail, self.cq_head
            ));
        }
        // The rings still work.
        let nop = ZcardSqe::default();
        self.submit(vec![(nop, 0, Check::None)], false);
    }

    // ---- SQEs ----------------------------------------------------------

    fn user_data(&mut self) -> u64 {
        self.next_ud += 1;
        ((self.job.slot as u64) << 56)
            | (u64::from(self.job.parent_file.is_some()) << 55)
            | self.next_ud
    }

    /// The CQE result docs/uapi.md gives for `sqe` on this worker's file.
    fn expected(&self, s: &ZcardSqe) -> i32 {
        let i = &self.job.info;
        let e = |e: Errno| -(e as i32);
        if s.opcode >= ZCARD_OP_COUNT || s.flags != 0 || s.reserved0 != 0 || s.reserved1 != 0 {
            return e(Errno::EINVAL);
        }
        let (src, dst, storage, pattern, crc, no_len) = shape(s.opcode);
        if (!src && (s.src_pool != 0 || s.src_offset != 0))
            || (!dst && (s.dst_pool != 0 || s.dst_offset != 0))
            || (!storage && s.storage_offset != 0)
            || (!pattern && !crc && s.pattern != 0)
            || (crc && s.pattern >> 32 != 0)
            || (no_len && s.length != 0)
            || s.length > i.max_op_bytes
        {
            return e(Errno::EINVAL);
        }
        if storage {
            let bs = u64::from(i.block_size);
            if s.storage_offset % bs != 0 || u64::from(s.length) % bs != 0 {
                return e(Errno::EINVAL);
            }
            if s.storage_offset > i.storage_capacity
                || u64::from(s.length) > i.storage_capacity - s.storage_offset
            {
                return e(Errno::ERANGE);
            }
        }
        if i.supported_ops & (1 << s.opcode) == 0 {
            return e(Errno::EOPNOTSUPP);
        }
        for (on, id, off) in [
            (src, s.src_pool, s.src_offset),
            (dst, s.dst_pool, s.dst_offset),
        ] {
            if !on {
                continue;
            }
            let Some(p) = (id != 0).then(|| self.pool_by_id(id)).flatten() else {
                return e(Errno::ENOENT);
            };
            if off > p.size || u64::from(s.length) > p.size - off {
                return e(Errno::ERANGE);
            }
        }
        if no_len {
            0
        } else {
            s.length as i32
        }
    }

    fn sqe_batch(&mut self) {
        let Some(entries) = self.ring.as_ref().map(|r| r.rs.sq_entries) else {
            return;
        };
        let n = 1 + self.rng.below(u64::from(entries.min(8))) as usize;
        let mut writer = false;
        let mut batch = Vec::with_capacity(n);
        for _ in 0..n {
            let item = if self.rng.below(10) < 4 {
                self.valid_sqe(&mut writer)
            } else {
                self.hostile_sqe(&mut writer)
            };
            batch.push(item);
        }
        self.submit(batch, false);
    }

    /// A valid request whose effect is checked.
    fn valid_sqe(&mut self, writer: &mut bool) -> (ZcardSqe, i32, Check) {
        let max = self.job.info.max_op_bytes;
        let oracle = self.oracle_ent();
        let own = self.mapped_own();
        let mut s = ZcardSqe::default();
        let len_in = |rng: &mut Rng, room: u64| -> u32 {
            let cap = room.min(u64::from(max)) as u32;
            match rng.below(6) {
                0 => 0,
                1 => cap,
                2 => 1,
                _ => rng.below(u64::from(cap.min(8192)) + 1) as u32,
            }
        };
        match (self.rng.below(6), oracle, own) {
            (0, Some(o), Some(d)) if !*writer => {
                // COPY oracle -> own.
                let so = self.rng.below(o.size);
                let doff = self.rng.below(d.size);
                let len = len_in(&mut self.rng, (o.size - so).min(d.size - doff));
                s.opcode = ZCARD_OP_COPY;
                (s.src_pool, s.src_offset, s.dst_pool, s.dst_offset, s.length) =
                    (o.id, so, d.id, doff, len);
                *writer = true;
                let want = self.job.oracle[so as usize..(so + u64::from(len)) as usize].to_vec();
                let addr = d.map.unwrap() + doff as usize;
                let r = self.expected(&s);
                (s, r, Check::Bytes(addr, want))
            }
            (1, _, Some(d)) if !*writer => {
                s.opcode = ZCARD_OP_FILL;
                let doff = self.rng.below(d.size);
                let len = len_in(&mut self.rng, d.size - doff);
                s.pattern = self.rng.next_u64();
                (s.dst_pool, s.dst_offset, s.length) = (d.id, doff, len);
                *writer = true;
                let pat = s.pattern.to_le_bytes();
                let want: Vec<u8> = (0..len as usize).map(|k| pat[k % 8]).collect();
                let r = self.expected(&s);
                (s, r, Check::Bytes(d.map.unwrap() + doff as usize, want))
            }
            (2, Some(o), _) => {
                s.opcode = ZCARD_OP_CRC32C;
                let so = self.rng.below(o.size);
                let len = len_in(&mut self.rng, o.size - so).min(16384);
                let seed = if self.rng.one_in(2) {
                    0
                } else {
                    self.rng.next_u64() as u32
                };
                (s.src_pool, s.src_offset, s.length, s.pattern) = (o.id, so, len, u64::from(seed));
                let crc = crc32c_reference(
                    seed,
                    &self.job.oracle[so as usize..(so + u64::from(len)) as usize],
                );
                let r = self.expected(&s);
                (s, r, Check::Crc(crc))
            }
            (3, Some(o), _) if self.job.storage.1 > 0 && !*writer => {
                // Oracle bytes to this worker's storage; read back in a
                // later batch. It writes (storage): the batch's one writer.
                *writer = true;
                let bs = u64::from(self.job.info.block_size);
                let (base, room) = self.job.storage;
                let blocks = 1 + self.rng.below((room / bs).min(u64::from(max) / bs).min(16));
                let len = blocks * bs;
                let st = base + self.rng.below((room - len) / bs + 1) * bs;
                let so = self.rng.below(o.size - len + 1);
                s.opcode = ZCARD_OP_STORAGE_WRITE;
                (s.src_pool, s.src_offset, s.storage_offset, s.length) = (o.id, so, st, len as u32);
                self.stored_next = Some((st, so, len as u32));
                let r = self.expected(&s);
                (s, r, Check::None)
            }
            (4, _, Some(d)) if !*writer && self.stored.is_some() => {
                let (st, so, len) = self.stored.unwrap();
                if u64::from(len) > d.size {
                    return (ZcardSqe::default(), 0, Check::None);
                }
                let doff = self.rng.below(d.size - u64::from(len) + 1);
                s.opcode = ZCARD_OP_STORAGE_READ;
                (s.dst_pool, s.dst_offset, s.storage_offset, s.length) = (d.id, doff, st, len);
                *writer = true;
                let want = self.job.oracle[so as usize..so as usize + len as usize].to_vec();
                let r = self.expected(&s);
                (s, r, Check::Bytes(d.map.unwrap() + doff as usize, want))
            }
            (5, _, _) => {
                s.opcode = ZCARD_OP_FLUSH;
                (s, 0, Check::None)
            }
            _ => (s, 0, Check::None),
        }
    }

    /// A request with boundary or garbage fields; it must complete with
    /// exactly the result the docs' check order gives.
    fn hostile_sqe(&mut self, writer: &mut bool) -> (ZcardSqe, i32, Check) {
        let mut s = ZcardSqe {
            opcode: self.rng.below(u64::from(ZCARD_OP_COUNT)) as u8,
            ..Default::default()
        };
        let (src, dst, storage, pattern, crc, _) = shape(s.opcode);
        let max = self.job.info.max_op_bytes;
        s.length = self.rng.edge_u32(max);
        if src {
            s.src_pool = self.any_id();
            let size = self.pool_by_id(s.src_pool).map_or(PAGE, |p| p.size);
            s.src_offset = self.offset_edge(size, s.length);
        }
        if dst {
            s.dst_pool = self.any_id();
            let size = self.pool_by_id(s.dst_pool).map_or(PAGE, |p| p.size);
            s.dst_offset = self.offset_edge(size, s.length);
        }
        if storage {
            let cap = self.job.info.storage_capacity;
            let bs = u64::from(self.job.info.block_size);
            if self.rng.one_in(2) {
                s.length = (s.length / self.job.info.block_size) * self.job.info.block_size;
            }
            s.storage_offset = match self.rng.below(6) {
                0 => cap - u64::from(s.length).min(cap),
                1 => cap,
                2 => cap + bs,
                3 => u64::MAX - bs + 1,
                4 => self.rng.below(cap / bs) * bs + self.rng.below(2) * 7,
                _ => self.rng.edge_u64(cap),
            };
        }
        if pattern || crc {
            s.pattern = self.rng.next_u64();
            if crc && self.rng.one_in(2) {
                s.pattern &= 0xffff_ffff;
            }
        }
        // And one more thing wrong, now and then.
        match self.rng.below(12) {
            0 => s.opcode = self.rng.pick(&[ZCARD_OP_COUNT, 0x80, 0xff]),
            1 => s.flags = 1 << self.rng.below(8),
            2 => s.reserved0 = 1 << self.rng.below(16),
            3 => s.reserved1 = 1 << self.rng.below(64),
            4 => s.src_offset = self.rng.edge_u64(PAGE),
            5 => s.dst_pool = self.any_id(),
            6 => s.storage_offset = self.rng.edge_u64(self.job.info.storage_capacity),
            7 => s.pattern = self.rng.next_u64(),
            _ => {}
        }
        s.user_data = self.rng.next_u64();
        let mut r = self.expected(&s);
        if r >= 0 {
            // A valid request may not write the oracle, another write of
            // this batch, or storage outside this worker's range: break it.
            let writes_oracle = dst && self.pool_by_id(s.dst_pool).is_some_and(|p| p.oracle);
            let writes = dst && s.length > 0;
            let (base, room) = self.job.storage;
            let stores_outside = s.opcode == ZCARD_OP_STORAGE_WRITE
                && s.length > 0
                && (s.storage_offset < base
                    || s.storage_offset + u64::from(s.length) > base + room);
            if writes_oracle
                || (writes && *writer)
                || stores_outside
                || s.opcode == ZCARD_OP_STORAGE_WRITE
            {
                s.reserved1 = 1;
                r = self.expected(&s);
            } else if writes {
                *writer = true;
            }
        }
        (s, r, Check::None)
    }

    fn offset_edge(&mut self, size: u64, len: u32) -> u64 {
        let len = u64::from(len);
        match self.rng.below(8) {
            0 => 0,
            1 => size.saturating_sub(len),
            2 => size.saturating_sub(len) + 1,
            3 => size,
            4 => (u64::MAX - len).wrapping_add(1),
            5 => u64::MAX,
            6 => self.rng.below(size),
            _ => self.rng.edge_u64(size),
        }
    }

    /// Writes `batch` to the SQ, submits it and reaps every CQE, checking
    /// each. `lossy`: the CQ head was moved on purpose meanwhile, so CQEs
    /// may be lost, as many as the overflow counter says.
    fn submit(&mut self, batch: Vec<(ZcardSqe, i32, Check)>, lossy: bool) {
        if self.ring.is_none() || batch.is_empty() {
            return;
        }
        let mut pending = HashMap::new();
        for (mut sqe, expect, check) in batch {
            sqe.user_data = self.user_data();
            let ring = self.ring.as_ref().unwrap();
            ring.write_sqe(self.sq_tail, &sqe);
            self.sq_tail = self.sq_tail.wrapping_add(1);
            pending.insert(sqe.user_data, Pending { sqe, expect, check });
        }
        self.ring.as_ref().unwrap().set_sq_tail(self.sq_tail);
        self.job
            .shared
            .sqes
            .fetch_add(pending.len() as u64, Ordering::Relaxed);
        self.complete(pending, lossy, 0);
        if std::mem::take(&mut self.storage_lost) {
            self.stored = None;
            self.stored_next = None;
        } else if let Some(s) = self.stored_next.take() {
            self.stored = Some(s);
        }
    }

    fn complete(&mut self, mut pending: HashMap<u64, Pending>, lossy: bool, overflow0: u32) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let cq = self.ring.as_ref().unwrap().rs.cq_entries;
        loop {
            self.reap(&mut pending);
            let ring = self.ring.as_ref().unwrap();
            let unconsumed = self
                .sq_tail
                .wrapping_sub(ring.sq_head().load(Ordering::Acquire));
            if pending.is_empty() && unconsumed == 0 {
                return;
            }
            let mut en = ZcardEnter {
                to_submit: unconsumed,
                min_complete: (pending.len() as u32).clamp(1, cq),
                timeout_ns: 500_000_000,
                ..Default::default()
            };
            let r = sys::ioctl(self.f, enter_req(), &mut en as *mut _ as usize);
            self.judge(Call::Enter, &r, &|| format!("ENTER {en:?} for a batch"));
            self.reap(&mut pending);
            if r == Err(Errno::EBUSY) {
                // The card's queue, shared with other files, is full.
                std::thread::sleep(Duration::from_millis(1));
            }
            if r == Err(Errno::EAGAIN) && unconsumed == 0 && !pending.is_empty() {
                // Nothing in flight and CQEs still missing.
                self.reap(&mut pending);
                let lost = pending.len() as u32;
                let ov = self
                    .ring
                    .as_ref()
                    .unwrap()
                    .cq_overflow()
                    .load(Ordering::Acquire);
                if !lossy || ov.wrapping_sub(overflow0) != lost {
                    let some: Vec<_> = pending.values().take(3).map(|p| p.sqe).collect();
                    self.violation(format!(
                        "{lost} CQEs never came (overflow counter {}; lossy {lossy}): {some:?}",
                        ov.wrapping_sub(overflow0)
                    ));
                }
                return;
            }
            if Instant::now() > deadline {
                let some: Vec<_> = pending.values().take(3).map(|p| p.sqe).collect();
                self.violation(format!(
                    "{} requests did not complete in 60 s: {some:?}",
                    pending.len()
                ));
                return;
            }
        }
    }

    fn reap(&mut self, pending: &mut HashMap<u64, Pending>) {
        loop {
            let ring = self.ring.as_ref().unwrap();
            let tail = ring.cq_tail().load(Ordering::Acquire);
            if tail == self.cq_head {
                return;
            }
            let c = ring.read_cqe(self.cq_head);
            self.cq_head = self.cq_head.wrapping_add(1);
            ring.cq_head().store(self.cq_head, Ordering::Release);
            self.tick();
            let outcome = if c.result < 0 {
                Err(Errno::from_raw(-c.result))
            } else {
                Ok(())
            };
            self.job.shared.count(Call::Cqe, outcome);
            let Some(p) = pending.remove(&c.user_data) else {
                self.violation(format!("a CQE nobody asked for: {c:?}"));
                continue;
            };
            if let Err(e) = outcome {
                if !documented(Call::Cqe).contains(&e) {
                    self.violation(format!("undocumented CQE errno {e} for {:?}", p.sqe));
                }
            }
            if c.result != p.expect && self.card_fault(&p, outcome) {
                continue;
            }
            if c.result != p.expect {
                self.violation(format!(
                    "CQE result {} where docs/uapi.md gives {} for {:?}",
                    c.result, p.expect, p.sqe
                ));
                continue;
            }
            if c.flags != 0 || c.reserved != 0 {
                self.violation(format!("CQE with flags or reserved set: {c:?}"));
            }
            match p.check {
                Check::None => {}
                Check::Crc(want) => {
                    if c.value != u64::from(want) {
                        self.violation(format!(
                            "CRC32C {:#x}, software {want:#x}: {:?}",
                            c.value, p.sqe
                        ));
                    }
                }
                Check::Bytes(addr, want) => {
                    // SAFETY: addr..addr + len lies in a pool mapping of ours
                    // (the request's own destination, bounds checked above).
                    let got = unsafe { sys::read_bytes(addr, want.len()) };
                    if got != want {
                        let at = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0);
                        self.violation(format!("wrong bytes at +{at} after {:?}", p.sqe));
                    }
                }
            }
        }
    }

    /// Whether a request the docs say the card runs (`p.expect` is its
    /// result) ended with a card fault's errno while the card faults on
    /// purpose: counted, its data not checked, and a storage write's
    /// storage taken as lost (a write cancelled or timed out may have run
    /// in part).
    fn card_fault(&mut self, p: &Pending, outcome: Result<(), Errno>) -> bool {
        let Err(e) = outcome else { return false };
        if !self.job.card_faults || p.expect < 0 || !CARD_FAULT_ERRNOS.contains(&e) {
            return false;
        }
        self.job.shared.faulted.fetch_add(1, Ordering::Relaxed);
        if p.sqe.opcode == ZCARD_OP_STORAGE_WRITE {
            self.storage_lost = true;
        }
        true
    }

    /// Reaps everything outstanding (nothing is left in flight after).
    fn drain(&mut self, lossy: bool) {
        if self.ring.is_some() {
            self.complete(HashMap::new(), lossy, 0);
        }
    }

    // ---- hostile ring indices ------------------------------------------

    fn hostile_sq_tail(&mut self) {
        let Some(entries) = self.ring.as_ref().map(|r| r.rs.sq_entries) else {
            return;
        };
        self.drain(false);
        let head = self.sq_tail;
        let bad = match self.rng.below(4) {
            0 => head.wrapping_add(entries + 1 + self.rng.below(1000) as u32),
            1 => head.wrapping_sub(1 + self.rng.below(entries.into()) as u32),
            2 => head ^ 0x8000_0000,
            _ => head
                .wrapping_add(entries + 1)
                .wrapping_add(self.rng.next_u64() as u32 % (u32::MAX - 2 * entries)),
        };
        let ring = self.ring.as_ref().unwrap();
        ring.set_sq_tail(bad);
        let mut en = ZcardEnter {
            to_submit: 1 + self.rng.below(u64::from(u32::MAX)) as u32,
            ..Default::default()
        };
        let r = sys::ioctl(self.f, enter_req(), &mut en as *mut _ as usize);
        self.expect(Call::Enter, &r, Err(Errno::EINVAL), &|| {
            format!("ENTER with sq_tail {bad} (head {head}, {entries} entries)")
        });
        let ring = self.ring.as_ref().unwrap();
        let h = ring.sq_head().load(Ordering::Acquire);
        ring.set_sq_tail(head);
        if h != head {
            self.violation(format!(
                "a hostile SQ tail moved sq_head from {head} to {h}"
            ));
        }
    }

    fn hostile_cq_head(&mut self) {
        let Some((sq, cq)) = self
            .ring
            .as_ref()
            .map(|r| (r.rs.sq_entries, r.rs.cq_entries))
        else {
            return;
        };
        self.drain(false);
        let ov0 = self
            .ring
            .as_ref()
            .unwrap()
            .cq_overflow()
            .load(Ordering::Acquire);
        // NOPs in flight, then the CQ head moved out of range under them.
        let n = 1 + self.rng.below(u64::from(sq)) as u32;
        let mut pending = HashMap::new();
        for _ in 0..n {
            let sqe = ZcardSqe {
                user_data: self.user_data(),
                ..Default::default()
            };
            self.ring.as_ref().unwrap().write_sqe(self.sq_tail, &sqe);
            self.sq_tail = self.sq_tail.wrapping_add(1);
            pending.insert(
                sqe.user_data,
                Pending {
                    sqe,
                    expect: 0,
                    check: Check::None,
                },
            );
        }
        self.job
            .shared
            .sqes
            .fetch_add(u64::from(n), Ordering::Relaxed);
        self.ring.as_ref().unwrap().set_sq_tail(self.sq_tail);
        let mut en = ZcardEnter {
            to_submit: n,
            ..Default::default()
        };
        let r = sys::ioctl(self.f, enter_req(), &mut en as *mut _ as usize);
        self.judge(Call::Enter, &r, &|| format!("ENTER {en:?} of NOPs"));
        let ring = self.ring.as_ref().unwrap();
        let real = self.cq_head;
        let bad = match self.rng.below(3) {
            0 => real.wrapping_add(cq + 1 + self.rng.below(100) as u32),
            1 => real.wrapping_sub(cq + 1 + self.rng.below(100) as u32),
            _ => self.rng.next_u64() as u32,
        };
        ring.cq_head().store(bad, Ordering::Release);
        for _ in 0..1 + self.rng.below(3) {
            let mut en = ZcardEnter {
                to_submit: n,
                min_complete: self.rng.below(u64::from(cq) + 1) as u32,
                timeout_ns: 1_000_000,
                ..Default::default()
            };
            let r = sys::ioctl(self.f, enter_req(), &mut en as *mut _ as usize);
            self.judge(Call::Enter, &r, &|| {
                format!("ENTER {en:?} with cq_head {bad} (real {real})")
            });
        }
        self.ring
            .as_ref()
            .unwrap()
            .cq_head()
            .store(real, Ordering::Release);
        self.complete(pending, true, ov0);
    }

    fn scribble_kernel_words(&mut self) {
        if self.ring.is_none() || self.child.is_some() || self.job.parent_file.is_some() {
            return;
        }
        self.drain(false);
        let ring = self.ring.as_ref().unwrap();
        let saved = (
            ring.sq_head().load(Ordering::Acquire),
            ring.cq_tail().load(Ordering::Acquire),
            ring.cq_overflow().load(Ordering::Acquire),
        );
        let g = self.rng.next_u64();
        ring.sq_head().store(g as u32, Ordering::Release);
        ring.cq_tail().store((g >> 32) as u32, Ordering::Release);
        ring.cq_overflow()
            .store(g.rotate_left(7) as u32, Ordering::Release);
        let mut en = ZcardEnter::default();
        let r = sys::ioctl(self.f, enter_req(), &mut en as *mut _ as usize);
        self.expect(Call::Enter, &r, Ok(()), &|| {
            "ENTER(0, 0) after scribbling the kernel's indices".into()
        });
        let ring = self.ring.as_ref().unwrap();
        ring.sq_head().store(saved.0, Ordering::Release);
        ring.cq_tail().store(saved.1, Ordering::Release);
        ring.cq_overflow().store(saved.2, Ordering::Release);
        self.submit(vec![(ZcardSqe::default(), 0, Check::None)], false);
    }

    // ---- more files, processes and limits ------------------------------

    /// A second file: rings full of requests on the oracle, then closed
    /// (or its rings unmapped first) with the requests in flight.
    fn second_file_flood(&mut self) {
        let r = sys::open("/dev/zcard0", libc::O_RDWR);
        self.judge(Call::Open, &r, &|| "open".into());
        let Ok(g) = r else { return };
        let sq = 1u32 << self.rng.below(7);
        let mut rs = ZcardRingSetup {
            sq_entries: sq,
            ..Default::default()
        };
        let r = sys::ioctl(g, setup_req(), &mut rs as *mut _ as usize);
        self.expect(Call::RingSetup, &r, Ok(()), &|| {
            format!("sq {sq} on a second file")
        });
        let oracle = self.import(g, self.job.oracle_fd, true);
        let m = sys::mmap(
            rs.ring_size as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            g,
            ZCARD_OFF_RINGS,
        );
        self.expect(Call::Mmap, &m, Ok(()), &|| "second file's rings".into());
        if let (Ok(base), Some(o)) = (m, oracle) {
            let ring = RawRing { base, rs };
            for k in 0..sq {
                let len = self
                    .rng
                    .below(o.size.min(u64::from(self.job.info.max_op_bytes)) + 1);
                let sqe = ZcardSqe {
                    opcode: if k % 2 == 0 {
                        ZCARD_OP_CRC32C
                    } else {
                        ZCARD_OP_NOP
                    },
                    length: if k % 2 == 0 { len as u32 } else { 0 },
                    src_pool: if k % 2 == 0 { o.id } else { 0 },
                    user_data: u64::from(k),
                    ..Default::default()
                };
                ring.write_sqe(k, &sqe);
            }
            ring.set_sq_tail(sq);
            let mut en = ZcardEnter {
                to_submit: sq,
                ..Default::default()
            };
            let r = sys::ioctl(g, enter_req(), &mut en as *mut _ as usize);
            self.judge(Call::Enter, &r, &|| "flood on a second file".into());
            self.job
                .shared
                .sqes
                .fetch_add(u64::from(en.submitted), Ordering::Relaxed);
            if self.rng.one_in(2) {
                let r = sys::munmap(base, rs.ring_size as usize);
                self.expect(Call::Munmap, &r, Ok(()), &|| "rings in flight".into());
            } else {
                // The kernel goes on writing it (CQEs of the requests in
                // flight): a ring, whose bytes may change.
                self.add_map(Map {
                    addr: base,
                    len: rs.ring_size as usize,
                    content: Content::Ring,
                    readable: true,
                    read_only_file: false,
                    primary: false,
                });
            }
        }
        sys::close(g);
    }

    /// A file opened O_RDONLY: read-only views of its pools and rings work,
    /// writable ones do not.
    fn read_only_file(&mut self) {
        let r = sys::open("/dev/zcard0", libc::O_RDONLY);
        self.judge(Call::Open, &r, &|| "open O_RDONLY".into());
        let Ok(ro) = r else { return };
        let mut views: Vec<(u64, u64, Content)> = Vec::new();
        if let Some(o) = self.import(ro, self.job.oracle_fd, true) {
            views.push((o.offset, o.size, Content::Oracle(0)));
        }
        let mut pc = ZcardPoolCreate {
            size: PAGE << self.rng.below(4),
            ..Default::default()
        };
        let r = sys::ioctl(ro, create_req(), &mut pc as *mut _ as usize);
        self.judge(Call::PoolCreate, &r, &|| "POOL_CREATE on O_RDONLY".into());
        if r.is_ok() {
            views.push((pc.mmap_offset, pc.size, Content::Pool));
        }
        let mut rs = ZcardRingSetup {
            sq_entries: 4,
            ..Default::default()
        };
        let r = sys::ioctl(ro, setup_req(), &mut rs as *mut _ as usize);
        self.expect(Call::RingSetup, &r, Ok(()), &|| {
            "RING_SETUP on O_RDONLY".into()
        });
        if r.is_ok() {
            views.push((ZCARD_OFF_RINGS, rs.ring_size, Content::Ring));
        }
        for (off, size, content) in views {
            let w = sys::mmap(
                size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                ro,
                off,
            );
            self.expect(Call::Mmap, &w, Err(Errno::EACCES), &|| {
                format!("PROT_WRITE through O_RDONLY, off {off:#x}")
            });
            if let Ok(a) = w {
                let _ = sys::munmap(a, size as usize);
            }
            let m = sys::mmap(size as usize, libc::PROT_READ, libc::MAP_SHARED, ro, off);
            self.expect(Call::Mmap, &m, Ok(()), &|| {
                format!("PROT_READ through O_RDONLY, off {off:#x}")
            });
            if let Ok(addr) = m {
                let map = Map {
                    addr,
                    len: size as usize,
                    content,
                    readable: true,
                    read_only_file: true,
                    primary: false,
                };
                self.check_map(map);
                self.add_map(map);
            }
        }
        sys::close(ro);
    }

    /// RLIMIT_NOFILE at the lowest free descriptor: EXPORT says EMFILE.
    fn emfile(&mut self) {
        let Some(o) = self.oracle_ent() else { return };
        let mut old = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `old` is a valid rlimit for the kernel to fill.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) } != 0 {
            return;
        }
        let low = libc::rlimit {
            rlim_cur: sys::lowest_free_fd() as libc::rlim_t,
            rlim_max: old.rlim_max,
        };
        // SAFETY: a valid rlimit, lowering only the soft limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) } != 0 {
            return;
        }
        let mut pe = ZcardPoolExport {
            pool_id: o.id,
            ..Default::default()
        };
        let r = sys::ioctl(self.f, export_req(), &mut pe as *mut _ as usize);
        // SAFETY: restores the limit read above.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) };
        self.expect(Call::PoolExport, &r, Err(Errno::EMFILE), &|| {
            "EXPORT at RLIMIT_NOFILE".into()
        });
        if r.is_ok() {
            sys::close(pe.fd);
        }
    }

    /// A pool made, written by the CPU, checked by the card, used by a
    /// request in flight while its id is destroyed, then read after.
    fn pool_churn(&mut self) {
        if self.ring.is_none() {
            return;
        }
        self.drain(false);
        let size = PAGE << self.rng.below(6);
        let Some(p) = self.create_mapped_pool(size) else {
            return;
        };
        let Some(addr) = p.map else { return };
        let mut data = vec![0u8; size as usize];
        self.rng.fill(&mut data);
        // SAFETY: a read-write mapping of the whole pool, `size` long, with
        // no request on it yet.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), addr as *mut u8, data.len()) };
        let len = (size as u32).min(self.job.info.max_op_bytes).min(16384);
        let sqe = ZcardSqe {
            opcode: ZCARD_OP_CRC32C,
            src_pool: p.id,
            length: len,
            ..Default::default()
        };
        let crc = crc32c_reference(0, &data[..len as usize]);
        let r = self.expected(&sqe);
        // Submit, destroy the id while it may be in flight, then reap.
        let mut pending = HashMap::new();
        let mut s = sqe;
        s.user_data = self.user_data();
        self.ring.as_ref().unwrap().write_sqe(self.sq_tail, &s);
        self.sq_tail = self.sq_tail.wrapping_add(1);
        self.ring.as_ref().unwrap().set_sq_tail(self.sq_tail);
        pending.insert(
            s.user_data,
            Pending {
                sqe: s,
                expect: r,
                check: Check::Crc(crc),
            },
        );
        self.job.shared.sqes.fetch_add(1, Ordering::Relaxed);
        let mut en = ZcardEnter {
            to_submit: 1,
            ..Default::default()
        };
        let e = sys::ioctl(self.f, enter_req(), &mut en as *mut _ as usize);
        self.judge(Call::Enter, &e, &|| "churn submit".into());
        let consumed = self
            .ring
            .as_ref()
            .unwrap()
            .sq_head()
            .load(Ordering::Acquire)
            == self.sq_tail;
        if consumed {
            // Destroyed while the request may be in flight: it holds the pool.
            self.destroy(p.id);
            self.complete(pending, false, 0);
        } else {
            self.complete(pending, false, 0);
            self.destroy(p.id);
        }
        // SAFETY: the mapping outlives the destroyed id.
        let after = unsafe { sys::read_bytes(addr, data.len()) };
        if after != data {
            self.violation("a destroyed pool's mapping changed".into());
        }
    }

    /// A child process sharing this worker's files: it fuzzes a file of its
    /// own and calls into this one, and is killed with SIGKILL at a random
    /// moment (or ends first).
    fn fork_child(&mut self) {
        self.drain(false);
        let seed = self.rng.next_u64();
        let calls = 50 + self.rng.below(400);
        let kill_after = self.calls + self.rng.below(400);
        // SAFETY: no arguments.
        let parent = unsafe { libc::getpid() };
        // SAFETY: this process is single-threaded (the coordinator forks
        // workers before any thread exists, and workers make none), so the
        // child may go on using the allocator and everything else.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return;
        }
        if pid == 0 {
            // A child dies with its worker: one left behind would go on
            // into the next round, where the oracle holds other bytes.
            // SAFETY: prctl with integer arguments only.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            // SAFETY: no arguments.
            if unsafe { libc::getppid() } != parent {
                // SAFETY: leaves at once; the worker was killed already.
                unsafe { libc::_exit(0) };
            }
            let job = Job {
                info: self.job.info,
                shared: self.job.shared,
                slot: self.job.slot,
                oracle_fd: self.job.oracle_fd,
                oracle: self.job.oracle,
                storage: (0, 0),
                seed,
                calls,
                label: format!("{} child seed {seed}", self.job.label),
                parent_file: Some(self.f),
                card_faults: self.job.card_faults,
            };
            Worker::new(job).run();
            let code = 0;
            // SAFETY: ends the child without running the parent's exit
            // handlers or flushing its copy of the parent's buffers.
            unsafe { libc::_exit(code) };
        }
        self.job.shared.forks.fetch_add(1, Ordering::Relaxed);
        self.child = Some((pid, kill_after));
    }

    fn reap_child(&mut self, end: bool) {
        let Some((pid, kill_after)) = self.child else {
            return;
        };
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is valid to write.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            self.child = None;
            self.child_status(status, false);
            return;
        }
        if end || self.calls >= kill_after {
            // SAFETY: signals our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // SAFETY: as above.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            self.child = None;
            self.child_status(status, true);
        }
    }

    fn child_status(&mut self, status: i32, killed: bool) {
        if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL && killed {
            self.job.shared.child_kills.fetch_add(1, Ordering::Relaxed);
        } else if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            self.violation(format!("a forked child ended with status {status:#x}"));
        }
    }

    /// The child's calls on its parent's file: the same pools and rings
    /// seen from another process. Nothing here changes what the parent
    /// relies on (its pool ids, its SQ contents).
    fn parent_file_calls(&mut self) {
        let Some(pf) = self.job.parent_file else {
            return;
        };
        match self.rng.below(6) {
            0 => {
                let mut info = ZcardInfo::default();
                let r = sys::ioctl(pf, info_req(), &mut info as *mut _ as usize);
                self.expect(Call::Info, &r, Ok(()), &|| {
                    "INFO on the parent's file".into()
                });
            }
            1 => {
                let mut en = ZcardEnter {
                    to_submit: self.rng.edge_u32(8),
                    ..Default::default()
                };
                let r = sys::ioctl(pf, enter_req(), &mut en as *mut _ as usize);
                self.judge(Call::Enter, &r, &|| "ENTER on the parent's file".into());
            }
            2 => {
                let mut pe = ZcardPoolExport {
                    pool_id: 1 + self.rng.below(4) as u32,
                    flags: ZCARD_EXPORT_CLOEXEC,
                    ..Default::default()
                };
                let r = sys::ioctl(pf, export_req(), &mut pe as *mut _ as usize);
                self.judge(Call::PoolExport, &r, &|| {
                    "EXPORT on the parent's file".into()
                });
                if r.is_ok() {
                    sys::close(pe.fd);
                }
            }
            3 => {
                let mut rs = ZcardRingSetup {
                    sq_entries: 8,
                    ..Default::default()
                };
                let r = sys::ioctl(pf, setup_req(), &mut rs as *mut _ as usize);
                self.expect(Call::RingSetup, &r, Err(Errno::EBUSY), &|| {
                    "the parent's rings".into()
                });
            }
            4 => {
                let id = u32::MAX - self.rng.below(16) as u32;
                let r = sys::ioctl(pf, destroy_req(), &id as *const u32 as usize);
                self.expect(Call::PoolDestroy, &r, Err(Errno::ENOENT), &|| {
                    format!("id {id}")
                });
            }
            _ => {
                // The parent's pools and rings, mapped read-only here.
                let off = if self.rng.one_in(3) {
                    ZCARD_OFF_RINGS
                } else {
                    (1 + self.rng.below(4)) << 32
                };
                let len = PAGE << self.rng.below(5);
                let r = sys::mmap(len as usize, libc::PROT_READ, libc::MAP_SHARED, pf, off);
                self.judge(Call::Mmap, &r, &|| {
                    format!("the parent's offset {off:#x}, {len} bytes")
                });
                if let Ok(a) = r {
                    // SAFETY: a readable mapping, len bytes.
                    let _ = unsafe { sys::read_byte(a + len as usize - 1) };
                    let r = sys::munmap(a, len as usize);
                    self.judge(Call::Munmap, &r, &|| "parent's".into());
                }
            }
        }
    }
}

/// (src, dst, storage, pattern, crc seed, no length) of an opcode.
fn shape(op: u8) -> (bool, bool, bool, bool, bool, bool) {
    match op {
        ZCARD_OP_NOP | ZCARD_OP_FLUSH => (false, false, false, false, false, true),
        ZCARD_OP_COPY => (true, true, false, false, false, false),
        ZCARD_OP_FILL => (false, true, false, true, false, false),
        ZCARD_OP_CRC32C => (true, false, false, false, true, false),
        ZCARD_OP_STORAGE_READ => (false, true, true, false, false, false),
        ZCARD_OP_STORAGE_WRITE => (true, false, true, false, false, false),
        _ => (false, false, false, false, false, false),
    }
}

fn zcard_req(nr: u8, dir: u64, size: usize) -> u64 {
    sys::zcard_ioc(dir, nr, size)
}

fn info_req() -> u64 {
    zcard_req(NR_INFO, DIR_READ, 128)
}
fn create_req() -> u64 {
    zcard_req(NR_CREATE, DIR_READ | DIR_WRITE, 56)
}
fn destroy_req() -> u64 {
    zcard_req(NR_DESTROY, DIR_WRITE, 4)
}
fn export_req() -> u64 {
    zcard_req(NR_EXPORT, DIR_READ | DIR_WRITE, 32)
}
fn import_req() -> u64 {
    zcard_req(NR_IMPORT, DIR_READ | DIR_WRITE, 48)
}
fn setup_req() -> u64 {
    zcard_req(NR_SETUP, DIR_READ | DIR_WRITE, 104)
}
fn enter_req() -> u64 {
    zcard_req(NR_ENTER, DIR_READ | DIR_WRITE, 40)
}
fn eventfd_req() -> u64 {
    zcard_req(NR_EVENTFD, DIR_WRITE, 8)
}

fn mprotect_scratch(page: usize, prot: i32) {
    sys::mprotect(page, 4096, prot).expect("mprotect of scratch");
}

/// The bytes of a plain `#[repr(C)]` ABI struct.
fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
    // SAFETY: the uapi structs are `#[repr(C)]` with explicit padding
    // fields, so every byte is initialised; the slice lives within `v`.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>()) }
        .to_vec()
}

/// A uapi struct from the first bytes of `buf`.
fn from_bytes<T: Copy + Default>(buf: &[u8; 128]) -> T {
    assert!(std::mem::size_of::<T>() <= buf.len());
    // SAFETY: every bit pattern is a valid uapi struct (integers only), the
    // size is checked above, and read_unaligned copes with any alignment.
    unsafe { std::ptr::read_unaligned(buf.as_ptr() as *const T) }
}
