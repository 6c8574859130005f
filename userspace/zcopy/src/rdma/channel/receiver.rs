//! The receiving end of an RDMA channel: [`Listener`], [`Receiver`] and
//! its [`Sample`]s.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::link::{
    anon_ring, check_peer, geometry, recv_depth, End, Hello, Link, LinkStats, CLOSE,
    CONNECT_TIMEOUT, IBV_WC_RECV, IBV_WC_RECV_RDMA_WITH_IMM, IBV_WC_SUCCESS, KIND, WR_RECV,
};
use crate::channel::{deadline_due, Error, Geometry, Pacer, Result, Rx, RxSample, Wait};

/// Listens for RDMA channel senders.
#[derive(Debug)]
pub struct Listener {
    cm: crate::rdma::cm::Listener,
    /// The largest ring a sender may ask this end to pin.
    max_ring: u64,
}

impl Listener {
    /// Listens on `addr`: an address of an RDMA device's netdev (port 0:
    /// any free port, see [`Listener::local_addr`]).
    pub fn bind(addr: SocketAddr) -> Result<Listener> {
        Ok(Listener {
            cm: crate::rdma::cm::Listener::bind(addr)?,
            max_ring: u64::MAX,
        })
    }

    /// Refuses a sender whose ring (slot size × count, which this end
    /// registers and pins the same) is larger than `bytes` (the sender
    /// learns why). Without it, anyone who reaches the port decides how
    /// much memory this end pins, up to the channel's limit of 16 GiB.
    pub fn set_max_ring(&mut self, bytes: u64) {
        self.max_ring = bytes;
    }

    /// The address listened on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.cm.local_addr()
    }

    /// The next sender, waiting at most `timeout` (None: forever). A
    /// request that is not a zcopy channel of a shape this end accepts is
    /// refused (the sender learns why) and reported here.
    pub fn accept(&self, timeout: Option<Duration>) -> Result<Receiver> {
        let (conn, private) = self.cm.next_request(timeout)?;
        let h = match Hello::parse(&private)
            .and_then(|h| geometry(h.slot_size as usize, h.slot_count).map(|g| (h, g)))
            .and_then(|(h, g)| check_peer(&h, End::Sender, &g).map(|()| (h, g)))
            .and_then(|(h, g)| {
                if g.slots_bytes > self.max_ring {
                    return Err(Error::Config(format!(
                        "a ring of {} bytes ({} slots of {}): this receiver takes at most {}",
                        g.slots_bytes, g.slot_count, g.slot_size, self.max_ring
                    )));
                }
                Ok((h, g))
            }) {
            Ok(hg) => hg,
            Err(e) => {
                conn.reject(&e.to_string());
                return Err(e);
            }
        };
        let (h, geo) = h;
        let ring = match anon_ring(&geo) {
            Ok(r) => r,
            Err(e) => {
                conn.reject(&e.to_string());
                return Err(e);
            }
        };
        let mut link =
            Link::new(conn, End::Receiver, &geo, recv_depth(&geo), ring).map_err(|failed| {
                let (e, conn) = *failed;
                // Refused with the reason: the sender would otherwise take the
                // bare reject for a receiver not listening yet, and retry.
                conn.reject(&format!("the receiver could not set the channel up: {e}"));
                e
            })?;
        link.peer(&h);
        let hello = link.hello(&geo);
        link.conn
            .accept(bytemuck::bytes_of(&hello), CONNECT_TIMEOUT)?;
        Ok(Receiver {
            state: RefCell::new(RecvState {
                link,
                slots: vec![RecvSlot::Free; geo.slot_count as usize],
                held: 0,
                uncredited: 0,
                first: u32::MAX,
                end: 0,
                queue: VecDeque::new(),
                closed: false,
                pacer: Pacer::new(),
                deferred: None,
            }),
            geo,
            spin: Cell::new(crate::channel::DEFAULT_SPIN),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecvSlot {
    Free,
    Queued,
    Held,
}

#[derive(Debug)]
struct RecvState {
    link: Link,
    slots: Vec<RecvSlot>,
    /// Samples out (slots Held).
    held: u32,
    /// Slots released since the last credit write, within `first .. end`.
    uncredited: u32,
    first: u32,
    end: u32,
    queue: VecDeque<(u32, u32)>,
    closed: bool,
    /// When a call that does not wait next reads the connection's events.
    pacer: Pacer,
    deferred: Option<Error>,
}

/// The receiving end of an RDMA channel: from [`Listener::accept`].
#[derive(Debug)]
pub struct Receiver {
    state: RefCell<RecvState>,
    geo: Geometry,
    spin: Cell<u32>,
}

impl Receiver {
    /// The channel's shape.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// The RDMA device and the local and peer addresses.
    pub fn endpoints(&self) -> (String, Option<SocketAddr>, Option<SocketAddr>) {
        self.state.borrow().link.endpoints()
    }

    /// What the link did so far: messages, credit writes, completion
    /// queue polls.
    pub fn stats(&self) -> LinkStats {
        self.state.borrow().link.stats
    }

    /// Busy-poll rounds before sleeping on the completion channel
    /// (default [`DEFAULT_SPIN`](crate::channel::DEFAULT_SPIN); 0: sleep at once). See [`Receiver::recv`].
    pub fn set_spin(&self, rounds: u32) {
        self.spin.set(rounds);
    }

    /// The next message, waiting as long as it takes.
    ///
    /// How it waits: it polls the completion queue up to `spin` times (256,
    /// [`DEFAULT_SPIN`](crate::channel::DEFAULT_SPIN), unless [`Receiver::set_spin`] says otherwise), with
    /// a spin-loop hint between polls, then sleeps on the completion
    /// channel and the connection's events, waking at least every
    /// [`PROBE_EVERY`](crate::rdma::PROBE_EVERY) to probe a silent sender.
    /// The spin rounds are counted per call, not per sleep.
    pub fn recv(&self) -> Result<Sample<'_>> {
        Rx::recv(self)
    }

    /// The next message if one is there, without waiting (`None`: not
    /// yet). After the last message: [`Error::Closed`] once the sender's
    /// close has arrived, [`Error::PeerDied`] once the connection is known
    /// broken; its events (a disconnect) are read at most once per
    /// [`LIVENESS_SLICE`](crate::channel::LIVENESS_SLICE) by calls that find
    /// nothing, as for the shared-memory receiver.
    pub fn try_recv(&self) -> Result<Option<Sample<'_>>> {
        self.recv_with(Wait::Never)
    }

    /// The next message, waiting at most `timeout`, as [`Receiver::recv`]
    /// waits.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Sample<'_>> {
        Rx::recv_timeout(self, timeout)
    }

    /// True once nothing beyond the messages already here can come: the
    /// sender's close arrived, or the connection broke (the sender
    /// disconnected or died).
    pub fn is_closed(&self) -> bool {
        let mut st = self.state.borrow_mut();
        if self.collect(&mut st).is_err() {
            return true;
        }
        st.link.check_events();
        st.closed || st.link.broken.is_some()
    }

    /// The next message, waiting as `wait` says. After the last message:
    /// [`Error::Closed`] when the sender closed, [`Error::PeerDied`] when
    /// it died or the link broke.
    pub fn recv_with(&self, wait: Wait) -> Result<Option<Sample<'_>>> {
        let mut st = self.state.borrow_mut();
        if let Some(e) = st.deferred.take() {
            return Err(e);
        }
        if st.uncredited >= credit_batch(&self.geo) {
            self.credit(&mut st);
        }
        // The clock is read only once there is something to wait for, as
        // in `Link::reserve_send`.
        let mut deadline = None;
        let mut spins = 0;
        loop {
            self.collect(&mut st)?;
            if let Some((index, len)) = st.queue.pop_front() {
                st.slots[index as usize] = RecvSlot::Held;
                st.held += 1;
                return Ok(Some(Sample {
                    receiver: self,
                    index,
                    len,
                }));
            }
            if st.closed {
                return Err(Error::Closed);
            }
            if st.link.broken.is_some() {
                return Err(Error::PeerDied {
                    pid: st.link.peer_pid,
                    reclaimed: 0,
                });
            }
            let Some(d) = *deadline.get_or_insert_with(|| wait.deadline()) else {
                if st.pacer.due() {
                    st.link.check_events();
                    if st.link.broken.is_some() {
                        continue;
                    }
                }
                return Ok(None);
            };
            // The deadline is checked once per LOOK_EVERY rounds of the
            // spin and before each sleep: the rounds between read no
            // clock.
            let spinning = spins < self.spin.get();
            if deadline_due(spins, spinning) && d.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::Timeout);
            }
            if spinning {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            st.link.wait(d)?;
        }
    }

    fn collect(&self, st: &mut RecvState) -> Result<()> {
        loop {
            st.link.poll()?;
            if st.link.wcs.is_empty() {
                return Ok(());
            }
            for i in 0..st.link.wcs.len() {
                let wc = st.link.wcs[i];
                if wc.status != IBV_WC_SUCCESS || wc.wr_id & KIND != WR_RECV {
                    continue;
                }
                st.link.conn.post_recv(wc.wr_id)?;
                match (wc.opcode, wc.imm) {
                    (IBV_WC_RECV, Some(CLOSE)) => st.closed = true,
                    (IBV_WC_RECV_RDMA_WITH_IMM, Some(index)) => {
                        let slot = st
                            .slots
                            .get_mut(index as usize)
                            .ok_or(Error::Corrupt("a message in a slot out of range"))?;
                        if *slot != RecvSlot::Free {
                            return Err(Error::Corrupt("a message into a slot in use"));
                        }
                        if wc.byte_len > self.geo.slot_size {
                            return Err(Error::Corrupt("a message longer than its slot"));
                        }
                        *slot = RecvSlot::Queued;
                        st.queue.push_back((index, wc.byte_len));
                        st.link.stats.messages += 1;
                    }
                    _ => return Err(Error::Corrupt("an unexpected message from the sender")),
                }
            }
        }
    }

    /// A sample let go of slot `index`: the board says so at once (a
    /// sender out of slots reads it); a credit write follows when every
    /// slot is at this end (the sender has none), otherwise with the batch
    /// (see [`credit_batch`]).
    fn release(&self, index: u32) {
        let mut st = self.state.borrow_mut();
        st.slots[index as usize] = RecvSlot::Free;
        st.held -= 1;
        st.link.bump_release(index);
        st.uncredited += 1;
        st.first = st.first.min(index);
        st.end = st.end.max(index + 1);
        if st.held + st.uncredited == self.geo.slot_count {
            self.credit(&mut st);
        }
    }

    /// Writes the board words of the slots released since the last credit
    /// write to the sender: one write for the batch.
    fn credit(&self, st: &mut RecvState) {
        if st.uncredited == 0 || st.link.broken.is_some() || st.closed {
            return;
        }
        let (first, end, n) = (st.first, st.end, st.uncredited);
        st.uncredited = 0;
        st.first = u32::MAX;
        st.end = 0;
        match st.link.credit(first, end - first) {
            Ok(()) => st.link.stats.credited_by_writes += u64::from(n),
            Err(e) => st.link.break_with(e.to_string()),
        }
    }
}

/// Released slots a receiver gathers before it writes them back to the
/// sender unasked: half the ring, so the sender still has the other half
/// to send from while the credit write travels.
fn credit_batch(geo: &Geometry) -> u32 {
    (geo.slot_count / 2).max(1)
}

/// A message received over RDMA, in place in the receiver's ring; its
/// slot is credited back to the sender when this drops.
#[derive(Debug)]
pub struct Sample<'a> {
    receiver: &'a Receiver,
    index: u32,
    len: u32,
}

impl std::ops::Deref for Sample<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let st = self.receiver.state.borrow();
        let p = st.link.slot(&self.receiver.geo, self.index);
        // SAFETY: index < slot_count and len ≤ slot_size were checked when
        // the completion came; the slot is Held until this Sample drops, and
        // the sender writes it again only after the board counts the
        // release made then.
        unsafe { std::slice::from_raw_parts(p, self.len as usize) }
    }
}

impl Sample<'_> {
    /// The slot's number.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Where the slot starts in the ring (the same at the sender).
    pub fn offset(&self) -> u64 {
        self.receiver.geo.slot_offset(self.index)
    }
}

impl Drop for Sample<'_> {
    fn drop(&mut self) {
        self.receiver.release(self.index);
    }
}

impl Rx for Receiver {
    type Sample<'a> = Sample<'a>;
    fn recv_with(&self, wait: Wait) -> Result<Option<Sample<'_>>> {
        Receiver::recv_with(self, wait)
    }
    fn is_closed(&self) -> bool {
        Receiver::is_closed(self)
    }
    fn slot_size(&self) -> usize {
        self.geo.slot_size as usize
    }
}

impl RxSample for Sample<'_> {
    fn offset(&self) -> u64 {
        Sample::offset(self)
    }
}
