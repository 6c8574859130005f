//! Two processes, one named channel, no payload copies.
//!
//! ```text
//! cargo run --example two_process            # starts the receiver itself
//! cargo run --example two_process -- recv    # the receiver side alone
//! ```
//! The sender creates `/dev/shm/zcopy.example-<pid>`, starts a copy of this
//! program as the receiver, and sends 1000 readings written in place; the
//! receiver reads them in place and prints the sum.

use std::process::Command;

use zcopy::channel::{Builder, Receiver};

/// The message: a plain-old-data struct, written straight into the slot.
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Reading {
    seq: u64,
    value: f64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("recv") {
        let rx = Receiver::open_named(&args[2])?;
        let mut sum = 0.0;
        let mut n = 0u64;
        loop {
            match rx.recv() {
                Ok(sample) => {
                    let r: &Reading = sample.as_pod()?;
                    assert_eq!(r.seq, n, "in order");
                    sum += r.value;
                    n += 1;
                }
                Err(zcopy::channel::Error::Closed) => break,
                Err(e) => return Err(e.into()),
            }
        }
        println!("received {n} readings, sum {sum}");
        return Ok(());
    }

    let name = format!("example-{}", std::process::id());
    let tx = Builder::new()
        .slot_for::<Reading>()
        .slot_count(16)
        .create_named(&name)?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["recv", &name])
        .spawn()?;
    for seq in 0..1000u64 {
        let mut slot = tx.loan_pod::<Reading>()?; // waits while all 16 are taken
        *slot = Reading {
            seq,
            value: seq as f64 * 0.5,
        };
        slot.send()?;
    }
    drop(tx); // closes the channel: the receiver ends after the last reading
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("receiver: {status}").into());
    }
    Ok(())
}
