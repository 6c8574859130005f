//! Card faults under the fuzzing: each round the coordinator arms seeded
//! fault rules on the card's control port (docs/zcard-spec.md, "Fault
//! injection"), so that requests the workers send fail with every status the
//! card can return, are delayed, lose their interrupt, time out on a stalled
//! queue or are cancelled by a reset the card asks for. Once the round's
//! workers are gone the rules are cleared, the queues released and the card
//! brought back to serving before the oracle is checked.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use zcopy::card::{Rings, Sqe};
use zcopy_vm_tests::{read_attr, zcard_control};

use crate::rng::Rng;

/// What a request that reached the card may end with when the card faults
/// (docs/uapi.md, the table of card statuses): `unsupported`,
/// `bad_address`, `out_of_range`, `io_error`, a reset (`needs_reset`, or
/// another request's), a timeout.
pub const CARD_FAULT_ERRNOS: [Errno; 6] = [
    Errno::EOPNOTSUPP,
    Errno::EFAULT,
    Errno::ERANGE,
    Errno::EIO,
    Errno::ECANCELED,
    Errno::ETIMEDOUT,
];

/// The driver's request timeout during a run with card faults: a stalled
/// queue times out this fast, and TCG's slowest request still fits.
const TIMEOUT_MS: &str = "3000";
const TIMEOUT_PARAM: &str = "/sys/module/zcard/parameters/timeout_ms";

/// Card statuses a `fail` rule completes with.
const STATUSES: [&str; 4] = ["io_error", "bad_address", "out_of_range", "unsupported"];

/// The card's fault injection for one run: the driver's timeout is
/// shortened while it lives.
pub struct CardFaults {
    /// The process that armed them (forked workers leave them alone).
    pid: u32,
    old_timeout: String,
    injected_before: serde_json::Value,
    /// Rules armed, over all rounds.
    pub rules: u64,
}

impl CardFaults {
    /// Shortens the driver's timeout and clears any rule left on the card.
    pub fn new() -> Result<CardFaults, String> {
        let old_timeout = read_attr(TIMEOUT_PARAM).map_err(|e| e.to_string())?;
        std::fs::write(TIMEOUT_PARAM, TIMEOUT_MS).map_err(|e| format!("{TIMEOUT_PARAM}: {e}"))?;
        let ok = zcard_control(r#"{"cmd":"clear"}"#);
        if ok["ok"] != true {
            return Err(format!("the card's control port: {ok}"));
        }
        Ok(CardFaults {
            pid: std::process::id(),
            old_timeout,
            injected_before: injected(),
            rules: 0,
        })
    }

    /// Arms this round's rules, drawn from `rng`; returns them as sent.
    pub fn arm(&mut self, rng: &mut Rng) -> Result<Vec<String>, String> {
        let status = STATUSES[rng.index(STATUSES.len())];
        let mut rules = vec![
            format!(r#"{{"kind":"fail","status":"{status}","probability":0.02}}"#),
            format!(
                r#"{{"kind":"delay","delay_us":{},"probability":0.02}}"#,
                1000 + rng.below(9_000)
            ),
            // Each one waits for the driver's watchdog (a quarter of the
            // timeout): rare, or they would be most of the run's time.
            r#"{"kind":"lost_interrupt","probability":0.001}"#.to_string(),
        ];
        // One reset a round: asked for by the card, or after a timeout.
        let nth = 1 + rng.below(400);
        rules.push(if rng.one_in(2) {
            format!(r#"{{"kind":"needs_reset","nth":{nth}}}"#)
        } else {
            format!(r#"{{"kind":"stall","nth":{nth}}}"#)
        });
        for r in &rules {
            let reply = zcard_control(&format!(r#"{{"cmd":"fault","rule":{r}}}"#));
            if reply["ok"] != true {
                return Err(format!("fault rule {r} refused: {reply}"));
            }
            self.rules += 1;
        }
        Ok(rules)
    }

    /// Clears every rule, releases every queue and waits until the card
    /// serves again: a NOP on `rings` completes with 0 (a NEEDS_RESET left
    /// by a rule makes the first ones `-ECANCELED` and resets the card).
    pub fn disarm(&mut self, rings: &mut Rings) -> Result<(), String> {
        zcard_control(r#"{"cmd":"clear"}"#);
        let queues = zcard_control(r#"{"cmd":"config"}"#)["config"]["num_queues"]
            .as_u64()
            .unwrap_or(0);
        for q in 0..queues {
            zcard_control(&format!(r#"{{"cmd":"release","queue":{q}}}"#));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = rings.run(&[Sqe::nop()], Duration::from_secs(30));
            match r {
                Ok(c) if c.len() == 1 && c[0].result == 0 => return Ok(()),
                Ok(c) if c.len() == 1 && c[0].result == -(Errno::ECANCELED as i32) => {}
                other => return Err(format!("a NOP after the card's faults: {other:?}")),
            }
            if Instant::now() > deadline {
                return Err("the card did not serve again within 60 s of its faults".into());
            }
        }
    }

    /// Faults the card injected since `new`, by kind (the control port's
    /// `faults_injected`).
    pub fn injected(&self) -> Vec<(String, u64)> {
        let now = injected();
        let Some(now) = now.as_object() else {
            return Vec::new();
        };
        now.iter()
            .map(|(k, v)| {
                let before = self.injected_before[k].as_u64().unwrap_or(0);
                (k.clone(), v.as_u64().unwrap_or(0).saturating_sub(before))
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

impl Drop for CardFaults {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            return;
        }
        zcard_control(r#"{"cmd":"clear"}"#);
        let _ = std::fs::write(TIMEOUT_PARAM, &self.old_timeout);
    }
}

fn injected() -> serde_json::Value {
    zcard_control(r#"{"cmd":"stats"}"#)["faults_injected"].clone()
}
