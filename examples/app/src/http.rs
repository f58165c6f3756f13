//! The example app's small blocking HTTP/1.1 server: one thread per connection, keep-alive,
//! request bodies by `Content-Length`, responses always with `Content-Length`; parsing is
//! `httparse`'s. It stands for a user's app in the tests and the demo; deploy's own gap server,
//! which faces the internet, is built on hyper (src/front/gap/).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The largest request head (request line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// An idle keep-alive connection is closed after this.
const IDLE: Duration = Duration::from_secs(75);

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target, e.g. `/path?query`.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("/")
    }
    pub fn query(&self) -> &str {
        self.target.split_once('?').map(|(_, q)| q).unwrap_or("")
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

pub type Handler = dyn Fn(Request) -> Response + Send + Sync;

/// A running server: `stop()` makes it stop accepting; `wait()` waits for the connections that
/// are busy with a request to finish it.
pub struct Server {
    listener: TcpListener,
    stopping: Arc<AtomicBool>,
    /// Requests being answered.
    busy: Arc<AtomicUsize>,
    fresh: Fresh,
}

/// Connections accepted that have not sent a request yet, by number. At a stop, one whose
/// request has arrived (bytes wait in it) is answered; an idle one (a client's spare
/// connection) is closed at once instead of holding the stop until its client speaks.
type Fresh = Arc<std::sync::Mutex<std::collections::HashMap<u64, TcpStream>>>;

/// Whether bytes wait to be read on `stream`, without reading them or blocking.
fn has_input(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut byte = 0u8;
    // SAFETY: reads at most one byte into `byte`, which outlives the call.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n > 0
}

impl Server {
    pub fn bind(addr: impl ToSocketAddrs) -> std::io::Result<Server> {
        Ok(Server::on(TcpListener::bind(addr)?))
    }

    /// A server on a listener it was given (systemd socket activation: fd 3).
    pub fn on(listener: TcpListener) -> Server {
        Server {
            listener,
            stopping: Arc::new(AtomicBool::new(false)),
            busy: Arc::new(AtomicUsize::new(0)),
            fresh: Fresh::default(),
        }
    }

    /// A flag that stops the accept loop when set (checked at least every 50 ms).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stopping)
    }

    /// Serves until the stop flag is set; then waits for requests in progress to be answered.
    pub fn run(self, handler: Arc<Handler>) -> std::io::Result<()> {
        self.listener.set_nonblocking(true)?;
        let mut accepted = 0u64;
        while !self.stopping.load(Ordering::SeqCst) {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    let handler = Arc::clone(&handler);
                    let stopping = Arc::clone(&self.stopping);
                    let (busy, fresh) = (Arc::clone(&self.busy), Arc::clone(&self.fresh));
                    // Known from its accept: a stop right after it answers its request, if it
                    // has come, instead of dropping it unread.
                    accepted += 1;
                    let id = accepted;
                    if let Ok(clone) = stream.try_clone() {
                        fresh.lock().unwrap().insert(id, clone);
                    }
                    std::thread::spawn(move || {
                        let _ = connection(stream, &*handler, &stopping, (&busy, &fresh, id));
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and the like: back off, keep serving.
                    eprintln!("accept: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        drop(self.listener);
        loop {
            let waiting = {
                let mut fresh = self.fresh.lock().unwrap();
                // An idle one is shut down (its thread then ends); one with input stays.
                fresh.retain(|_, s| {
                    has_input(s) || {
                        let _ = s.shutdown(std::net::Shutdown::Both);
                        false
                    }
                });
                fresh.len()
            };
            if waiting == 0 && self.busy.load(Ordering::SeqCst) == 0 {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn connection(
    stream: TcpStream,
    handler: &Handler,
    stopping: &AtomicBool,
    (busy, fresh, id): (&AtomicUsize, &Fresh, u64),
) -> std::io::Result<()> {
    /// This connection among the fresh ones until its first request is read (or it ends).
    struct Accepted<'a>(&'a Fresh, u64);
    impl Accepted<'_> {
        fn release(&self) {
            self.0.lock().unwrap().remove(&self.1);
        }
    }
    impl Drop for Accepted<'_> {
        fn drop(&mut self) {
            self.release();
        }
    }
    let accepted = Accepted(fresh, id);
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IDLE))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let Some(head) = read_head(&mut reader)? else {
            return Ok(());
        };
        busy.fetch_add(1, Ordering::SeqCst);
        accepted.release();
        let result = (|| -> std::io::Result<bool> {
            let (mut request, version_minor) = match parse_head(&head) {
                Ok(r) => r,
                Err(status) => {
                    write_response(&mut writer, &Response::new(status, "bad request\n"), false)?;
                    return Ok(false);
                }
            };
            if request
                .header("transfer-encoding")
                .is_some_and(|v| !v.eq_ignore_ascii_case("identity"))
            {
                let r = Response::new(411, "chunked request bodies are not supported\n");
                write_response(&mut writer, &r, false)?;
                return Ok(false);
            }
            let len: usize = request
                .header("content-length")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            reader.read_exact(&mut body)?;
            request.body = body;
            let connection = request.header("connection").map(|v| v.to_ascii_lowercase());
            let keep_alive = match version_minor {
                0 => connection.as_deref() == Some("keep-alive"),
                _ => connection.as_deref() != Some("close"),
            };
            let response = handler(request);
            let keep_alive = keep_alive && !stopping.load(Ordering::SeqCst);
            write_response(&mut writer, &response, keep_alive)?;
            Ok(keep_alive)
        })();
        busy.fetch_sub(1, Ordering::SeqCst);
        if !result? {
            return Ok(());
        }
    }
}

/// Reads up to and including the blank line that ends a request head; None at a clean EOF.
fn read_head(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let n = reader.read_until(b'\n', &mut head)?;
        if n == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            };
        }
        if head == b"\r\n" || head == b"\n" {
            head.clear(); // tolerate blank lines between requests
            continue;
        }
        if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
            return Ok(Some(head));
        }
        if head.len() > MAX_HEAD {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
}

/// Parses a request head. Pure.
pub fn parse_head(head: &[u8]) -> Result<(Request, u8), u16> {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(400),
    }
    let request = Request {
        method: req.method.unwrap_or("GET").to_string(),
        target: req.path.unwrap_or("/").to_string(),
        headers: req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: Vec::new(),
    };
    Ok((request, req.version.unwrap_or(1)))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        411 => "Length Required",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// The bytes of a response head. Pure.
pub fn response_head(response: &Response, keep_alive: bool) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        if !name.eq_ignore_ascii_case("content-length") && !name.eq_ignore_ascii_case("connection")
        {
            head += &format!("{name}: {value}\r\n");
        }
    }
    head += &format!("Content-Length: {}\r\n", response.body.len());
    head += if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    };
    head.into_bytes()
}

fn write_response(w: &mut TcpStream, response: &Response, keep_alive: bool) -> std::io::Result<()> {
    let mut out = response_head(response, keep_alive);
    out.extend_from_slice(&response.body);
    w.write_all(&out)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_request_head() {
        let (r, minor) =
            parse_head(b"POST /x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n").unwrap();
        assert_eq!(
            (r.method.as_str(), r.path(), r.query(), minor),
            ("POST", "/x", "y=1", 1)
        );
        assert_eq!(r.header("content-length"), Some("3"));
        assert_eq!(parse_head(b"garbage\r\n\r\n").unwrap_err(), 400);
    }

    #[test]
    fn response_head_has_length_and_connection() {
        let r = Response::new(503, "page")
            .header("Retry-After", "5")
            .header("Content-Length", "99");
        let head = String::from_utf8(response_head(&r, true)).unwrap();
        assert_eq!(
            head,
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Length: 4\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn a_stop_answers_a_request_that_came_and_does_not_wait_for_an_idle_connection() {
        let server = Server::bind("127.0.0.1:0").unwrap();
        let addr = server.listener.local_addr().unwrap();
        let (stop, fresh, busy) = (
            server.stop_flag(),
            Arc::clone(&server.fresh),
            Arc::clone(&server.busy),
        );
        // Every request takes 300 ms: a stop comes while one is read but not answered.
        let t = std::thread::spawn(move || {
            server
                .run(Arc::new(|_: Request| {
                    std::thread::sleep(Duration::from_millis(300));
                    Response::new(200, "late")
                }))
                .unwrap()
        });
        let _idle = TcpStream::connect(addr).unwrap();
        let mut asking = TcpStream::connect(addr).unwrap();
        asking
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let t0 = std::time::Instant::now();
        // Both accepted: the asking one read (busy in its handler), the idle one not (fresh).
        while fresh.lock().unwrap().len() != 1 || busy.load(Ordering::SeqCst) != 1 {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "both accepted, one read"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        stop.store(true, Ordering::SeqCst);
        let mut answer = String::new();
        asking.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("late"),
            "{answer:?}"
        );
        t.join().unwrap();
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "the idle one held the stop"
        );
    }

    #[test]
    fn serves_bursts_of_new_connections_and_keep_alive() {
        let server = Server::bind("127.0.0.1:0").unwrap();
        let addr = server.listener.local_addr().unwrap();
        let stop = server.stop_flag();
        let t = std::thread::spawn(move || {
            server
                .run(Arc::new(|r: Request| Response::new(200, r.target.clone())))
                .unwrap()
        });
        let clients: Vec<_> = (0..32)
            .map(|i| {
                std::thread::spawn(move || {
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut reader = BufReader::new(s.try_clone().unwrap());
                    for j in 0..20 {
                        write!(s, "GET /{i}/{j} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                        let mut status = String::new();
                        reader.read_line(&mut status).unwrap();
                        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
                        let mut len = 0;
                        loop {
                            let mut line = String::new();
                            reader.read_line(&mut line).unwrap();
                            if line == "\r\n" {
                                break;
                            }
                            if let Some(v) = line.strip_prefix("Content-Length: ") {
                                len = v.trim().parse().unwrap();
                            }
                        }
                        let mut body = vec![0; len];
                        reader.read_exact(&mut body).unwrap();
                        assert_eq!(body, format!("/{i}/{j}").as_bytes());
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        stop.store(true, Ordering::SeqCst);
        t.join().unwrap();
    }
}
