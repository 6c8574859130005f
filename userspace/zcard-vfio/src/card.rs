//! The card, driven from user space: bring-up, buffers, submission and
//! completion. The API follows `zcopy::card` (open, buffers, submit, poll,
//! wait) so the same tests and benchmarks run against both drivers.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use virtio_bindings::virtio_config::{VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_VERSION_1};
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;

use crate::dma::{Arena, DmaMemory};
use crate::pci::{self, common, status, Layout, Window};
use crate::sysfs::{Sysfs, VFIO_DRIVER};
use crate::transport::{Transport, VfioTransport};
use crate::virtqueue::{Completion, QueueLayout, Seg, SplitQueue};
use crate::wire::{
    ConfigSpace, Op, ReqHeader, CONFIG_SIZE, PCI_DEVICE_ID, ZCARD_MAGIC, ZCARD_VERSION,
};
use crate::Error;

/// How long the card may take to acknowledge a reset.
const RESET_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest sleep on the interrupt eventfd before the used ring is polled
/// anyway (a lost interrupt costs at most this much).
const WAIT_SLICE: Duration = Duration::from_millis(20);

/// How to open the card.
#[derive(Clone, Debug)]
pub struct Options {
    /// PCI address; `None`: the first card found.
    pub bdf: Option<String>,
    /// Largest queue size to use (the card's maximum if smaller; rounded down to a power of two).
    pub queue_size: u16,
    /// Route the card's MSI-X vector to an eventfd, for [`Card::wait`] to sleep on.
    pub interrupts: bool,
    /// Negotiate `VIRTIO_RING_F_EVENT_IDX` (fewer kicks and interrupts).
    pub event_idx: bool,
    /// Hugepages of DMA memory (2 MiB each) for rings and buffers.
    pub hugepages: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bdf: None,
            queue_size: 256,
            interrupts: true,
            event_idx: true,
            hugepages: 8,
        }
    }
}

/// DMA memory and its allocator, shared by the card and its buffers.
struct Shared {
    arena: Mutex<Arena>,
    // Dropped last: buffers may outlive the card.
    mem: DmaMemory,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct BufInner {
    shared: Arc<Shared>,
    offset: usize,
    len: usize,
}

impl Drop for BufInner {
    fn drop(&mut self) {
        lock(&self.shared.arena).free(self.offset, self.len);
    }
}

/// A buffer in the card's DMA memory. Clones share it; it is freed when the
/// last clone, and every request in flight on it, is gone.
#[derive(Clone)]
pub struct Buffer {
    inner: Arc<BufInner>,
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("offset", &self.inner.offset)
            .field("len", &self.inner.len)
            .finish()
    }
}

impl Buffer {
    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.inner.len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }

    fn check(&self, offset: usize, len: usize) -> Result<(), Error> {
        if offset.checked_add(len).is_some_and(|e| e <= self.inner.len) {
            Ok(())
        } else {
            Err(Error::OutOfBounds {
                offset,
                len,
                size: self.inner.len,
            })
        }
    }

    /// Copies `data` into the buffer at `offset`.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<(), Error> {
        self.check(offset, data.len())?;
        self.inner
            .shared
            .mem
            .write(self.inner.offset + offset, data);
        Ok(())
    }

    /// Copies `buf.len()` bytes at `offset` out of the buffer.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.check(offset, buf.len())?;
        self.inner.shared.mem.read(self.inner.offset + offset, buf);
        Ok(())
    }

    /// The whole buffer, copied out.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.inner.len];
        self.inner.shared.mem.read(self.inner.offset, &mut v);
        v
    }

    /// `len` bytes at `offset`, to name in a request.
    pub fn slice(&self, offset: usize, len: usize) -> Result<Slice, Error> {
        self.check(offset, len)?;
        Ok(Slice {
            buf: self.clone(),
            offset,
            len,
        })
    }

    /// The whole buffer, to name in a request.
    pub fn all(&self) -> Slice {
        Slice {
            buf: self.clone(),
            offset: 0,
            len: self.inner.len,
        }
    }
}

/// A range of a buffer, named in a request.
#[derive(Clone, Debug)]
pub struct Slice {
    buf: Buffer,
    offset: usize,
    len: usize,
}

impl Slice {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the slice is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One request, in the card's terms (docs/zcard-spec.md, "Operations").
#[derive(Clone, Debug)]
pub struct Request {
    header: ReqHeader,
    src: Vec<Slice>,
    dst: Vec<Slice>,
    user_data: u64,
}

fn header(op: Op, length: usize) -> ReqHeader {
    ReqHeader {
        opcode: op as u8,
        length: length as u64,
        ..Default::default()
    }
}

impl Request {
    /// Does nothing.
    pub fn nop() -> Request {
        Request::raw(header(Op::Nop, 0), vec![], vec![])
    }

    /// Copies `src` over `dst` (lengths must match, or the card says `bad_length`).
    pub fn copy(src: Slice, dst: Slice) -> Request {
        Request::raw(header(Op::Copy, src.len), vec![src], vec![dst])
    }

    /// Writes the little-endian `pattern`, repeated, over `dst`.
    pub fn fill(dst: Slice, pattern: u64) -> Request {
        let mut h = header(Op::Fill, dst.len);
        h.pattern = pattern;
        Request::raw(h, vec![], vec![dst])
    }

    /// CRC-32C of `src`, continuing from `seed` (0 to start).
    pub fn crc32c(src: Slice, seed: u32) -> Request {
        let mut h = header(Op::Crc32c, src.len);
        h.pattern = u64::from(seed);
        Request::raw(h, vec![src], vec![])
    }

    /// Reads storage at `storage_offset` into `dst`.
    pub fn storage_read(storage_offset: u64, dst: Slice) -> Request {
        let mut h = header(Op::StorageRead, dst.len);
        h.storage_offset = storage_offset;
        Request::raw(h, vec![], vec![dst])
    }

    /// Writes `src` to storage at `storage_offset`.
    pub fn storage_write(src: Slice, storage_offset: u64) -> Request {
        let mut h = header(Op::StorageWrite, src.len);
        h.storage_offset = storage_offset;
        Request::raw(h, vec![src], vec![])
    }

    /// Makes every completed storage write durable.
    pub fn flush() -> Request {
        Request::raw(header(Op::Flush, 0), vec![], vec![])
    }

    /// Any header with any segments (the tag is the driver's own), to test
    /// what the card makes of requests the constructors above never build.
    pub fn raw(header: ReqHeader, src: Vec<Slice>, dst: Vec<Slice>) -> Request {
        Request {
            header,
            src,
            dst,
            user_data: 0,
        }
    }

    /// Sets the value the completion carries back.
    pub fn user_data(mut self, user_data: u64) -> Request {
        self.user_data = user_data;
        self
    }
}

/// One queue: its ring state and where its notify register is.
struct Queue {
    ring: SplitQueue<Vec<Buffer>>,
    notify: u64,
}

/// A zcard driven from this process.
pub struct Card {
    // Field order is drop order (Drop resets the card first).
    queues: Vec<Mutex<Queue>>,
    layout: Layout,
    config: ConfigSpace,
    features: u64,
    bdf: Option<String>,
    shared: Arc<Shared>,
    transport: Box<dyn Transport>,
}

impl std::fmt::Debug for Card {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Card")
            .field("bdf", &self.bdf)
            .field("config", &self.config)
            .field("features", &format_args!("{:#x}", self.features))
            .finish_non_exhaustive()
    }
}

impl Card {
    /// Opens the card (bound to vfio-pci, see [`Sysfs::bind_vfio`]) through VFIO.
    pub fn open(opts: &Options) -> Result<Card, Error> {
        let sysfs = Sysfs::default();
        let pci = sysfs.find(opts.bdf.as_deref())?;
        if pci.driver.as_deref() != Some(VFIO_DRIVER) {
            return Err(Error::NotBound {
                bdf: pci.bdf,
                driver: pci.driver,
            });
        }
        sysfs.sole_group(&pci)?;
        let transport = VfioTransport::open(&pci.path, opts.interrupts)
            .map_err(|e| Error::Vfio(e.to_string()))?;
        if opts.interrupts && transport.msix_vectors() == 0 {
            return Err(Error::Device("the card offers no MSI-X vector".into()));
        }
        let mem = DmaMemory::hugepages(transport.container().clone(), opts.hugepages)?;
        let mut card = Card::with_transport(Box::new(transport), mem, opts)?;
        card.bdf = Some(pci.bdf);
        Ok(card)
    }

    /// Brings the card up over any transport and DMA memory (the VFIO one,
    /// or an in-process test card).
    pub fn with_transport(
        transport: Box<dyn Transport>,
        mem: DmaMemory,
        opts: &Options,
    ) -> Result<Card, Error> {
        let mut cfg = vec![0u8; pci::CONFIG_SPACE_SIZE];
        transport
            .read_config(0, &mut cfg)
            .map_err(|e| Error::Device(format!("PCI config space: {e}")))?;
        let (vendor, device) = (
            u16::from_le_bytes([cfg[0], cfg[1]]),
            u16::from_le_bytes([cfg[2], cfg[3]]),
        );
        if (vendor, device) != (pci::VIRTIO_VENDOR_ID, PCI_DEVICE_ID) {
            return Err(Error::Device(format!(
                "PCI id {vendor:04x}:{device:04x} is not a zcard"
            )));
        }
        let layout = pci::walk(&cfg)?;
        // vfio-pci leaves bus mastering off. The card's DMA would not notice
        // (the back end reaches memory directly), but its MSI-X messages are
        // memory writes and are dropped without it, and QEMU stops a virtio
        // device whose bus mastering is cleared while it runs (a later
        // PCI_COMMAND write, such as the kernel's INTx-disable when MSI-X is
        // enabled, would do that).
        let command = u16::from_le_bytes([cfg[4], cfg[5]]) | pci::PCI_COMMAND_MASTER;
        transport
            .write_config(pci::PCI_COMMAND, &command.to_le_bytes())
            .map_err(|e| Error::Device(format!("PCI command register: {e}")))?;
        for (name, w, need) in [
            ("common config", layout.common, common::SIZE),
            ("ISR", layout.isr, 1),
            ("device config", layout.device, CONFIG_SIZE as u64),
            ("notify", layout.notify, 2),
        ] {
            let bar_ok = w
                .offset
                .checked_add(w.length)
                .is_some_and(|end| end <= transport.bar_size(w.bar));
            if !bar_ok || w.length < need {
                return Err(Error::Device(format!(
                    "{name} window {w:?} does not fit BAR {} ({} bytes) or is under {need} bytes",
                    w.bar,
                    transport.bar_size(w.bar)
                )));
            }
        }
        let chunk = mem.chunk();
        let shared = Arc::new(Shared {
            arena: Mutex::new(Arena::new(mem.len(), chunk)),
            mem,
        });
        let mut card = Card {
            queues: Vec::new(),
            layout,
            config: ConfigSpace::default(),
            features: 0,
            bdf: None,
            shared,
            transport,
        };
        card.bring_up(opts)?;
        Ok(card)
    }

    fn common_read(&self, reg: u64, width: u8) -> u32 {
        let w = self.layout.common;
        self.transport.read(w.bar, w.offset + reg, width)
    }

    fn common_write(&self, reg: u64, width: u8, value: u32) {
        let w = self.layout.common;
        self.transport.write(w.bar, w.offset + reg, width, value);
    }

    fn common_write64(&self, reg: u64, value: u64) {
        self.common_write(reg, 4, value as u32);
        self.common_write(reg + 4, 4, (value >> 32) as u32);
    }

    fn status(&self) -> u8 {
        self.common_read(common::DEVICE_STATUS, 1) as u8
    }

    fn set_status(&self, s: u8) {
        self.common_write(common::DEVICE_STATUS, 1, u32::from(s));
    }

    /// Resets the card (device status 0) and waits until it says so.
    fn reset_device(&self) -> Result<(), Error> {
        self.set_status(0);
        let deadline = Instant::now() + RESET_TIMEOUT;
        while self.status() != 0 {
            if Instant::now() >= deadline {
                return Err(Error::Device(
                    "the card does not acknowledge a reset".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    fn read_device_config(&self) -> ConfigSpace {
        let w: Window = self.layout.device;
        let mut raw = [0u8; CONFIG_SIZE];
        // Re-read until the generation is stable (virtio 1.x, 4.1.4.3.1).
        loop {
            let before = self.common_read(common::CONFIG_GENERATION, 1);
            for (i, word) in raw.chunks_exact_mut(4).enumerate() {
                word.copy_from_slice(
                    &self
                        .transport
                        .read(w.bar, w.offset + 4 * i as u64, 4)
                        .to_le_bytes(),
                );
            }
            if self.common_read(common::CONFIG_GENERATION, 1) == before {
                break;
            }
        }
        let u32_at = |o: usize| u32::from_le_bytes([raw[o], raw[o + 1], raw[o + 2], raw[o + 3]]);
        let u16_at = |o: usize| u16::from_le_bytes([raw[o], raw[o + 1]]);
        ConfigSpace {
            magic: u32_at(0x00),
            version: u32_at(0x04),
            num_queues: u16_at(0x08),
            max_segments: u16_at(0x0a),
            max_request_bytes: u32_at(0x0c),
            storage_capacity: u64::from(u32_at(0x10)) | (u64::from(u32_at(0x14)) << 32),
            block_size: u32_at(0x18),
            supported_ops: u32_at(0x1c),
            device_state: u32_at(0x20),
            max_queue_size: u32_at(0x24),
            reserved: [0; 6],
        }
    }

    /// Virtio 1.x initialisation (3.1.1): reset, ACKNOWLEDGE, DRIVER,
    /// features with FEATURES_OK read back, queues, DRIVER_OK.
    fn bring_up(&mut self, opts: &Options) -> Result<(), Error> {
        self.queues.clear();
        self.reset_device()?;
        self.set_status(status::ACKNOWLEDGE);
        self.set_status(status::ACKNOWLEDGE | status::DRIVER);
        let result = self.negotiate_and_set_up(opts);
        if result.is_err() {
            self.set_status(self.status() | status::FAILED);
        }
        result
    }

    fn negotiate_and_set_up(&mut self, opts: &Options) -> Result<(), Error> {
        let mut offered = 0u64;
        for half in 0..2u32 {
            self.common_write(common::DEVICE_FEATURE_SELECT, 4, half);
            offered |= u64::from(self.common_read(common::DEVICE_FEATURE, 4)) << (32 * half);
        }
        if offered & (1 << VIRTIO_F_VERSION_1) == 0 {
            return Err(Error::Device(format!(
                "the card is not a virtio 1.x device (features {offered:#x})"
            )));
        }
        // ACCESS_PLATFORM is accepted when offered: the addresses this
        // driver gives are IOVAs mapped in its own container, equal to the
        // physical addresses, so they are right with or without translation.
        let mut wanted = (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_F_ACCESS_PLATFORM);
        if opts.event_idx {
            wanted |= 1 << VIRTIO_RING_F_EVENT_IDX;
        }
        let accepted = offered & wanted;
        for half in 0..2u32 {
            self.common_write(common::DRIVER_FEATURE_SELECT, 4, half);
            self.common_write(common::DRIVER_FEATURE, 4, (accepted >> (32 * half)) as u32);
        }
        let s = status::ACKNOWLEDGE | status::DRIVER;
        self.set_status(s | status::FEATURES_OK);
        if self.status() & status::FEATURES_OK == 0 {
            return Err(Error::Device(format!(
                "the card refused features {accepted:#x}"
            )));
        }
        self.features = accepted;

        let config = self.read_device_config();
        if config.magic != ZCARD_MAGIC || config.version >> 16 != ZCARD_VERSION >> 16 {
            return Err(Error::Device(format!(
                "config space magic {:#x} version {:#x}: not a zcard of major version {}",
                config.magic,
                config.version,
                ZCARD_VERSION >> 16
            )));
        }
        let num_queues = self.common_read(common::NUM_QUEUES, 2) as u16;
        if num_queues == 0 || num_queues != config.num_queues {
            return Err(Error::Device(format!(
                "the transport has {num_queues} queues, the card's config says {}",
                config.num_queues
            )));
        }
        self.config = config;

        let vector = if opts.interrupts && self.transport.interrupt().is_some() {
            0
        } else {
            common::NO_VECTOR
        };
        self.common_write(common::CONFIG_MSIX_VECTOR, 2, u32::from(vector));
        if self.common_read(common::CONFIG_MSIX_VECTOR, 2) as u16 != vector {
            return Err(Error::Device(
                "the card refused MSI-X vector 0 for config changes".into(),
            ));
        }
        let event_idx = accepted & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;
        for q in 0..num_queues {
            let queue = self.set_up_queue(q, opts.queue_size, vector, event_idx)?;
            self.queues.push(Mutex::new(queue));
        }
        self.set_status(s | status::FEATURES_OK | status::DRIVER_OK);
        if self.status() & status::DRIVER_OK == 0 {
            return Err(Error::Device("the card did not take DRIVER_OK".into()));
        }
        Ok(())
    }

    fn set_up_queue(
        &self,
        q: u16,
        want: u16,
        vector: u16,
        event_idx: bool,
    ) -> Result<Queue, Error> {
        self.common_write(common::QUEUE_SELECT, 2, u32::from(q));
        let max = self.common_read(common::QUEUE_SIZE, 2) as u16;
        let cap = max.min(want.max(1));
        if cap == 0 {
            return Err(Error::Device(format!("queue {q} has size 0")));
        }
        let size = 1u16 << (15 - cap.leading_zeros().min(15));
        let size = if size > cap { size >> 1 } else { size };
        self.common_write(common::QUEUE_SIZE, 2, u32::from(size));
        let len = QueueLayout::new(0, size).len;
        let base = lock(&self.shared.arena).alloc(len, 4096, true)?;
        let layout = QueueLayout::new(base, size);
        let mem = &self.shared.mem;
        let ring = SplitQueue::new(mem, q, size, layout, event_idx);
        self.common_write64(common::QUEUE_DESC, mem.iova(layout.desc));
        self.common_write64(common::QUEUE_DRIVER, mem.iova(layout.avail));
        self.common_write64(common::QUEUE_DEVICE, mem.iova(layout.used));
        self.common_write(common::QUEUE_MSIX_VECTOR, 2, u32::from(vector));
        if self.common_read(common::QUEUE_MSIX_VECTOR, 2) as u16 != vector {
            return Err(Error::Device(format!(
                "the card refused MSI-X vector {vector} for queue {q}"
            )));
        }
        let off = u64::from(self.common_read(common::QUEUE_NOTIFY_OFF, 2))
            * u64::from(self.layout.notify_multiplier);
        if !self.layout.notify.covers(off, 2) {
            return Err(Error::Device(format!(
                "queue {q}'s notify offset {off:#x} is outside the notify window"
            )));
        }
        self.common_write(common::QUEUE_ENABLE, 2, 1);
        Ok(Queue {
            ring,
            notify: self.layout.notify.offset + off,
        })
    }

    /// Resets the card and sets it up again: what a card that reports
    /// NEEDS_RESET, or a broken queue, needs. Requests in flight are lost.
    pub fn reset(&mut self, opts: &Options) -> Result<(), Error> {
        self.reset_device()?;
        for q in self.queues.drain(..) {
            let q = q.into_inner().unwrap_or_else(|e| e.into_inner());
            lock(&self.shared.arena).free(q.ring_base(), q.ring_len());
        }
        self.bring_up(opts)
    }

    /// The card's config space, as read at bring-up.
    pub fn config(&self) -> &ConfigSpace {
        &self.config
    }

    /// The card's config space, read now (`device_state` changes).
    pub fn read_config(&self) -> ConfigSpace {
        self.read_device_config()
    }

    /// Feature bits negotiated.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// PCI address, when opened through VFIO.
    pub fn bdf(&self) -> Option<&str> {
        self.bdf.as_deref()
    }

    /// Number of queues.
    pub fn num_queues(&self) -> u16 {
        self.queues.len() as u16
    }

    /// Size of queue `q`.
    pub fn queue_size(&self, q: u16) -> Result<u16, Error> {
        Ok(lock(self.queue(q)?).ring.size())
    }

    /// A buffer of `len` bytes (aligned to 64) in DMA memory.
    pub fn alloc(&self, len: usize) -> Result<Buffer, Error> {
        let offset = lock(&self.shared.arena).alloc(len, 64, false)?;
        Ok(Buffer {
            inner: Arc::new(BufInner {
                shared: self.shared.clone(),
                offset,
                len,
            }),
        })
    }

    fn queue(&self, q: u16) -> Result<&Mutex<Queue>, Error> {
        self.queues.get(usize::from(q)).ok_or(Error::NoQueue(q))
    }

    fn segments(&self, slices: &[Slice]) -> Result<Vec<Seg>, Error> {
        let mut segs = Vec::with_capacity(slices.len());
        for s in slices {
            if !Arc::ptr_eq(&s.buf.inner.shared, &self.shared) {
                return Err(Error::ForeignBuffer);
            }
            if s.len > 0 {
                segs.extend(
                    self.shared
                        .mem
                        .segments(s.buf.inner.offset + s.offset, s.len),
                );
            }
        }
        if segs.len() > usize::from(self.config.max_segments) {
            return Err(Error::TooManySegments {
                segments: segs.len(),
                max: self.config.max_segments,
            });
        }
        Ok(segs)
    }

    /// Posts `requests` on queue `q` and notifies the card once if it asks
    /// for it. All or nothing: [`Error::QueueFull`] when they do not all fit
    /// now, [`Error::TooBig`] when they never could.
    pub fn submit(&self, q: u16, requests: &[Request]) -> Result<(), Error> {
        let mut chains = Vec::with_capacity(requests.len());
        let mut need = 0;
        for r in requests {
            let (src, dst) = (self.segments(&r.src)?, self.segments(&r.dst)?);
            need += SplitQueue::<Vec<Buffer>>::descriptors_for(src.len(), dst.len());
            chains.push((src, dst));
        }
        let mut queue = lock(self.queue(q)?);
        if let Some(b) = queue.ring.broken() {
            return Err(Error::Broken {
                queue: q,
                reason: b.0.clone(),
            });
        }
        if need > usize::from(queue.ring.size()) {
            return Err(Error::TooBig {
                queue: q,
                need,
                size: queue.ring.size(),
            });
        }
        if need > queue.ring.free_descriptors() {
            return Err(Error::QueueFull { queue: q });
        }
        let mem = &self.shared.mem;
        for (r, (src, dst)) in requests.iter().zip(chains) {
            let keep: Vec<Buffer> = r.src.iter().chain(&r.dst).map(|s| s.buf.clone()).collect();
            let posted = queue
                .ring
                .push(mem, r.header, &src, &dst, r.user_data, keep)
                .map_err(|b| Error::Broken {
                    queue: q,
                    reason: b.0,
                })?;
            debug_assert!(posted, "room was checked above");
        }
        if queue.ring.needs_kick(mem) {
            let w = self.layout.notify;
            self.transport.write(w.bar, queue.notify, 2, u32::from(q));
        }
        Ok(())
    }

    /// The next completion on queue `q`, if there is one (never sleeps).
    pub fn poll(&self, q: u16) -> Result<Option<Completion>, Error> {
        let mut queue = lock(self.queue(q)?);
        queue.ring.pop(&self.shared.mem).map_err(|b| Error::Broken {
            queue: q,
            reason: b.0,
        })
    }

    /// Requests in flight on queue `q`.
    pub fn in_flight(&self, q: u16) -> Result<u16, Error> {
        Ok(lock(self.queue(q)?).ring.in_flight())
    }

    /// The next completion on queue `q`, waiting up to `timeout`: asleep on
    /// the interrupt eventfd when the card was opened with interrupts,
    /// polling otherwise.
    pub fn wait(&self, q: u16, timeout: Duration) -> Result<Completion, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.poll(q)? {
                return Ok(c);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout { queue: q, timeout });
            }
            match self.transport.interrupt() {
                Some(fd) => {
                    if lock(self.queue(q)?).ring.arm(&self.shared.mem) {
                        continue;
                    }
                    let slice = (deadline - now).min(WAIT_SLICE);
                    let mut pfd = libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd for the duration of the call.
                    unsafe { libc::poll(&mut pfd, 1, slice.as_millis().max(1) as libc::c_int) };
                    let _ = fd.read();
                }
                None => std::hint::spin_loop(),
            }
        }
    }

    /// Submits `requests` on queue `q` and waits for all their completions
    /// (in completion order), each within `timeout`.
    pub fn run(
        &self,
        q: u16,
        requests: &[Request],
        timeout: Duration,
    ) -> Result<Vec<Completion>, Error> {
        self.submit(q, requests)?;
        (0..requests.len()).map(|_| self.wait(q, timeout)).collect()
    }
}

impl Queue {
    fn ring_base(&self) -> usize {
        self.ring_layout().desc
    }

    fn ring_len(&self) -> usize {
        self.ring_layout().len
    }

    fn ring_layout(&self) -> QueueLayout {
        self.ring.layout()
    }
}

impl Drop for Card {
    fn drop(&mut self) {
        // The card stops touching DMA memory before any of it is released.
        if let Err(e) = self.reset_device() {
            log::warn!("{e}");
        }
    }
}
