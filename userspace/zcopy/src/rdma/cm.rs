//! RC queue pairs connected with rdma_cm.
//!
//! A [`Connection`] is one rdma_cm id on its own event channel, with a
//! protection domain, one completion queue for sends and receives, an RC
//! queue pair and the memory regions its work requests name. The regions
//! belong to the connection, so they are deregistered only after the queue
//! pair is gone. Teardown on drop, on every path: destroy the QP (never
//! moved to the error state first: see [`Connection`]), destroy the id
//! (which tells a connected peer), then the CQ, the regions, the domain and
//! the event channel.
//!
//! Client: [`Connection::resolve`] → [`Connection::create_qp`] → register
//! and post receives → [`Connection::connect`]. Server: [`Listener::bind`]
//! → [`Listener::next_request`] → [`Connection::create_qp`] → register and
//! post receives → [`Connection::accept`] (or [`Connection::reject`]).

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdma_sys::*;

use super::verbs::{
    cstr, poll_in, set_nonblocking, Access, Completion, Context, Cq, Mr, Pd, Region,
};
use super::{Error, Result};

const RDMA_OPTION_ID: i32 = 0;
const RDMA_OPTION_ID_REUSEADDR: i32 = 1;
const RDMA_OPTION_ID_ACK_TIMEOUT: i32 = 3;

/// Transport retries before a silent peer fails the QP. 7 would mean
/// "retry forever" on Soft-RoCE, so a dead peer would never be noticed.
pub const RETRY_COUNT: u8 = 6;
/// Local ACK timeout exponent: 4.096 µs × 2^15 ≈ 134 ms per try, so a
/// peer that stopped answering fails a request within about a second.
pub const ACK_TIMEOUT: u8 = 15;

/// An rdma_cm event channel (non-blocking; wait with a timeout).
#[derive(Debug)]
struct EventChannel(NonNull<rdma_event_channel>);

// SAFETY: librdmacm objects may be used from any thread; freed in Drop only.
unsafe impl Send for EventChannel {}

impl EventChannel {
    fn new() -> Result<EventChannel> {
        // SAFETY: no arguments; null on failure.
        let ch = unsafe { rdma_create_event_channel() };
        let ch =
            EventChannel(NonNull::new(ch).ok_or_else(|| Error::cm("rdma_create_event_channel"))?);
        set_nonblocking(ch.fd())?;
        Ok(ch)
    }

    fn fd(&self) -> RawFd {
        // SAFETY: a live channel; its fd is open while it lives.
        unsafe { (*self.0.as_ptr()).fd }
    }

    /// The next event within `timeout` (None: none came), copied out and
    /// acknowledged at once.
    fn next(&self, timeout: Duration) -> Result<Option<Event>> {
        // Past the clock's range: as good as forever.
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let mut ev = std::ptr::null_mut();
            // SAFETY: a live channel; a valid out pointer.
            if unsafe { rdma_get_cm_event(self.0.as_ptr(), &mut ev) } == 0 {
                // SAFETY: rdma_get_cm_event succeeded, so ev is a live event
                // until it is acknowledged below.
                let e = unsafe { Event::copy(ev) };
                // SAFETY: acknowledged once, after the copy.
                unsafe { rdma_ack_cm_event(ev) };
                return Ok(Some(e));
            }
            if super::errno() != libc::EAGAIN {
                return Err(Error::cm("rdma_get_cm_event"));
            }
            let left = deadline.map_or(Duration::from_secs(3600), |d| {
                d.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return Ok(None);
            }
            poll_in(&[self.fd()], left)?;
        }
    }

    /// Waits for `want`; any other event is an error naming `step`.
    fn expect(&self, step: &'static str, want: u32, timeout: Duration) -> Result<Event> {
        match self.next(timeout)? {
            Some(e) if e.kind == want && e.status == 0 => Ok(e),
            Some(e) if e.kind == rdma_cm_event_type::RDMA_CM_EVENT_REJECTED => {
                Err(match reject_reason(&e.private) {
                    Some(why) => Error::Refused(why),
                    None => e.error(step),
                })
            }
            Some(e) => Err(e.error(step)),
            None => Err(Error::Timeout(step)),
        }
    }
}

impl Drop for EventChannel {
    fn drop(&mut self) {
        // SAFETY: every id on this channel was destroyed before (their
        // owners drop them first).
        unsafe { rdma_destroy_event_channel(self.0.as_ptr()) };
    }
}

/// Reject reasons travel as private data starting with this tag.
const REJECT_TAG: &[u8] = b"zcopy:";

fn reject_reason(private: &[u8]) -> Option<String> {
    let rest = private.strip_prefix(REJECT_TAG)?;
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// An rdma_cm event, copied out of librdmacm's memory.
#[derive(Debug)]
struct Event {
    kind: u32,
    status: i32,
    id: *mut rdma_cm_id,
    private: Vec<u8>,
}

impl Event {
    /// # Safety
    /// `ev` must be a live event from rdma_get_cm_event.
    unsafe fn copy(ev: *mut rdma_cm_event) -> Event {
        // SAFETY: the caller guarantees ev is live.
        let e = unsafe { &*ev };
        // SAFETY: for the connection events this layer reads, the union
        // holds `conn` (RC ids only; never UD).
        let conn = unsafe { e.param.conn };
        let private = if conn.private_data.is_null() {
            Vec::new()
        } else {
            // SAFETY: librdmacm says private_data_len bytes are there until
            // the event is acknowledged; they are copied now.
            unsafe {
                std::slice::from_raw_parts(
                    conn.private_data.cast::<u8>(),
                    usize::from(conn.private_data_len),
                )
            }
            .to_vec()
        };
        Event {
            kind: e.event,
            status: e.status,
            id: e.id,
            private,
        }
    }

    fn name(&self) -> String {
        // SAFETY: rdma_event_str returns a static string for any value.
        cstr(unsafe { rdma_event_str(self.kind) })
    }

    fn error(&self, step: &'static str) -> Error {
        Error::Event {
            step,
            event: self.name(),
            status: self.status,
        }
    }
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    let s: socket2_like::SockAddr = addr.into();
    (s.storage, s.len)
}

/// std's SocketAddr as a C sockaddr.
mod socket2_like {
    use std::net::SocketAddr;

    pub struct SockAddr {
        pub storage: libc::sockaddr_storage,
        pub len: libc::socklen_t,
    }

    impl From<SocketAddr> for SockAddr {
        fn from(a: SocketAddr) -> SockAddr {
            // SAFETY: sockaddr_storage is plain old data; zero is valid.
            let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let len = match a {
                SocketAddr::V4(v4) => {
                    let sin = libc::sockaddr_in {
                        sin_family: libc::AF_INET as libc::sa_family_t,
                        sin_port: v4.port().to_be(),
                        sin_addr: libc::in_addr {
                            s_addr: u32::from(*v4.ip()).to_be(),
                        },
                        sin_zero: [0; 8],
                    };
                    // SAFETY: sockaddr_storage is larger than and aligned
                    // for sockaddr_in.
                    unsafe { std::ptr::write((&raw mut storage).cast(), sin) };
                    std::mem::size_of::<libc::sockaddr_in>()
                }
                SocketAddr::V6(v6) => {
                    let sin6 = libc::sockaddr_in6 {
                        sin6_family: libc::AF_INET6 as libc::sa_family_t,
                        sin6_port: v6.port().to_be(),
                        sin6_flowinfo: v6.flowinfo(),
                        sin6_addr: libc::in6_addr {
                            s6_addr: v6.ip().octets(),
                        },
                        sin6_scope_id: v6.scope_id(),
                    };
                    // SAFETY: as above, for sockaddr_in6.
                    unsafe { std::ptr::write((&raw mut storage).cast(), sin6) };
                    std::mem::size_of::<libc::sockaddr_in6>()
                }
            };
            SockAddr {
                storage,
                len: len as libc::socklen_t,
            }
        }
    }
}

/// An rdma_cm id (destroyed on drop) and the event channel it reports on.
#[derive(Debug)]
struct Id {
    ptr: NonNull<rdma_cm_id>,
    qp: bool,
    ch: EventChannel,
}

// SAFETY: see EventChannel.
unsafe impl Send for Id {}

impl Id {
    fn new() -> Result<Id> {
        let ch = EventChannel::new()?;
        let mut id = std::ptr::null_mut();
        // SAFETY: a live channel; a valid out pointer; RC port space.
        let r = unsafe {
            rdma_create_id(
                ch.0.as_ptr(),
                &mut id,
                std::ptr::null_mut(),
                rdma_port_space::RDMA_PS_TCP,
            )
        };
        if r != 0 {
            return Err(Error::cm("rdma_create_id"));
        }
        let ptr = NonNull::new(id).ok_or_else(|| Error::cm("rdma_create_id"))?;
        Ok(Id { ptr, qp: false, ch })
    }

    /// Takes over an id that came with a connect request, moving it onto
    /// an event channel of its own.
    fn adopt(id: *mut rdma_cm_id) -> Result<Id> {
        let ptr = NonNull::new(id).ok_or_else(|| Error::Usage("a null rdma_cm id".into()))?;
        let ch = match EventChannel::new() {
            Ok(ch) => ch,
            Err(e) => {
                // SAFETY: the id is ours (from a connect request) and unused.
                unsafe { rdma_destroy_id(ptr.as_ptr()) };
                return Err(e);
            }
        };
        // SAFETY: a live id and a live channel.
        if unsafe { rdma_migrate_id(ptr.as_ptr(), ch.0.as_ptr()) } != 0 {
            let e = Error::cm("rdma_migrate_id");
            // SAFETY: as above.
            unsafe { rdma_destroy_id(ptr.as_ptr()) };
            return Err(e);
        }
        Ok(Id { ptr, qp: false, ch })
    }

    fn as_ptr(&self) -> *mut rdma_cm_id {
        self.ptr.as_ptr()
    }

    fn set_option<T>(&self, name: i32, mut value: T) -> Result<()> {
        // SAFETY: a live id; value is a T of size_of::<T>() bytes.
        let r = unsafe {
            rdma_set_option(
                self.as_ptr(),
                RDMA_OPTION_ID,
                name,
                (&raw mut value).cast(),
                std::mem::size_of::<T>(),
            )
        };
        if r != 0 {
            return Err(Error::cm("rdma_set_option"));
        }
        Ok(())
    }

    fn verbs(&self) -> *mut ibv_context {
        // SAFETY: a live id; verbs is set once the address is bound to a device.
        unsafe { (*self.as_ptr()).verbs }
    }

    fn addr(&self, peer: bool) -> Option<SocketAddr> {
        // SAFETY: a live id; route.addr holds the bound / resolved addresses.
        let a = unsafe { &(*self.as_ptr()).route.addr };
        let ss = if peer {
            // SAFETY: the union is read as sockaddr_storage, which every
            // member fits.
            unsafe { a.dst_addr_union.dst_storage }
        } else {
            // SAFETY: as above.
            unsafe { a.src_addr_union.src_storage }
        };
        from_storage(&ss)
    }
}

fn from_storage(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in; storage is
            // aligned and large enough.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::from((
                u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            // The scope too: a link-local address means nothing without
            // its interface.
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                sin6.sin6_addr.s6_addr.into(),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

impl Drop for Id {
    fn drop(&mut self) {
        if self.qp {
            // SAFETY: the QP was created on this id by rdma_create_qp.
            unsafe { rdma_destroy_qp(self.as_ptr()) };
        }
        // SAFETY: every event of this id was acknowledged when read.
        unsafe { rdma_destroy_id(self.as_ptr()) };
    }
}

/// A listening rdma_cm id.
#[derive(Debug)]
pub struct Listener {
    id: Id,
}

impl Listener {
    /// Listens on `addr` (an address of an RDMA device's netdev; port 0
    /// picks a free one: see [`Listener::local_addr`]).
    pub fn bind(addr: SocketAddr) -> Result<Listener> {
        let id = Id::new()?;
        id.set_option(RDMA_OPTION_ID_REUSEADDR, 1i32)?;
        let (mut ss, _) = sockaddr(addr);
        // SAFETY: a live id; ss is a valid sockaddr of addr's family.
        if unsafe { rdma_bind_addr(id.as_ptr(), (&raw mut ss).cast()) } != 0 {
            return Err(Error::cm("rdma_bind_addr"));
        }
        // SAFETY: a bound id.
        if unsafe { rdma_listen(id.as_ptr(), 16) } != 0 {
            return Err(Error::cm("rdma_listen"));
        }
        Ok(Listener { id })
    }

    /// The address listened on (with the port chosen for port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.id.addr(false)
    }

    /// The descriptor that turns readable when a request comes (for poll/epoll).
    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the channel's fd is open while the listener lives.
        unsafe { BorrowedFd::borrow_raw(self.id.ch.fd()) }
    }

    /// The next connection request, waiting at most `timeout` (forever for
    /// None): its connection (no QP yet) and the client's private data.
    pub fn next_request(&self, timeout: Option<Duration>) -> Result<(Connection, Vec<u8>)> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let left = deadline.map_or(Duration::from_secs(3600), |d| {
                d.saturating_duration_since(Instant::now())
            });
            match self.id.ch.next(left)? {
                Some(e) if e.kind == rdma_cm_event_type::RDMA_CM_EVENT_CONNECT_REQUEST => {
                    let id = Id::adopt(e.id)?;
                    return Ok((Connection::on(id)?, e.private));
                }
                // Nothing else is expected on a listening id; skip it.
                Some(_) => {}
                None if deadline.is_some_and(|d| Instant::now() >= d) => {
                    return Err(Error::Timeout("waiting for a connection request"))
                }
                None => {}
            }
        }
    }
}

/// Queue sizes of a connection's QP and CQ.
#[derive(Debug, Clone, Copy)]
pub struct QpConfig {
    /// Send work requests outstanding at once.
    pub send_depth: u32,
    /// Receive work requests posted at once.
    pub recv_depth: u32,
    /// Bytes a send may carry inline (copied into the request, no lkey).
    pub max_inline: u32,
    /// Event mode: the CQ gets a completion channel.
    pub events: bool,
}

/// Where a registered region of a connection is, for work requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MrHandle {
    index: usize,
    /// Local key.
    pub lkey: u32,
    /// Remote key (give it to the peer).
    pub rkey: u32,
    /// Start address (give it to the peer).
    pub addr: u64,
    /// Length in bytes.
    pub len: usize,
}

trait AnyMr: Send + std::fmt::Debug {
    fn base(&mut self) -> *mut u8;
}

impl<R: Region + Send + std::fmt::Debug> AnyMr for Mr<R> {
    fn base(&mut self) -> *mut u8 {
        Mr::base(self)
    }
}

/// A connection: id, domain, CQ, QP and the regions its requests use.
#[derive(Debug)]
pub struct Connection {
    // Drop order: the id (with its QP) first, then the CQ, the regions and
    // the domain; the event channel goes with the id.
    //
    // Dropping does not call rdma_disconnect. That moves the QP to the
    // error state, and Soft-RoCE (6.12) handling a peer's message at that
    // moment runs the message again, taking receives until none is left
    // (an RNR NAK), and for a WRITE WITH IMMEDIATE leaks a reference to
    // the memory region with a kernel WARN (docs/rdma.md). Destroying the
    // QP outright has no such window; destroying the id then sends the
    // peer its disconnect request.
    id: Id,
    cq: Option<Cq>,
    mrs: Vec<Box<dyn AnyMr>>,
    pd: Arc<Pd>,
    connected: bool,
    max_inline: u32,
}

impl Connection {
    fn on(id: Id) -> Result<Connection> {
        let ctx = Context::borrowed(id.verbs())?;
        let pd = Pd::new(&ctx)?;
        id.set_option(RDMA_OPTION_ID_ACK_TIMEOUT, ACK_TIMEOUT)?;
        Ok(Connection {
            id,
            cq: None,
            mrs: Vec::new(),
            pd,
            connected: false,
            max_inline: 0,
        })
    }

    /// Resolves the address and route to `dst` (from `src`, or wherever
    /// the routing table says), both within `timeout` (and a second's
    /// grace, once, for the kernel's report of its own timeout).
    pub fn resolve(
        src: Option<SocketAddr>,
        dst: SocketAddr,
        timeout: Duration,
    ) -> Result<Connection> {
        let deadline = Instant::now().checked_add(timeout);
        let grace = deadline.and_then(|d| d.checked_add(Duration::from_secs(1)));
        let until = |t: Option<Instant>, or: Duration| {
            t.map_or(or, |t| t.saturating_duration_since(Instant::now()))
        };
        let id = Id::new()?;
        let mut s = src.map(sockaddr);
        let (mut d, _) = sockaddr(dst);
        let ms = |left: Duration| i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1);
        let sp = s.as_mut().map_or(std::ptr::null_mut(), |(ss, _)| {
            (ss as *mut libc::sockaddr_storage).cast()
        });
        // SAFETY: a live id; sp is null or a valid sockaddr, d a valid one.
        if unsafe { rdma_resolve_addr(id.as_ptr(), sp, (&raw mut d).cast(), ms(timeout)) } != 0 {
            return Err(Error::cm("rdma_resolve_addr"));
        }
        id.ch.expect(
            "resolving the address",
            rdma_cm_event_type::RDMA_CM_EVENT_ADDR_RESOLVED,
            until(grace, timeout),
        )?;
        let left = until(deadline, timeout);
        // SAFETY: the address is resolved.
        if unsafe { rdma_resolve_route(id.as_ptr(), ms(left)) } != 0 {
            return Err(Error::cm("rdma_resolve_route"));
        }
        id.ch.expect(
            "resolving the route",
            rdma_cm_event_type::RDMA_CM_EVENT_ROUTE_RESOLVED,
            until(grace, left),
        )?;
        Connection::on(id)
    }

    /// The protection domain (on the device the address resolved to).
    pub fn pd(&self) -> &Arc<Pd> {
        &self.pd
    }

    /// The device's name.
    pub fn device(&self) -> String {
        self.pd.context().name()
    }

    /// Local and peer addresses.
    pub fn addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        (self.id.addr(false), self.id.addr(true))
    }

    /// Makes the CQ and the RC QP. The QP's inline limit may come out
    /// below the one asked for: see [`Connection::max_inline`].
    pub fn create_qp(&mut self, cfg: QpConfig) -> Result<()> {
        if self.cq.is_some() {
            return Err(Error::Usage(
                "create_qp: the connection has a QP already".into(),
            ));
        }
        let cq = Cq::new(
            self.pd.context(),
            cfg.send_depth + cfg.recv_depth,
            cfg.events,
        )?;
        // SAFETY: ibv_qp_init_attr is plain old data; zero is a valid value.
        let mut attr: ibv_qp_init_attr = unsafe { std::mem::zeroed() };
        attr.send_cq = cq.as_ptr();
        attr.recv_cq = cq.as_ptr();
        attr.qp_type = ibv_qp_type::IBV_QPT_RC;
        attr.cap = ibv_qp_cap {
            max_send_wr: cfg.send_depth,
            max_recv_wr: cfg.recv_depth,
            max_send_sge: 1,
            max_recv_sge: 1,
            max_inline_data: cfg.max_inline,
        };
        // SAFETY: a live id with a resolved device, a PD on that device, a
        // live CQ; attr is initialised. The QP is destroyed with the id.
        if unsafe { rdma_create_qp(self.id.as_ptr(), self.pd.as_ptr(), &mut attr) } != 0 {
            return Err(Error::cm("rdma_create_qp"));
        }
        self.id.qp = true;
        self.max_inline = attr.cap.max_inline_data;
        self.cq = Some(cq);
        Ok(())
    }

    /// Bytes a send may carry inline.
    pub fn max_inline(&self) -> u32 {
        self.max_inline
    }

    /// Registers `region` in the connection's domain with `access`; it
    /// lives as long as the connection, and is deregistered after the QP
    /// is destroyed.
    pub fn register<R>(&mut self, region: R, access: Access) -> Result<MrHandle>
    where
        R: Region + Send + std::fmt::Debug + 'static,
    {
        let mr = self.pd.register(region, access)?;
        let h = MrHandle {
            index: self.mrs.len(),
            lkey: mr.lkey(),
            rkey: mr.rkey(),
            addr: mr.addr(),
            len: mr.len(),
        };
        self.mrs.push(Box::new(mr));
        Ok(h)
    }

    /// The start of a registered region in this process.
    pub fn region_ptr(&mut self, mr: MrHandle) -> *mut u8 {
        self.mrs[mr.index].base()
    }

    fn qp(&self) -> Result<*mut ibv_qp> {
        if !self.id.qp {
            return Err(Error::Usage("no QP yet: call create_qp".into()));
        }
        // SAFETY: a live id with a QP.
        Ok(unsafe { (*self.id.as_ptr()).qp })
    }

    fn conn_param(private: &[u8]) -> Result<rdma_conn_param> {
        let len = u8::try_from(private.len()).map_err(|_| {
            Error::Usage(format!(
                "{} bytes of private data: at most 196",
                private.len()
            ))
        })?;
        // SAFETY: rdma_conn_param is plain old data; zero is a valid value.
        let mut p: rdma_conn_param = unsafe { std::mem::zeroed() };
        p.private_data = private.as_ptr().cast();
        p.private_data_len = len;
        p.responder_resources = 1;
        p.initiator_depth = 1;
        p.retry_count = RETRY_COUNT;
        p.rnr_retry_count = 7; // only a live peer sends RNR NAKs
        Ok(p)
    }

    /// Connects (client), sending `private`; the server's private data.
    pub fn connect(&mut self, private: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        self.qp()?;
        let mut p = Connection::conn_param(private)?;
        // SAFETY: a live id with a QP; p points at private, which outlives
        // the call (librdmacm copies it).
        if unsafe { rdma_connect(self.id.as_ptr(), &mut p) } != 0 {
            return Err(Error::cm("rdma_connect"));
        }
        let e = self.id.ch.expect(
            "connecting",
            rdma_cm_event_type::RDMA_CM_EVENT_ESTABLISHED,
            timeout,
        )?;
        self.connected = true;
        Ok(e.private)
    }

    /// Accepts the request (server), sending `private`.
    pub fn accept(&mut self, private: &[u8], timeout: Duration) -> Result<()> {
        self.qp()?;
        let mut p = Connection::conn_param(private)?;
        // SAFETY: a live id from a connect request, with a QP; p as in connect.
        if unsafe { rdma_accept(self.id.as_ptr(), &mut p) } != 0 {
            return Err(Error::cm("rdma_accept"));
        }
        self.id.ch.expect(
            "accepting",
            rdma_cm_event_type::RDMA_CM_EVENT_ESTABLISHED,
            timeout,
        )?;
        self.connected = true;
        Ok(())
    }

    /// Refuses the request, telling the client why.
    pub fn reject(self, why: &str) {
        let mut data = REJECT_TAG.to_vec();
        data.extend_from_slice(why.as_bytes());
        data.truncate(148);
        // SAFETY: a live id from a connect request; data outlives the call.
        unsafe { rdma_reject(self.id.as_ptr(), data.as_ptr().cast(), data.len() as u8) };
    }

    /// Checks the id's events without waiting: Err once the peer has
    /// disconnected (or the connection broke), with the event's name.
    pub fn poll_events(&self) -> Result<()> {
        while let Some(e) = self.id.ch.next(Duration::ZERO)? {
            match e.kind {
                rdma_cm_event_type::RDMA_CM_EVENT_DISCONNECTED
                | rdma_cm_event_type::RDMA_CM_EVENT_DEVICE_REMOVAL
                | rdma_cm_event_type::RDMA_CM_EVENT_TIMEWAIT_EXIT => {
                    return Err(e.error("connection"))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The rdma_cm event descriptor (readable when the peer disconnects).
    pub fn event_fd(&self) -> RawFd {
        self.id.ch.fd()
    }

    /// The completion channel's descriptor (event mode).
    pub fn cq_fd(&self) -> Option<RawFd> {
        self.cq.as_ref().and_then(Cq::fd).map(|f| f.as_raw_fd())
    }

    /// The CQ.
    pub fn cq(&mut self) -> Result<&mut Cq> {
        self.cq
            .as_mut()
            .ok_or_else(|| Error::Usage("no CQ yet: call create_qp".into()))
    }

    /// Takes up to `max` completions into `out`.
    pub fn poll(&mut self, out: &mut Vec<Completion>, max: usize) -> Result<usize> {
        self.cq()?.poll(out, max)
    }

    /// Posts a receive with no buffer (for writes with immediate and
    /// zero-length sends).
    pub fn post_recv(&mut self, wr_id: u64) -> Result<()> {
        let qp = self.qp()?;
        // SAFETY: ibv_recv_wr is plain old data; zero is a valid value.
        let mut wr: ibv_recv_wr = unsafe { std::mem::zeroed() };
        wr.wr_id = wr_id;
        let mut bad = std::ptr::null_mut();
        // SAFETY: a live QP; wr names no memory.
        let r = unsafe { ibv_post_recv(qp, &mut wr, &mut bad) };
        Error::check("ibv_post_recv", r)
    }

    /// The scatter-gather entry of `len` bytes at `offset` of `mr`, a
    /// region this connection registered; `what` names the request in the
    /// error when they lie outside it.
    fn sge(&self, mr: MrHandle, offset: usize, len: usize, what: &str) -> Result<ibv_sge> {
        if mr.index >= self.mrs.len() || offset.checked_add(len).is_none_or(|e| e > mr.len) {
            return Err(Error::Usage(format!(
                "{what} of {len} bytes at {offset}: outside the {}-byte region",
                mr.len
            )));
        }
        Ok(ibv_sge {
            addr: mr.addr + offset as u64,
            length: len as u32,
            lkey: mr.lkey,
        })
    }

    /// Posts an RDMA WRITE (WITH IMMEDIATE when `imm` is given) of `len`
    /// bytes at `offset` of the registered region `mr` to `remote_addr`
    /// (`rkey`) at the peer. Inline when `len` is within the QP's inline
    /// limit. A zero-length write names no memory. An unsignaled write
    /// (`signaled` false) gives a completion only if it fails; it holds
    /// its place in the send queue until a later signaled request
    /// completes.
    #[allow(clippy::too_many_arguments)]
    pub fn post_write(
        &mut self,
        wr_id: u64,
        mr: MrHandle,
        offset: usize,
        len: usize,
        remote_addr: u64,
        rkey: u32,
        imm: Option<u32>,
        signaled: bool,
    ) -> Result<()> {
        let qp = self.qp()?;
        let mut sge = self.sge(mr, offset, len, "write")?;
        // SAFETY: ibv_send_wr is plain old data; zero is a valid value.
        let mut wr: ibv_send_wr = unsafe { std::mem::zeroed() };
        wr.wr_id = wr_id;
        if len > 0 {
            wr.sg_list = &mut sge;
            wr.num_sge = 1;
        }
        let mut flags = 0;
        if signaled {
            flags |= ibv_send_flags::IBV_SEND_SIGNALED.0;
        }
        if len > 0 && len <= self.max_inline as usize {
            flags |= ibv_send_flags::IBV_SEND_INLINE.0;
        }
        wr.send_flags = flags;
        match imm {
            Some(imm) => {
                wr.opcode = ibv_wr_opcode::IBV_WR_RDMA_WRITE_WITH_IMM;
                wr.imm_data_invalidated_rkey_union.imm_data = imm.to_be();
            }
            None => wr.opcode = ibv_wr_opcode::IBV_WR_RDMA_WRITE,
        }
        wr.wr.rdma = rdma_t { remote_addr, rkey };
        let mut bad = std::ptr::null_mut();
        // SAFETY: a live QP; the SGE lies inside a region this connection
        // registered and keeps until after the QP is destroyed (checked
        // above), so the device may read it until the request completes.
        let r = unsafe { ibv_post_send(qp, &mut wr, &mut bad) };
        Error::check("ibv_post_send", r)
    }

    /// Posts an RDMA READ (signaled) of `len` bytes at `remote_addr`
    /// (`rkey`) at the peer into `offset` of the registered region `mr`.
    pub fn post_read(
        &mut self,
        wr_id: u64,
        mr: MrHandle,
        offset: usize,
        len: usize,
        remote_addr: u64,
        rkey: u32,
    ) -> Result<()> {
        let qp = self.qp()?;
        if len == 0 {
            return Err(Error::Usage("a read of 0 bytes".into()));
        }
        let mut sge = self.sge(mr, offset, len, "read")?;
        // SAFETY: ibv_send_wr is plain old data; zero is a valid value.
        let mut wr: ibv_send_wr = unsafe { std::mem::zeroed() };
        wr.wr_id = wr_id;
        wr.sg_list = &mut sge;
        wr.num_sge = 1;
        wr.opcode = ibv_wr_opcode::IBV_WR_RDMA_READ;
        wr.send_flags = ibv_send_flags::IBV_SEND_SIGNALED.0;
        wr.wr.rdma = rdma_t { remote_addr, rkey };
        let mut bad = std::ptr::null_mut();
        // SAFETY: a live QP; the SGE lies inside a region this connection
        // registered (local write) and keeps until after the QP is
        // destroyed (checked above), so the device may write it until the
        // request completes.
        let r = unsafe { ibv_post_send(qp, &mut wr, &mut bad) };
        Error::check("ibv_post_send", r)
    }

    /// Posts a zero-length SEND WITH IMMEDIATE (signaled): a small message
    /// that consumes one posted receive at the peer.
    pub fn post_send_imm(&mut self, wr_id: u64, imm: u32) -> Result<()> {
        let qp = self.qp()?;
        // SAFETY: ibv_send_wr is plain old data; zero is a valid value.
        let mut wr: ibv_send_wr = unsafe { std::mem::zeroed() };
        wr.wr_id = wr_id;
        wr.opcode = ibv_wr_opcode::IBV_WR_SEND_WITH_IMM;
        wr.send_flags = ibv_send_flags::IBV_SEND_SIGNALED.0;
        wr.imm_data_invalidated_rkey_union.imm_data = imm.to_be();
        let mut bad = std::ptr::null_mut();
        // SAFETY: a live QP; the request names no memory.
        let r = unsafe { ibv_post_send(qp, &mut wr, &mut bad) };
        Error::check("ibv_post_send", r)
    }

    /// Disconnects now: the QP goes to the error state (outstanding
    /// requests flush) and the peer sees RDMA_CM_EVENT_DISCONNECTED. For a
    /// link already broken; an orderly end is dropping the connection.
    pub fn disconnect(&mut self) {
        if std::mem::take(&mut self.connected) {
            // SAFETY: a live, connected id.
            unsafe { rdma_disconnect(self.id.as_ptr()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_survives_the_trip_through_a_sockaddr() {
        for addr in [
            "169.254.77.1:7471",
            "[fd00::1]:7471",
            "[fe80::1%3]:7471",
            "0.0.0.0:0",
        ]
        .map(|a| a.parse().unwrap())
        .into_iter()
        .chain([SocketAddr::V6(std::net::SocketAddrV6::new(
            "fe80::2".parse().unwrap(),
            7471,
            0x12345,
            3,
        ))]) {
            let (ss, len) = sockaddr(addr);
            assert!(len as usize <= std::mem::size_of_val(&ss));
            assert_eq!(from_storage(&ss), Some(addr), "{addr}");
        }
    }
}
