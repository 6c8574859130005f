//! Every fault kind, observable as docs/zcard-spec.md says, and the control
//! socket commands that drive them.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use vhost_user_backend::VhostUserBackend;
use vmm_sys_util::epoll::EventSet;
use zcard_vhost::control::handle_line;
use zcard_vhost::faults::FaultSpec;
use zcard_vhost::storage::Storage;
use zcard_vhost::virtio_zcard::*;
use zcard_vhost::zcard::{Card, Limits};

const A: u64 = DATA + 0x1000;
const B: u64 = DATA + 0x40_0000;

fn rig_with(rules: &[&str]) -> Rig {
    let r = Rig::new(Limits::default());
    for rule in rules {
        let spec = FaultSpec::parse_cli(rule).unwrap();
        spec.validate(2).unwrap();
        r.card().faults().add(spec).unwrap();
    }
    r
}

fn ctl(r: &Rig, req: Value) -> Value {
    handle_line(&r.backend, &req.to_string())
}

#[test]
fn fail_nth_completes_with_the_status_and_touches_nothing() {
    let mut r = rig_with(&["fail:op=copy,status=io_error,nth=2"]);
    r.write(A, &pattern_bytes(512, 1));
    for i in 1..=3u8 {
        r.write(B, &[0; 512]);
        let (st, used) = r.run(hdr(Op::Copy, 512), &[(A, 512)], &[(B, 512)]);
        if i == 2 {
            assert_eq!(st.status, Status::IoError as u8);
            assert_eq!(used, REQ_STATUS_SIZE);
            assert_eq!(
                r.read(B, 512),
                vec![0; 512],
                "a failed request does not execute"
            );
        } else {
            assert_eq!(st.status, Status::Ok as u8, "request {i}");
        }
    }
    // Other ops never matched the copy rule.
    assert_eq!(r.run(hdr(Op::Nop, 0), &[], &[]).0.status, 0);
    let s = ctl(&r, json!({"cmd": "stats"}));
    assert_eq!(s["faults_injected"]["fail"], 1);
    assert_eq!(s["stats"]["ops"]["copy"]["statuses"]["io_error"], 1);
    assert_eq!(s["stats"]["ops"]["copy"]["statuses"]["ok"], 2);
}

#[test]
fn fail_every_kth_on_one_queue() {
    let mut r = rig_with(&["fail:status=bad_address,every=2,queue=1"]);
    let statuses: Vec<u8> = (0..4)
        .flat_map(|_| [0, 1])
        .map(|q| r.run_on(q, hdr(Op::Nop, 0), &[], &[]).0.status)
        .collect();
    assert_eq!(statuses, [0, 0, 0, 6, 0, 0, 0, 6]);
}

#[test]
fn delay_holds_the_completion_back() {
    let mut r = rig_with(&["delay:delay_us=30000,op=nop"]);
    let t = Instant::now();
    assert_eq!(r.run(hdr(Op::Nop, 0), &[], &[]).0.status, 0);
    assert!(t.elapsed() >= Duration::from_millis(30));
}

#[test]
fn lost_interrupt_completes_without_notifying() {
    let mut r = rig_with(&["lost_interrupt:nth=1"]);
    assert_eq!(r.run(hdr(Op::Nop, 0), &[], &[]).0.status, 0);
    assert_eq!(r.run(hdr(Op::Nop, 0), &[], &[]).0.status, 0);
    let s = r.card().stats().snapshot();
    assert_eq!(s["queues"][0]["suppressed_notifications"], 1);
    assert_eq!(s["queues"][0]["notifications"], 1);
}

#[test]
fn stall_holds_a_queue_until_released() {
    let mut r = rig_with(&["stall:queue=0,op=copy"]);
    r.write(A, &pattern_bytes(64, 2));
    let (ha, sa) = r.header(hdr(Op::Copy, 64));
    let seg = |addr, len, write| Seg { addr, len, write };
    r.push(
        0,
        &[
            seg(ha, 48, false),
            seg(A, 64, false),
            seg(B, 64, true),
            seg(sa, 16, true),
        ],
    );
    r.kick(0);
    assert!(r.used(0).is_empty(), "stalled: nothing completes");
    assert!(r.card().is_stalled(0));
    r.kick(0);
    assert!(r.used(0).is_empty(), "a kick does not unstall");
    // The other queue keeps serving.
    assert_eq!(r.run_on(1, hdr(Op::Nop, 0), &[], &[]).0.status, 0);
    assert_eq!(ctl(&r, json!({"cmd": "stats"}))["stalled"], json!([0]));

    assert_eq!(
        ctl(&r, json!({"cmd": "release", "queue": 0})),
        json!({"ok": true})
    );
    // Release wakes the worker through its eventfd; deliver that event.
    assert_eq!(r.card().wake_fd(0).unwrap().read().unwrap(), 1);
    r.card().wake_fd(0).unwrap().write(1).unwrap();
    let wake = r.backend.wake_event_id(0) as u16;
    r.backend
        .handle_event(wake, EventSet::IN, &r.vrings[0..1], 0)
        .unwrap();
    assert_eq!(r.used(0).len(), 1);
    assert_eq!(r.status_at(sa).status, 0);
    assert_eq!(r.read(B, 64), pattern_bytes(64, 2));

    // Stall and release by command, too.
    assert_eq!(
        ctl(&r, json!({"cmd": "stall", "queue": 1})),
        json!({"ok": true})
    );
    assert!(r.card().is_stalled(1));
    assert_eq!(ctl(&r, json!({"cmd": "stall", "queue": 9}))["ok"], false);
}

#[test]
fn flip_bit_corrupts_one_bit_and_crc32c_catches_it() {
    let mut r = rig_with(&["flip_bit:nth=1"]);
    let data = pattern_bytes(4096, 7);
    r.write(A, &data);
    let (st, _) = r.run(
        hdr(Op::Copy, 4096),
        &[(A, 4096)],
        &[(B, 1000), (B + 8192, 3096)],
    );
    assert_eq!(
        st.status, 0,
        "the card reports success: the corruption is silent"
    );
    let mut out = r.read(B, 1000);
    out.extend(r.read(B + 8192, 3096));
    let flipped: u32 = out
        .iter()
        .zip(&data)
        .map(|(a, b)| (a ^ b).count_ones())
        .sum();
    assert_eq!(flipped, 1);
    let (src_crc, _) = r.run(hdr(Op::Crc32c, 4096), &[(A, 4096)], &[]);
    let (dst_crc, _) = r.run(hdr(Op::Crc32c, 4096), &[(B, 1000), (B + 8192, 3096)], &[]);
    assert_ne!(src_crc.result, dst_crc.result);
}

#[test]
fn flipped_bit_is_the_same_for_the_same_seed() {
    let run = || {
        let mut r = rig_with(&["flip_bit:every=1"]);
        r.write(A, &[0; 4096]);
        r.run(hdr(Op::Copy, 4096), &[(A, 4096)], &[(B, 4096)]);
        r.read(B, 4096)
    };
    let first = run();
    assert_eq!(
        first.iter().map(|b| b.count_ones()).sum::<u32>(),
        1,
        "one bit flipped"
    );
    assert_eq!(first, run());
}

#[test]
fn flip_bit_on_an_empty_copy_is_harmless() {
    let mut r = rig_with(&["flip_bit"]);
    assert_eq!(r.run(hdr(Op::Copy, 0), &[], &[]).0.status, 0);
    assert_eq!(
        r.run(hdr(Op::Nop, 0), &[], &[]).0.status,
        0,
        "queue still served"
    );
}

#[test]
fn stall_and_needs_reset_on_one_request_do_both() {
    let r = rig_with(&["stall:nth=1", "needs_reset:nth=1"]);
    let mut r = r;
    let (ha, sa) = r.header(hdr(Op::Nop, 0));
    let seg = |addr, len, write| Seg { addr, len, write };
    r.push(0, &[seg(ha, 48, false), seg(sa, 16, true)]);
    r.kick(0);
    assert!(r.card().is_stalled(0));
    assert!(r.card().needs_reset());
}

#[test]
fn needs_reset_fails_everything_until_reset() {
    let mut r = rig_with(&["needs_reset:op=fill"]);
    assert_eq!(r.run(hdr(Op::Nop, 0), &[], &[]).0.status, 0);
    let mut fill = hdr(Op::Fill, 8);
    fill.pattern = 1;
    assert_eq!(
        r.run(fill, &[], &[(B, 8)]).0.status,
        Status::NeedsReset as u8
    );
    assert_eq!(
        r.run(hdr(Op::Nop, 0), &[], &[]).0.status,
        Status::NeedsReset as u8
    );
    assert_eq!(
        r.card().read_config(0x20, 4),
        STATE_NEEDS_RESET.to_le_bytes()
    );
    // The driver resets the device (features are negotiated again).
    r.backend.acked_features(r.backend.features());
    assert_eq!(r.card().read_config(0x20, 4), [0; 4]);
    assert_eq!(
        r.run(fill, &[], &[(B, 8)]).0.status,
        0,
        "one-shot rule spent"
    );

    assert_eq!(ctl(&r, json!({"cmd": "needs_reset"})), json!({"ok": true}));
    assert_eq!(
        r.run(hdr(Op::Nop, 0), &[], &[]).0.status,
        Status::NeedsReset as u8
    );
}

#[test]
fn crash_fires_mid_request() {
    let fired = Arc::new(AtomicUsize::new(0));
    let mut card = Card::new(Limits::default(), Storage::temporary(STORAGE).unwrap(), 3).unwrap();
    let f = fired.clone();
    card.set_crash_action(Box::new(move || {
        f.fetch_add(1, Ordering::SeqCst);
    }));
    card.faults()
        .add(FaultSpec::parse_cli("crash:nth=2").unwrap())
        .unwrap();
    let mut r = Rig::with_card(card);
    r.run(hdr(Op::Nop, 0), &[], &[]);
    assert_eq!(fired.load(Ordering::SeqCst), 0);
    r.run(hdr(Op::Nop, 0), &[], &[]);
    assert_eq!(fired.load(Ordering::SeqCst), 1);
}

#[test]
fn control_socket_manages_rules_and_refuses_nonsense() {
    let r = Rig::new(Limits::default());
    assert_eq!(ctl(&r, json!({"cmd": "ping"}))["ok"], true);
    let added = ctl(
        &r,
        json!({"cmd": "fault", "rule": {"kind": "fail", "op": "crc32c", "status": "io_error", "every": 3}}),
    );
    assert_eq!(added["ok"], true, "{added}");
    let id = added["id"].as_u64().unwrap();
    let list = ctl(&r, json!({"cmd": "faults"}));
    assert_eq!(list["rules"][0]["kind"], "fail");
    assert_eq!(list["rules"][0]["every"], 3);
    assert_eq!(
        ctl(&r, json!({"cmd": "clear", "id": id})),
        json!({"ok": true, "removed": 1})
    );
    assert_eq!(ctl(&r, json!({"cmd": "faults"}))["rules"], json!([]));
    let cfg = ctl(&r, json!({"cmd": "config"}));
    assert_eq!(cfg["config"]["magic"], ZCARD_MAGIC);
    assert_eq!(cfg["config"]["storage_capacity"], STORAGE);

    for bad in [
        "not json",
        r#"{"cmd":"explode"}"#,
        r#"{"cmd":"fault","rule":{"kind":"fail"}}"#,
        r#"{"cmd":"fault","rule":{"kind":"delay","delay_us":0}}"#,
        r#"{"cmd":"release","queue":7}"#,
        r#"{"cmd":"stats","extra":1}"#,
    ] {
        let reply = handle_line(&r.backend, bad);
        assert_eq!(reply["ok"], false, "{bad}: {reply}");
        assert!(!reply["error"].as_str().unwrap().is_empty());
    }
}

#[test]
fn control_socket_bounds_the_number_of_rules() {
    let r = Rig::new(Limits::default());
    let add = || {
        ctl(
            &r,
            json!({"cmd": "fault", "rule": {"kind": "delay", "delay_us": 1, "op": "nop"}}),
        )
    };
    for i in 0..64 {
        assert_eq!(add()["ok"], true, "rule {i}");
    }
    let refused = add();
    assert_eq!(refused["ok"], false, "the 65th rule: {refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("64 fault rules"),
        "{refused}"
    );
    assert_eq!(
        ctl(&r, json!({"cmd": "faults"}))["rules"]
            .as_array()
            .unwrap()
            .len(),
        64
    );
    // Room again once one goes.
    assert_eq!(ctl(&r, json!({"cmd": "clear", "id": 1}))["removed"], 1);
    assert_eq!(add()["ok"], true);
}
