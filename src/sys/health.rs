//! The health check: GET http://127.0.0.1:<port><path> until it answers 2xx or time runs out.

use anyhow::{bail, Result};
use std::time::{Duration, Instant};

pub fn url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

/// One probe: Ok(status) for any HTTP answer, Err for no answer.
pub fn probe(url: &str, timeout: Duration) -> Result<u16, String> {
    probe_once(url, timeout).map_err(|(_, e)| e)
}

/// One GET: the status, or whether there was no answer at all (nothing listens yet, or
/// podman's port forwarder closed the connection: the app is not there) rather than a slow one
/// (a timeout), and why.
fn probe_once(url: &str, timeout: Duration) -> Result<u16, (bool, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(timeout))
        .proxy(None)
        .build()
        .into();
    agent
        .get(url)
        .call()
        .map(|r| r.status().as_u16())
        .map_err(|e| {
            let no_answer = !matches!(&e, ureq::Error::Timeout(_));
            (no_answer, e.to_string())
        })
}

/// How long to wait before the next probe: while nothing listens (a refused connection costs
/// the app nothing) every few milliseconds, so its first answer is seen at once; once it
/// listens but is not ready, backing off to `interval`, so a slow app is not hammered. Pure.
pub fn next_pause(refused: bool, pause: Duration, interval: Duration) -> Duration {
    if refused {
        REFUSED_PAUSE.min(interval)
    } else {
        (pause * 2).min(interval)
    }
}

/// The pause between probes while the app's port refuses connections.
const REFUSED_PAUSE: Duration = Duration::from_millis(3);

/// Probes `url` until it answers 2xx, `timeout` at most; `alive` is asked between probes and
/// stops the wait early (the app exited). Returns how long it took.
pub fn wait_healthy(
    url: &str,
    timeout: Duration,
    interval: Duration,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<Duration> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(10).min(interval);
    let mut asked_alive = Instant::now();
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        let (refused, last) = match probe_once(
            url,
            left.clamp(Duration::from_millis(100), Duration::from_secs(5)),
        ) {
            Ok(s) if (200..300).contains(&s) => return Ok(start.elapsed()),
            Ok(s) => (false, format!("HTTP {s}")),
            Err(e) => e,
        };
        if start.elapsed() + pause > timeout {
            bail!("{url} did not answer 2xx within {timeout:?} (last: {last})");
        }
        // Whether the app still runs costs a D-Bus call: asked every 100 ms, not per probe.
        if asked_alive.elapsed() >= Duration::from_millis(100) {
            alive()?;
            asked_alive = Instant::now();
        }
        pause = next_pause(refused, pause, interval);
        std::thread::sleep(pause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn probes_are_dense_while_nothing_listens_and_back_off_once_it_does() {
        let i = Duration::from_millis(250);
        assert_eq!(
            next_pause(true, Duration::from_millis(80), i),
            REFUSED_PAUSE
        );
        assert_eq!(
            next_pause(false, Duration::from_millis(80), i),
            Duration::from_millis(160)
        );
        assert_eq!(next_pause(false, Duration::from_millis(200), i), i);
    }

    #[test]
    fn a_refused_connection_is_told_apart() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = probe_once(&url(port, "/"), Duration::from_secs(1)).unwrap_err();
        assert!(e.0, "{e:?}");
    }

    /// A server on a free port that answers every request with `answer`.
    fn server(answer: &'static str) -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                let mut buf = [0; 4096];
                let _ = c.read(&mut buf);
                let _ = c.write_all(answer.as_bytes());
            }
        });
        port
    }

    #[test]
    fn a_redirect_is_not_healthy() {
        let ok = server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        let redirect = Box::leak(
            format!(
                "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{ok}/\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n"
            )
            .into_boxed_str(),
        );
        let port = server(redirect);
        assert_eq!(
            probe(&url(port, "/healthz"), Duration::from_secs(2)),
            Ok(302)
        );
        let e = wait_healthy(
            &url(port, "/healthz"),
            Duration::from_millis(300),
            Duration::from_millis(100),
            || Ok(()),
        )
        .unwrap_err();
        assert!(format!("{e}").contains("HTTP 302"), "{e}");
        assert_eq!(probe(&url(ok, "/"), Duration::from_secs(2)), Ok(200));
    }
}
