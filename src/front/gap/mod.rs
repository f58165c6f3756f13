//! The gap server: what Traefik routes to while the app is between two releases (and while
//! maintenance is on). It runs as a user unit, `deploy gap-server`, beside the app, and it is on
//! the internet's request path: every input is bounded.
//!
//! - `maintenance` mode, or the control file `maintenance` present, or the path
//!   `/__deploy/maintenance` (Traefik's errors middleware): 503 with `Retry-After` and the page.
//! - `hold` mode: while the control file `gap` exists (deploy creates it before stopping the app
//!   and removes it once the new release is healthy) a request waits, up to `hold`; then it is
//!   forwarded to the app, or gets the maintenance page if the gap outlasted `hold`.
//!
//! A forwarded request's body and the app's answer are kept whole in memory, so their bytes are
//! counted against one budget for the whole server ([`MAX_BUFFERED`]), not only bounded one by
//! one; and connections over the limit are turned away with the page only so many at once
//! ([`MAX_TURNED_AWAY`]).
//!
//! Held requests are forwarded by this server rather than retried by Traefik: with rootless
//! Podman the host port is held by the port forwarder, which accepts a connection and then resets
//! it while the app is not listening, and Traefik does not retry a request whose headers were
//! sent.
//!
//! Built on hyper 1 (HTTP/1.1 parsing, limits and timeouts) and hyper-util's client on a
//! current-thread tokio runtime: one thread, asleep in the kernel while idle. The control files
//! are watched with inotify, so held requests are woken by one notification, not by polling.

mod budget;
mod handle;

use crate::config::GapMode;
use anyhow::{Context, Result};
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};

pub use handle::{decide, forwardable, Decision};

pub const GAP_FILE: &str = "gap";
pub const MAINTENANCE_FILE: &str = "maintenance";
/// `deploy stop`'s mark (who, since when): the page is served while it is there, as for
/// maintenance.
pub const STOPPED_FILE: &str = "stopped";
pub const MAINTENANCE_PATH: &str = "/__deploy/maintenance";

/// Connections over the limit that are being turned away at once (each gets the page, and up to
/// 3 s to take it and close). More are closed at once, without the page: a flood of
/// connections costs neither tasks nor memory.
pub const MAX_TURNED_AWAY: usize = 256;
/// The bytes that forwarded requests keep in memory at once, in all: request bodies kept while
/// the app is waited for, and the app's answers kept whole until they are passed back. A request
/// whose bytes are not left gets the page (503), without waiting for room.
pub const MAX_BUFFERED: usize = 256 << 20;

/// The gap server's options: the arguments of `deploy gap-server`, which its unit passes.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    #[arg(long)]
    pub listen: String,
    #[arg(long, value_enum)]
    pub mode: GapMode,
    #[arg(long, value_parser = humantime::parse_duration)]
    pub hold: Duration,
    #[arg(long, value_parser = humantime::parse_duration)]
    pub retry_after: Duration,
    #[arg(long)]
    pub upstream: String,
    #[arg(long)]
    pub control: PathBuf,
    #[arg(long)]
    pub page: PathBuf,
    /// Connections served at once; one more gets the page (503) and is closed.
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
    /// Connections over the limit turned away with the page at once; more are closed without it.
    #[arg(long, hide = true, default_value_t = MAX_TURNED_AWAY)]
    pub max_turned_away: usize,
    /// Bytes of bodies kept in memory at once, in all; a request beyond gets the page.
    #[arg(long, hide = true, default_value_t = MAX_BUFFERED)]
    pub max_buffered: usize,
}

/// The control files, as the server last saw them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    pub gap: bool,
    pub maintenance: bool,
}

impl Flags {
    fn read(control: &Path) -> Flags {
        Flags {
            gap: control.join(GAP_FILE).exists(),
            maintenance: control.join(MAINTENANCE_FILE).exists()
                || control.join(STOPPED_FILE).exists(),
        }
    }
}

pub fn serve(opts: Options) -> Result<()> {
    raise_open_files_limit();
    let page = std::fs::read(&opts.page)
        .with_context(|| format!("cannot read the maintenance page {}", opts.page.display()))?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the gap server's runtime")?
        .block_on(run(opts, Bytes::from(page)))
}

async fn run(opts: Options, page: Bytes) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(opts.listen.as_str())
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    eprintln!(
        "gap server on {} ({} mode, hold {:?}) for {}",
        opts.listen,
        opts.mode.as_str(),
        opts.hold,
        opts.upstream
    );
    let (tx, flags) = watch::channel(Flags::read(&opts.control));
    tokio::spawn(watch_flags(opts.control.clone(), tx));
    let limits = Limits {
        serving: Arc::new(Semaphore::new(opts.max_connections)),
        turning_away: Arc::new(Semaphore::new(opts.max_turned_away)),
    };
    let server = Arc::new(handle::Server::new(opts, page, flags));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => limits.admit(stream, &server),
            Err(e) => {
                // Out of file descriptors, say: wait for some to be freed, never spin.
                eprintln!("gap server: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The connections in flight: those served, and those being turned away.
struct Limits {
    serving: Arc<Semaphore>,
    turning_away: Arc<Semaphore>,
}

impl Limits {
    /// Serves a new connection, or turns it away with the page when all slots are taken, or
    /// closes it at once when too many are being turned away already.
    fn admit(&self, stream: TcpStream, server: &Arc<handle::Server>) {
        let server = server.clone();
        if let Ok(slot) = self.serving.clone().try_acquire_owned() {
            tokio::spawn(async move {
                server.connection(stream).await;
                drop(slot);
            });
        } else if let Ok(slot) = self.turning_away.clone().try_acquire_owned() {
            tokio::spawn(async move {
                handle::refuse(stream, server).await;
                drop(slot);
            });
        } else {
            drop(stream);
        }
    }
}

/// Keeps `flags` up to date with the control files: woken by inotify when one is created or
/// removed (deploy writes them under a temp name and renames), polling only where inotify is
/// not to be had.
async fn watch_flags(control: PathBuf, tx: watch::Sender<Flags>) {
    use futures_util::StreamExt;
    use inotify::{Inotify, WatchMask};
    let refresh = |tx: &watch::Sender<Flags>| {
        let now = Flags::read(&control);
        tx.send_if_modified(|f| std::mem::replace(f, now) != now);
    };
    let stream = Inotify::init().and_then(|inotify| {
        inotify.watches().add(
            &control,
            WatchMask::CREATE | WatchMask::DELETE | WatchMask::MOVED_TO | WatchMask::MOVED_FROM,
        )?;
        inotify.into_event_stream([0u8; 4096])
    });
    // Read after the watch is in place: nothing that changes in between is missed.
    refresh(&tx);
    match stream {
        Ok(mut events) => {
            while events.next().await.is_some() {
                refresh(&tx);
            }
            eprintln!(
                "gap server: the inotify stream of {} ended",
                control.display()
            );
        }
        Err(e) => eprintln!(
            "gap server: cannot watch {} ({e}): reading the control files every 100 ms",
            control.display()
        ),
    }
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        refresh(&tx);
    }
}

/// Many idle connections must not run the server out of file descriptors: the soft limit goes
/// up to the hard one (systemd gives user services 1024 of 524288).
fn raise_open_files_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max.min(1 << 20);
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// The gap server of `unit` (on `port`, of the environment `env`) answers within `wait`: its
/// maintenance path always gets the page, 503.
pub fn answers(port: u16, unit: &str, env: &str, wait: Duration) -> Result<()> {
    let url = crate::sys::health::url(port, MAINTENANCE_PATH);
    let deadline = std::time::Instant::now() + wait;
    loop {
        match crate::sys::health::probe(&url, Duration::from_secs(1)) {
            Ok(503) => return Ok(()),
            other if std::time::Instant::now() >= deadline => anyhow::bail!(
                "the gap server ({unit}) does not answer on {url} ({other:?}): see \
                 `systemctl --user status {unit}` and run `deploy setup {env}`; is port {port} \
                 free?"
            ),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Creates or removes a control file (in `.deploy/`), durably.
pub fn set_flag(control: &Path, name: &str, on: bool) -> Result<()> {
    let path = control.join(name);
    if on {
        crate::sys::fsx::write_atomic(&path, format!("{}\n", crate::sys::now()).as_bytes(), 0o600)
    } else {
        match std::fs::remove_file(&path) {
            Ok(()) => crate::sys::fsx::sync_dir(control),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }
}
