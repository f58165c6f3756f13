//! The gap server (`deploy gap-server`) straight at its port, as anyone on the internet could
//! reach it while Traefik routes to it: hostile requests get bounded answers, idle and slow
//! connections do not stop it serving others, the connection limit answers with the page (and a
//! flood beyond it costs nothing), held requests are woken by the control file, the bodies kept
//! in memory have a total, and it sleeps while idle. No node is needed.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PAGE: &str = "<h1>back soon</h1>\n";

struct Gap {
    child: Child,
    port: u16,
    control: PathBuf,
}

impl Drop for Gap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.control);
    }
}

#[track_caller]
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a gap server in `mode` in front of `upstream`, and waits until it answers.
fn gap(name: &str, mode: &str, hold: &str, upstream: u16, extra: &[&str]) -> Gap {
    let control = std::env::temp_dir().join(format!("deploy-gap-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&control);
    std::fs::create_dir_all(&control).unwrap();
    std::fs::write(control.join("page.html"), PAGE).unwrap();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_deploy"))
        .args(["gap-server", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--mode", mode, "--hold", hold, "--retry-after", "5s"])
        .args(["--upstream", &format!("http://127.0.0.1:{upstream}")])
        .arg("--control")
        .arg(&control)
        .arg("--page")
        .arg(control.join("page.html"))
        .args(extra)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let g = Gap {
        child,
        port,
        control,
    };
    let t = Instant::now();
    while !raw(
        port,
        b"GET /__deploy/maintenance HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .starts_with("HTTP/1.1 503")
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the gap server answers"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    g
}

/// Sends bytes, reads the answer until the server closes (or 5 s pass).
fn raw(port: u16, request: &[u8]) -> String {
    raw_within(port, request, Duration::from_secs(5))
}

/// [`raw`], waiting at most `wait` between reads (a kept-alive connection stays open).
#[track_caller]
fn raw_within(port: u16, request: &[u8], wait: Duration) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    s.set_read_timeout(Some(wait)).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn get(port: u16, path: &str) -> String {
    raw(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// An app for the gap server to forward to: answers `answer` to everything, and records the
/// request lines it got.
fn app(answer: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let log = log.clone();
            std::thread::spawn(move || {
                c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut buf = vec![0u8; 1 << 16];
                let n = c.read(&mut buf).unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                log.lock()
                    .unwrap()
                    .push(text.lines().next().unwrap_or_default().to_string());
                let _ = c.write_all(answer.as_bytes());
            });
        }
    });
    (port, seen)
}

/// An app that reads each request whole (by its Content-Length) and answers how many body bytes
/// it got.
fn counting_app(l: std::net::TcpListener) {
    use std::io::BufRead;
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut c = std::io::BufReader::new(c);
                let mut length = 0;
                let mut line = String::new();
                while c.read_line(&mut line).is_ok_and(|n| n > 2) {
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0u8; length];
                let got = if c.read_exact(&mut body).is_ok() {
                    length
                } else {
                    0
                };
                let text = format!("{got}\n");
                let _ = c.get_mut().write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                        text.len()
                    )
                    .as_bytes(),
                );
            });
        }
    });
}

/// POSTs a body of `size` bytes; the answer, and how long it took to come.
#[track_caller]
fn post(port: u16, size: usize) -> (String, Duration) {
    let t = Instant::now();
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (String::new(), t.elapsed());
    };
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(&vec![b'u'; size]);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (String::from_utf8_lossy(&out).into_owned(), t.elapsed())
}

/// The file descriptors a process has open: one for each connection it holds.
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[track_caller]
fn status_of(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n";

#[test]
fn hostile_requests_get_bounded_answers_and_the_server_stays_up() {
    let (upstream, seen) = app(OK);
    let g = gap("hostile", "hold", "5s", upstream, &[]);
    let pid = g.child.id();

    // A Content-Length of a terabyte: 413 at once, nothing allocated for it.
    let t = Instant::now();
    let r = raw(
        g.port,
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\nabc",
    );
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    assert!(t.elapsed() < Duration::from_secs(3));

    // An invalid Content-Length is refused, and what follows is never read as a request.
    let r = raw(
        g.port,
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5x\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");

    // Only paths: an absolute target would make it fetch another host.
    let r = get(g.port, "http://example.com/");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");

    // A 200 MiB header line: 431 after at most 64 KiB; the process stays small.
    let mut s = TcpStream::connect(("127.0.0.1", g.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(b"GET / HTTP/1.1\r\nX-Big: ");
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..200 {
        if s.write_all(&chunk).is_err() {
            break;
        }
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    assert!(
        status_of(pid, "VmRSS") < 64 * 1024,
        "RSS {} kB",
        status_of(pid, "VmRSS")
    );

    // Still up, still forwarding, and the app saw only what it should.
    let r = get(g.port, "/fine");
    assert!(
        r.starts_with("HTTP/1.1 200") && r.ends_with("hello\n"),
        "{r}"
    );
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .all(|l| !l.contains("smuggled") && !l.contains("example.com")),
        "{seen:?}"
    );
    assert!(seen.iter().any(|l| l.starts_with("GET /fine ")), "{seen:?}");
}

#[test]
fn maintenance_answers_the_page_whatever_the_request() {
    let (upstream, _) = app(OK);
    let g = gap("maint", "maintenance", "5s", upstream, &[]);
    for request in [
        &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\nConnection: close\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ] {
        let r = raw(g.port, request);
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(r.contains("retry-after: 5") && r.ends_with(PAGE), "{r}");
    }
    // HEAD: the page's length, no body.
    let r = raw(
        g.port,
        b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        r.contains(&format!("content-length: {}", PAGE.len())),
        "{r}"
    );
    assert!(!r.contains("back soon"), "{r}");
}

#[test]
fn an_answer_from_the_app_that_breaks_off_is_a_502() {
    let (upstream, _) = app("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this");
    let g = gap("broken", "hold", "5s", upstream, &[]);
    let r = get(g.port, "/");
    assert!(r.starts_with("HTTP/1.1 502"), "{r}");
    let (upstream, _) =
        app("HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n");
    let g = gap("head", "hold", "5s", upstream, &[]);
    let r = raw(
        g.port,
        b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        r.contains("content-length: 6"),
        "the app's length, not 0: {r}"
    );
}

#[test]
fn idle_connections_and_a_slow_client_leave_it_serving_others() {
    common::many_files();
    let (upstream, _) = app(OK);
    let g = gap("idle", "hold", "5s", upstream, &[]);
    let idle: Vec<TcpStream> = (0..2000)
        .map(|_| TcpStream::connect(("127.0.0.1", g.port)).unwrap())
        .collect();
    // Slowloris: a header a byte at a time.
    let port = g.port;
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        for b in b"GET / HTTP/1.1\r\nX-Slow: "
            .iter()
            .chain(b"a".repeat(200).iter())
        {
            if s.write_all(&[*b]).is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    });
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..20 {
        let t = Instant::now();
        let r = get(g.port, "/");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
    let threads = status_of(g.child.id(), "Threads");
    assert!(threads <= 4, "{threads} threads for 2000 connections");
    assert!(
        slow.join().unwrap(),
        "the slow client was cut off by the header deadline"
    );
    drop(idle);
}

#[test]
fn at_the_connection_limit_new_clients_get_the_page_not_a_reset() {
    let (upstream, _) = app(OK);
    let g = gap(
        "limit",
        "hold",
        "5s",
        upstream,
        &["--max-connections", "20"],
    );
    let idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(("127.0.0.1", g.port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let r = get(g.port, "/");
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    assert!(r.ends_with(PAGE), "{r}");
    drop(idle);
}

#[test]
fn a_flood_over_the_limit_is_closed_at_once_beyond_the_few_turned_away() {
    common::many_files();
    let (upstream, _) = app(OK);
    let limits = ["--max-connections", "4", "--max-turned-away", "4"];
    let g = gap("flood", "hold", "5s", upstream, &limits);
    let pid = g.child.id();
    let before = open_files(pid);
    let idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(("127.0.0.1", g.port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // Clients that send nothing and never close: each one turned away holds its task (the page,
    // then up to a second for the client to close).
    let flood: Vec<TcpStream> = (0..500)
        .map(|_| TcpStream::connect(("127.0.0.1", g.port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let held = open_files(pid).saturating_sub(before);
    let mut pages = 0;
    for mut s in flood {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let out = String::from_utf8_lossy(&out);
        assert!(out.is_empty() || out.ends_with(PAGE), "{out}");
        pages += usize::from(!out.is_empty());
    }
    assert!(
        held <= 4 + 4 + 4,
        "{held} connections held for 4 served and 4 turned away"
    );
    assert!((1..=64).contains(&pages), "{pages} of 500 got the page");

    // Served again once the idle connections go.
    drop(idle);
    let t = Instant::now();
    loop {
        let r = get(g.port, "/after");
        if r.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{r}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn in_hold_mode_bodies_beyond_the_total_get_the_page_at_once() {
    // The app is down: a request's body is kept while the app is waited for.
    let upstream = free_port();
    let g = gap(
        "budget",
        "hold",
        "15s",
        upstream,
        &["--max-buffered", "10485760"],
    );
    let pid = g.child.id();
    const BODY: usize = 4 << 20;
    // 8 bodies of 4 MiB against 10 MiB in all: 2 kept, 6 turned away.
    let (tx, rx) = std::sync::mpsc::channel();
    let port = g.port;
    for _ in 0..8 {
        let tx = tx.clone();
        std::thread::spawn(move || tx.send(post(port, BODY)));
    }
    for _ in 0..6 {
        let (r, took) = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the requests beyond the total are answered at once");
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(r.contains("retry-after: 5") && r.ends_with(PAGE), "{r}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }
    let rss = status_of(pid, "VmRSS");
    assert!(rss < 32 * 1024, "RSS {rss} kB with 10 MiB of bodies kept");
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "the 2 kept wait for the app"
    );

    // The app comes up: the 2 kept are forwarded whole.
    counting_app(std::net::TcpListener::bind(("127.0.0.1", upstream)).unwrap());
    for _ in 0..2 {
        let (r, _) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(
            r.starts_with("HTTP/1.1 200") && r.ends_with("\r\n4194304\n"),
            "{r}"
        );
    }
    // Their bytes were given back: a body of 8 MiB fits again.
    let (r, _) = post(g.port, 8 << 20);
    assert!(
        r.starts_with("HTTP/1.1 200") && r.ends_with("\r\n8388608\n"),
        "{r}"
    );
}

#[test]
fn held_requests_wake_on_the_control_file_and_idle_costs_nothing() {
    let (upstream, _) = app(OK);
    let g = gap("held", "hold", "10s", upstream, &[]);
    let pid = g.child.id();
    // Idle: asleep in the kernel, no polling.
    std::thread::sleep(Duration::from_millis(300));
    let before =
        status_of(pid, "voluntary_ctxt_switches") + status_of(pid, "nonvoluntary_ctxt_switches");
    std::thread::sleep(Duration::from_secs(2));
    let after =
        status_of(pid, "voluntary_ctxt_switches") + status_of(pid, "nonvoluntary_ctxt_switches");
    assert!(
        after - before <= 4,
        "{} wake-ups in 2 s of idle",
        after - before
    );

    // In the gap a request waits, and is answered as soon as the gap file goes.
    std::fs::write(g.control.join("gap"), "now\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let port = g.port;
    let held = std::thread::spawn(move || (get(port, "/held"), Instant::now()));
    std::thread::sleep(Duration::from_millis(800));
    let waiting = status_of(pid, "voluntary_ctxt_switches");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        status_of(pid, "voluntary_ctxt_switches") - waiting <= 4,
        "a held request does not poll"
    );
    // Still waiting, 1.3 s into the gap: an answer at once would pass the timing below.
    assert!(
        !held.is_finished(),
        "the request was answered during the gap"
    );
    let removed = Instant::now();
    std::fs::remove_file(g.control.join("gap")).unwrap();
    let (answer, at) = held.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        at.duration_since(removed) < Duration::from_millis(300),
        "{:?}",
        at.duration_since(removed)
    );
}

#[test]
fn random_requests_never_bring_it_down() {
    let (upstream, _) = app(OK);
    let g = gap("fuzz", "hold", "2s", upstream, &[]);
    let seeds: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"HEAD /h?x=1 HTTP/1.0\r\n\r\n",
    ];
    // xorshift: the same cases every run.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..300 {
        let mut req = seeds[i % seeds.len()].to_vec();
        for _ in 0..(next() % 6) {
            let at = (next() as usize) % req.len();
            match next() % 4 {
                0 => req[at] = next() as u8,
                1 => {
                    req.insert(at, b"\r\n:0-9 \x00"[(next() % 8) as usize]);
                }
                2 => {
                    req.remove(at);
                }
                _ => req
                    .splice(at..at, b"99999999999999999999".iter().copied())
                    .for_each(drop),
            }
        }
        let r = raw_within(g.port, &req, Duration::from_millis(150));
        assert!(
            r.is_empty() || r.starts_with("HTTP/1.1 ") || r.starts_with("HTTP/1.0 "),
            "case {i}: {:?} -> {r:?}",
            String::from_utf8_lossy(&req)
        );
    }
    let r = get(g.port, "/after");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}
