//! `listen: socket` on a real node: systemd holds the app's port and hands it to each release.
//! Under steady load straight at the port (no proxy), releases, a rollback and a release that
//! fails its health check lose no request; an in-gap hook that writes runs with no process of
//! the app running, however many connections arrive.

mod common;
use common::{Options, Project};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn socket_project(app: &str, port: u16) -> Project {
    let p = Project::new(app, port, Options::default());
    p.add_to_config("listen: socket\n");
    p
}

/// Clients that each open a new connection per request, straight at the port, until stopped;
/// every answer's first line and body, or the error.
fn load(port: u16, clients: usize) -> (Arc<AtomicBool>, Vec<std::thread::JoinHandle<Vec<String>>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let threads = (0..clients)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let outcome = (|| -> std::io::Result<String> {
                        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
                        s.set_read_timeout(Some(Duration::from_secs(30)))?;
                        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
                        let mut out = String::new();
                        s.read_to_string(&mut out)?;
                        Ok(out)
                    })();
                    seen.push(match outcome {
                        Ok(text) if text.starts_with("HTTP/1.1 200") => text
                            .split("\r\n\r\n")
                            .nth(1)
                            .unwrap_or_default()
                            .to_string(),
                        Ok(text) => format!("answer: {}", text.lines().next().unwrap_or("(empty)")),
                        Err(e) => format!("error: {e}"),
                    });
                }
                seen
            })
        })
        .collect();
    (stop, threads)
}

/// Every request got an answer of the app (old or new release): no refusal, reset or timeout.
#[track_caller]
fn assert_all_answered(seen: &[String]) {
    let bad: Vec<&String> = seen
        .iter()
        .filter(|s| !s.starts_with("example-app v"))
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} failed: {:?}",
        bad.len(),
        seen.len(),
        &bad[..bad.len().min(5)]
    );
}

#[track_caller]
fn finish(load: (Arc<AtomicBool>, Vec<std::thread::JoinHandle<Vec<String>>>)) -> Vec<String> {
    load.0.store(true, Ordering::SeqCst);
    load.1.into_iter().flat_map(|t| t.join().unwrap()).collect()
}

#[test]
fn releases_a_rollback_and_a_failed_release_under_load_lose_no_request() {
    let p = socket_project("t-socket", 18360);
    p.deploy(&["setup"])
        .ok()
        .says(&format!("Writing {}", p.names().socket_unit()));
    p.deploy(&["release", "v1"]).ok();
    let running = load(p.port, 4);
    std::thread::sleep(Duration::from_millis(500));
    p.deploy(&["release", "v2"]).ok();
    p.deploy(&["release", "v3"]).ok();
    p.deploy(&["rollback"]).ok();
    p.write("assets/fail-health", "broken");
    let r = p.deploy(&["release", "v4"]).failed();
    assert_eq!(r.code, 5, "{}", r.stderr);
    r.says("v2 is serving again");
    std::thread::sleep(Duration::from_millis(500));
    let seen = finish(running);
    assert!(seen.len() > 50, "{} requests", seen.len());
    assert_all_answered(&seen);
    assert!(p.body("/").starts_with("example-app v2 "));
}

#[test]
fn a_writing_hook_runs_with_no_process_of_the_app_whatever_arrives() {
    let p = socket_project("t-sockhook", 18362);
    p.with_v1_live();
    p.add_to_config("hooks:\n  in_gap: [\"/app/example-app run-sql /app/assets/slow.sql\"]\n");
    p.write(
        "assets/slow.sql",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000000) \
         INSERT INTO hits (version) SELECT 'hook' FROM c WHERE x = 1;",
    );
    let running = load(p.port, 4);
    let release = p.deploy_cmd(&[], &["release", "v2"]).spawn().unwrap();
    // While the hook runs, connections keep arriving: none may start the app.
    let journal = p.root().join(".deploy/swap.journal");
    let container = p.names().container();
    let t = Instant::now();
    let (mut samples, mut in_hook) = (0, false);
    loop {
        let j = std::fs::read_to_string(&journal).unwrap_or_default();
        let began = j.contains("\"t\":\"begin\",\"step\":\"hook\"");
        let ended =
            j.contains("\"t\":\"done\",\"step\":\"hook\"") || j.contains("\"t\":\"failed\"");
        if began && !ended {
            in_hook = true;
            let names = p.user("podman", &["ps", "--format", "{{.Names}}"]).stdout;
            assert!(
                !names.lines().any(|n| n == container),
                "the app runs during the hook: {names}"
            );
            samples += 1;
        } else if in_hook || t.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Project::wait(release).ok();
    let seen = finish(running);
    assert!(samples >= 3, "sampled {samples} times during the hook");
    assert_all_answered(&seen);
    let db = p.root().join("shared/data/app.db");
    let hook_rows = p
        .user(
            "sqlite3",
            &[
                db.to_str().unwrap(),
                "SELECT COUNT(*) FROM hits WHERE version = 'hook'",
            ],
        )
        .ok();
    assert_eq!(
        hook_rows.stdout.trim(),
        "1",
        "the row the hook wrote is there"
    );
}

#[test]
fn a_live_app_moves_between_publish_and_socket_with_setup() {
    let p = Project::new("t-sockswitch", 18364, Options::default());
    p.with_v1_live();
    p.body("/");
    let socket = p.names().socket_unit();
    let active = |p: &Project| {
        p.user("systemctl", &["--user", "is-active", &socket])
            .stdout
            .trim()
            .to_string()
    };
    p.add_to_config("listen: socket\n");
    p.deploy(&["setup"])
        .ok()
        .says("Moving the app's port 18364 to its socket unit");
    assert_eq!(active(&p), "active");
    assert_eq!(
        p.body("/hits"),
        "1\n",
        "the same data, now through systemd's socket"
    );
    p.deploy(&["release", "v2"]).ok();
    let yaml = std::fs::read_to_string(p.dir.join("deploy.yaml")).unwrap();
    p.write("deploy.yaml", &yaml.replace("listen: socket\n", ""));
    p.deploy(&["setup"])
        .ok()
        .says("Moving the app's port 18364 to its container");
    assert_ne!(active(&p), "active");
    assert!(p.body("/").starts_with("example-app v2 "));
}
