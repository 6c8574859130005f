//! Command line, its validation into a [`Config`], and the daemon's serve loop.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use log::{info, warn};
use thiserror::Error;
use vhost::vhost_user::Listener;
use vhost_user_backend::VhostUserDaemon;
use vm_memory::GuestMemoryAtomic;
use vmm_sys_util::epoll::EventSet;
use zcopy_units::parse_size;

use crate::faults::{FaultError, FaultSpec, MAX_RULES};
use crate::storage::{Storage, StorageError};
use crate::vhu_zcard::ZcardBackend;
use crate::virtio_zcard::{DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_SEGMENTS, DEFAULT_QUEUES};
use crate::zcard::{Card, GuestMem, Limits};
use crate::DEFAULT_STORAGE_BYTES;
use virtio_bindings::bindings::virtio_config::VIRTIO_F_ACCESS_PLATFORM;
use virtio_bindings::bindings::virtio_ring::{
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};

/// zcard-vhost: the zcard DMA card, served to QEMU over vhost-user.
///
/// Attach it with
///   -chardev socket,id=zcard,path=SOCKET
///   -device vhost-user-test-device-pci,chardev=zcard,virtio-id=38,num_vqs=QUEUES,config_size=64
/// and guest RAM shared (memory-backend-memfd,share=on).
#[derive(Debug, Parser)]
#[command(name = "zcard-vhost", version, verbatim_doc_comment)]
pub struct Args {
    /// vhost-user socket to listen on (a socket left there is replaced;
    /// any other file is refused).
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
    /// Control socket (JSON lines) [default: SOCKET.ctl].
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Storage backing file, created if missing [default: a sparse temporary file].
    #[arg(long, value_name = "PATH")]
    pub storage: Option<PathBuf>,
    /// Storage capacity, a multiple of 512 (suffixes K, M, G) [default: 64M, or the file's size].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub storage_size: Option<u64>,
    /// Request queues; must equal QEMU's num_vqs (1..=64).
    #[arg(long, default_value_t = DEFAULT_QUEUES)]
    pub queues: u16,
    /// Segments per direction per request (1..=256).
    #[arg(long, default_value_t = DEFAULT_MAX_SEGMENTS)]
    pub max_segments: u16,
    /// Largest payload of one request (suffixes K, M, G; at most 1G).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value_t = u64::from(DEFAULT_MAX_REQUEST_BYTES))]
    pub max_request_bytes: u64,
    /// Seed of every probabilistic fault and flipped bit.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fault rule kind[:key=value,...], e.g. fail:op=copy,status=io_error,nth=3 (repeatable).
    #[arg(long = "fault", value_name = "RULE", value_parser = parse_fault)]
    pub faults: Vec<FaultSpec>,
    /// Serve one connection, then exit (default: serve connections forever).
    #[arg(long)]
    pub once: bool,
    /// Withhold VIRTIO_F_ACCESS_PLATFORM: the driver gives guest-physical
    /// addresses without the DMA API (and no vIOMMU translates them).
    #[arg(long)]
    pub no_access_platform: bool,
    /// Withhold VIRTIO_RING_F_INDIRECT_DESC.
    #[arg(long)]
    pub no_indirect_desc: bool,
    /// Withhold VIRTIO_RING_F_EVENT_IDX.
    #[arg(long)]
    pub no_event_idx: bool,
}

fn parse_fault(text: &str) -> Result<FaultSpec, String> {
    FaultSpec::parse_cli(text).map_err(|e| e.to_string())
}

/// Errors that stop the daemon before or while serving.
#[derive(Debug, Error)]
pub enum Error {
    /// An option is out of range.
    #[error("{0}")]
    BadOption(String),
    /// A --fault rule does not make sense.
    #[error("--fault: {0}")]
    Fault(#[from] FaultError),
    /// The storage could not be set up.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A socket could not be created.
    #[error("cannot listen on {0}: {1}")]
    Listen(PathBuf, String),
    /// vhost-user failed outside a single connection.
    #[error("vhost-user: {0}")]
    Daemon(String),
}

/// Validated configuration of one daemon.
#[derive(Debug)]
pub struct Config {
    /// vhost-user socket.
    pub socket: PathBuf,
    /// Control socket.
    pub control: PathBuf,
    /// Storage file (None: temporary).
    pub storage: Option<PathBuf>,
    /// Storage size (None: the file's own).
    pub storage_size: Option<u64>,
    /// Card limits.
    pub limits: Limits,
    /// Fault seed.
    pub seed: u64,
    /// Initial fault rules.
    pub faults: Vec<FaultSpec>,
    /// Serve a single connection.
    pub once: bool,
    /// Virtio feature bits not offered (of `DEVICE_FEATURES`).
    pub withheld_features: u64,
}

impl TryFrom<Args> for Config {
    type Error = Error;

    fn try_from(args: Args) -> Result<Config, Error> {
        let bad = |m: String| Err(Error::BadOption(m));
        if !(1..=64).contains(&args.queues) {
            return bad(format!("--queues {} is outside 1..=64", args.queues));
        }
        if !(1..=256).contains(&args.max_segments) {
            return bad(format!(
                "--max-segments {} is outside 1..=256",
                args.max_segments
            ));
        }
        if !(1..=1 << 30).contains(&args.max_request_bytes) {
            return bad(format!(
                "--max-request-bytes {} is outside 1..=1G",
                args.max_request_bytes
            ));
        }
        if args.faults.len() > MAX_RULES {
            return Err(FaultError::TooMany.into());
        }
        for rule in &args.faults {
            rule.validate(args.queues)?;
        }
        let withheld_features = [
            (args.no_access_platform, VIRTIO_F_ACCESS_PLATFORM),
            (args.no_indirect_desc, VIRTIO_RING_F_INDIRECT_DESC),
            (args.no_event_idx, VIRTIO_RING_F_EVENT_IDX),
        ]
        .iter()
        .filter(|(withheld, _)| *withheld)
        .fold(0, |bits, (_, bit)| bits | 1u64 << bit);
        let control = args.control.unwrap_or_else(|| {
            let mut p = args.socket.clone().into_os_string();
            p.push(".ctl");
            p.into()
        });
        if control == args.socket {
            return bad(format!(
                "--control and --socket are one path ({})",
                control.display()
            ));
        }
        if let Some(s) = args
            .storage
            .as_ref()
            .filter(|s| **s == args.socket || **s == control)
        {
            return bad(format!("--storage {} is also a socket's path", s.display()));
        }
        Ok(Config {
            socket: args.socket,
            control,
            storage: args.storage,
            storage_size: args.storage_size,
            limits: Limits {
                num_queues: args.queues,
                max_segments: args.max_segments,
                max_request_bytes: args.max_request_bytes as u32,
            },
            seed: args.seed,
            faults: args.faults,
            once: args.once,
            withheld_features,
        })
    }
}

/// Builds the card a config describes.
pub fn build_card(config: &Config) -> Result<Card, Error> {
    let storage = match &config.storage {
        Some(path) => Storage::open(path, config.storage_size)?,
        None => Storage::temporary(config.storage_size.unwrap_or(DEFAULT_STORAGE_BYTES))?,
    };
    let card = Card::new(config.limits, storage, config.seed)
        .map_err(|e| Error::Daemon(format!("cannot create the card's eventfds: {e}")))?;
    for rule in &config.faults {
        card.faults().add(rule.clone())?;
    }
    Ok(card)
}

/// Serves `backend` on `listener`: one connection at a time, each with fresh
/// worker threads, the card (and its storage) kept across them.
pub fn serve(backend: Arc<ZcardBackend>, listener: &mut Listener, once: bool) -> Result<(), Error> {
    loop {
        let mut daemon = VhostUserDaemon::new(
            "zcard-vhost".into(),
            backend.clone(),
            GuestMemoryAtomic::new(GuestMem::new()),
        )
        .map_err(|e| Error::Daemon(e.to_string()))?;
        daemon
            .start(listener)
            .map_err(|e| Error::Daemon(format!("accepting a connection: {e}")))?;
        let card = backend.card();
        card.stats().connection();
        card.reset();
        info!("front end connected");
        for (thread, handler) in daemon.get_epoll_handlers().iter().enumerate() {
            let Some(fd) = card.wake_fd(thread as u16) else {
                continue;
            };
            if let Err(e) = handler.register_listener(
                fd.as_raw_fd(),
                EventSet::IN,
                backend.wake_event_id(thread),
            ) {
                warn!("queue {thread}: release wake-ups unavailable: {e}");
            }
        }
        match daemon.wait() {
            Ok(()) => info!("front end disconnected"),
            Err(e) => warn!("connection ended: {e}"),
        }
        // Dropping the daemon stops and joins its worker threads; then nothing
        // of the departed guest (its memory, its request channel) stays mapped.
        drop(daemon);
        backend.disconnected();
        if once {
            return Ok(());
        }
    }
}

/// The whole daemon: validate, build, listen, serve.
pub fn run(args: Args) -> Result<(), Error> {
    let config = Config::try_from(args)?;
    let listen =
        |path: &PathBuf, e: &dyn std::fmt::Display| Error::Listen(path.clone(), e.to_string());
    // Both socket paths checked before the storage file or the control
    // socket is made, so a refusal leaves only the lock file (which stays
    // anyway); the lock before either socket is cleared, so a second
    // daemon never removes a first one's.
    crate::control::socket_at(&config.socket).map_err(|e| listen(&config.socket, &e))?;
    // Held until the process ends.
    let _lock =
        crate::control::lock_socket(&config.socket).map_err(|e| listen(&config.socket, &e))?;
    crate::control::clear_socket_path(&config.control, true)
        .map_err(|e| listen(&config.control, &e))?;
    crate::control::clear_socket_path(&config.socket, false)
        .map_err(|e| listen(&config.socket, &e))?;
    let card = build_card(&config)?;
    info!(
        "zcard: {} queues, storage {} bytes ({}), seed {}, features withheld {:#x}",
        config.limits.num_queues,
        card.storage().capacity(),
        card.storage()
            .path()
            .map_or("temporary".into(), |p| p.display().to_string()),
        config.seed,
        config.withheld_features
    );
    let backend = Arc::new(ZcardBackend::new(Arc::new(card)).withholding(config.withheld_features));
    crate::control::spawn(backend.clone(), &config.control)
        .map_err(|e| listen(&config.control, &e))?;
    let mut listener =
        Listener::new(&config.socket, false).map_err(|e| listen(&config.socket, &e))?;
    serve(backend, &mut listener, config.once)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["zcard-vhost", "--socket", "/tmp/z.sock"];
        argv.extend_from_slice(extra);
        let args = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
        Config::try_from(args).map_err(|e| e.to_string())
    }

    #[test]
    fn one_path_for_two_files_is_refused() {
        let e = args(&["--control", "/tmp/z.sock"]).unwrap_err();
        assert!(e.contains("--control and --socket are one path"), "{e}");
        for storage in ["/tmp/z.sock", "/tmp/z.sock.ctl"] {
            let e = args(&["--storage", storage]).unwrap_err();
            assert!(e.contains("is also a socket's path"), "{e}");
        }
        assert!(args(&["--storage", "/tmp/z.img"]).is_ok());
    }

    #[test]
    fn defaults_and_sizes() {
        let c = args(&[]).unwrap();
        assert_eq!(c.control, PathBuf::from("/tmp/z.sock.ctl"));
        assert_eq!(c.limits, Limits::default());
        let c = args(&["--storage-size", "8M", "--max-request-bytes", "1G"]).unwrap();
        assert_eq!(c.storage_size, Some(8 << 20));
        assert_eq!(c.limits.max_request_bytes, 1 << 30);
        let c = args(&["--storage-size", "1MiB"]).unwrap();
        assert_eq!(c.storage_size, Some(1 << 20));
        let e = args(&["--storage-size", "lots"]).unwrap_err();
        assert!(e.contains("is not a size"), "{e}");
        let e = args(&["--storage-size", "99999999999G"]).unwrap_err();
        assert!(e.contains("too large"), "{e}");
    }

    #[test]
    fn bad_options_say_what_is_wrong() {
        assert!(args(&["--queues", "0"]).unwrap_err().contains("--queues 0"));
        assert!(args(&["--max-segments", "300"])
            .unwrap_err()
            .contains("1..=256"));
        assert!(args(&["--max-request-bytes", "2G"])
            .unwrap_err()
            .contains("1..=1G"));
        assert!(args(&["--fault", "fail:op=copy"])
            .unwrap_err()
            .contains("status"));
        assert!(args(&["--queues", "1", "--fault", "stall:queue=1"])
            .unwrap_err()
            .contains("queue 1 does not exist"));
        let c = args(&["--fault", "delay:delay_us=100", "--fault", "crash:nth=5"]).unwrap();
        assert_eq!(c.faults.len(), 2);
        let many: Vec<&str> = ["--fault", "stall"].repeat(MAX_RULES + 1);
        assert!(args(&many).unwrap_err().contains("64 fault rules"));
    }

    #[test]
    fn feature_bits_can_be_withheld() {
        assert_eq!(args(&[]).unwrap().withheld_features, 0);
        let c = args(&["--no-access-platform"]).unwrap();
        assert_eq!(c.withheld_features, 1 << VIRTIO_F_ACCESS_PLATFORM);
        let c = args(&["--no-indirect-desc", "--no-event-idx"]).unwrap();
        assert_eq!(
            c.withheld_features,
            1 << VIRTIO_RING_F_INDIRECT_DESC | 1 << VIRTIO_RING_F_EVENT_IDX
        );
    }
}
