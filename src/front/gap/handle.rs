//! One connection and its requests: bounded headers (size, count, time), bounded bodies (413
//! before reading when the length says so; the page when the server's budget for bodies is
//! spent), origin-form targets only, the page, held requests, and forwarding to the app with
//! 502 when the app's answer breaks off.

use super::budget::{self, Budget, Short};
use super::{Flags, Options, MAINTENANCE_PATH};
use crate::config::GapMode;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::timeout;

/// How long a request waits for the maintenance page during a release's gap.
const PAGE_PACE: Duration = Duration::from_millis(100);
/// The largest request body that is held and forwarded, and the largest answer passed back.
pub const MAX_BODY: usize = 64 << 20;
/// Headers: how long they may take to arrive, how many, how large in all.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEADERS: usize = 100;
const MAX_HEADER_BYTES: usize = 64 << 10;
/// How long a request body may take to arrive, and the app's answer.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(300);

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

/// Hop-by-hop headers, and those the transport sets itself.
pub fn forwardable(name: &str) -> bool {
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

/// A request target this server takes: a path (origin form), never another host.
fn origin_form(uri: &Uri) -> bool {
    uri.scheme().is_none() && uri.authority().is_none() && uri.path().starts_with('/')
}

type Answer = Response<Full<Bytes>>;

pub struct Server {
    opts: Options,
    page: Bytes,
    flags: watch::Receiver<Flags>,
    client: Client<HttpConnector, Full<Bytes>>,
    budget: Arc<Budget>,
}

impl Server {
    pub fn new(opts: Options, page: Bytes, flags: watch::Receiver<Flags>) -> Server {
        // No pooled connections: the app behind is another process after every release.
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build_http();
        Server {
            budget: Budget::new(opts.max_buffered),
            opts,
            page,
            flags,
            client,
        }
    }

    pub async fn connection(self: Arc<Self>, stream: tokio::net::TcpStream) {
        let me = self.clone();
        let service = hyper::service::service_fn(move |req| {
            let me = me.clone();
            async move { Ok::<_, std::convert::Infallible>(me.handle(req).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .max_headers(MAX_HEADERS)
            .max_buf_size(MAX_HEADER_BYTES)
            .serve_connection(TokioIo::new(stream), service)
            .await;
    }

    async fn handle(&self, req: Request<Incoming>) -> Answer {
        if !origin_form(req.uri()) {
            return plain(
                StatusCode::BAD_REQUEST,
                "the request target must be a path\n",
            );
        }
        let arrived = Instant::now();
        let mut flags = self.flags.clone();
        loop {
            let f = *flags.borrow_and_update();
            let held_out = arrived.elapsed() >= self.opts.hold;
            match decide(
                self.opts.mode,
                req.uri().path(),
                f.maintenance,
                f.gap,
                held_out,
            ) {
                Decision::Page => {
                    // In a release's gap, the page comes after a short pause: clients that
                    // retry at once would otherwise take the CPU the new release needs to
                    // start, and make the gap longer.
                    if self.opts.mode == GapMode::Maintenance && f.gap {
                        tokio::time::sleep(PAGE_PACE).await;
                    }
                    return self.page();
                }
                Decision::Wait => {
                    let left = self.opts.hold.saturating_sub(arrived.elapsed());
                    // Woken when a control file changes (or at the end of `hold`).
                    if let Ok(Err(_)) = timeout(left, flags.changed()).await {
                        // The watcher is gone (it never ends): wait out `hold` instead.
                        tokio::time::sleep(left).await;
                    }
                }
                Decision::Forward => return self.forward(req, arrived).await,
            }
        }
    }

    /// The maintenance page: 503 with `Retry-After`.
    pub fn page(&self) -> Answer {
        Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .header(
                header::RETRY_AFTER,
                self.opts.retry_after.as_secs().max(1).to_string(),
            )
            .header(header::CACHE_CONTROL, "no-store")
            .body(Full::new(self.page.clone()))
            .expect("a valid response")
    }

    /// Forwards a request to the app. A connection the app never accepted (refused, or reset by
    /// the port forwarder before the app listens) is tried again until `hold` is spent.
    async fn forward(&self, req: Request<Incoming>, arrived: Instant) -> Answer {
        let (parts, mut body) = req.into_parts();
        let collected = timeout(
            BODY_TIMEOUT,
            budget::collect(&self.budget, &mut body, MAX_BODY),
        );
        let body = match collected.await {
            Ok(Ok(b)) => b,
            Ok(Err(Short::TooLarge)) => {
                return plain(StatusCode::PAYLOAD_TOO_LARGE, "request too large\n")
            }
            Ok(Err(Short::OverBudget)) => {
                eprintln!(
                    "gap server: {} {}: no memory left for the body: the page",
                    parts.method,
                    parts.uri.path()
                );
                // A client waiting for `100 Continue` sends nothing more; others, the rest.
                if !parts.headers.contains_key(header::EXPECT) {
                    budget::drain(&mut body).await;
                }
                return self.page();
            }
            Ok(Err(Short::Broken)) => {
                return plain(StatusCode::BAD_REQUEST, "the request body broke off\n")
            }
            Err(_) => {
                return plain(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body was too slow\n",
                )
            }
        };
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let url = format!("{}{target}", self.opts.upstream.trim_end_matches('/'));
        let safe_to_resend = matches!(
            parts.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        );
        loop {
            let mut upstream = Request::builder().method(parts.method.clone()).uri(&url);
            for (name, value) in &parts.headers {
                if forwardable(name.as_str()) {
                    upstream = upstream.header(name, value);
                }
            }
            let Ok(upstream) = upstream.body(Full::new(body.clone())) else {
                return plain(StatusCode::BAD_REQUEST, "the request cannot be forwarded\n");
            };
            let error = match timeout(UPSTREAM_TIMEOUT, self.client.request(upstream)).await {
                Ok(Ok(answer)) => {
                    drop(body); // its memory is given back before the answer's is taken
                    return self.pass_back(answer, &parts.method).await;
                }
                Ok(Err(e)) => e,
                Err(_) => return plain(StatusCode::GATEWAY_TIMEOUT, "the app did not answer\n"),
            };
            let retry = error.is_connect() || safe_to_resend;
            if !retry || arrived.elapsed() >= self.opts.hold {
                eprintln!("gap server: {} {url}: {error}", parts.method);
                return self.page();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The app's answer, whole: one that breaks off (or outgrows [`MAX_BODY`]) is a 502, never
    /// a short answer with the app's status; one the budget has no room for is the page.
    async fn pass_back(&self, answer: Response<Incoming>, method: &Method) -> Answer {
        let (parts, mut body) = answer.into_parts();
        let collected = timeout(
            UPSTREAM_TIMEOUT,
            budget::collect(&self.budget, &mut body, MAX_BODY),
        );
        let body = match collected.await {
            Ok(Ok(b)) => b,
            Ok(Err(Short::OverBudget)) => {
                eprintln!("gap server: no memory left for the app's answer: the page");
                return self.page();
            }
            _ => {
                eprintln!("gap server: the app's answer broke off");
                return plain(StatusCode::BAD_GATEWAY, "the app's answer broke off\n");
            }
        };
        let mut out = Response::builder().status(parts.status);
        for (name, value) in &parts.headers {
            // A HEAD answer keeps the length the app gave (it has no body to count).
            if forwardable(name.as_str())
                || (*method == Method::HEAD && name == header::CONTENT_LENGTH)
            {
                out = out.header(name, value);
            }
        }
        out.body(Full::new(body))
            .unwrap_or_else(|_| plain(StatusCode::BAD_GATEWAY, "the app's answer is invalid\n"))
    }
}

fn plain(status: StatusCode, text: &'static str) -> Answer {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(text.as_bytes())))
        .expect("a valid response")
}

/// A connection over the limit: the page (503) and the connection closed, not a reset. What
/// the client sent is read (briefly) before the close, which would otherwise reset it.
pub async fn refuse(mut stream: tokio::net::TcpStream, server: Arc<Server>) {
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html; charset=utf-8\r\n\
         Retry-After: {}\r\nCache-Control: no-store\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        server.opts.retry_after.as_secs().max(1),
        server.page.len()
    );
    let _ = timeout(Duration::from_secs(2), async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&server.page).await?;
        stream.shutdown().await
    })
    .await;
    let mut sink = [0u8; 4096];
    let _ = timeout(Duration::from_secs(1), async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
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

    #[test]
    fn only_paths_are_targets() {
        assert!(origin_form(&"/a?b=c".parse().unwrap()));
        assert!(!origin_form(&"http://example.com/".parse().unwrap()));
        assert!(!origin_form(&"example.com:443".parse().unwrap()));
        assert!(!origin_form(&"*".parse().unwrap()));
    }
}
