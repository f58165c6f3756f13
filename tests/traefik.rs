//! Traefik in front, for real: a managed Traefik (user unit) shared by the tests, the gap server,
//! and releases under steady load through Traefik's entry point.

mod common;
use common::{traefik_section, Options, Project, TRAEFIK_API};
use std::time::Duration;

fn project(app: &str, port: u16, gap: &str, extra: &str, health_timeout: &'static str) -> Project {
    Project::new(
        app,
        port,
        Options {
            health_timeout,
            traefik: Some(traefik_section(app, gap, extra)),
            ..Options::default()
        },
    )
}

fn router_service(name: &str) -> Option<String> {
    let body = ureq::get(format!(
        "http://127.0.0.1:{TRAEFIK_API}/api/http/routers/{name}@file"
    ))
    .call()
    .ok()?
    .body_mut()
    .read_to_string()
    .ok()?;
    let start = body.find("\"service\":\"")? + 11;
    Some(body[start..start + body[start..].find('"')?].to_string())
}

#[test]
fn maintenance_mode_releases_under_load_answer_200_or_503_only() {
    let p = project(
        "t-front-maint",
        18201,
        "maintenance",
        "  maintenance_page: maintenance.html\n",
        "3s",
    );
    p.write("maintenance.html", "<h1>t-front-maint is upgrading</h1>\n");
    let legacy = a_router_under_the_old_name();
    // v1's stop waits long enough for the slow request below, even on a busy machine (a
    // release stops with its own stop timeout).
    let config = std::fs::read_to_string(p.dir.join("deploy.yaml")).unwrap();
    assert!(config.contains("  stop_timeout: 5s\n"), "{config}");
    p.write(
        "deploy.yaml",
        &config.replace("  stop_timeout: 5s\n", "  stop_timeout: 15s\n"),
    );
    p.deploy(&["setup"]).ok();
    assert!(!legacy.exists(), "setup removes the router of the old name");
    assert_eq!(
        router_service(&p.names().router()).as_deref(),
        Some(p.names().router().as_str()),
        "the router is live after setup"
    );
    p.deploy(&["release", "v1"]).ok();
    let (status, _, body) = p.get_front("/").unwrap();
    assert_eq!(
        (status, body.starts_with("example-app v1 ")),
        (200, true),
        "{body}"
    );

    // A slow request in flight when the release's gap begins finishes on the old release: the
    // release pauses after its build (the test hook), the request is sent then, and the stop
    // waits for it.
    let load = p.load(4);
    a_slow_request_in_the_gap_finishes_on_v1(&p);
    // A release that fails its health check is put back behind the same protection.
    p.write("assets/fail-health", "");
    p.deploy(&["release", "v3"]).failed();
    p.remove("assets/fail-health");
    std::thread::sleep(Duration::from_millis(300));
    let s = load.finish();
    assert!(
        s.other.is_empty(),
        "only 200 or 503 through Traefik, got {:?}",
        &s.other[..s.other.len().min(10)]
    );
    assert!(s.ok > 50 && s.maintenance > 0, "{s:?}");

    let (status, _, body) = p.get_front("/").unwrap();
    assert!(
        status == 200 && body.starts_with("example-app v2 "),
        "{status} {body}"
    );

    maintenance_on_keeps_the_page_up_through_a_release(&p);
}

/// The file of a router of the app under its old name.
#[track_caller]
fn a_router_under_the_old_name() -> std::path::PathBuf {
    // A router left by an earlier deploy under the old name, with the same rule: it would take
    // part of the traffic to the app straight, gap or not.
    let dynamic = common::node().home.join(".config/traefik/dynamic");
    let legacy = dynamic.join("t-front-maint-test.yaml");
    std::fs::write(
        &legacy,
        "# Written by deploy for t-front-maint (test). Do not edit.\nhttp:\n  routers:\n    \
         t-front-maint-test:\n      rule: Host(`t-front-maint.test`)\n      service: \
         t-front-maint-test\n  services:\n    t-front-maint-test:\n      loadBalancer:\n        \
         servers:\n          - url: \"http://127.0.0.1:18201\"\n",
    )
    .unwrap();
    legacy
}

/// v2's release, paused after its build, with a slow request sent then: it finishes on v1, after
/// the stop began.
#[track_caller]
fn a_slow_request_in_the_gap_finishes_on_v1(p: &Project) {
    let release = p
        .deploy_cmd(
            &[("DEPLOY_TEST_HOOK", "sleep@after-build")],
            &["release", "v2"],
        )
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while !p.image_exists("v2") {
        assert!(t.elapsed() < Duration::from_secs(60), "v2 was never built");
        std::thread::sleep(Duration::from_millis(20));
    }
    let slow = {
        let app = p.app.clone();
        std::thread::spawn(move || {
            let answer = ureq::get(format!(
                "http://127.0.0.1:{}/slow?ms=8000",
                common::TRAEFIK_WEB
            ))
            .header("Host", format!("{app}.test"))
            .call()
            .map(|mut r| {
                (
                    r.status().as_u16(),
                    r.body_mut().read_to_string().unwrap_or_default(),
                )
            });
            (answer, std::time::Instant::now())
        })
    };
    p.wait_for_journal("begin", "stop");
    let stop_began = std::time::Instant::now();
    Project::wait(release).ok();
    let (answer, answered_at) = slow.join().unwrap();
    let (status, body) = answer.expect("the slow request got an answer");
    assert_eq!(
        (status, body.as_str()),
        (200, "example-app v1 slept 8000ms\n")
    );
    assert!(
        answered_at > stop_began,
        "the slow request ended before the stop began: it proves nothing"
    );
}

#[track_caller]
fn maintenance_on_keeps_the_page_up_through_a_release(p: &Project) {
    // Maintenance on: everyone gets the custom page with 503 and Retry-After.
    p.deploy(&["maintenance", "on"]).ok();
    let (status, retry_after, body) = p.get_front("/any/path").unwrap();
    assert_eq!(status, 503);
    assert_eq!(retry_after.as_deref(), Some("5"));
    assert_eq!(body, "<h1>t-front-maint is upgrading</h1>\n");
    hostile_load_leaves_the_page_up(p);
    // A release during maintenance keeps the page up.
    let r = p.deploy(&["release", "v4"]).ok();
    r.says("maintenance is on");
    assert_eq!(p.get_front("/").unwrap().0, 503);
    assert!(
        p.body("/").starts_with("example-app v4 "),
        "the new release runs behind the page"
    );
    p.deploy(&["maintenance", "off"]).ok();
    let (status, _, body) = p.get_front("/").unwrap();
    assert!(
        status == 200 && body.starts_with("example-app v4 "),
        "{status} {body}"
    );
}

#[test]
fn hold_mode_releases_under_load_answer_200_only() {
    let p = project("t-front-hold", 18203, "hold", "", "20s");
    p.with_v1_live();
    let load = p.load(4);
    std::thread::sleep(Duration::from_millis(300));
    p.deploy(&["release", "v2"]).ok();
    p.deploy(&["rollback"]).ok();
    std::thread::sleep(Duration::from_millis(300));
    let s = load.finish();
    assert!(
        s.other.is_empty() && s.maintenance == 0,
        "every request answered 200 in hold mode: {} maintenance, others {:?}",
        s.maintenance,
        &s.other[..s.other.len().min(10)]
    );
    assert!(s.ok > 50, "{s:?}");
    assert!(p.get_front("/").unwrap().2.starts_with("example-app v1 "));
}

#[test]
fn traefik_down_means_the_app_is_not_stopped() {
    let p = project("t-front-down", 18205, "maintenance", "", "20s");
    p.with_v1_live();
    // A gap server that does not answer: the router is not switched to it, the app not stopped.
    let gap = p.names().gap_unit();
    p.user("systemctl", &["--user", "stop", &gap]).ok();
    let r = p.deploy(&["release", "v1b"]).failed();
    r.says(&format!("the gap server ({gap}) does not answer"));
    r.says("the app was not stopped");
    assert!(!r.stderr.contains("Stopping"), "{}", r.stderr);
    assert!(p.get_front("/").unwrap().2.starts_with("example-app v1 "));
    p.deploy(&["setup"]).ok();
    // The config now names an API where no Traefik answers (and no longer manages Traefik,
    // which would move the Traefik the other tests share).
    let yaml = std::fs::read_to_string(p.dir.join("deploy.yaml")).unwrap();
    let unmanaged = &yaml[..yaml.find("  manage:").expect("a manage section")];
    p.write(
        "deploy.yaml",
        &unmanaged.replace(&format!("127.0.0.1:{TRAEFIK_API}"), "127.0.0.1:18298"),
    );
    let r = p.deploy(&["release", "v2"]).failed();
    r.says("Traefik's API does not answer at http://127.0.0.1:18298");
    r.says("the app was not stopped");
    r.says("or pass --unprotected");
    assert!(!r.stderr.contains("Stopping"), "{}", r.stderr);
    assert_eq!(p.current().as_deref(), Some("v1"));
    assert!(p.body("/").starts_with("example-app v1 "));

    // --unprotected goes on without the gap protection, and leaves Traefik's file routing to the app
    // (what Traefik reads when it comes back), not to the gap server.
    let r = p.deploy(&["release", "v2", "--unprotected"]).ok();
    r.says("going on without Traefik's gap protection");
    assert_eq!(p.current().as_deref(), Some("v2"));
    assert!(p.body("/").starts_with("example-app v2 "));
    let dynamic = std::fs::read_to_string(
        common::node()
            .home
            .join(".config/traefik/dynamic")
            .join(p.names().dynamic_file()),
    )
    .unwrap();
    assert!(
        dynamic.contains(&format!("service: {}\n", p.names().router())),
        "{dynamic}"
    );
    let r = p.deploy(&["setup"]).failed();
    r.says("is Traefik running");
}

#[test]
fn setup_says_when_traefik_does_not_watch_the_directory() {
    // A running Traefik (the shared one), but a dynamic_dir it does not watch, and no manage.
    let p = Project::new(
        "t-front-nowatch",
        18207,
        Options {
            traefik: Some(format!(
                "traefik:\n  api: http://127.0.0.1:{TRAEFIK_API}\n  rule: Host(`t-front-nowatch.test`)\n  \
                 dynamic_dir: ~/tests/t-front-nowatch-dynamic\n"
            )),
            ..Options::default()
        },
    );
    // The shared Traefik must be up: another project's setup starts it.
    let q = project("t-front-starter", 18209, "maintenance", "", "20s");
    q.deploy(&["setup"]).ok();
    let r = p.deploy(&["setup"]).failed();
    r.says(&format!(
        "has not loaded the router {}@file",
        p.names().router()
    ));
    r.says("is its file provider watching that directory");
}

/// The gap server's pid, from its unit.
fn gap_pid(p: &Project) -> String {
    p.user(
        "systemctl",
        &[
            "--user",
            "show",
            "-p",
            "MainPID",
            "--value",
            &p.names().gap_unit(),
        ],
    )
    .stdout
    .trim()
    .to_string()
}

/// Through Traefik, while maintenance is on: a terabyte Content-Length and 2000 requests
/// whose bodies never come leave the gap server up, and ordinary clients get the page.
fn hostile_load_leaves_the_page_up(p: &Project) {
    use std::io::{Read, Write};
    common::many_files();
    let before = gap_pid(p);
    let host = format!("{}.test", p.app);
    let connect = || std::net::TcpStream::connect(("127.0.0.1", common::TRAEFIK_WEB)).unwrap();
    let mut huge = connect();
    huge.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        huge,
        "POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000000000000\r\n\r\nabc"
    )
    .unwrap();
    let mut held: Vec<std::net::TcpStream> = Vec::new();
    for _ in 0..2000 {
        let mut s = connect();
        let _ = write!(
            s,
            "POST /slow HTTP/1.1\r\nHost: {host}\r\nContent-Length: 10\r\n\r\n"
        );
        held.push(s);
    }
    let mut answer = [0u8; 12];
    let _ = huge.read(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 2"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    for _ in 0..20 {
        let (status, _, body) = p.get_front("/ordinary").unwrap();
        assert_eq!(status, 503, "{body}");
        assert_eq!(body, "<h1>t-front-maint is upgrading</h1>\n");
    }
    drop(held);
    assert_eq!(gap_pid(p), before, "the gap server never restarted");
}

/// The `traefik:` section removed: a release refuses and says to run setup; setup takes the
/// gap server's unit and the app's router away; the release after it goes on without Traefik.
#[test]
fn a_traefik_section_removed_is_applied_by_setup_and_the_next_release_goes_on() {
    let app = "t-front-gone";
    let p = project(app, 18216, "hold", "", "30s");
    p.deploy(&["setup"]).ok();
    p.deploy(&["release", "v1"]).ok();
    let home = &common::node().home;
    let gap = home.join(".config/systemd/user").join(p.names().gap_unit());
    let router = home
        .join(".config/traefik/dynamic")
        .join(p.names().dynamic_file());
    assert!(gap.exists() && router.exists(), "set up with its front");
    let config = std::fs::read_to_string(p.dir.join("deploy.yaml")).unwrap();
    let section = traefik_section(app, "hold", "");
    assert!(config.contains(&section), "{config}");
    p.write("deploy.yaml", &config.replace(&section, ""));
    p.deploy(&["release", "v2"])
        .failed()
        .says("traefik was removed: run `deploy setup");
    p.deploy(&["setup", "--dry-run"]).ok().prints(&format!(
        "removed (no `traefik:` section any more): {}, {}",
        gap.display(),
        router.display()
    ));
    assert!(
        gap.exists() && router.exists(),
        "the dry run changed nothing"
    );
    p.deploy(&["setup"]).ok().says(&format!(
        "Removing {} and the app's router (no `traefik:` section any more)",
        p.names().gap_unit()
    ));
    assert!(!gap.exists(), "the gap server's unit is gone");
    assert!(!router.exists(), "the app's router is gone");
    let t = std::time::Instant::now();
    while router_service(&p.names().router()).is_some() {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "Traefik still routes to the app"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    p.deploy(&["release", "v2"]).ok();
    assert_eq!(p.current().as_deref(), Some("v2"));
}
