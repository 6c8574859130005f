//! Writing to stdout (or stderr, where stdout carries data): a reader that
//! went away (`zcopy info | head -1`) ends the output quietly instead of a
//! panic.

use std::io::Write;

use serde::Serialize;

use crate::failure::{Failure, Result};

/// Writes `text` to stdout.
pub fn print(text: &str) -> Result<()> {
    print_on(text, Stream::Stdout)
}

/// Where a report goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output, where reports go.
    Stdout,
    /// Standard error: for a report of a command whose data went to stdout.
    Stderr,
}

/// Writes `text` to `stream`.
pub fn print_on(text: &str, stream: Stream) -> Result<()> {
    let written = match stream {
        Stream::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes()).and_then(|()| out.flush())
        }
        Stream::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
    };
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            let name = match stream {
                Stream::Stdout => "stdout",
                Stream::Stderr => "stderr",
            };
            Err(Failure::failed(format!("writing to {name}: {e}")))
        }
        _ => Ok(()),
    }
}

/// Writes `value` to stdout as one line of JSON (JSON Lines: what tools
/// that read a pipe line by line expect).
pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    print_json_on(value, Stream::Stdout)
}

/// As [`print_json`], to `stream`.
pub fn print_json_on<T: Serialize>(value: &T, stream: Stream) -> Result<()> {
    print_on(&json_line(value)?, stream)
}

/// `value` as one line of JSON with its newline.
fn json_line<T: Serialize>(value: &T) -> Result<String> {
    let text =
        serde_json::to_string(value).map_err(|e| Failure::failed(format!("encoding JSON: {e}")))?;
    Ok(format!("{text}\n"))
}

/// `bytes` for people: `512 B`, `64 KiB`, `1.5 MiB`, `16 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::{human_bytes, json_line};

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1000), "1000 B");
        assert_eq!(human_bytes(64 << 10), "64 KiB");
        assert_eq!(human_bytes(3 << 19), "1.5 MiB");
        assert_eq!(human_bytes(16 << 30), "16 GiB");
    }

    #[test]
    fn json_is_one_line_per_object() {
        let value = serde_json::json!({
            "cards": [{"path": "/dev/zcard0", "ops": ["copy", "fill"]}],
            "hints": {"rdma": "no RDMA device:\nrun scripts/rxe-setup.sh"},
        });
        let line = json_line(&value).unwrap();
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back, value);
    }
}
