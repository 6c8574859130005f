//! The driver's queue logic against the real card model, in process: a
//! small "registers + DMA memory" seam. [`ModelCard`] is a virtio PCI
//! function in miniature (config space with capabilities, a common-config
//! window, notify, ISR, device config) whose notify writes run
//! `zcard_vhost::zcard::Card::process` on the driver's rings in real guest
//! memory, the memory the driver's `DmaMemory` is made over. No VM, no
//! VFIO: everything but the ioctls runs as in the guest.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use zcard_vfio::dma::DmaMemory;
use zcard_vfio::pci::common;
use zcard_vfio::transport::Transport;
use zcard_vfio::wire::{Status, CONFIG_SIZE, PCI_DEVICE_ID};
use zcard_vfio::{Card, Error, Options, Outcome, Request};
use zcard_vhost::storage::Storage;
use zcard_vhost::zcard::{Card as Model, Limits, Outcome as ModelOutcome};

/// Guest-physical base and size of the memory the driver is given.
const BASE: u64 = 0x4000_0000;
const MEM: usize = 8 << 20;
/// BAR 4 layout, as QEMU lays a modern virtio-pci function out.
const BAR: u8 = 4;
const COMMON: u64 = 0x0000;
const ISR: u64 = 0x1000;
const DEVICE: u64 = 0x2000;
const NOTIFY: u64 = 0x3000;
const NOTIFY_MULT: u32 = 4;
const BAR_SIZE: u64 = 0x4000;
const MAX_QSIZE: u16 = 64;
const T: Duration = Duration::from_secs(5);

#[derive(Default)]
struct QState {
    size: u16,
    desc: u64,
    driver: u64,
    device: u64,
    vector: u16,
    enabled: bool,
    queue: Option<Queue>,
}

#[derive(Default)]
struct Regs {
    dfsel: u32,
    drfsel: u32,
    driver_features: u64,
    status: u8,
    qsel: u16,
    config_vector: u16,
    queues: Vec<QState>,
}

/// A zcard on a virtio PCI function in miniature.
struct ModelCard {
    mem: Arc<GuestMemoryMmap<()>>,
    model: Arc<Model>,
    regs: Mutex<Regs>,
    irq: EventFd,
    config: Vec<u8>,
    features: u64,
    /// While set, kicks are remembered but not served (tests post, then look).
    hold: AtomicBool,
    /// PCI config space writes, in order.
    config_writes: Mutex<Vec<(u64, Vec<u8>)>>,
}

fn config_space() -> Vec<u8> {
    let mut c = vec![0u8; 256];
    c[0..2].copy_from_slice(&0x1af4u16.to_le_bytes());
    c[2..4].copy_from_slice(&PCI_DEVICE_ID.to_le_bytes());
    c[6] = 1 << 4; // capability list
    c[0x34] = 0x40;
    let caps = [
        (1u8, COMMON, 0x1000u32),
        (3, ISR, 0x1000),
        (4, DEVICE, 0x1000),
        (2, NOTIFY, 0x1000),
    ];
    let mut at = 0x40;
    for (i, (ty, off, len)) in caps.iter().enumerate() {
        c[at] = 0x09;
        c[at + 1] = if i + 1 < caps.len() {
            (at + 20) as u8
        } else {
            0
        };
        c[at + 2] = 20;
        c[at + 3] = *ty;
        c[at + 4] = BAR;
        c[at + 8..at + 12].copy_from_slice(&(*off as u32).to_le_bytes());
        c[at + 12..at + 16].copy_from_slice(&len.to_le_bytes());
        c[at + 16..at + 20].copy_from_slice(&NOTIFY_MULT.to_le_bytes());
        at += 20;
    }
    c
}

impl ModelCard {
    fn new(limits: Limits) -> Arc<ModelCard> {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(BASE), MEM)]).unwrap();
        let model = Model::new(limits, Storage::temporary(1 << 20).unwrap(), 7).unwrap();
        Arc::new(ModelCard {
            mem: Arc::new(mem),
            model: Arc::new(model),
            regs: Mutex::new(Regs {
                queues: (0..limits.num_queues).map(|_| QState::default()).collect(),
                ..Default::default()
            }),
            irq: EventFd::new(EFD_NONBLOCK).unwrap(),
            config: config_space(),
            features: (1 << VIRTIO_F_VERSION_1)
                | (1 << VIRTIO_RING_F_EVENT_IDX)
                | (1 << VIRTIO_RING_F_INDIRECT_DESC),
            hold: AtomicBool::new(false),
            config_writes: Mutex::new(Vec::new()),
        })
    }

    /// DMA memory over the model's guest memory.
    fn dma(&self) -> DmaMemory {
        let host = self.mem.get_host_address(GuestAddress(BASE)).unwrap();
        // SAFETY: the region lives as long as self.mem, which the test keeps
        // (through the ModelCard Arc) beyond the driver; the test touches it
        // only through the model (vm-memory volatile accesses).
        unsafe { DmaMemory::from_raw(NonNull::new(host).unwrap(), MEM, BASE) }
    }

    fn reset(&self, r: &mut Regs) {
        r.status = 0;
        r.driver_features = 0;
        for q in r.queues.iter_mut() {
            *q = QState::default();
        }
    }

    /// Serves queue `q` as the vhost-user back end does.
    fn serve(&self, q: u16) {
        let mut r = self.regs.lock().unwrap();
        let event_idx = r.driver_features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;
        let vector = r.queues[usize::from(q)].vector;
        let Some(queue) = r.queues[usize::from(q)].queue.as_mut() else {
            return;
        };
        let mem = &*self.mem;
        loop {
            if event_idx {
                queue.disable_notification(mem).unwrap();
            }
            while let Some(chain) = (!self.model.is_stalled(q))
                .then(|| queue.iter(mem).ok().and_then(|mut it| it.next()))
                .flatten()
            {
                let head = chain.head_index();
                match self.model.process(mem, chain, q) {
                    ModelOutcome::Complete { used_len, notify } => {
                        queue.add_used(mem, head, used_len).unwrap();
                        if notify
                            && queue.needs_notification(mem).unwrap()
                            && vector != common::NO_VECTOR
                        {
                            self.irq.write(1).unwrap();
                        }
                    }
                    ModelOutcome::Stall => {
                        queue.go_to_previous_position();
                        return;
                    }
                }
            }
            if !event_idx || self.model.is_stalled(q) || !queue.enable_notification(mem).unwrap() {
                break;
            }
        }
    }

    /// Puts a used entry the driver never posted (or any other lie) in
    /// queue `q`'s used ring, written straight into memory as a card would.
    fn inject_used(&self, q: u16, id: u32, len: u32) {
        let r = self.regs.lock().unwrap();
        let qs = &r.queues[usize::from(q)];
        let at = GuestAddress(qs.device + 2);
        let idx: u16 = self.mem.read_obj(at).unwrap();
        let slot = u64::from(idx % qs.size);
        self.mem
            .write_obj(id, GuestAddress(qs.device + 4 + 8 * slot))
            .unwrap();
        self.mem
            .write_obj(len, GuestAddress(qs.device + 8 + 8 * slot))
            .unwrap();
        self.mem.write_obj(idx.wrapping_add(1), at).unwrap();
    }

    /// Changes the used length of the last entry in queue `q`'s used ring.
    fn tamper_last_used_len(&self, q: u16, len: u32) {
        let r = self.regs.lock().unwrap();
        let qs = &r.queues[usize::from(q)];
        let idx: u16 = self.mem.read_obj(GuestAddress(qs.device + 2)).unwrap();
        let slot = u64::from(idx.wrapping_sub(1) % qs.size);
        self.mem
            .write_obj(len, GuestAddress(qs.device + 8 + 8 * slot))
            .unwrap();
    }

    /// Moves queue `q`'s used index by `n` without adding entries.
    fn bump_used(&self, q: u16, n: u16) {
        let r = self.regs.lock().unwrap();
        let at = GuestAddress(r.queues[usize::from(q)].device + 2);
        let idx: u16 = self.mem.read_obj(at).unwrap();
        self.mem.write_obj(idx.wrapping_add(n), at).unwrap();
    }
}

/// The transport face of the model card (shared with the test through an Arc).
struct Face(Arc<ModelCard>);

impl Transport for Face {
    fn read_config(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let o = offset as usize;
        buf.copy_from_slice(&self.0.config[o..o + buf.len()]);
        Ok(())
    }

    fn write_config(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0
            .config_writes
            .lock()
            .unwrap()
            .push((offset, data.to_vec()));
        Ok(())
    }

    fn bar_size(&self, bar: u8) -> u64 {
        if bar == BAR {
            BAR_SIZE
        } else {
            0
        }
    }

    fn read(&self, bar: u8, offset: u64, width: u8) -> u32 {
        assert_eq!(bar, BAR);
        let c = &self.0;
        let r = c.regs.lock().unwrap();
        let qs = r.queues.get(usize::from(r.qsel));
        match offset {
            o if (DEVICE..DEVICE + CONFIG_SIZE as u64).contains(&o) => {
                let b = c.model.read_config((o - DEVICE) as u32, u32::from(width));
                let mut w = [0u8; 4];
                w[..b.len()].copy_from_slice(&b);
                u32::from_le_bytes(w)
            }
            ISR => 0,
            o => match o - COMMON {
                common::DEVICE_FEATURE => match r.dfsel {
                    0 => c.features as u32,
                    1 => (c.features >> 32) as u32,
                    _ => 0,
                },
                common::NUM_QUEUES => r.queues.len() as u32,
                common::DEVICE_STATUS => u32::from(r.status),
                common::CONFIG_GENERATION => 0,
                common::CONFIG_MSIX_VECTOR => u32::from(r.config_vector),
                common::QUEUE_SIZE => qs.map_or(0, |q| {
                    u32::from(if q.size == 0 { MAX_QSIZE } else { q.size })
                }),
                common::QUEUE_MSIX_VECTOR => qs.map_or(0xffff, |q| u32::from(q.vector)),
                common::QUEUE_ENABLE => qs.map_or(0, |q| u32::from(q.enabled)),
                common::QUEUE_NOTIFY_OFF => u32::from(r.qsel),
                _ => 0,
            },
        }
    }

    fn write(&self, bar: u8, offset: u64, _width: u8, value: u32) {
        assert_eq!(bar, BAR);
        let c = &self.0;
        if (NOTIFY..NOTIFY + 0x1000).contains(&offset) {
            let q = ((offset - NOTIFY) / u64::from(NOTIFY_MULT)) as u16;
            assert_eq!(u32::from(q), value, "notify data is the queue index");
            if !c.hold.load(Ordering::SeqCst) {
                c.serve(q);
            }
            return;
        }
        let mut r = c.regs.lock().unwrap();
        let qsel = usize::from(r.qsel);
        let half = |old: u64, hi: bool| {
            if hi {
                (old & 0xffff_ffff) | (u64::from(value) << 32)
            } else {
                (old & !0xffff_ffff) | u64::from(value)
            }
        };
        match offset - COMMON {
            common::DEVICE_FEATURE_SELECT => r.dfsel = value,
            common::DRIVER_FEATURE_SELECT => r.drfsel = value,
            common::DRIVER_FEATURE => {
                let shift = 32 * r.drfsel;
                r.driver_features =
                    (r.driver_features & !(0xffff_ffffu64 << shift)) | (u64::from(value) << shift);
            }
            common::DEVICE_STATUS => {
                if value == 0 {
                    c.reset(&mut r);
                } else {
                    let mut v = value as u8;
                    // FEATURES_OK only for a subset of what is offered.
                    if r.driver_features & !c.features != 0 {
                        v &= !8;
                    }
                    r.status = v;
                }
            }
            common::CONFIG_MSIX_VECTOR => r.config_vector = value as u16,
            common::QUEUE_SELECT => r.qsel = value as u16,
            common::QUEUE_SIZE => r.queues[qsel].size = value as u16,
            common::QUEUE_MSIX_VECTOR => r.queues[qsel].vector = value as u16,
            o @ (0x20 | 0x24) => r.queues[qsel].desc = half(r.queues[qsel].desc, o == 0x24),
            o @ (0x28 | 0x2c) => r.queues[qsel].driver = half(r.queues[qsel].driver, o == 0x2c),
            o @ (0x30 | 0x34) => r.queues[qsel].device = half(r.queues[qsel].device, o == 0x34),
            common::QUEUE_ENABLE => {
                let event_idx = r.driver_features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;
                let qs = &mut r.queues[qsel];
                let mut q = Queue::new(MAX_QSIZE).unwrap();
                q.set_size(qs.size);
                q.try_set_desc_table_address(GuestAddress(qs.desc)).unwrap();
                q.try_set_avail_ring_address(GuestAddress(qs.driver))
                    .unwrap();
                q.try_set_used_ring_address(GuestAddress(qs.device))
                    .unwrap();
                q.set_event_idx(event_idx);
                q.set_ready(true);
                assert!(
                    q.is_valid(&*c.mem),
                    "the driver's rings must lie in its DMA memory"
                );
                qs.queue = Some(q);
                qs.enabled = value == 1;
            }
            _ => {}
        }
    }

    fn interrupt(&self) -> Option<&EventFd> {
        Some(&self.0.irq)
    }
}

fn open_with(limits: Limits, opts: &Options) -> (Arc<ModelCard>, Card) {
    let model = ModelCard::new(limits);
    let card = Card::with_transport(Box::new(Face(model.clone())), model.dma(), opts).unwrap();
    (model, card)
}

fn open() -> (Arc<ModelCard>, Card) {
    open_with(Limits::default(), &Options::default())
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn brings_the_card_up() {
    let (model, card) = open();
    assert_eq!(card.num_queues(), 2);
    assert_eq!(card.queue_size(0).unwrap(), MAX_QSIZE);
    assert_eq!(card.config().block_size, 512);
    assert_eq!(
        model.regs.lock().unwrap().status,
        0x0f,
        "ACKNOWLEDGE|DRIVER|FEATURES_OK|DRIVER_OK"
    );
    assert_ne!(card.features() & (1 << VIRTIO_RING_F_EVENT_IDX), 0);
    // Bus mastering on (MSI-X messages are memory writes), the rest kept.
    let writes = model.config_writes.lock().unwrap().clone();
    assert_eq!(writes, vec![(4, vec![0x04, 0x00])]);
    assert_eq!(
        card.features() & (1 << VIRTIO_RING_F_INDIRECT_DESC),
        0,
        "not used, not accepted"
    );
    drop(card);
    assert_eq!(
        model.regs.lock().unwrap().status,
        0,
        "closing resets the card"
    );
}

/// Every operation, data checked, on every queue; polled and with interrupts.
#[test]
fn every_op_on_every_queue() {
    for (interrupts, event_idx) in [(false, false), (false, true), (true, false), (true, true)] {
        let opts = Options {
            interrupts,
            event_idx,
            ..Options::default()
        };
        let limits = Limits {
            num_queues: 3,
            ..Limits::default()
        };
        let (_model, card) = open_with(limits, &opts);
        for q in 0..card.num_queues() {
            if let Err(e) = zcard_vfio::selftest::op_suite(&card, q) {
                panic!("interrupts {interrupts}, event_idx {event_idx}: {e}");
            }
        }
    }
}

#[test]
fn a_full_queue_of_copies_in_one_batch() {
    let (_model, card) = open();
    let size = usize::from(card.queue_size(0).unwrap());
    // Each copy takes 4 descriptors: a quarter of the queue's worth in flight.
    let n = size / 4;
    let bufs: Vec<_> = (0..n)
        .map(|i| {
            let (s, d) = (card.alloc(4096).unwrap(), card.alloc(4096).unwrap());
            s.write(0, &pattern(4096, i as u8)).unwrap();
            (s, d)
        })
        .collect();
    let reqs: Vec<_> = bufs
        .iter()
        .enumerate()
        .map(|(i, (s, d))| Request::copy(s.all(), d.all()).user_data(i as u64))
        .collect();
    let done = card.run(0, &reqs, T).unwrap();
    assert_eq!(done.len(), n);
    for c in &done {
        assert!(c.is_ok());
        assert_eq!(
            bufs[c.user_data as usize].1.to_vec(),
            pattern(4096, c.user_data as u8)
        );
    }
    // One more request than the queue holds in all is refused whole as
    // never fitting, and nothing was posted.
    let mut more = reqs.clone();
    more.push(Request::nop());
    assert!(matches!(
        card.submit(0, &more),
        Err(Error::TooBig { queue: 0, .. })
    ));
    assert_eq!(card.in_flight(0).unwrap(), 0);
    // A batch that fits the queue but not the room left: full, the same.
    card.submit(0, &[Request::nop().user_data(7)]).unwrap();
    assert!(matches!(
        card.submit(0, &reqs),
        Err(Error::QueueFull { queue: 0 })
    ));
    assert_eq!(card.in_flight(0).unwrap(), 1);
    assert_eq!(card.wait(0, T).unwrap().user_data, 7);
    // Many rounds wrap the 16-bit ring indices.
    for round in 0..1100 {
        let c = card.run(1, &[Request::nop().user_data(round)], T).unwrap();
        assert_eq!(c[0].user_data, round);
    }
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let (_model, card) = open();
    let b = card.alloc(100).unwrap();
    assert!(matches!(b.slice(90, 20), Err(Error::OutOfBounds { .. })));
    assert!(matches!(b.write(99, b"ab"), Err(Error::OutOfBounds { .. })));
    assert!(matches!(
        card.submit(7, &[Request::nop()]),
        Err(Error::NoQueue(7))
    ));
    assert!(matches!(card.alloc(64 << 20), Err(Error::Dma(_))));
    let (_other_model, other) = open();
    let foreign = other.alloc(16).unwrap();
    assert!(matches!(
        card.submit(0, &[Request::fill(foreign.all(), 0)]),
        Err(Error::ForeignBuffer)
    ));
}

#[test]
fn a_used_id_never_posted_breaks_the_queue() {
    let (model, card) = open();
    model.hold.store(true, Ordering::SeqCst);
    card.submit(0, &[Request::nop()]).unwrap();
    model.inject_used(0, 5, 16);
    let e = card.poll(0).unwrap_err();
    assert!(
        matches!(&e, Error::Broken { queue: 0, reason } if reason.contains("head 5")),
        "{e}"
    );
    assert!(matches!(
        card.submit(0, &[Request::nop()]),
        Err(Error::Broken { .. })
    ));
    // The other queue is unaffected.
    model.hold.store(false, Ordering::SeqCst);
    assert!(card.run(1, &[Request::nop()], T).unwrap()[0].is_ok());
}

#[test]
fn a_used_id_out_of_range_breaks_the_queue() {
    let (model, card) = open();
    model.hold.store(true, Ordering::SeqCst);
    card.submit(0, &[Request::nop()]).unwrap();
    model.inject_used(0, 0x12_3456, 16);
    assert!(matches!(card.poll(0), Err(Error::Broken { .. })));
}

#[test]
fn a_used_index_running_ahead_breaks_the_queue() {
    let (model, card) = open();
    model.hold.store(true, Ordering::SeqCst);
    card.submit(0, &[Request::nop(), Request::nop()]).unwrap();
    model.bump_used(0, 3);
    let e = card.poll(0).unwrap_err();
    assert!(e.to_string().contains("in flight"), "{e}");
}

#[test]
fn a_used_length_beyond_the_buffer_is_invalid() {
    let (model, card) = open();
    let (s, d) = (card.alloc(64).unwrap(), card.alloc(64).unwrap());
    // The card completes the copy, then its used length grows past the buffer.
    model.hold.store(true, Ordering::SeqCst);
    card.submit(0, &[Request::copy(s.all(), d.all()).user_data(9)])
        .unwrap();
    model.serve(0);
    model.tamper_last_used_len(0, 64 + 16 + 4096);
    let c = card.poll(0).unwrap().unwrap();
    assert_eq!(c.user_data, 9);
    assert!(
        matches!(&c.outcome, Outcome::Invalid(why) if why.contains("used length")),
        "{c:?}"
    );
    // The status was never written either: a used length of 16 says "failed"
    // but the slot still holds no status code.
    card.submit(0, &[Request::nop().user_data(10)]).unwrap();
    model.inject_used(0, 0, 16);
    let c = card.poll(0).unwrap().unwrap();
    assert!(
        matches!(&c.outcome, Outcome::Invalid(why) if why.contains("status code")),
        "{c:?}"
    );
    // Used length 0: a dropped chain, said as such.
    card.submit(0, &[Request::nop().user_data(11)]).unwrap();
    model.inject_used(0, 0, 0);
    assert_eq!(card.poll(0).unwrap().unwrap().outcome, Outcome::Dropped);
    // None of these break the queue: each is the one request's error.
    assert!(card.poll(0).unwrap().is_none());
}

#[test]
fn a_lost_interrupt_costs_a_poll_not_a_hang() {
    let (model, card) = open();
    model
        .model
        .faults()
        .add(zcard_vhost::faults::FaultSpec::parse_cli("lost_interrupt:nth=1").unwrap())
        .unwrap();
    let c = card.run(0, &[Request::nop()], T).unwrap();
    assert!(c[0].is_ok());
}

#[test]
fn a_stalled_queue_times_out_and_a_reset_recovers() {
    let (model, mut card) = open();
    model.model.stall(0);
    card.submit(0, &[Request::nop()]).unwrap();
    let e = card.wait(0, Duration::from_millis(100)).unwrap_err();
    assert!(matches!(e, Error::Timeout { queue: 0, .. }));
    model.model.reset();
    card.reset(&Options::default()).unwrap();
    assert!(card.run(0, &[Request::nop()], T).unwrap()[0].is_ok());
}

#[test]
fn needs_reset_is_reported_and_a_reset_clears_it() {
    let (model, mut card) = open();
    model.model.set_needs_reset();
    let c = card.run(0, &[Request::nop()], T).unwrap();
    assert_eq!(c[0].status(), Some(Status::NeedsReset));
    assert_ne!(card.read_config().device_state, 0);
    model.model.reset();
    card.reset(&Options::default()).unwrap();
    assert!(card.run(0, &[Request::nop()], T).unwrap()[0].is_ok());
    assert_eq!(card.read_config().device_state, 0);
}
