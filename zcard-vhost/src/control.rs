//! The control socket: JSON lines over a unix socket (docs/zcard-spec.md, "Control socket").
//!
//! One request object per line, one reply object per line. Every reply has
//! `"ok"`; a failed command has `"ok": false` and an `"error"` a person can act on.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use log::{debug, info, warn};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::faults::FaultSpec;
use crate::vhu_zcard::ZcardBackend;

/// Longest request line accepted.
pub const MAX_LINE: u64 = 64 << 10;
/// Most control connections served at once.
pub const MAX_CLIENTS: usize = 16;

/// One control request.
#[derive(Debug, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Liveness and identity.
    Ping {},
    /// Counters and injected faults.
    Stats {},
    /// The config space, decoded.
    Config {},
    /// Add a fault rule.
    Fault {
        /// The rule.
        rule: FaultSpec,
    },
    /// List the fault rules.
    Faults {},
    /// Remove rule `id`, or every rule.
    Clear {
        /// Rule id; all rules if absent.
        #[serde(default)]
        id: Option<u64>,
    },
    /// Stall a queue now.
    Stall {
        /// Queue index.
        queue: u16,
    },
    /// Release a stalled queue.
    Release {
        /// Queue index.
        queue: u16,
    },
    /// Set NEEDS_RESET now.
    NeedsReset {},
    /// Send `count` interrupts on a queue with nothing new on its used ring.
    Interrupt {
        /// Queue index.
        queue: u16,
        /// How many (1..=MAX_SPURIOUS).
        #[serde(default = "one")]
        count: u32,
    },
    /// Put a used entry for descriptor 0 on a queue's used ring, whatever
    /// is in flight, and interrupt.
    StrayUsed {
        /// Queue index.
        queue: u16,
    },
}

/// Most interrupts one `interrupt` command sends.
pub const MAX_SPURIOUS: u32 = 10_000;

fn one() -> u32 {
    1
}

/// Executes one command line against the card and returns the reply object.
pub fn handle_line(backend: &ZcardBackend, line: &str) -> Value {
    let card = backend.card();
    let cmd: Command = match serde_json::from_str(line) {
        Ok(cmd) => cmd,
        Err(e) => return json!({"ok": false, "error": format!("bad request: {e}")}),
    };
    let no_queue = |q: u16| {
        json!({"ok": false, "error": format!("queue {q} does not exist (the card has {})",
            card.limits().num_queues)})
    };
    match cmd {
        Command::Ping {} => {
            json!({"ok": true, "device": "zcard", "version": env!("CARGO_PKG_VERSION")})
        }
        Command::Stats {} => json!({
            "ok": true,
            "stats": card.stats().snapshot(),
            "faults_injected": card.faults().injected(),
            "needs_reset": card.needs_reset(),
            "stalled": (0..card.limits().num_queues).filter(|q| card.is_stalled(*q)).collect::<Vec<_>>(),
        }),
        Command::Config {} => {
            let c = card.config_space();
            json!({"ok": true, "config": {
                "magic": c.magic, "version": c.version, "num_queues": c.num_queues,
                "max_segments": c.max_segments, "max_request_bytes": c.max_request_bytes,
                "storage_capacity": c.storage_capacity, "block_size": c.block_size,
                "supported_ops": c.supported_ops, "device_state": c.device_state,
                "max_queue_size": c.max_queue_size,
            }, "seed": card.faults().seed()})
        }
        Command::Fault { rule } => match rule
            .validate(card.limits().num_queues)
            .and_then(|()| card.faults().add(rule.clone()))
        {
            Ok(id) => {
                info!("fault rule {id} added: {rule:?}");
                json!({"ok": true, "id": id})
            }
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        },
        Command::Faults {} => json!({"ok": true, "rules": card.faults().list()}),
        Command::Clear { id } => json!({"ok": true, "removed": card.faults().clear(id)}),
        Command::Stall { queue } => {
            if card.stall(queue) {
                json!({"ok": true})
            } else {
                no_queue(queue)
            }
        }
        Command::Release { queue } => {
            if card.release(queue) {
                json!({"ok": true})
            } else {
                no_queue(queue)
            }
        }
        Command::NeedsReset {} => {
            card.set_needs_reset();
            backend.notify_config_change();
            json!({"ok": true})
        }
        Command::Interrupt { count, .. } if count == 0 || count > MAX_SPURIOUS => {
            json!({"ok": false, "error": format!("count must be 1..={MAX_SPURIOUS}, not {count}")})
        }
        Command::Interrupt { queue, count } => {
            if card.request_spurious(queue, count) {
                json!({"ok": true})
            } else {
                no_queue(queue)
            }
        }
        Command::StrayUsed { queue } => {
            if card.request_stray_used(queue) {
                json!({"ok": true})
            } else {
                no_queue(queue)
            }
        }
    }
}

fn serve_client(backend: &ZcardBackend, stream: UnixStream) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        let n = (&mut reader).take(MAX_LINE).read_line(&mut line)?;
        if n == 0 {
            return Ok(());
        }
        let reply = if !line.ends_with('\n') && n as u64 == MAX_LINE {
            let reply =
                json!({"ok": false, "error": format!("request longer than {MAX_LINE} bytes")});
            writeln!(out, "{reply}")?;
            return Ok(());
        } else if line.trim().is_empty() {
            continue;
        } else {
            handle_line(backend, line.trim())
        };
        writeln!(out, "{reply}")?;
    }
}

/// Makes `path` free to bind: nothing there, or a socket left by an
/// earlier run (removed). Any other file is refused, never removed: a
/// path given by mistake (the storage file, say) keeps its data. With
/// `probe`, a socket that still accepts a connection is refused too:
/// another daemon serves it. (Only for sockets a probe connection cannot
/// disturb: a vhost-user daemon takes a connection for its front end.)
pub fn clear_socket_path(path: &Path, probe: bool) -> std::io::Result<()> {
    if !socket_at(path)? {
        return Ok(());
    }
    if probe && UnixStream::connect(path).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "another daemon is serving it",
        ));
    }
    std::fs::remove_file(path)
}

/// Whether a socket is at `path` (false: nothing is); any other file is
/// refused, as in [`clear_socket_path`].
pub fn socket_at(path: &Path) -> std::io::Result<bool> {
    use std::io::{Error, ErrorKind};
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => Err(Error::new(
            ErrorKind::AlreadyExists,
            "exists and is not a socket (left as it is)",
        )),
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Takes `<socket>.lock` for the daemon's life: a second daemon given the
/// same `--socket` finds it held and is refused, whatever its
/// `--control` (the probe of [`clear_socket_path`] finds only a daemon
/// serving the same control path). The lock goes with the process; the
/// file stays (removing it would let a later daemon lock a new file of
/// the same name beside one still holding the old).
pub fn lock_socket(socket: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    let name = std::path::PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&name)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", name.display())))?;
    // SAFETY: flock on a descriptor this function owns; no memory passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::WouldBlock {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another daemon is serving it (it holds {})", name.display()),
            ));
        }
        return Err(e);
    }
    Ok(file)
}

/// Binds `path` (replacing a stale socket, refusing a live one or any
/// other file: [`clear_socket_path`]) and serves it on a background thread.
pub fn spawn(backend: Arc<ZcardBackend>, path: &Path) -> std::io::Result<thread::JoinHandle<()>> {
    clear_socket_path(path, true)?;
    let listener = UnixListener::bind(path)?;
    let clients = Arc::new(AtomicUsize::new(0));
    thread::Builder::new()
        .name("zcard-control".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let stream = match stream {
                    Ok(s) => s,
                    Err(e) => {
                        warn!("control socket: {e}");
                        continue;
                    }
                };
                if clients.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
                    clients.fetch_sub(1, Ordering::AcqRel);
                    let mut s = stream;
                    let _ = writeln!(
                        s,
                        "{}",
                        json!({"ok": false, "error": "too many control clients"})
                    );
                    continue;
                }
                let backend = backend.clone();
                let done = clients.clone();
                let spawned = thread::Builder::new()
                    .name("zcard-control-client".into())
                    .spawn(move || {
                        if let Err(e) = serve_client(&backend, stream) {
                            debug!("control client: {e}");
                        }
                        done.fetch_sub(1, Ordering::AcqRel);
                    });
                if let Err(e) = spawned {
                    clients.fetch_sub(1, Ordering::AcqRel);
                    warn!("control socket: cannot start a client thread: {e}");
                }
            }
        })
}
