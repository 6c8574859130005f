//! vhost-user plumbing: the card served through `vhost-user-backend`.
//!
//! One worker thread per request queue. Each kick drains its queue through
//! [`Card::process`], completing in order, and notifies the driver through the
//! call eventfd, suppressed by event-idx where negotiated. Nothing returned
//! from `handle_event` is ever an `Err` for something the guest did: an `Err`
//! would silently end the worker thread.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use log::{debug, error, info, warn};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::vhost_user::Backend;
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringState, VringT};
use virtio_bindings::bindings::virtio_config::{VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_VERSION_1};
use virtio_bindings::bindings::virtio_ring::{
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use crate::backend_channel::BackendChannel;
use crate::virtio_zcard::MAX_QUEUE_SIZE;
use crate::zcard::{Card, GuestMem, Outcome};

/// Virtio feature bits the card offers (docs/zcard-spec.md, "Feature bits"),
/// before the command line withholds any.
pub const DEVICE_FEATURES: u64 = 1 << VIRTIO_F_VERSION_1
    | 1 << VIRTIO_F_ACCESS_PLATFORM
    | 1 << VIRTIO_RING_F_EVENT_IDX
    | 1 << VIRTIO_RING_F_INDIRECT_DESC;

/// Time between two interrupts of one `interrupt` control command.
const SPURIOUS_GAP: std::time::Duration = std::time::Duration::from_millis(2);

/// The vhost-user backend of one card.
pub struct ZcardBackend {
    card: Arc<Card>,
    features: u64,
    event_idx: AtomicBool,
    mem: RwLock<Option<GuestMemoryAtomic<GuestMem>>>,
    channel: Mutex<Option<BackendChannel>>,
}

impl ZcardBackend {
    /// A backend serving `card`.
    pub fn new(card: Arc<Card>) -> ZcardBackend {
        ZcardBackend {
            card,
            features: DEVICE_FEATURES,
            event_idx: AtomicBool::new(false),
            mem: RwLock::new(None),
            channel: Mutex::new(None),
        }
    }

    /// The same backend offering none of the virtio feature bits in `bits`.
    pub fn withholding(mut self, bits: u64) -> ZcardBackend {
        self.features &= !bits;
        self
    }

    /// The card.
    pub fn card(&self) -> &Arc<Card> {
        &self.card
    }

    /// Event id (above the reserved range) of the wake eventfd of worker `thread`.
    pub fn wake_event_id(&self, thread: usize) -> u64 {
        u64::from(self.card.limits().num_queues) + 1 + thread as u64
    }

    /// Forgets what belonged to the connection that ended: the guest's memory
    /// (so no mapping of a departed guest's RAM outlives it) and the back-end
    /// request channel.
    pub fn disconnected(&self) {
        *self.mem.write().unwrap_or_else(|e| e.into_inner()) = None;
        *self.channel.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Tells the front end that the config space changed (after NEEDS_RESET), if it listens.
    ///
    /// Only the control port's `needs_reset` calls it, never a worker: a
    /// worker sets NEEDS_RESET while the driver resets the card, and QEMU
    /// 11.1 crashes on a config change that arrives while the device is
    /// stopped (`vub_config_notifier()` passes `hdev->vdev`, which
    /// `vhost_dev_stop()` set to NULL, to `virtio_notify_config()`). The
    /// request's `needs_reset` status tells the driver there.
    pub fn notify_config_change(&self) {
        if let Some(channel) = self
            .channel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            match channel.config_changed() {
                Ok(()) => debug!("config change sent to the front end"),
                Err(e) => warn!("config-change message not delivered: {e}"),
            }
        }
    }

    /// Drains one queue. Errors are logged, never returned (see the module docs).
    fn serve_queue(&self, vring: &VringRwLock, queue: u16) {
        let Some(atomic) = self.mem.read().unwrap_or_else(|e| e.into_inner()).clone() else {
            warn!("queue {queue} kicked before the memory table arrived");
            return;
        };
        let mem = atomic.memory();
        let event_idx = self.event_idx.load(Ordering::Acquire);
        // Set when the driver broke the ring: stop until the device is reset.
        let mut broken = false;
        loop {
            if event_idx {
                if let Err(e) = vring.disable_notification() {
                    error!("queue {queue}: {e}");
                    return;
                }
            }
            while !broken && !self.card.is_stalled(queue) {
                // The vring stays locked from taking a chain to completing it:
                // a front end that stops the ring (GET_VRING_BASE, on a device
                // reset) waits for the request in progress, and no completion
                // can land in a ring the driver has already reset.
                let mut state = vring.get_mut();
                let chain = match state.get_queue_mut().iter(&*mem) {
                    Ok(mut avail) => avail.next(),
                    Err(e) => {
                        // The driver broke the avail ring (index too far ahead, ring
                        // outside memory): only a reset can recover.
                        warn!("queue {queue}: {e}; card needs reset");
                        self.card.set_needs_reset();
                        broken = true;
                        None
                    }
                };
                let Some(chain) = chain else { break };
                let head = chain.head_index();
                match self.card.process(&mem, chain, queue) {
                    Outcome::Stall => {
                        let q = state.get_queue_mut();
                        q.set_next_avail(q.next_avail().wrapping_sub(1));
                        break;
                    }
                    Outcome::Complete { used_len, notify } => {
                        if let Err(e) = state.add_used(head, used_len) {
                            // A head index outside the queue: the driver broke the ring.
                            warn!("queue {queue}: add_used: {e}; card needs reset");
                            self.card.set_needs_reset();
                            broken = true;
                            continue;
                        }
                        self.signal(&mut state, queue, notify);
                    }
                }
            }
            if !event_idx || broken || self.card.is_stalled(queue) {
                break;
            }
            match vring.enable_notification() {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    error!("queue {queue}: {e}");
                    return;
                }
            }
        }
    }

    /// Sends the interrupts asked for on `queue` with nothing new on its used
    /// ring, a little apart so that most reach the guest one by one (QEMU
    /// folds those that arrive before the guest reads the ISR into one).
    fn send_spurious(&self, vring: &VringRwLock, queue: u16) {
        let n = self.card.take_spurious(queue);
        for i in 0..n {
            if i > 0 {
                std::thread::sleep(SPURIOUS_GAP);
            }
            if let Err(e) = vring.signal_used_queue() {
                warn!("queue {queue}: cannot signal: {e}");
                return;
            }
            self.card.stats().spurious_interrupt(queue);
        }
    }

    /// Puts the stray used entry asked for on `queue` (descriptor 0, length
    /// 0) on its used ring and interrupts.
    fn send_stray_used(&self, vring: &VringRwLock, queue: u16) {
        if !self.card.take_stray_used(queue) {
            return;
        }
        let mut state = vring.get_mut();
        if let Err(e) = state.add_used(0, 0) {
            warn!("queue {queue}: stray used entry: {e}");
            return;
        }
        warn!("queue {queue}: stray used entry for descriptor 0 sent (control socket)");
        if let Err(e) = state.signal_used_queue() {
            warn!("queue {queue}: cannot signal: {e}");
        }
    }

    fn signal(&self, state: &mut VringState, queue: u16, notify: bool) {
        let stats = self.card.stats();
        if !notify {
            stats.notification(queue, false);
            return;
        }
        match state.needs_notification() {
            Ok(true) => {
                if let Err(e) = state.signal_used_queue() {
                    warn!("queue {queue}: cannot signal: {e}");
                }
                stats.notification(queue, true);
            }
            Ok(false) => stats.notification(queue, false),
            Err(e) => error!("queue {queue}: {e}"),
        }
    }
}

impl VhostUserBackend for ZcardBackend {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        usize::from(self.card.limits().num_queues)
    }

    fn max_queue_size(&self) -> usize {
        usize::from(MAX_QUEUE_SIZE)
    }

    fn features(&self) -> u64 {
        self.features | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn acked_features(&self, features: u64) {
        // The driver (re)starts the device after a reset by negotiating again.
        debug!("features acked: {features:#x}");
        if self.card.needs_reset() {
            info!("device restarted: NEEDS_RESET cleared");
        }
        self.card.reset();
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::BACKEND_REQ
            | VhostUserProtocolFeatures::RESET_DEVICE
    }

    fn reset_device(&self) {
        info!("device reset");
        self.card.reset();
    }

    fn set_event_idx(&self, enabled: bool) {
        self.event_idx.store(enabled, Ordering::Release);
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        self.card.read_config(offset, size)
    }

    fn set_config(&self, offset: u32, _buf: &[u8]) -> io::Result<()> {
        debug!("driver wrote config at {offset}: ignored (read-only)");
        Err(io::Error::from(io::ErrorKind::PermissionDenied))
    }

    fn update_memory(&self, mem: GuestMemoryAtomic<GuestMem>) -> io::Result<()> {
        *self.mem.write().unwrap_or_else(|e| e.into_inner()) = Some(mem);
        Ok(())
    }

    fn set_backend_req_fd(&self, backend: Backend) {
        let mut channel = self.channel.lock().unwrap_or_else(|e| e.into_inner());
        // The channel is found as the process's one unnamed socket pair end
        // (backend_channel.rs): a channel handed over before must go first.
        *channel = None;
        *channel = BackendChannel::find();
        if channel.is_none() {
            warn!("back-end request channel not found: config changes go unannounced");
        }
        // `Backend` itself cannot send a config change (vhost 0.18).
        drop(backend);
    }

    fn queues_per_thread(&self) -> Vec<u64> {
        (0..self.card.limits().num_queues)
            .map(|q| 1u64 << q)
            .collect()
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        new_event_consumer_and_notifier(EventFlag::NONBLOCK)
            .map_err(|e| error!("cannot create exit event: {e}"))
            .ok()
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[VringRwLock],
        thread_id: usize,
    ) -> io::Result<()> {
        if evset != EventSet::IN {
            warn!("unexpected event set {evset:?}");
            return Ok(());
        }
        let Some(vring) = vrings.first() else {
            return Ok(());
        };
        let queue = thread_id as u16;
        if u64::from(device_event) == self.wake_event_id(thread_id) {
            if let Some(fd) = self.card.wake_fd(queue) {
                let _ = fd.read();
            }
            let ready = {
                let state = vring.get_ref();
                state.get_queue().ready() && state.is_enabled()
            };
            if !ready {
                // No call eventfd to signal yet: nothing is sent or counted.
                let dropped = self.card.take_spurious(queue);
                if dropped > 0 {
                    debug!("queue {queue} not started: {dropped} spurious interrupts dropped");
                }
                if self.card.take_stray_used(queue) {
                    debug!("queue {queue} not started: stray used entry dropped");
                }
                return Ok(());
            }
            self.send_spurious(vring, queue);
            self.send_stray_used(vring, queue);
        } else if device_event != 0 {
            warn!("unknown event {device_event} on worker {thread_id}");
            return Ok(());
        }
        self.serve_queue(vring, queue);
        Ok(())
    }
}
