//! Safe verbs: devices and ports, protection domains, memory registration
//! and completion queues (busy-polled, or event mode through a completion
//! channel whose descriptor works with poll/epoll).
//!
//! Ownership follows the verbs rules by reference counting: a memory
//! region holds its protection domain, a domain and a queue hold the device
//! context, so objects can be dropped in any order and each is destroyed
//! only after everything made from it.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use rdma_sys::*;

use super::{errno, Error, Result};

/// One port of an RDMA device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// Port number (from 1).
    pub num: u8,
    /// `ACTIVE`, `DOWN`, ...
    pub state: &'static str,
    /// Active MTU in bytes (IB MTU: 256 ... 4096).
    pub active_mtu: u32,
    /// GIDs in use: (index, address). RoCE v2 lists an IPv4-mapped one
    /// (`::ffff:a.b.c.d`) per IPv4 address of the netdev.
    pub gids: Vec<(u32, std::net::Ipv6Addr)>,
}

impl Port {
    /// The index of the first IPv4-mapped GID (what RoCE v2 over IPv4 uses).
    pub fn ipv4_gid(&self) -> Option<(u32, std::net::Ipv4Addr)> {
        self.gids
            .iter()
            .find_map(|&(i, g)| g.to_ipv4_mapped().map(|a| (i, a)))
    }
}

/// An RDMA device and its ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Device name (`zrxe0`, `mlx5_0`, ...).
    pub name: String,
    /// Largest memory region it registers, in bytes.
    pub max_mr_size: u64,
    /// Most work requests per queue pair.
    pub max_qp_wr: u32,
    /// Ports.
    pub ports: Vec<Port>,
}

fn port_state(s: ibv_port_state::Type) -> &'static str {
    match s {
        ibv_port_state::IBV_PORT_NOP => "NOP",
        ibv_port_state::IBV_PORT_DOWN => "DOWN",
        ibv_port_state::IBV_PORT_INIT => "INIT",
        ibv_port_state::IBV_PORT_ARMED => "ARMED",
        ibv_port_state::IBV_PORT_ACTIVE => "ACTIVE",
        ibv_port_state::IBV_PORT_ACTIVE_DEFER => "ACTIVE_DEFER",
        _ => "UNKNOWN",
    }
}

fn mtu_bytes(m: ibv_mtu::Type) -> u32 {
    if (1..=5).contains(&m) {
        128 << m
    } else {
        0
    }
}

/// The RDMA devices of this machine, with their ports and GIDs. No device
/// is an empty list, not an error.
pub fn devices() -> Result<Vec<Device>> {
    let list = DeviceList::get()?;
    let mut out = Vec::new();
    for dev in list.iter() {
        let ctx = Context::open(dev)?;
        out.push(ctx.describe()?);
    }
    Ok(out)
}

/// `ibv_get_device_list`, freed on drop.
struct DeviceList {
    list: NonNull<*mut ibv_device>,
    len: usize,
}

impl DeviceList {
    fn get() -> Result<DeviceList> {
        let mut n = 0;
        // SAFETY: n is a valid out pointer; the list is freed in Drop.
        let list = unsafe { ibv_get_device_list(&mut n) };
        match NonNull::new(list) {
            Some(list) => Ok(DeviceList {
                list,
                len: usize::try_from(n).unwrap_or(0),
            }),
            // ENOSYS: no kernel support at all; treat as "no devices".
            None if errno() == libc::ENOSYS => Err(Error::NoDevice(
                "the kernel has no RDMA support (modprobe rdma_rxe, or run scripts/rxe-setup.sh)"
                    .into(),
            )),
            None => Err(Error::verbs("ibv_get_device_list")),
        }
    }

    fn iter(&self) -> impl Iterator<Item = *mut ibv_device> + '_ {
        (0..self.len).map(|i| {
            // SAFETY: i < len, the number of entries ibv_get_device_list
            // reported, so the entry is inside the list.
            let entry = unsafe { self.list.as_ptr().add(i) };
            // SAFETY: as above; the list lives as long as self.
            unsafe { *entry }
        })
    }
}

impl Drop for DeviceList {
    fn drop(&mut self) {
        // SAFETY: the list came from ibv_get_device_list and is freed once.
        unsafe { ibv_free_device_list(self.list.as_ptr()) }
    }
}

/// A device context. Either opened here (closed on drop) or borrowed from
/// an rdma_cm id (librdmacm owns those for the life of the process).
#[derive(Debug)]
pub struct Context {
    ptr: NonNull<ibv_context>,
    owned: bool,
}

// SAFETY: verbs objects may be used from any thread (libibverbs locks
// internally); the pointer is only freed in Drop.
unsafe impl Send for Context {}
// SAFETY: as above.
unsafe impl Sync for Context {}

impl Context {
    fn open(dev: *mut ibv_device) -> Result<Context> {
        // SAFETY: dev is an entry of a live device list.
        let ptr = unsafe { ibv_open_device(dev) };
        NonNull::new(ptr)
            .map(|ptr| Context { ptr, owned: true })
            .ok_or_else(|| Error::verbs("ibv_open_device"))
    }

    /// Opens the device called `name`.
    pub fn open_by_name(name: &str) -> Result<Arc<Context>> {
        let list = DeviceList::get()?;
        for dev in list.iter() {
            // SAFETY: dev is a live list entry.
            let n = unsafe { ibv_get_device_name(dev) };
            if cstr(n) == name {
                return Ok(Arc::new(Context::open(dev)?));
            }
        }
        Err(Error::NoDevice(format!(
            "no RDMA device {name:?} (`rdma link` lists them; scripts/rxe-setup.sh makes a Soft-RoCE one)"
        )))
    }

    /// A context librdmacm opened (an rdma_cm id's `verbs`).
    pub(crate) fn borrowed(ptr: *mut ibv_context) -> Result<Arc<Context>> {
        NonNull::new(ptr)
            .map(|ptr| Arc::new(Context { ptr, owned: false }))
            .ok_or(Error::NoDevice(
                "the address is not on an RDMA device".into(),
            ))
    }

    pub(crate) fn as_ptr(&self) -> *mut ibv_context {
        self.ptr.as_ptr()
    }

    /// The device's name.
    pub fn name(&self) -> String {
        // SAFETY: a live context.
        let dev = unsafe { (*self.as_ptr()).device };
        // SAFETY: the context's device lives as long as the context.
        cstr(unsafe { ibv_get_device_name(dev) })
    }

    /// The device, its limits and its ports.
    pub fn describe(&self) -> Result<Device> {
        // SAFETY: ibv_device_attr is plain old data; zero is a valid value.
        let mut attr: ibv_device_attr = unsafe { std::mem::zeroed() };
        // SAFETY: a live context and a valid out pointer.
        if unsafe { ibv_query_device(self.as_ptr(), &mut attr) } != 0 {
            return Err(Error::verbs("ibv_query_device"));
        }
        let mut ports = Vec::new();
        for num in 1..=attr.phys_port_cnt {
            ports.push(self.port(num)?);
        }
        Ok(Device {
            name: self.name(),
            max_mr_size: attr.max_mr_size,
            max_qp_wr: u32::try_from(attr.max_qp_wr).unwrap_or(0),
            ports,
        })
    }

    fn port(&self, num: u8) -> Result<Port> {
        // SAFETY: ibv_port_attr is plain old data; zero is a valid value.
        let mut attr: ibv_port_attr = unsafe { std::mem::zeroed() };
        // SAFETY: a live context, a valid out pointer. rdma-sys's own
        // ibv_query_port wrapper misreads the context ABI; this one falls
        // back to the exported compat symbol, which fills the same struct.
        if unsafe { ___ibv_query_port(self.as_ptr(), num, &mut attr) } != 0 {
            return Err(Error::verbs("ibv_query_port"));
        }
        let mut gids = Vec::new();
        for index in 0..attr.gid_tbl_len.max(0) {
            // SAFETY: ibv_gid is a union of byte arrays; zero is valid.
            let mut gid: ibv_gid = unsafe { std::mem::zeroed() };
            // SAFETY: index < gid_tbl_len; a valid out pointer.
            if unsafe { ibv_query_gid(self.as_ptr(), num, index, &mut gid) } != 0 {
                continue;
            }
            // SAFETY: every bit pattern of the union is a valid byte array.
            let raw = unsafe { gid.raw };
            if raw != [0; 16] {
                gids.push((index as u32, std::net::Ipv6Addr::from(raw)));
            }
        }
        Ok(Port {
            num,
            state: port_state(attr.state),
            active_mtu: mtu_bytes(attr.active_mtu),
            gids,
        })
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: opened by ibv_open_device here; everything made from
            // it holds an Arc of it, so nothing uses it any more.
            unsafe { ibv_close_device(self.as_ptr()) };
        }
    }
}

/// A protection domain: memory registered in it can be reached by the
/// queue pairs created in it.
#[derive(Debug)]
pub struct Pd {
    ptr: NonNull<ibv_pd>,
    ctx: Arc<Context>,
}

// SAFETY: see Context; the pointer is only freed in Drop.
unsafe impl Send for Pd {}
// SAFETY: as above.
unsafe impl Sync for Pd {}

impl Pd {
    /// A protection domain on `ctx`.
    pub fn new(ctx: &Arc<Context>) -> Result<Arc<Pd>> {
        // SAFETY: a live context.
        let ptr = unsafe { ibv_alloc_pd(ctx.as_ptr()) };
        NonNull::new(ptr)
            .map(|ptr| {
                Arc::new(Pd {
                    ptr,
                    ctx: ctx.clone(),
                })
            })
            .ok_or_else(|| Error::verbs("ibv_alloc_pd"))
    }

    /// A protection domain on the device called `name`.
    pub fn open(name: &str) -> Result<Arc<Pd>> {
        Pd::new(&Context::open_by_name(name)?)
    }

    /// The device context.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    pub(crate) fn as_ptr(&self) -> *mut ibv_pd {
        self.ptr.as_ptr()
    }

    /// Registers `region` with `access`: queue pairs in this domain can
    /// send from it and receive or read into it, and peers can do what
    /// `access` grants them and nothing more. The region is owned by the
    /// result, so it outlives the registration.
    pub fn register<R: Region>(self: &Arc<Self>, mut region: R, access: Access) -> Result<Mr<R>> {
        let (addr, len) = (region.as_mut_ptr(), region.len());
        if len == 0 {
            return Err(Error::Usage("cannot register an empty region".into()));
        }
        let access = access.flags();
        // SAFETY: [addr, addr + len) is memory the region owns and keeps
        // mapped for as long as the Mr (which owns the region) lives; the
        // registration is undone in Mr's Drop before the region is dropped.
        let ptr = unsafe { ibv_reg_mr(self.as_ptr(), addr.cast(), len, access.0 as i32) };
        let ptr = NonNull::new(ptr).ok_or_else(|| Error::verbs("ibv_reg_mr"))?;
        Ok(Mr {
            ptr,
            region,
            pd: self.clone(),
        })
    }
}

impl Drop for Pd {
    fn drop(&mut self) {
        // SAFETY: every MR and QP made in this domain holds an Arc of it, so
        // none is left.
        unsafe { ibv_dealloc_pd(self.as_ptr()) };
    }
}

/// What a peer may do to a registered region. Every region also takes
/// local work: sends and writes from it, receives and read responses into
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No peer may touch it.
    Local,
    /// Peers may read it (RDMA READ).
    RemoteRead,
    /// Peers may write it (RDMA WRITE).
    RemoteWrite,
}

impl Access {
    fn flags(self) -> ibv_access_flags {
        let local = ibv_access_flags::IBV_ACCESS_LOCAL_WRITE;
        match self {
            Access::Local => local,
            Access::RemoteRead => local | ibv_access_flags::IBV_ACCESS_REMOTE_READ,
            Access::RemoteWrite => local | ibv_access_flags::IBV_ACCESS_REMOTE_WRITE,
        }
    }
}

/// Memory that can be registered: it stays mapped at the same address for
/// as long as the value lives.
///
/// # Safety
/// `as_mut_ptr()..+len()` must be valid, writable memory for the value's
/// whole life, and must not move when the value moves.
pub unsafe trait Region {
    /// Start of the memory.
    fn as_mut_ptr(&mut self) -> *mut u8;
    /// Its length in bytes.
    fn len(&self) -> usize;
    /// True for an empty region.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// SAFETY: an anonymous or file (shm segment) mapping stays where it is for
// the life of the MmapMut.
unsafe impl Region for memmap2::MmapMut {
    fn as_mut_ptr(&mut self) -> *mut u8 {
        <[u8]>::as_mut_ptr(self)
    }
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
}

// SAFETY: the pool mapping is struct-page backed and stays mapped for the
// life of the PoolMap.
#[cfg(feature = "card")]
unsafe impl Region for crate::card::PoolMap {
    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.as_ptr()
    }
    fn len(&self) -> usize {
        crate::card::PoolMap::len(self)
    }
}

/// A registered memory region, owning its memory.
#[derive(Debug)]
pub struct Mr<R: Region> {
    ptr: NonNull<ibv_mr>,
    region: R,
    pd: Arc<Pd>,
}

// SAFETY: the registration is a handle; the memory is owned by `region`.
unsafe impl<R: Region + Send> Send for Mr<R> {}

impl<R: Region> Mr<R> {
    /// Local key (names the region in this process's work requests).
    pub fn lkey(&self) -> u32 {
        // SAFETY: a live registration; lkey is set at creation.
        unsafe { (*self.ptr.as_ptr()).lkey }
    }

    /// Remote key (a peer names the region with it in RDMA writes).
    pub fn rkey(&self) -> u32 {
        // SAFETY: as in lkey.
        unsafe { (*self.ptr.as_ptr()).rkey }
    }

    /// The registered memory's start address (what a peer writes to).
    pub fn addr(&self) -> u64 {
        // SAFETY: as in lkey.
        unsafe { (*self.ptr.as_ptr()).addr as u64 }
    }

    /// Registered bytes.
    pub fn len(&self) -> usize {
        self.region.len()
    }

    /// True for an empty region (never: registration refuses those).
    pub fn is_empty(&self) -> bool {
        self.region.is_empty()
    }

    /// The protection domain.
    pub fn pd(&self) -> &Arc<Pd> {
        &self.pd
    }

    /// The memory.
    pub fn region(&self) -> &R {
        &self.region
    }

    pub(crate) fn base(&mut self) -> *mut u8 {
        self.region.as_mut_ptr()
    }
}

impl<R: Region> Drop for Mr<R> {
    fn drop(&mut self) {
        // SAFETY: registered in new; deregistered once, before the region
        // (a later field) is dropped.
        unsafe { ibv_dereg_mr(self.ptr.as_ptr()) };
    }
}

/// One work completion, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// The work request's id.
    pub wr_id: u64,
    /// `IBV_WC_SUCCESS` (0) or an error status.
    pub status: u32,
    /// What completed (`IBV_WC_RECV_RDMA_WITH_IMM`, `IBV_WC_RDMA_WRITE`, ...).
    pub opcode: u32,
    /// Bytes received (receive completions).
    pub byte_len: u32,
    /// Immediate data in host order, when the completion carries one.
    pub imm: Option<u32>,
    /// The device's own error detail.
    pub vendor_err: u32,
}

impl Completion {
    /// The status's name (`success`, `transport retry counter exceeded`, ...).
    pub fn status_str(&self) -> String {
        status_str(self.status)
    }
}

/// Text for a work completion status.
pub fn status_str(status: u32) -> String {
    // SAFETY: ibv_wc_status_str returns a static string for any value.
    cstr(unsafe { ibv_wc_status_str(status) })
}

/// Copies a C string libibverbs or librdmacm returned (null: empty).
pub(crate) fn cstr(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-null strings from these libraries are NUL-terminated and
    // live at least as long as the object they describe; copied at once.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// A completion queue, optionally with a completion channel (event mode).
#[derive(Debug)]
pub struct Cq {
    ptr: NonNull<ibv_cq>,
    channel: Option<NonNull<ibv_comp_channel>>,
    unacked: u32,
    ctx: Arc<Context>,
}

// SAFETY: see Context.
unsafe impl Send for Cq {}

impl Cq {
    /// A queue of `depth` entries; with `events`, a completion channel too
    /// ([`Cq::arm`], [`Cq::wait`], and its descriptor for poll/epoll).
    pub fn new(ctx: &Arc<Context>, depth: u32, events: bool) -> Result<Cq> {
        let channel = if events {
            // SAFETY: a live context.
            let ch = unsafe { ibv_create_comp_channel(ctx.as_ptr()) };
            let ch = NonNull::new(ch).ok_or_else(|| Error::verbs("ibv_create_comp_channel"))?;
            // SAFETY: the channel's fd is open while the channel lives.
            let fd = unsafe { (*ch.as_ptr()).fd };
            if let Err(e) = set_nonblocking(fd) {
                // SAFETY: created above, nothing attached yet.
                unsafe { ibv_destroy_comp_channel(ch.as_ptr()) };
                return Err(e);
            }
            Some(ch)
        } else {
            None
        };
        let chp = channel.map_or(std::ptr::null_mut(), NonNull::as_ptr);
        let depth = i32::try_from(depth).unwrap_or(i32::MAX);
        // SAFETY: a live context, a live channel or null.
        let ptr = unsafe { ibv_create_cq(ctx.as_ptr(), depth, std::ptr::null_mut(), chp, 0) };
        let Some(ptr) = NonNull::new(ptr) else {
            let e = Error::verbs("ibv_create_cq");
            if let Some(ch) = channel {
                // SAFETY: created above, no CQ on it.
                unsafe { ibv_destroy_comp_channel(ch.as_ptr()) };
            }
            return Err(e);
        };
        Ok(Cq {
            ptr,
            channel,
            unacked: 0,
            ctx: ctx.clone(),
        })
    }

    pub(crate) fn as_ptr(&self) -> *mut ibv_cq {
        self.ptr.as_ptr()
    }

    /// Takes up to `out.len()` completions; how many.
    pub fn poll(&mut self, out: &mut Vec<Completion>, max: usize) -> Result<usize> {
        const BATCH: usize = 16;
        // SAFETY: ibv_wc is plain old data; zero is a valid value.
        let mut wc: [ibv_wc; BATCH] = unsafe { std::mem::zeroed() };
        let want = max.min(BATCH) as i32;
        // SAFETY: a live CQ; wc has room for `want` entries.
        let n = unsafe { ibv_poll_cq(self.as_ptr(), want, wc.as_mut_ptr()) };
        if n < 0 {
            return Err(Error::Verbs {
                op: "ibv_poll_cq",
                errno: -n,
            });
        }
        for w in &wc[..n as usize] {
            let imm = (w.wc_flags & ibv_wc_flags::IBV_WC_WITH_IMM.0 != 0).then(|| {
                // SAFETY: WITH_IMM says the union holds the immediate.
                u32::from_be(unsafe { w.imm_data_invalidated_rkey_union.imm_data })
            });
            out.push(Completion {
                wr_id: w.wr_id,
                status: w.status,
                opcode: w.opcode,
                byte_len: w.byte_len,
                imm,
                vendor_err: w.vendor_err,
            });
        }
        Ok(n as usize)
    }

    /// Asks for an event on the next completion (event mode). Poll once
    /// more after arming: a completion may have come in between.
    pub fn arm(&mut self) -> Result<()> {
        if self.channel.is_none() {
            return Err(Error::Usage(
                "arm: this CQ has no completion channel".into(),
            ));
        }
        // SAFETY: a live CQ with a channel.
        let r = unsafe { ibv_req_notify_cq(self.as_ptr(), 0) };
        Error::check("ibv_req_notify_cq", r)
    }

    /// Takes a pending completion event, if any (the channel is
    /// non-blocking: wait for its descriptor with poll/epoll first). True
    /// when there was one; the CQ must be armed again for the next.
    pub fn take_event(&mut self) -> Result<bool> {
        let Some(ch) = self.channel else {
            return Err(Error::Usage(
                "take_event: this CQ has no completion channel".into(),
            ));
        };
        let mut cq = std::ptr::null_mut();
        let mut ctx = std::ptr::null_mut();
        // SAFETY: a live channel; valid out pointers.
        if unsafe { ibv_get_cq_event(ch.as_ptr(), &mut cq, &mut ctx) } != 0 {
            return match errno() {
                libc::EAGAIN => Ok(false),
                _ => Err(Error::verbs("ibv_get_cq_event")),
            };
        }
        self.unacked += 1;
        if self.unacked >= 64 {
            // SAFETY: acknowledges events this CQ received.
            unsafe { ibv_ack_cq_events(self.as_ptr(), self.unacked) };
            self.unacked = 0;
        }
        Ok(true)
    }

    /// Waits up to `timeout` for the channel's descriptor to be readable
    /// (event mode), then takes the event. True when one came.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool> {
        let fd = self
            .fd()
            .ok_or_else(|| Error::Usage("wait: this CQ has no completion channel".into()))?
            .as_raw_fd();
        if poll_in(&[fd], timeout)? {
            self.take_event()
        } else {
            Ok(false)
        }
    }

    /// The completion channel's descriptor (event mode).
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.channel.map(|ch| {
            // SAFETY: a live channel.
            let fd = unsafe { (*ch.as_ptr()).fd };
            // SAFETY: the channel's fd stays open while the CQ (and its
            // channel) lives, which bounds the borrow.
            unsafe { BorrowedFd::borrow_raw(fd) }
        })
    }

    /// The device context.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }
}

impl AsFd for Cq {
    /// The completion channel's descriptor; panics for a CQ without one.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd().expect("a CQ created with events = true")
    }
}

impl Drop for Cq {
    fn drop(&mut self) {
        if self.unacked > 0 {
            // SAFETY: acknowledges events this CQ received.
            unsafe { ibv_ack_cq_events(self.as_ptr(), self.unacked) };
        }
        // SAFETY: the QPs using this CQ are destroyed first (their owner
        // drops them before the CQ); a failure leaves nothing to do.
        unsafe { ibv_destroy_cq(self.as_ptr()) };
        if let Some(ch) = self.channel {
            // SAFETY: its only CQ was destroyed above.
            unsafe { ibv_destroy_comp_channel(ch.as_ptr()) };
        }
    }
}

pub(crate) fn set_nonblocking(fd: RawFd) -> Result<()> {
    // SAFETY: fcntl on a descriptor the caller holds open.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if fl < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) } < 0 {
        return Err(Error::verbs("fcntl(O_NONBLOCK)"));
    }
    Ok(())
}

/// Waits until one of `fds` is readable, at most `timeout`. True if one is.
pub(crate) fn poll_in(fds: &[RawFd], timeout: Duration) -> Result<bool> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: p is a valid array of p.len() pollfds.
    let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms) };
    if n < 0 {
        return match errno() {
            libc::EINTR => Ok(false),
            _ => Err(Error::verbs("poll")),
        };
    }
    Ok(n > 0)
}
