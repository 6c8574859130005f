//! Counters the control socket reports: per op, per queue, and card-wide.
//!
//! Plain relaxed atomics: each counter is independent and only ever read as a
//! snapshot, so no ordering between them is promised.
//!
//! The request counters are kept per queue and per op, and a request adds
//! to its queue's counters with a relaxed load and store, not a locked
//! read-modify-write: each queue has one writer at a time (the worker
//! serving it holds the vring's lock from taking a chain to completing it),
//! and a locked add on every request was a measurable part of the engine's
//! fixed cost. Card-wide and per-op figures are sums over the queues.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Map, Value};

use crate::virtio_zcard::{Op, Status};

/// One op's counters on one queue; its request count is the sum of its
/// statuses.
#[derive(Debug, Default)]
struct OpStats {
    bytes: AtomicU64,
    statuses: [AtomicU64; Status::ALL.len()],
}

/// Index of the unknown-opcode counters in [`QueueStats::ops`].
const UNKNOWN_OP: usize = Op::ALL.len();

#[derive(Debug, Default)]
struct QueueStats {
    /// Per op, then one for unknown opcodes; written by the queue's worker.
    ops: [OpStats; Op::ALL.len() + 1],
    notifications: AtomicU64,
    suppressed: AtomicU64,
    spurious: AtomicU64,
}

/// Every counter of one card.
#[derive(Debug)]
pub struct Stats {
    /// One per queue, then one for requests named with a queue the card
    /// does not have (counted, but under no queue).
    queues: Vec<QueueStats>,
    /// Chains that could not be walked or had no writable status: used length 0.
    dropped_chains: AtomicU64,
    config_reads: AtomicU64,
    connections: AtomicU64,
    resets: AtomicU64,
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Adds `n` to a counter that has one writer at a time (a queue's):
/// relaxed load and store, no locked instruction.
fn add_single(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl Stats {
    /// Zeroed counters for `num_queues` queues.
    pub fn new(num_queues: u16) -> Stats {
        Stats {
            queues: (0..=num_queues).map(|_| QueueStats::default()).collect(),
            dropped_chains: AtomicU64::new(0),
            config_reads: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            resets: AtomicU64::new(0),
        }
    }

    /// The queues the card has (not the bucket for unknown queue numbers).
    fn real_queues(&self) -> &[QueueStats] {
        &self.queues[..self.queues.len() - 1]
    }

    /// Counts one completed request: `bytes` of payload moved (0 unless
    /// `Ok`). Called by the thread serving `queue` (one at a time per queue).
    pub fn request(&self, queue: u16, op: Option<Op>, status: Status, bytes: u64) {
        let last = self.queues.len() - 1;
        let q = &self.queues[usize::from(queue).min(last)];
        let o = &q.ops[op.map_or(UNKNOWN_OP, |op| op as usize)];
        add_single(&o.statuses[status as usize], 1);
        if bytes > 0 {
            add_single(&o.bytes, bytes);
        }
    }

    /// Sum of `f` over every queue's counters of op index `op`.
    fn op_sum(&self, op: usize, f: impl Fn(&OpStats) -> u64) -> u64 {
        self.queues.iter().map(|q| f(&q.ops[op])).sum()
    }

    /// Counts a used-ring notification sent (`true`) or suppressed by event-idx or a fault.
    pub fn notification(&self, queue: u16, sent: bool) {
        if let Some(q) = self.real_queues().get(usize::from(queue)) {
            bump(
                if sent {
                    &q.notifications
                } else {
                    &q.suppressed
                },
                1,
            );
        }
    }

    /// Counts an interrupt sent with nothing new on the used ring (the control
    /// socket's `interrupt` command).
    pub fn spurious_interrupt(&self, queue: u16) {
        if let Some(q) = self.queues.get(usize::from(queue)) {
            bump(&q.spurious, 1);
        }
    }

    /// Counts a chain returned with used length 0.
    pub fn dropped_chain(&self) {
        bump(&self.dropped_chains, 1);
    }

    /// Counts a config-space read by the driver.
    pub fn config_read(&self) {
        bump(&self.config_reads, 1);
    }

    /// Counts a vhost-user connection.
    pub fn connection(&self) {
        bump(&self.connections, 1);
    }

    /// Counts a device reset.
    pub fn reset(&self) {
        bump(&self.resets, 1);
    }

    /// Config reads so far.
    pub fn config_reads(&self) -> u64 {
        load(&self.config_reads)
    }

    /// Requests of `op` that completed with `status` so far.
    pub fn status_count(&self, op: Op, status: Status) -> u64 {
        self.op_sum(op as usize, |o| load(&o.statuses[status as usize]))
    }

    /// A JSON snapshot (the `stats` reply of the control socket).
    pub fn snapshot(&self) -> Value {
        let op_json = |op: usize| {
            let counts: Vec<u64> = (0..Status::ALL.len())
                .map(|s| self.op_sum(op, |o| load(&o.statuses[s])))
                .collect();
            let statuses: Map<String, Value> = Status::ALL
                .iter()
                .zip(&counts)
                .filter(|(_, n)| **n > 0)
                .map(|(s, n)| (s.name().to_owned(), (*n).into()))
                .collect();
            json!({
                "requests": counts.iter().sum::<u64>(),
                "bytes": self.op_sum(op, |o| load(&o.bytes)),
                "statuses": statuses,
            })
        };
        let mut ops: Map<String, Value> = Op::ALL
            .iter()
            .map(|op| (op.name().to_owned(), op_json(*op as usize)))
            .collect();
        ops.insert("unknown".into(), op_json(UNKNOWN_OP));
        let queues: Vec<Value> = self
            .real_queues()
            .iter()
            .map(|q| {
                let requests: u64 = q.ops.iter().flat_map(|o| o.statuses.iter().map(load)).sum();
                json!({
                    "requests": requests,
                    "bytes": q.ops.iter().map(|o| load(&o.bytes)).sum::<u64>(),
                    "notifications": load(&q.notifications),
                    "suppressed_notifications": load(&q.suppressed),
                    "spurious_interrupts": load(&q.spurious),
                })
            })
            .collect();
        json!({
            "ops": ops,
            "queues": queues,
            "dropped_chains": load(&self.dropped_chains),
            "config_reads": load(&self.config_reads),
            "connections": load(&self.connections),
            "resets": load(&self.resets),
        })
    }
}
