//! The gap server: what Traefik routes to while the app is between two releases (and while
//! maintenance is on). It runs as a user unit, `deploy gap-server`, beside the app.
//!
//! - `maintenance` mode, or the control file `maintenance` present, or the path
//!   `/__deploy/maintenance` (Traefik's errors middleware): 503 with `Retry-After` and the page.
//! - `hold` mode: while the control file `gap` exists (deploy creates it before stopping the app
//!   and removes it once the new release is healthy) a request waits, up to `hold`; then it is
//!   forwarded to the app, or gets the maintenance page if the gap outlasted `hold`.
//!
//! Held requests are forwarded by this server rather than retried by Traefik: with rootless
//! Podman the host port is held by the port forwarder, which accepts a connection and then resets
//! it while the app is not listening, and Traefik does not retry a request whose headers were
//! sent.

use crate::config::GapMode;
use anyhow::{Context, Result};
use minihttp::{Request, Response};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const GAP_FILE: &str = "gap";
pub const MAINTENANCE_FILE: &str = "maintenance";
pub const MAINTENANCE_PATH: &str = "/__deploy/maintenance";

/// How long a request waits for the maintenance page during a release's gap.
const PAGE_PACE: Duration = Duration::from_millis(100);

/// The largest request body that is held and forwarded.
const MAX_BODY: u64 = 64 << 20;

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
}

struct Server {
    opts: Options,
    page: Vec<u8>,
    agent: ureq::Agent,
}

/// Hop-by-hop headers, and those the transport sets itself.
fn forwardable(name: &str) -> bool {
    !matches!(
        name.to_ascii_lowercase().as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "trailers"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
    )
}

/// What a request gets, given the state of the gap. Pure.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Page,
    Wait,
    Forward,
}

pub fn decide(
    mode: GapMode,
    path: &str,
    maintenance: bool,
    in_gap: bool,
    held_out: bool,
) -> Decision {
    if path.starts_with(MAINTENANCE_PATH) || maintenance || mode == GapMode::Maintenance {
        return Decision::Page;
    }
    match (in_gap, held_out) {
        (false, _) => Decision::Forward,
        (true, false) => Decision::Wait,
        (true, true) => Decision::Page,
    }
}

pub fn serve(opts: Options) -> Result<()> {
    let page = std::fs::read(&opts.page)
        .with_context(|| format!("cannot read the maintenance page {}", opts.page.display()))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(300)))
        .proxy(None)
        .build()
        .into();
    let http = minihttp::Server::bind(opts.listen.as_str())
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    eprintln!(
        "gap server on {} ({} mode, hold {:?}) for {}",
        opts.listen,
        opts.mode.as_str(),
        opts.hold,
        opts.upstream
    );
    let server = Arc::new(Server { opts, page, agent });
    http.run(Arc::new(move |request| server.handle(request)))?;
    Ok(())
}

impl Server {
    fn flag(&self, name: &str) -> bool {
        self.opts.control.join(name).exists()
    }

    fn handle(&self, request: Request) -> Response {
        let arrived = Instant::now();
        loop {
            let held_out = arrived.elapsed() >= self.opts.hold;
            match decide(
                self.opts.mode,
                request.path(),
                self.flag(MAINTENANCE_FILE),
                self.flag(GAP_FILE),
                held_out,
            ) {
                Decision::Page => {
                    // In a release's gap, the page comes after a short pause: clients that
                    // retry at once would otherwise take the CPU the new release needs to
                    // start, and make the gap longer.
                    if self.opts.mode == GapMode::Maintenance && self.flag(GAP_FILE) {
                        std::thread::sleep(PAGE_PACE);
                    }
                    return self.page();
                }
                Decision::Wait => std::thread::sleep(Duration::from_millis(5)),
                Decision::Forward => return self.forward(&request, arrived),
            }
        }
    }

    fn page(&self) -> Response {
        Response::new(503, self.page.clone())
            .header("Content-Type", "text/html; charset=utf-8")
            .header(
                "Retry-After",
                self.opts.retry_after.as_secs().max(1).to_string(),
            )
            .header("Cache-Control", "no-store")
    }

    /// Forwards a request to the app. A connection the app never accepted (refused, or reset by
    /// the port forwarder before the app listens) is tried again until `hold` is spent.
    fn forward(&self, request: &Request, arrived: Instant) -> Response {
        if request.body.len() as u64 > MAX_BODY {
            return Response::new(413, "request too large\n");
        }
        let url = format!("{}{}", self.opts.upstream, request.target);
        let method = request.method.as_str();
        let safe_to_resend = matches!(method, "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE");
        loop {
            let mut builder = ureq::http::Request::builder().method(method).uri(&url);
            for (name, value) in &request.headers {
                if forwardable(name) {
                    builder = builder.header(name.as_str(), value.as_str());
                }
            }
            let result = builder
                .body(request.body.clone())
                .map_err(|e| e.to_string())
                .and_then(|r| self.agent.run(r).map_err(|e| e.to_string()));
            match result {
                Ok(mut resp) => {
                    let mut out = Response::new(resp.status().as_u16(), Vec::new());
                    for (name, value) in resp.headers() {
                        if forwardable(name.as_str()) {
                            out = out
                                .header(name.as_str(), String::from_utf8_lossy(value.as_bytes()));
                        }
                    }
                    out.body = resp
                        .body_mut()
                        .with_config()
                        .limit(1 << 30)
                        .read_to_vec()
                        .unwrap_or_default();
                    return out;
                }
                Err(e) => {
                    let refused = e.contains("refused");
                    let reset = e.contains("reset") || e.contains("closed") || e.contains("EOF");
                    let retry = refused || (reset && safe_to_resend);
                    if !retry || arrived.elapsed() >= self.opts.hold {
                        eprintln!("gap server: {method} {url}: {e}");
                        return self.page();
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

/// Creates or removes a control file (in `.deploy/`), durably.
pub fn set_flag(control: &Path, name: &str, on: bool) -> Result<()> {
    let path = control.join(name);
    if on {
        crate::sys::fsx::write_atomic(
            &path,
            format!("{}\n", crate::node::state::now()).as_bytes(),
            0o600,
        )
    } else {
        match std::fs::remove_file(&path) {
            Ok(()) => crate::sys::fsx::sync_dir(control),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GapMode::*;

    #[test]
    fn maintenance_always_gets_the_page() {
        assert_eq!(
            decide(Maintenance, "/", false, false, false),
            Decision::Page
        );
        assert_eq!(decide(Hold, "/", true, false, false), Decision::Page);
        assert_eq!(
            decide(Hold, "/__deploy/maintenance", false, false, false),
            Decision::Page
        );
    }

    #[test]
    fn hold_waits_during_the_gap_then_forwards_or_gives_up() {
        assert_eq!(decide(Hold, "/x", false, true, false), Decision::Wait);
        assert_eq!(decide(Hold, "/x", false, false, false), Decision::Forward);
        assert_eq!(decide(Hold, "/x", false, true, true), Decision::Page);
        // Past `hold` but the gap is over: still forwarded.
        assert_eq!(decide(Hold, "/x", false, false, true), Decision::Forward);
    }

    #[test]
    fn hop_by_hop_headers_stay() {
        assert!(forwardable("Host") && forwardable("Cookie") && forwardable("X-Forwarded-For"));
        assert!(
            !forwardable("Connection")
                && !forwardable("Transfer-Encoding")
                && !forwardable("content-length")
        );
    }
}
