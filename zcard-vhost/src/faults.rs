//! Fault injection: rules that match requests and change what the card does.
//!
//! A rule names a kind, optionally an op and a queue, and a trigger (the n-th
//! matching request, every k-th, or with a probability drawn from a generator
//! seeded by the card's seed and the rule's id), plus how many times it may
//! fire. The same rule is written as JSON on the control socket and as
//! `kind:key=value,...` after `--fault` on the command line.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::virtio_zcard::{Op, Status};

/// Longest completion delay a rule may ask for.
pub const MAX_DELAY_US: u64 = 10_000_000;
/// Most fault rules a card holds at once (every request walks all of them).
pub const MAX_RULES: usize = 64;

/// What a rule does when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Complete the request with `status` without executing it.
    Fail,
    /// Execute, then wait `delay_us` before completing.
    Delay,
    /// Complete without notifying the driver (a lost interrupt).
    LostInterrupt,
    /// Stop serving the request's queue (the request stays pending) until released.
    Stall,
    /// Execute a COPY, then flip one bit of its output.
    FlipBit,
    /// Set NEEDS_RESET; this and every later request completes with `needs_reset`.
    NeedsReset,
    /// Exit the daemon abruptly, the request taken but not completed.
    Crash,
}

impl FaultKind {
    /// Every kind, in counter order.
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Fail,
        FaultKind::Delay,
        FaultKind::LostInterrupt,
        FaultKind::Stall,
        FaultKind::FlipBit,
        FaultKind::NeedsReset,
        FaultKind::Crash,
    ];

    /// Lower-case name, as in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Fail => "fail",
            FaultKind::Delay => "delay",
            FaultKind::LostInterrupt => "lost_interrupt",
            FaultKind::Stall => "stall",
            FaultKind::FlipBit => "flip_bit",
            FaultKind::NeedsReset => "needs_reset",
            FaultKind::Crash => "crash",
        }
    }

    fn one_shot(self) -> bool {
        matches!(
            self,
            FaultKind::Stall | FaultKind::NeedsReset | FaultKind::Crash
        )
    }
}

/// A fault rule as written by a user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// What happens.
    pub kind: FaultKind,
    /// Only requests of this op (any op if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<Op>,
    /// Only requests on this queue (any queue if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<u16>,
    /// `fail`: the status to complete with (not `ok`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Fire on the n-th matching request only (1-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nth: Option<u64>,
    /// Fire on every k-th matching request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    /// Fire on each matching request with this probability (0..=1), seeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// `delay`: microseconds to wait before completing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_us: Option<u64>,
    /// Fire at most this many times (default: once for stall, needs_reset and
    /// crash; unlimited otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// A fault rule that does not make sense.
#[derive(Debug, Error, PartialEq)]
pub enum FaultError {
    /// The text is not `kind[:key=value,...]` or the JSON does not fit.
    #[error("bad fault rule {0:?}: {1}")]
    Syntax(String, String),
    /// `fail` needs a status other than `ok`.
    #[error("a fail rule needs status=<name other than ok>")]
    FailNeedsStatus,
    /// `delay` needs `delay_us` within bounds.
    #[error("a delay rule needs delay_us between 1 and {MAX_DELAY_US}")]
    BadDelay,
    /// `flip_bit` only applies to COPY.
    #[error("flip_bit applies to op=copy only")]
    FlipNeedsCopy,
    /// More than one of nth, every and probability.
    #[error("give at most one of nth, every, probability")]
    Triggers,
    /// nth, every or count of zero, or a probability outside 0..=1.
    #[error("nth, every and count start at 1; probability is between 0 and 1")]
    TriggerRange,
    /// A field that the kind does not use.
    #[error("{0} does not apply to a {1} rule")]
    Unused(&'static str, &'static str),
    /// The queue does not exist.
    #[error("queue {0} does not exist (the card has {1})")]
    NoQueue(u16, u16),
    /// The card already holds [`MAX_RULES`] rules.
    #[error("the card already holds {MAX_RULES} fault rules; clear some first")]
    TooMany,
}

impl FaultSpec {
    /// Parses the command-line form `kind[:key=value,...]`,
    /// e.g. `fail:op=copy,status=io_error,nth=3`.
    pub fn parse_cli(text: &str) -> Result<FaultSpec, FaultError> {
        let syntax = |why: &str| FaultError::Syntax(text.to_owned(), why.to_owned());
        let (kind, rest) = text.split_once(':').unwrap_or((text, ""));
        let mut obj = serde_json::Map::new();
        obj.insert("kind".into(), kind.trim().into());
        for pair in rest.split(',').filter(|p| !p.trim().is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| syntax("expected key=value"))?;
            let (k, v) = (k.trim(), v.trim());
            let value = match k {
                "op" | "status" => serde_json::Value::from(v),
                _ => serde_json::from_str(v)
                    .map_err(|_| syntax(&format!("{k}={v} is not a number")))?,
            };
            obj.insert(k.to_owned(), value);
        }
        serde_json::from_value(serde_json::Value::Object(obj)).map_err(|e| syntax(&e.to_string()))
    }

    /// Checks the rule against itself and a card with `num_queues` queues.
    pub fn validate(&self, num_queues: u16) -> Result<(), FaultError> {
        let kind = self.kind.name();
        let triggers = [
            self.nth.is_some(),
            self.every.is_some(),
            self.probability.is_some(),
        ];
        if triggers.iter().filter(|t| **t).count() > 1 {
            return Err(FaultError::Triggers);
        }
        if self.nth == Some(0)
            || self.every == Some(0)
            || self.count == Some(0)
            || self.probability.is_some_and(|p| !(0.0..=1.0).contains(&p))
        {
            return Err(FaultError::TriggerRange);
        }
        if let Some(q) = self.queue.filter(|q| *q >= num_queues) {
            return Err(FaultError::NoQueue(q, num_queues));
        }
        match self.kind {
            FaultKind::Fail if self.status.is_none_or(|s| s == Status::Ok) => {
                return Err(FaultError::FailNeedsStatus)
            }
            FaultKind::Delay
                if !self
                    .delay_us
                    .is_some_and(|d| (1..=MAX_DELAY_US).contains(&d)) =>
            {
                return Err(FaultError::BadDelay)
            }
            FaultKind::FlipBit if self.op.is_some_and(|op| op != Op::Copy) => {
                return Err(FaultError::FlipNeedsCopy)
            }
            _ => {}
        }
        if self.kind != FaultKind::Fail && self.status.is_some() {
            return Err(FaultError::Unused("status", kind));
        }
        if self.kind != FaultKind::Delay && self.delay_us.is_some() {
            return Err(FaultError::Unused("delay_us", kind));
        }
        Ok(())
    }
}

/// What the rules that fired ask of one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Actions {
    /// Complete with this status instead of executing.
    pub fail: Option<Status>,
    /// Wait this long before completing.
    pub delay: Option<Duration>,
    /// Do not notify the driver.
    pub lost_interrupt: bool,
    /// Stall the queue, leaving the request pending.
    pub stall: bool,
    /// Flip the bit at this index (modulo the output length) of a COPY's output.
    pub flip_bit: Option<u64>,
    /// Set NEEDS_RESET.
    pub needs_reset: bool,
    /// Exit abruptly.
    pub crash: bool,
}

#[derive(Debug)]
struct Rule {
    id: u64,
    spec: FaultSpec,
    seen: u64,
    fired: u64,
    rng: ChaCha8Rng,
}

impl Rule {
    fn limit(&self) -> u64 {
        self.spec.count.unwrap_or(if self.spec.kind.one_shot() {
            1
        } else {
            u64::MAX
        })
    }

    fn matches(&self, op: Option<Op>, queue: u16) -> bool {
        self.spec.op.is_none_or(|want| Some(want) == op)
            && self.spec.queue.is_none_or(|want| want == queue)
    }

    /// Counts one matching request and says whether the rule fires on it.
    fn trigger(&mut self) -> bool {
        self.seen += 1;
        if self.fired >= self.limit() {
            return false;
        }
        let fire = match (self.spec.nth, self.spec.every, self.spec.probability) {
            (Some(n), _, _) => self.seen == n,
            (_, Some(k), _) => self.seen % k == 0,
            (_, _, Some(p)) => self.rng.random_bool(p),
            _ => true,
        };
        if fire {
            self.fired += 1;
        }
        fire
    }
}

/// One rule as reported by the control socket.
#[derive(Clone, Debug, Serialize)]
pub struct RuleReport {
    /// Id to remove it by.
    pub id: u64,
    /// The rule.
    #[serde(flatten)]
    pub spec: FaultSpec,
    /// Matching requests seen.
    pub seen: u64,
    /// Times it fired.
    pub fired: u64,
}

/// The card's fault rules, evaluated for every request.
#[derive(Debug)]
pub struct Faults {
    seed: u64,
    armed: AtomicBool,
    next_id: AtomicU64,
    rules: Mutex<Vec<Rule>>,
    injected: [AtomicU64; FaultKind::ALL.len()],
}

impl Faults {
    /// No rules; `seed` feeds every probabilistic trigger and bit choice.
    pub fn new(seed: u64) -> Faults {
        Faults {
            seed,
            armed: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            rules: Mutex::new(Vec::new()),
            injected: Default::default(),
        }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Adds a (validated) rule and returns its id, or [`FaultError::TooMany`]
    /// when the card already holds [`MAX_RULES`] rules.
    pub fn add(&self, spec: FaultSpec) -> Result<u64, FaultError> {
        let mut rules = self.lock();
        if rules.len() >= MAX_RULES {
            return Err(FaultError::TooMany);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let rng = ChaCha8Rng::seed_from_u64(self.seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        rules.push(Rule {
            id,
            spec,
            seen: 0,
            fired: 0,
            rng,
        });
        self.armed.store(true, Ordering::Release);
        Ok(id)
    }

    /// Removes the rule `id` (every rule if `None`); returns how many went.
    pub fn clear(&self, id: Option<u64>) -> usize {
        let mut rules = self.lock();
        let before = rules.len();
        rules.retain(|r| id.is_some_and(|id| r.id != id));
        self.armed.store(!rules.is_empty(), Ordering::Release);
        before - rules.len()
    }

    /// The rules and their counters.
    pub fn list(&self) -> Vec<RuleReport> {
        self.lock()
            .iter()
            .map(|r| RuleReport {
                id: r.id,
                spec: r.spec.clone(),
                seen: r.seen,
                fired: r.fired,
            })
            .collect()
    }

    /// Faults injected so far, by kind.
    pub fn injected(&self) -> serde_json::Map<String, serde_json::Value> {
        FaultKind::ALL
            .iter()
            .zip(&self.injected)
            .map(|(k, n)| (k.name().to_owned(), n.load(Ordering::Relaxed).into()))
            .collect()
    }

    /// Evaluates every rule against a request of `op` (None: unknown) on `queue`.
    #[inline]
    pub fn evaluate(&self, op: Option<Op>, queue: u16) -> Actions {
        // Acquire pairs with the Release in add/clear: a rule added before this
        // request was taken is seen. Without rules no lock is taken, and no
        // call made: the common case is inlined into the request path.
        if !self.armed.load(Ordering::Acquire) {
            return Actions::default();
        }
        self.evaluate_rules(op, queue)
    }

    /// [`Faults::evaluate`] when rules are armed.
    #[inline(never)]
    fn evaluate_rules(&self, op: Option<Op>, queue: u16) -> Actions {
        let mut actions = Actions::default();
        let mut rules = self.lock();
        for rule in rules.iter_mut().filter(|r| r.matches(op, queue)) {
            if !rule.trigger() {
                continue;
            }
            self.injected[rule.spec.kind as usize].fetch_add(1, Ordering::Relaxed);
            match rule.spec.kind {
                FaultKind::Fail => actions.fail = rule.spec.status,
                FaultKind::Delay => actions.delay = rule.spec.delay_us.map(Duration::from_micros),
                FaultKind::LostInterrupt => actions.lost_interrupt = true,
                FaultKind::Stall => actions.stall = true,
                FaultKind::FlipBit => actions.flip_bit = Some(rule.rng.random()),
                FaultKind::NeedsReset => actions.needs_reset = true,
                FaultKind::Crash => actions.crash = true,
            }
        }
        actions
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Rule>> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> FaultSpec {
        let spec = FaultSpec::parse_cli(text).unwrap();
        spec.validate(2).unwrap();
        spec
    }

    #[test]
    fn cli_form_parses_to_the_json_form() {
        let spec = rule("fail:op=copy,status=io_error,nth=3");
        assert_eq!(spec.kind, FaultKind::Fail);
        assert_eq!(spec.op, Some(Op::Copy));
        assert_eq!(spec.status, Some(Status::IoError));
        assert_eq!(spec.nth, Some(3));
        let json: FaultSpec =
            serde_json::from_str(r#"{"kind":"fail","op":"copy","status":"io_error","nth":3}"#)
                .unwrap();
        assert_eq!(spec, json);
        assert_eq!(rule("stall:queue=1").queue, Some(1));
    }

    #[test]
    fn nonsense_is_refused_with_a_reason() {
        let bad = |t: &str| FaultSpec::parse_cli(t).and_then(|s| s.validate(2).map(|_| s));
        assert!(matches!(bad("explode"), Err(FaultError::Syntax(..))));
        assert!(matches!(
            bad("fail:op=teleport,status=io_error"),
            Err(FaultError::Syntax(..))
        ));
        assert!(matches!(bad("fail:nth"), Err(FaultError::Syntax(..))));
        assert_eq!(bad("fail:op=copy"), Err(FaultError::FailNeedsStatus));
        assert_eq!(bad("fail:status=ok"), Err(FaultError::FailNeedsStatus));
        assert_eq!(bad("delay"), Err(FaultError::BadDelay));
        assert_eq!(bad("delay:delay_us=99999999"), Err(FaultError::BadDelay));
        assert_eq!(bad("flip_bit:op=fill"), Err(FaultError::FlipNeedsCopy));
        assert_eq!(bad("crash:nth=1,every=2"), Err(FaultError::Triggers));
        assert_eq!(bad("crash:every=0"), Err(FaultError::TriggerRange));
        assert_eq!(
            bad("fail:status=io_error,count=0"),
            Err(FaultError::TriggerRange)
        );
        assert_eq!(bad("crash:probability=1.5"), Err(FaultError::TriggerRange));
        assert_eq!(bad("stall:queue=2"), Err(FaultError::NoQueue(2, 2)));
        assert_eq!(
            bad("stall:status=io_error"),
            Err(FaultError::Unused("status", "stall"))
        );
    }

    #[test]
    fn triggers_fire_where_they_say() {
        let faults = Faults::new(1);
        faults
            .add(rule("fail:op=copy,status=io_error,nth=3"))
            .unwrap();
        let fired: Vec<bool> = (0..6)
            .map(|_| faults.evaluate(Some(Op::Copy), 0).fail.is_some())
            .collect();
        assert_eq!(fired, [false, false, true, false, false, false]);
        // Other ops do not count towards a copy rule.
        assert_eq!(faults.evaluate(Some(Op::Fill), 0), Actions::default());

        faults.clear(None);
        faults.add(rule("lost_interrupt:every=2,queue=1")).unwrap();
        let fired: Vec<bool> = (0..6u16)
            .map(|i| faults.evaluate(Some(Op::Nop), i % 2).lost_interrupt)
            .collect();
        // Requests alternate between queue 0 and 1; only queue 1's count, every 2nd fires.
        assert_eq!(fired, [false, false, false, true, false, false]);

        faults.clear(None);
        faults.add(rule("stall")).unwrap();
        assert!(faults.evaluate(None, 0).stall);
        assert!(
            !faults.evaluate(None, 0).stall,
            "stall is one-shot by default"
        );
        assert_eq!(faults.injected()["stall"], 1);
    }

    #[test]
    fn probability_is_deterministic_from_the_seed() {
        let run = |seed| {
            let faults = Faults::new(seed);
            faults
                .add(rule("fail:status=io_error,probability=0.5"))
                .unwrap();
            (0..64)
                .map(|_| faults.evaluate(Some(Op::Nop), 0).fail.is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let hits = run(7).iter().filter(|f| **f).count();
        assert!((10..=54).contains(&hits), "{hits} of 64 at p=0.5");
    }

    #[test]
    fn count_limits_and_clear_by_id() {
        let faults = Faults::new(0);
        let id = faults.add(rule("fail:status=io_error,count=2")).unwrap();
        let n = (0..5)
            .filter(|_| faults.evaluate(None, 0).fail.is_some())
            .count();
        assert_eq!(n, 2);
        assert_eq!(faults.list()[0].seen, 5);
        assert_eq!(faults.clear(Some(id + 1)), 0);
        assert_eq!(faults.clear(Some(id)), 1);
        assert!(faults.list().is_empty());
    }

    #[test]
    fn rules_are_bounded() {
        let faults = Faults::new(0);
        for _ in 0..MAX_RULES {
            faults.add(rule("delay:delay_us=1")).unwrap();
        }
        assert_eq!(faults.add(rule("stall")), Err(FaultError::TooMany));
        assert_eq!(faults.list().len(), MAX_RULES);
        assert_eq!(faults.clear(Some(1)), 1);
        assert!(faults.add(rule("stall")).is_ok());
    }
}
