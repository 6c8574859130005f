//! Counters the control socket reports: per op, per queue, and card-wide.
//!
//! Plain relaxed atomics: each counter is independent and only ever read as a
//! snapshot, so no ordering between them is promised.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Map, Value};

use crate::virtio_zcard::{Op, Status};

#[derive(Debug, Default)]
struct OpStats {
    requests: AtomicU64,
    bytes: AtomicU64,
    statuses: [AtomicU64; Status::ALL.len()],
}

#[derive(Debug, Default)]
struct QueueStats {
    requests: AtomicU64,
    bytes: AtomicU64,
    notifications: AtomicU64,
    suppressed: AtomicU64,
}

/// Every counter of one card.
#[derive(Debug)]
pub struct Stats {
    ops: [OpStats; Op::ALL.len()],
    /// Requests whose opcode is unknown (their statuses count here).
    unknown_op: OpStats,
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

impl Stats {
    /// Zeroed counters for `num_queues` queues.
    pub fn new(num_queues: u16) -> Stats {
        Stats {
            ops: Default::default(),
            unknown_op: OpStats::default(),
            queues: (0..num_queues).map(|_| QueueStats::default()).collect(),
            dropped_chains: AtomicU64::new(0),
            config_reads: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            resets: AtomicU64::new(0),
        }
    }

    /// Counts one completed request: `bytes` of payload moved (0 unless `Ok`).
    pub fn request(&self, queue: u16, op: Option<Op>, status: Status, bytes: u64) {
        let o = op.map_or(&self.unknown_op, |op| &self.ops[op as usize]);
        bump(&o.requests, 1);
        bump(&o.bytes, bytes);
        bump(&o.statuses[status as usize], 1);
        if let Some(q) = self.queues.get(usize::from(queue)) {
            bump(&q.requests, 1);
            bump(&q.bytes, bytes);
        }
    }

    /// Counts a used-ring notification sent (`true`) or suppressed by event-idx or a fault.
    pub fn notification(&self, queue: u16, sent: bool) {
        if let Some(q) = self.queues.get(usize::from(queue)) {
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
        load(&self.ops[op as usize].statuses[status as usize])
    }

    /// A JSON snapshot (the `stats` reply of the control socket).
    pub fn snapshot(&self) -> Value {
        let op_json = |o: &OpStats| {
            let statuses: Map<String, Value> = Status::ALL
                .iter()
                .zip(&o.statuses)
                .filter(|(_, n)| load(n) > 0)
                .map(|(s, n)| (s.name().to_owned(), load(n).into()))
                .collect();
            json!({"requests": load(&o.requests), "bytes": load(&o.bytes), "statuses": statuses})
        };
        let mut ops: Map<String, Value> = Op::ALL
            .iter()
            .map(|op| (op.name().to_owned(), op_json(&self.ops[*op as usize])))
            .collect();
        ops.insert("unknown".into(), op_json(&self.unknown_op));
        let queues: Vec<Value> = self
            .queues
            .iter()
            .map(|q| {
                json!({
                    "requests": load(&q.requests),
                    "bytes": load(&q.bytes),
                    "notifications": load(&q.notifications),
                    "suppressed_notifications": load(&q.suppressed),
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
