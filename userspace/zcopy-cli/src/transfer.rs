//! Moving one file over a channel, written once for every transport: the
//! sender reads the file straight into loaned slots and sends them; the
//! receiver writes each slot, read in place, to the output file (slots
//! shorter than [`DIRECT_WRITE`] are gathered into writes of that size
//! first).
//!
//! The wire format, one message per slot:
//!
//! ```text
//! header   "ZCFILE\0\2"  file size (u64 LE)                      16 bytes
//! data     the file's bytes in order, chunks of 1..=slot size, as many as it takes
//! trailer  "ZCFILEND"    file size (u64 LE)  XXH64 (u64 LE)      24 bytes
//! ```
//!
//! The header's last byte is the format's version ([`VERSION`]). The
//! checksum is XXH64 (seed 0) of the file's bytes: a 64-bit hash that
//! needs one load per 8 bytes, where a table-driven CRC needs one per
//! byte, so a CPU without CRC instructions (an emulated one, say) hashes
//! several times faster, and collisions are 2^32 times rarer.
//!
//! The sender waits for the header to come back (the receiver is there)
//! before it starts the clock, and for every slot to come back after the
//! trailer (the receiver has taken everything) before it closes the
//! channel; the receiver, after checking length and checksum, waits
//! (briefly) for that close, so that over RDMA its last credit reaches the
//! sender before it disconnects.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Read, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use zcopy::channel::{Error, Rx, Tx, TxLoan, Wait};

use crate::failure::{Failure, Result};

/// The format's version: the header's last byte.
pub const VERSION: u8 = 2;
/// First bytes of the header message: "ZCFILE\0", then [`VERSION`].
pub const HEADER_MAGIC: [u8; 8] = [b'Z', b'C', b'F', b'I', b'L', b'E', 0, VERSION];
/// First bytes of the trailer message.
pub const TRAILER_MAGIC: [u8; 8] = *b"ZCFILEND";
/// Header length: magic and file size.
pub const HEADER_LEN: usize = 16;
/// Trailer length: magic, file size and XXH64.
pub const TRAILER_LEN: usize = 24;
/// The smallest slot the protocol works with.
pub const MIN_SLOT_SIZE: u32 = 64;
/// Messages at least this long go to the output straight from their slot,
/// one write each; shorter ones are gathered into writes of up to this
/// size first, so that small slots do not cost a system call each (the
/// receiver's output is a `BufWriter` of this capacity, which passes a
/// write at least as long as its capacity straight through).
pub const DIRECT_WRITE: usize = 64 << 10;
/// Files larger than this get a progress bar (when stderr is a terminal).
const PROGRESS_ABOVE: u64 = 64 << 20;
/// How long a receiver that has everything waits for the sender to close.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// What one end moved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// File bytes moved.
    pub bytes: u64,
    /// Seconds the data took: at the sender from the header coming back to
    /// the last slot coming back, at the receiver from the header to the
    /// trailer.
    pub seconds: f64,
    /// XXH64 of the bytes.
    pub xxh64: u64,
}

/// The checksum of a stream of bytes, fed in order.
pub struct Checksum(xxhash_rust::xxh64::Xxh64);

impl Checksum {
    /// The checksum of nothing yet.
    pub fn new() -> Checksum {
        Checksum(xxhash_rust::xxh64::Xxh64::new(0))
    }

    /// Adds `bytes` to the stream.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The checksum of everything added.
    pub fn value(&self) -> u64 {
        self.0.digest()
    }

    /// The checksum of `bytes` alone.
    pub fn of(bytes: &[u8]) -> u64 {
        xxhash_rust::xxh64::xxh64(bytes, 0)
    }
}

impl Default for Checksum {
    fn default() -> Checksum {
        Checksum::new()
    }
}

/// The header message for a file of `size` bytes.
pub fn header(size: u64) -> [u8; HEADER_LEN] {
    let mut m = [0; HEADER_LEN];
    m[..8].copy_from_slice(&HEADER_MAGIC);
    m[8..].copy_from_slice(&size.to_le_bytes());
    m
}

/// The file size a header message announces; None when it is no header.
pub fn parse_header(m: &[u8]) -> Option<u64> {
    if m.len() != HEADER_LEN || m[..8] != HEADER_MAGIC {
        return None;
    }
    Some(u64::from_le_bytes(m[8..16].try_into().ok()?))
}

/// The version of a header of another version of this format (whatever
/// its length); None when `m` is of this version or no header at all.
pub fn other_version(m: &[u8]) -> Option<u8> {
    (m.len() >= 8 && m[..7] == HEADER_MAGIC[..7] && m[7] != VERSION).then(|| m[7])
}

/// The trailer message: the file size again and the data's checksum.
pub fn trailer(size: u64, sum: u64) -> [u8; TRAILER_LEN] {
    let mut m = [0; TRAILER_LEN];
    m[..8].copy_from_slice(&TRAILER_MAGIC);
    m[8..16].copy_from_slice(&size.to_le_bytes());
    m[16..].copy_from_slice(&sum.to_le_bytes());
    m
}

/// Size and checksum a trailer message carries; None when it is no trailer.
pub fn parse_trailer(m: &[u8]) -> Option<(u64, u64)> {
    if m.len() != TRAILER_LEN || m[..8] != TRAILER_MAGIC {
        return None;
    }
    let size = u64::from_le_bytes(m[8..16].try_into().ok()?);
    let sum = u64::from_le_bytes(m[16..24].try_into().ok()?);
    Some((size, sum))
}

/// How long to wait for the peer: forever, or at most this long each time.
fn wait_for(timeout: Option<Duration>) -> Wait {
    timeout.map_or(Wait::Forever, Wait::Timeout)
}

/// "N s" for messages.
pub fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// Sends `size` bytes of `file` over `tx`, each chunk read from the file
/// straight into a loaned slot. `timeout` bounds each wait for the
/// receiver (None: wait as long as it takes).
pub fn send<T: Tx>(
    tx: &T,
    file: &mut File,
    name: &str,
    size: u64,
    timeout: Option<Duration>,
) -> Result<Stats> {
    let wait = wait_for(timeout);
    let peer = |e: Error| sender_failure(e, timeout);
    send_small(tx, wait, &header(size)).map_err(peer)?;
    // The header back means a receiver is there and reading.
    drain(tx, wait).map_err(peer)?;

    let start = Instant::now();
    let progress = Progress::new(size);
    let chunk = tx.slot_size() as u64;
    let mut sum = Checksum::new();
    let mut sent = 0u64;
    while sent < size {
        let mut loan = tx.loan_with(wait).map_err(peer)?;
        let n = chunk.min(size - sent) as usize;
        let slot = &mut loan.as_mut_slice()[..n];
        file.read_exact(slot).map_err(|e| {
            let why = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "it shrank while being sent".to_string()
            } else {
                e.to_string()
            };
            Failure::failed(format!("reading {name} at byte {sent} of {size}: {why}"))
        })?;
        sum.update(slot);
        loan.send(n).map_err(peer)?;
        sent += n as u64;
        progress.add(n as u64);
    }
    // The receiver checks what comes against the size and checksum sent
    // here, so a file that holds more than its size said at the start
    // (it grew, or it is a /proc file, whose size says 0) would arrive
    // short and pass: no trailer then, and the receiver keeps nothing.
    if !at_end(file).map_err(|e| Failure::failed(format!("reading {name}: {e}")))? {
        return Err(Failure::failed(format!(
            "{name} holds more than the {size} bytes its size said when the send began \
             (it grew while being sent, or its size does not give its length, as in /proc)"
        )));
    }
    send_small(tx, wait, &trailer(size, sum.value())).map_err(peer)?;
    drain(tx, wait).map_err(peer)?;
    progress.finish();
    Ok(Stats {
        bytes: size,
        seconds: start.elapsed().as_secs_f64(),
        xxh64: sum.value(),
    })
}

/// True when nothing is left to read in `file`.
fn at_end(file: &mut File) -> std::io::Result<bool> {
    loop {
        match file.read(&mut [0u8; 1]) {
            Ok(n) => return Ok(n == 0),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Sends a small message (header, trailer), written into a loaned slot.
fn send_small<T: Tx>(tx: &T, wait: Wait, bytes: &[u8]) -> zcopy::channel::Result<()> {
    let mut loan = tx.loan_with(wait)?;
    let slot = loan.as_mut_slice();
    let Some(dst) = slot.get_mut(..bytes.len()) else {
        return Err(Error::TooLarge {
            len: bytes.len(),
            capacity: slot.len(),
        });
    };
    dst.copy_from_slice(bytes);
    loan.send(bytes.len())
}

/// Waits until the receiver has given back every slot sent, i.e. taken
/// every message. Loans each free slot (unsent: they go back when dropped)
/// so that the wait is the loan's own, which also notices a dead receiver.
fn drain<T: Tx>(tx: &T, wait: Wait) -> zcopy::channel::Result<()> {
    let mut held = Vec::new();
    while tx.in_flight() > 0 {
        held.push(tx.loan_with(wait)?);
    }
    Ok(())
}

fn sender_failure(e: Error, timeout: Option<Duration>) -> Failure {
    match e {
        Error::PeerDied { pid, .. } => Failure::failed(format!(
            "the receiver (pid {pid}) died or disconnected before it had taken everything"
        )),
        Error::Timeout => Failure::failed(format!(
            "no receiver took anything for {}: is `zcopy recv` running, with the same --via and --name?",
            timeout.map_or_else(|| "ever".into(), secs)
        )),
        e => Failure::failed(format!("sending: {e}")),
    }
}

/// Receives a file from `rx` into `out` (called `name` in messages): the
/// header, the data, the trailer; fails unless the length and the
/// checksum match. `timeout` bounds each wait for the sender.
pub fn receive<R: Rx>(
    rx: &R,
    out: &mut impl Write,
    name: &str,
    timeout: Option<Duration>,
) -> Result<Stats> {
    let wait = wait_for(timeout);
    let first = rx
        .recv_with(wait)
        .and_then(|m| m.ok_or(Error::Timeout))
        .map_err(|e| receiver_failure(e, timeout, None))?;
    if let Some(v) = other_version(&first) {
        return Err(Failure::failed(format!(
            "the sender speaks version {v} of the file format and this zcopy speaks version {VERSION}: run the same zcopy at both ends"
        )));
    }
    let size = parse_header(&first).ok_or_else(|| {
        Failure::failed(format!(
            "the first message ({} bytes) is not a zcopy file header: is another program sending on this channel?",
            first.len()
        ))
    })?;
    drop(first);

    let start = Instant::now();
    let progress = Progress::new(size);
    let mut sum = Checksum::new();
    let mut got = 0u64;
    let mut out = BufWriter::with_capacity(DIRECT_WRITE, out);
    let write_failed =
        |e: std::io::Error, at: u64| Failure::failed(format!("writing {name} at byte {at}: {e}"));
    while got < size {
        let m = rx
            .recv_with(wait)
            .and_then(|m| m.ok_or(Error::Timeout))
            .map_err(|e| receiver_failure(e, timeout, Some((got, size))))?;
        let n = m.len() as u64;
        if n == 0 || n > size - got {
            return Err(Failure::failed(format!(
                "the sender sent {n} bytes after {got} of {size}: not a zcopy file stream"
            )));
        }
        sum.update(&m);
        out.write_all(&m).map_err(|e| write_failed(e, got))?;
        got += n;
        progress.add(n);
    }
    out.flush().map_err(|e| write_failed(e, got))?;
    let last = rx
        .recv_with(wait)
        .and_then(|m| m.ok_or(Error::Timeout))
        .map_err(|e| receiver_failure(e, timeout, Some((got, size))))?;
    let seconds = start.elapsed().as_secs_f64();
    progress.finish();
    let (their_size, their_sum) = parse_trailer(&last).ok_or_else(|| {
        Failure::failed(format!(
            "expected the end of the file after {size} bytes, got a {}-byte message",
            last.len()
        ))
    })?;
    drop(last);
    if their_size != got {
        return Err(Failure::failed(format!(
            "length mismatch: received {got} bytes, the sender says it sent {their_size}"
        )));
    }
    let ours = sum.value();
    if their_sum != ours {
        return Err(Failure::failed(format!(
            "checksum mismatch: the received bytes have XXH64 {ours:016x}, the sender's have {their_sum:016x}"
        )));
    }
    // Everything is here and checked; let the sender close first (any
    // other end of the wait is fine too: the file is complete).
    let _ = rx.recv_timeout(CLOSE_GRACE);
    Ok(Stats {
        bytes: got,
        seconds,
        xxh64: ours,
    })
}

fn receiver_failure(e: Error, timeout: Option<Duration>, progress: Option<(u64, u64)>) -> Failure {
    let at = match progress {
        None => "before sending a file".to_string(),
        Some((got, size)) => format!("after {got} of {size} bytes"),
    };
    match e {
        Error::Closed => Failure::failed(format!("the sender closed the channel {at}")),
        Error::PeerDied { pid, .. } => {
            Failure::failed(format!("the sender (pid {pid}) died or disconnected {at}"))
        }
        Error::Timeout => Failure::failed(format!(
            "nothing from the sender for {} ({at})",
            timeout.map_or_else(|| "ever".into(), secs)
        )),
        e => Failure::failed(format!("receiving ({at}): {e}")),
    }
}

/// A progress bar on stderr for large files, when stderr is a terminal.
struct Progress(Option<ProgressBar>);

impl Progress {
    fn new(total: u64) -> Progress {
        if total <= PROGRESS_ABOVE || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let style = ProgressStyle::with_template(
            "{bytes:>10}/{total_bytes} [{wide_bar}] {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        Progress(Some(bar.with_style(style)))
    }

    fn add(&self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(n);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use zcopy::channel::{Builder, Receiver, Sender, Shm};

    use super::*;

    /// A memfd channel with both ends in this process.
    fn pair(slot_size: usize, slots: u32) -> (Sender<Shm>, Receiver<Shm>) {
        let tx = Builder::new()
            .slot_size(slot_size)
            .slot_count(slots)
            .create()
            .unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        tx.share(&a).unwrap();
        let rx = Receiver::from_socket(&b).unwrap();
        (tx, rx)
    }

    /// Sends `messages` and closes, then receives with a short timeout.
    fn receive_messages(messages: &[&[u8]]) -> (Result<Stats>, Vec<u8>) {
        let (tx, rx) = pair(64, 16);
        for m in messages {
            send_small(&tx, Wait::Never, m).unwrap();
        }
        drop(tx);
        let mut out = Vec::new();
        let r = receive(&rx, &mut out, "out", Some(Duration::from_secs(1)));
        (r, out)
    }

    #[test]
    fn header_and_trailer_round_trip_and_refuse_other_bytes() {
        assert_eq!(parse_header(&header(0)), Some(0));
        assert_eq!(parse_header(&header(u64::MAX)), Some(u64::MAX));
        assert_eq!(
            parse_trailer(&trailer(7, 0xdead_beef)),
            Some((7, 0xdead_beef))
        );
        assert_eq!(parse_header(&trailer(7, 1)), None);
        assert_eq!(parse_trailer(&header(7)), None);
        assert_eq!(parse_header(&header(7)[..15]), None);
        assert_eq!(parse_header(b"0123456789abcdef"), None);
    }

    #[test]
    fn the_checksum_is_xxh64_fed_in_any_pieces() {
        // The reference values of XXH64 with seed 0.
        assert_eq!(Checksum::of(b""), 0xef46_db37_51d8_e999);
        assert_eq!(Checksum::of(b"abc"), 0x44bc_2cf5_ad77_0999);
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let mut sum = Checksum::new();
        for piece in data.chunks(333) {
            sum.update(piece);
        }
        assert_eq!(sum.value(), Checksum::of(&data));
    }

    #[test]
    fn another_version_of_the_format_is_named() {
        let mut old = header(5);
        old[7] = 1;
        assert_eq!(other_version(&old), Some(1));
        assert_eq!(other_version(&header(5)), None);
        // A later version's header may be longer.
        let mut later = header(5).to_vec();
        later[7] = 3;
        later.extend_from_slice(&[0; 8]);
        assert_eq!(other_version(&later), Some(3));
        assert_eq!(other_version(b"ZCFILE"), None);
        assert_eq!(parse_header(&old), None);
        let (r, _) = receive_messages(&[&old, b"12345"]);
        let e = r.unwrap_err().message;
        assert!(e.contains("version 1 of the file format"), "{e}");
    }

    #[test]
    fn a_good_stream_is_written_and_its_checksum_reported() {
        let data = b"hello, zero-copy world";
        let sum = Checksum::of(data);
        let len = data.len() as u64;
        let (r, out) =
            receive_messages(&[&header(len), &data[..10], &data[10..], &trailer(len, sum)]);
        let stats = r.unwrap();
        assert_eq!((stats.bytes, stats.xxh64), (len, sum));
        assert_eq!(out, data);
    }

    /// Every write the output gets, as it got it.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl Write for Writes {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.push(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn long_messages_are_written_one_each_and_short_ones_gathered() {
        let (tx, rx) = pair(DIRECT_WRITE, 16);
        let long: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; DIRECT_WRITE]).collect();
        let short = [b"abc".to_vec(), vec![7; 1000], b"xyz".to_vec()];
        let order = [
            &long[0], &long[1], &short[0], &short[1], &short[2], &long[2], &long[3],
        ];
        let data: Vec<u8> = order.iter().flat_map(|m| m.iter().copied()).collect();
        let len = data.len() as u64;
        send_small(&tx, Wait::Never, &header(len)).unwrap();
        for m in order {
            send_small(&tx, Wait::Never, m).unwrap();
        }
        send_small(&tx, Wait::Never, &trailer(len, Checksum::of(&data))).unwrap();
        drop(tx);
        let mut out = Writes::default();
        receive(&rx, &mut out, "out", Some(Duration::from_secs(1))).unwrap();
        let lens: Vec<usize> = out.0.iter().map(Vec::len).collect();
        assert_eq!(
            lens,
            [DIRECT_WRITE, DIRECT_WRITE, 1006, DIRECT_WRITE, DIRECT_WRITE]
        );
        assert_eq!(out.0.concat(), data);
    }

    /// An output that takes `room` bytes, then fails every write.
    struct Full {
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = b.len().min(self.room);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_names_the_output_and_where() {
        // A long message written straight from its slot.
        let (tx, rx) = pair(DIRECT_WRITE, 4);
        let data = vec![5u8; 2 * DIRECT_WRITE];
        let len = data.len() as u64;
        send_small(&tx, Wait::Never, &header(len)).unwrap();
        for m in data.chunks(DIRECT_WRITE) {
            send_small(&tx, Wait::Never, m).unwrap();
        }
        drop(tx);
        let mut out = Full {
            room: DIRECT_WRITE + 10,
        };
        let e = receive(&rx, &mut out, "out.bin", Some(Duration::from_secs(1))).unwrap_err();
        assert!(
            e.message.starts_with("writing out.bin at byte 65536: "),
            "{}",
            e.message
        );
        // Short messages, gathered: the write comes when they are all in.
        let (tx, rx) = pair(64, 16);
        let sum = Checksum::of(b"abcdef");
        for m in [&header(6)[..], b"abc", b"def", &trailer(6, sum)] {
            send_small(&tx, Wait::Never, m).unwrap();
        }
        drop(tx);
        let mut out = Full { room: 0 };
        let e = receive(&rx, &mut out, "out.bin", Some(Duration::from_secs(1)))
            .unwrap_err()
            .message;
        assert!(e.starts_with("writing out.bin at byte 6: "), "{e}");
    }

    #[test]
    fn a_wrong_checksum_fails() {
        let data = b"some bytes";
        let len = data.len() as u64;
        let bad = Checksum::of(data) ^ 1;
        let (r, _) = receive_messages(&[&header(len), data, &trailer(len, bad)]);
        let e = r.unwrap_err();
        assert!(e.message.contains("checksum mismatch"), "{}", e.message);
        assert_eq!(e.code, crate::failure::FAILED);
    }

    #[test]
    fn a_short_or_long_stream_fails() {
        let (r, _) = receive_messages(&[&header(10), b"12345"]);
        let e = r.unwrap_err().message;
        assert!(e.contains("closed the channel after 5 of 10 bytes"), "{e}");

        let (r, _) = receive_messages(&[&header(4), b"12345"]);
        let e = r.unwrap_err().message;
        assert!(e.contains("sent 5 bytes after 0 of 4"), "{e}");

        let (r, _) = receive_messages(&[&header(3), b"123", &trailer(4, Checksum::of(b"123"))]);
        let e = r.unwrap_err().message;
        assert!(e.contains("length mismatch"), "{e}");

        let (r, _) = receive_messages(&[b"not a header"]);
        let e = r.unwrap_err().message;
        assert!(e.contains("not a zcopy file header"), "{e}");

        let (r, _) = receive_messages(&[]);
        let e = r.unwrap_err().message;
        assert!(
            e.contains("closed the channel before sending a file"),
            "{e}"
        );
    }

    #[test]
    fn nothing_from_the_sender_times_out() {
        let (_tx, rx) = pair(64, 4);
        let t0 = Instant::now();
        let e = receive(
            &rx,
            &mut Vec::new(),
            "out",
            Some(Duration::from_millis(100)),
        )
        .unwrap_err();
        assert!(
            e.message.contains("nothing from the sender for 0.1 s"),
            "{}",
            e.message
        );
        assert!(t0.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn send_reads_the_file_into_slots_and_receive_gets_it_back() {
        // A file of 5.5 slots, sent from a thread, received here.
        let dir = std::env::temp_dir().join(format!("zcopy-transfer-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("in");
        let data: Vec<u8> = (0..352u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let tx = Builder::new().slot_size(64).slot_count(2).create().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        tx.share(&a).unwrap();
        let sender = std::thread::spawn(move || {
            let mut f = File::open(&path).unwrap();
            send(&tx, &mut f, "in", 352, Some(Duration::from_secs(10)))
        });
        let rx = Receiver::from_socket(&b).unwrap();
        let mut out = Vec::new();
        let got = receive(&rx, &mut out, "out", Some(Duration::from_secs(10))).unwrap();
        let sent = sender.join().unwrap().unwrap();
        assert_eq!(out, data);
        assert_eq!(got.xxh64, Checksum::of(&data));
        assert_eq!((sent.bytes, sent.xxh64), (got.bytes, got.xxh64));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_longer_than_its_size_said_is_refused_and_nothing_kept() {
        // The size taken at the start says 100; the file holds 130 (it
        // grew, or it is a /proc file): the sender fails before its
        // trailer and the receiver gets no whole transfer.
        let dir = std::env::temp_dir().join(format!("zcopy-transfer-grew-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("in");
        std::fs::write(&path, [5u8; 130]).unwrap();
        let tx = Builder::new().slot_size(64).slot_count(2).create().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        tx.share(&a).unwrap();
        let sender = std::thread::spawn(move || {
            let mut f = File::open(&path).unwrap();
            send(&tx, &mut f, "in", 100, Some(Duration::from_secs(10)))
        });
        let rx = Receiver::from_socket(&b).unwrap();
        let got = receive(&rx, &mut Vec::new(), "out", Some(Duration::from_secs(10)));
        let e = sender.join().unwrap().unwrap_err();
        assert!(
            e.message.contains("holds more than the 100 bytes"),
            "{}",
            e.message
        );
        assert!(got.is_err(), "the receiver took a short file as whole");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
