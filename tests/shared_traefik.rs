//! Several apps sharing the managed Traefik of a node user of their own ([`lone_user`]): a
//! restart of that Traefik (another app's setup changing its static config) waits until the
//! gap of an app's release, or of its own setup, has ended, and a load on that app loses no
//! request in the gap; `setup --dry-run` shows what changes and whom a restart touches;
//! removing one app leaves the other served, and removing the last stops Traefik; two ACME
//! accounts are two resolvers, both apps served. On a user of their own: these tests stop
//! that Traefik and count every failed request while it restarts, which no other test's
//! Traefik may suffer.

mod common;
use common::apps::{
    assert_served, record, refused, set_traefik, static_config, traefik_pid, traefik_section_at,
    unit_property,
};
use common::{lone_user, NodeUser, Options, Project, Run, Sample};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The lone user's Traefik: its API, and the entry point `web` the apps share.
const API: u16 = 19749;
const WEB: u16 = 19700;
/// The load's clients, each a new connection for each request.
const CLIENTS: usize = 4;

/// One test at a time: they share the lone user's Traefik.
static SERIAL: Mutex<()> = Mutex::new(());

/// The lone user as no earlier run left it: no unit, no record, no Traefik, no app directory.
fn fresh() -> MutexGuard<'static, ()> {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let u = lone_user();
    let units = u.home.join(".config/systemd/user");
    let user = |args: &[&str]| {
        u.command(Path::new(args[0]), &args[1..], Path::new("/"), &[])
            .output()
            .unwrap()
    };
    for entry in std::fs::read_dir(&units).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_file() {
            user(&["systemctl", "--user", "disable", "--now", &name]);
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    user(&["systemctl", "--user", "daemon-reload"]);
    user(&["systemctl", "--user", "reset-failed"]);
    user(&["podman", "rm", "--all", "--force", "--time", "0"]);
    for dir in ["tests", ".config/traefik", ".local/share/deploy"] {
        let _ = std::fs::remove_dir_all(u.home.join(dir));
    }
    serial
}

/// An app of the lone user managing its Traefik: `eps` its entry points, `router` those of its
/// router, `extra` more of its `traefik:` section.
fn app(name: &str, port: u16, eps: &[(&str, u16)], router: &[&str], extra: &str) -> Project {
    let section = traefik_section_at(API, name, eps, router) + extra;
    lone(name, port, Some(section))
}

fn lone(name: &str, port: u16, traefik: Option<String>) -> Project {
    Project::new(
        name,
        port,
        Options {
            traefik,
            user: Some(lone_user().clone()),
            ..Options::default()
        },
    )
}

/// `sleep@POINT` `n` times: the test hook pauses there 2n s.
fn pause(point: &str, n: usize) -> String {
    vec![format!("sleep@{point}"); n].join(",")
}

/// The flag an app's gap sets (`<path>/.deploy/gap`): on from when Traefik routes the app to
/// the gap server until the app serves again.
fn gap_flag(p: &Project) -> PathBuf {
    p.root().join(".deploy/gap")
}

#[track_caller]
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < Duration::from_secs(120), "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What a watch saw at one moment: Traefik's process, read first, then whether the app was in
/// its gap. A new process seen while the gap is on was started inside the gap.
struct Seen {
    at: Instant,
    pid: String,
    in_gap: bool,
}

/// Traefik's process and an app's gap, read together every few milliseconds.
struct Watch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Seen>>,
}

impl Watch {
    fn start(user: &NodeUser, flag: PathBuf) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let (user, stopped) = (user.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stopped.load(Ordering::SeqCst) {
                let pid = traefik_pid(&user);
                let in_gap = flag.exists();
                seen.push(Seen {
                    at: Instant::now(),
                    pid,
                    in_gap,
                });
                std::thread::sleep(Duration::from_millis(5));
            }
            seen
        });
        Watch { stop, thread }
    }

    fn finish(self) -> Vec<Seen> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// Traefik was restarted, and not before the app's gap ended. Returns when the gap was last
/// seen on.
#[track_caller]
fn assert_restarted_after_the_gap(seen: &[Seen]) -> Instant {
    let first = seen.first().expect("the watch saw something");
    assert!(first.in_gap, "the watch began inside the gap");
    let in_gap: Vec<&Seen> = seen.iter().filter(|s| s.in_gap).collect();
    let moved: Vec<&Seen> = in_gap
        .iter()
        .filter(|s| s.pid != first.pid)
        .copied()
        .collect();
    assert!(
        moved.is_empty(),
        "Traefik was stopped or restarted inside the gap: pid {} then {} while the gap was on",
        first.pid,
        moved[0].pid
    );
    assert!(
        seen.iter().any(|s| s.pid != first.pid),
        "Traefik was restarted (pid {} throughout)",
        first.pid
    );
    in_gap.last().unwrap().at
}

/// What a load saw while Traefik restarted: requests, those refused (no Traefik listened), the
/// other failures by outcome, and the time from the first failed request to the last.
#[derive(Debug)]
struct Outage {
    requests: usize,
    refused: usize,
    failed: std::collections::BTreeMap<String, usize>,
    span: Duration,
    slowest: Duration,
    /// The 404s in bursts (each less than 3 s after the one before): for each, its 404s
    /// and the requests answered 200 between its first and its last.
    bursts: Vec<(usize, usize)>,
}

impl Outage {
    fn of(samples: &[Sample]) -> Outage {
        let failed: Vec<&Sample> = samples.iter().filter(|s| s.outcome != "200").collect();
        let mut counts = std::collections::BTreeMap::new();
        for s in &failed {
            let kind = match s.outcome.as_str() {
                o if o.starts_with("error:") && o.contains("refused") => "refused",
                o if o.starts_with("error:") => "error",
                o => o,
            };
            *counts.entry(kind.to_string()).or_insert(0) += 1;
        }
        let sent = failed.iter().map(|s| s.sent);
        let span = match (sent.clone().min(), sent.max()) {
            (Some(first), Some(last)) => last - first,
            _ => Duration::ZERO,
        };
        Outage {
            requests: samples.len(),
            refused: counts.remove("refused").unwrap_or(0),
            failed: counts,
            span,
            slowest: samples.iter().map(|s| s.took).max().unwrap_or_default(),
            bursts: bursts_of_404(samples),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} requests, {} refused, others failed {:?}, from the first failed request to the \
             last {:?}, the slowest {:?}, 404s in bursts (404s, 200s meanwhile) {:?}",
            self.requests, self.refused, self.failed, self.span, self.slowest, self.bursts
        )
    }

    /// A handover: no connection refused, no request held longer than a stopping Traefik's
    /// grace time (10 s); the 404s (a Traefik that starts answers them until it has loaded its
    /// routers, however long the machine makes that) in at most two bursts, one for each
    /// Traefik that starts, and while each lasts another Traefik answers (requests answered
    /// 200 between its first 404 and its last, when there are enough 404s to tell); other
    /// failures only the requests a stopping Traefik drops, at most one per client and stop.
    #[track_caller]
    fn assert_handed_over(&self) {
        eprintln!("during Traefik's handover: {}", self.describe());
        assert!(self.requests > 20, "{self:?}");
        assert!(self.slowest < Duration::from_secs(12), "{self:?}");
        assert_eq!(self.refused, 0, "connections refused: {self:?}");
        assert!(
            self.bursts.len() <= 2,
            "more than two bursts of 404: {self:?}"
        );
        for &(not_found, served) in &self.bursts {
            assert!(
                not_found < 16 || served > 0,
                "nothing answered during a burst of {not_found} 404s: {self:?}"
            );
        }
        let other: usize = self
            .failed
            .iter()
            .filter(|(kind, _)| kind.as_str() != "404")
            .map(|(_, n)| n)
            .sum();
        assert!(other <= 2 * CLIENTS, "{self:?}");
    }
}

/// The 404s of `samples` in bursts: for each, its 404s and the 200s sent between its first and
/// its last.
fn bursts_of_404(samples: &[Sample]) -> Vec<(usize, usize)> {
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    sorted.sort_by_key(|s| s.sent);
    let mut spans: Vec<(Instant, Instant, usize)> = Vec::new();
    for s in sorted.iter().filter(|s| s.outcome == "404") {
        match spans.last_mut() {
            Some((_, last, n)) if s.sent - *last < Duration::from_secs(3) => {
                *last = s.sent;
                *n += 1;
            }
            _ => spans.push((s.sent, s.sent, 1)),
        }
    }
    spans
        .into_iter()
        .map(|(first, last, n)| {
            let served = sorted
                .iter()
                .filter(|s| s.outcome == "200" && s.sent >= first && s.sent <= last)
                .count();
            (n, served)
        })
        .collect()
}

/// Every request sent before `gap_end` got its 200 (in hold mode the gap server holds them
/// until the app answers again); returns what the load saw after it, during another app's
/// setup that restarts Traefik with its new static config.
#[track_caller]
fn assert_none_lost_in_the_gap(samples: Vec<Sample>, gap_end: Instant) -> Outage {
    let (before, after): (Vec<Sample>, Vec<Sample>) =
        samples.into_iter().partition(|s| s.sent < gap_end);
    assert!(
        before.len() > 20,
        "{} requests before the gap ended",
        before.len()
    );
    let lost: Vec<&Sample> = before.iter().filter(|s| s.outcome != "200").collect();
    assert!(lost.is_empty(), "lost before the gap ended: {lost:?}");
    Outage::of(&after)
}

/// `b`'s setup under a load on `a` (4 clients, a new connection for each request): what the
/// load saw, and what the setup said.
fn setup_under_load(a: &Project, b: &Project) -> (Outage, Run) {
    let load = a.load_at(WEB, CLIENTS);
    std::thread::sleep(Duration::from_secs(1));
    let set_up = b.deploy(&["setup"]).ok();
    std::thread::sleep(Duration::from_secs(1));
    (Outage::of(&load.samples()), set_up)
}

/// A load through Traefik on `a`, then `gap` started (a command of `a` that pauses in a gap
/// through the test hook); while `a` is in that gap, `b`'s setup changes the static config:
/// its restart of Traefik waits until the gap ends, and the load loses nothing, in the gap or
/// during the restart.
/// Returns what the gap's command and `b`'s setup said.
fn restart_during_gap(a: &Project, b: &Project, gap: &mut std::process::Command) -> (Run, Run) {
    let load = a.load_at(WEB, CLIENTS);
    std::thread::sleep(Duration::from_secs(1));
    let gapped = gap.spawn().unwrap();
    let flag = gap_flag(a);
    wait_until("the app entered its gap", || flag.exists());
    let watch = Watch::start(&a.user, flag);
    let setup = b.deploy_cmd(&[], &["setup"]).spawn().unwrap();
    let gapped = Project::wait(gapped).ok();
    let set_up = Project::wait(setup).ok();
    let seen = watch.finish();
    set_up.says("waiting for other apps' swaps to leave their gap");
    let gap_end = assert_restarted_after_the_gap(&seen);
    assert_served(&a.app, WEB, &a.current().unwrap());
    set_up.says("handed over to a Traefik started beside it, no connection refused");
    assert_none_lost_in_the_gap(load.samples(), gap_end).assert_handed_over();
    (gapped, set_up)
}

#[test]
fn a_restart_of_traefik_waits_for_the_gap_of_another_apps_release_and_setup() {
    let _serial = fresh();
    let hold = "  gap: hold\n  hold: 30s\n";
    let a = app("ma2-a", 18700, &[("web", WEB)], &["web"], hold);
    let b = app("ma2-b", 18702, &[("web", WEB)], &["web"], "");
    for p in [&a, &b] {
        p.deploy(&["setup"]).ok();
        p.deploy(&["release", "v1"]).ok();
    }
    assert_served("ma2-a", WEB, "v1");
    assert_served("ma2-b", WEB, "v1");

    dry_runs_say_what_setup_would_change(&a, &b);
    // a's release pauses 10 s in its gap (after the stop); b's setup adds an entry point.
    set_traefik(
        &b,
        &traefik_section_at(API, "ma2-b", &[("web", WEB), ("b2", 19701)], &["web", "b2"]),
    );
    let mut release = a.deploy_cmd(
        &[("DEPLOY_TEST_HOOK", &pause("after-stop", 5))],
        &["release", "v2"],
    );
    let (_, set_up) = restart_during_gap(&a, &b, &mut release);
    set_up.says(
        "Restarting Traefik (its static config changed), which serves ma2-a (test), ma2-b (test)",
    );
    assert_served("ma2-a", WEB, "v2");
    assert_served("ma2-b", 19701, "v1");

    // a's own setup moves it to socket mode, in a gap (paused 10 s there); b's setup adds
    // another entry point meanwhile.
    a.add_to_config("listen: socket\n");
    set_traefik(
        &b,
        &traefik_section_at(
            API,
            "ma2-b",
            &[("web", WEB), ("b2", 19701), ("b3", 19702)],
            &["web", "b3"],
        ),
    );
    let mut setup = a.deploy_cmd(&[("DEPLOY_TEST_HOOK", &pause("in-gap", 5))], &["setup"]);
    let (set_up_a, _) = restart_during_gap(&a, &b, &mut setup);
    set_up_a.says("Moving the app's port 18700 to its socket unit");
    assert_served("ma2-a", WEB, "v2");
    assert_served("ma2-b", 19702, "v1");

    a_traefik_without_reuse_port_restarts_plainly_then_hands_over(&a, &b);
}

#[track_caller]
fn dry_runs_say_what_setup_would_change(a: &Project, b: &Project) {
    // The dry run of a setup that adds an entry point: the lines that change, the restart and
    // whom it touches; nothing changed.
    let files = || {
        let u = lone_user();
        (static_config(u), record(u, "ma2-b"), traefik_pid(u))
    };
    let before = files();
    set_traefik(
        b,
        &traefik_section_at(API, "ma2-b", &[("web", WEB), ("b2", 19701)], &["web", "b2"]),
    );
    let r = b.deploy(&["setup", "--dry-run"]).ok();
    r.prints("  static:    ");
    r.prints("merged with the other apps' requests (what changes in it):\n");
    r.prints("    | +   b2:\n    | +     address: \"127.0.0.1:19701\"\n");
    r.prints(
        "  restart:   Traefik restarts once every other app's gap has ended, touching ma2-a \
         (test), ma2-b (test)\n  how:       handed over to a Traefik started beside it, no \
         connection refused\n",
    );
    assert_eq!(files(), before, "the dry run changed nothing");
    // Unchanged for a: no restart. A conflict: the refusal setup would give.
    let r = a.deploy(&["setup", "--dry-run"]).ok();
    r.prints("unchanged\n  restart:   none");
    set_traefik(
        b,
        &traefik_section_at(API, "ma2-b", &[("web", 19703)], &["web"]),
    );
    refused(
        b.deploy(&["setup", "--dry-run"]),
        "ma2-a",
        "entrypoints.web",
    );
}

#[track_caller]
fn a_traefik_without_reuse_port_restarts_plainly_then_hands_over(a: &Project, b: &Project) {
    // A Traefik started from a static config without reusePort (an earlier deploy's) cannot
    // share its ports: the next change restarts it plainly, then the one after hands over.
    let u = lone_user();
    let path = u.home.join(".config/traefik/traefik.yaml");
    let shared = static_config(u);
    std::fs::write(&path, shared.replace("    reusePort: true\n", "")).unwrap();
    let restarted = u
        .command(
            Path::new("systemctl"),
            &["--user", "restart", "traefik.service"],
            Path::new("/"),
            &[],
        )
        .status()
        .unwrap();
    assert!(restarted.success());
    assert_served("ma2-a", WEB, "v2");
    let mut eps = vec![("web", WEB), ("b2", 19701), ("b3", 19702), ("b4", 19712)];
    set_traefik(b, &traefik_section_at(API, "ma2-b", &eps, &["web", "b3"]));
    let (plain, set_up) = setup_under_load(a, b);
    set_up.says("a plain restart, connections refused for a moment (the running Traefik does not share its ports (no reusePort) yet)");
    eprintln!("during a plain restart of Traefik: {}", plain.describe());
    assert!(static_config(u).contains("reusePort: true"));
    eps.push(("b5", 19713));
    set_traefik(b, &traefik_section_at(API, "ma2-b", &eps, &["web", "b3"]));
    let (handed, set_up) = setup_under_load(a, b);
    set_up.says("handed over to a Traefik started beside it");
    handed.assert_handed_over();
    assert_served("ma2-a", WEB, "v2");
    assert_served("ma2-b", 19702, "v1");
}

/// Whether the user's unit is active and enabled.
fn traefik_state(u: &NodeUser) -> (String, String) {
    (
        unit_property(u, "traefik.service", "ActiveState"),
        unit_property(u, "traefik.service", "UnitFileState"),
    )
}

/// Whether Traefik's API knows the router `name` (from the file provider), waited for.
fn router_known(name: &str, known: bool) -> bool {
    let url = format!("http://127.0.0.1:{API}/api/http/routers/{name}@file");
    let t = Instant::now();
    loop {
        let status = common::agent_for(Duration::from_secs(3))
            .get(&url)
            .call()
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if (status == 200) == known || t.elapsed() > Duration::from_secs(10) {
            return status == 200;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn removing_one_app_leaves_the_other_served_and_the_last_one_out_stops_traefik() {
    let _serial = fresh();
    let u = lone_user();
    let a = app("ma2-ra", 18720, &[("web", WEB)], &["web"], "");
    let b = app(
        "ma2-rb",
        18722,
        &[("web", WEB), ("rb2", 19710)],
        &["rb2"],
        "",
    );
    // An app without Traefik: nothing it does counts for Traefik.
    let plain = lone("ma2-rp", 18724, None);
    for p in [&a, &b] {
        p.deploy(&["setup"]).ok();
        p.deploy(&["release", "v1"]).ok();
    }
    plain.deploy(&["setup"]).ok();
    assert_served("ma2-ra", WEB, "v1");
    assert_served("ma2-rb", 19710, "v1");
    assert!(router_known("ma2-rb_test", true));
    let pid = traefik_pid(u);

    // b goes: its router and record with it; a is still served, by the same Traefik.
    b.deploy(&["remove", "--dry-run"])
        .ok()
        .prints("  traefik:   keeps running, for ma2-ra (test)");
    b.deploy(&["remove"])
        .ok()
        .says("Traefik: keeps running, for ma2-ra (test)");
    assert!(!router_known("ma2-rb_test", false), "b's router is gone");
    assert!(record(u, "ma2-rb").is_none() && record(u, "ma2-ra").is_some());
    assert_served("ma2-ra", WEB, "v1");
    assert_eq!(
        traefik_pid(u),
        pid,
        "Traefik was neither restarted nor stopped"
    );
    assert_eq!(traefik_state(u), ("active".into(), "enabled".into()));
    plain.deploy(&["remove"]).ok();
    assert_eq!(traefik_pid(u), pid, "an app without Traefik leaves it be");

    // a, the last app that relies on Traefik, goes: Traefik stops and is disabled; its
    // static config stays (and acme.json, were there one).
    a.deploy(&["remove", "--dry-run"])
        .ok()
        .prints("  traefik:   no other app of this user relies on it: traefik.service is stopped and disabled");
    let config = static_config(u);
    a.deploy(&["remove"])
        .ok()
        .says("Traefik: no other app of this user relies on it");
    assert_eq!(traefik_state(u), ("inactive".into(), "disabled".into()));
    assert_eq!(static_config(u), config);
    // The next setup of an app that manages it starts it again.
    b.deploy(&["setup"]).ok();
    assert_eq!(traefik_state(u), ("active".into(), "enabled".into()));
    b.deploy(&["release", "v2"]).ok();
    assert_served("ma2-rb", 19710, "v2");
}

/// GET / over HTTPS through the entry point on `port` with the app's name (its SNI and Host),
/// trusting any certificate: the body of a 200, waited for.
fn served_https(app: &str, port: u16) -> String {
    let host = format!("{app}.test");
    let mut body = String::new();
    wait_until(&format!("{app} is served over https on :{port}"), || {
        let out = std::process::Command::new("curl")
            .args(["-sk", "--max-time", "3", "--noproxy", "*", "--resolve"])
            .arg(format!("{host}:{port}:127.0.0.1"))
            .arg(format!("https://{host}:{port}/"))
            .output()
            .unwrap();
        body = String::from_utf8_lossy(&out.stdout).into_owned();
        body.starts_with("example-app ")
    });
    body
}

/// What curl says of the certificate served for `APP.test` on `port`.
fn served_certificate(app: &str, port: u16) -> String {
    let host = format!("{app}.test");
    let out = std::process::Command::new("curl")
        .args([
            "-vsk",
            "-o",
            "/dev/null",
            "--max-time",
            "3",
            "--noproxy",
            "*",
        ])
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}/"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("subject:") || l.contains("issuer:"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn another_acme_account_is_another_resolver_and_both_apps_are_served() {
    let _serial = fresh();
    let u = lone_user();
    // A CA that does not answer: Traefik serves its default certificate meanwhile, which is
    // enough to see each router served on its entry point.
    let acme = |email: &str| {
        format!("  acme:\n    email: {email}\n    ca_server: https://127.0.0.1:19748/dir\n")
    };
    let eps = [("web", WEB), ("websecure", 19711)];
    let e = app(
        "ma2-e",
        18730,
        &eps,
        &["websecure"],
        &acme("ops@example.com"),
    );
    let f = app(
        "ma2-f",
        18732,
        &eps,
        &["websecure"],
        &acme("other@example.org"),
    );
    e.deploy(&["setup"]).ok();
    e.deploy(&["release", "v1"]).ok();
    assert!(served_https("ma2-e", 19711).starts_with("example-app v1 "));
    // The default certificate is deploy's, made at setup (without one Traefik makes a key at
    // every change of its dynamic config).
    let served = served_certificate("ma2-e", 19711);
    assert!(
        served.contains("CN=deploy-default-certificate.invalid"),
        "{served}"
    );
    f.deploy(&["setup"]).ok().says(
        "Restarting Traefik (its static config changed), which serves ma2-e (test), ma2-f (test)",
    );
    f.deploy(&["release", "v1"]).ok();
    assert!(served_https("ma2-e", 19711).starts_with("example-app v1 "));
    assert!(served_https("ma2-f", 19711).starts_with("example-app v1 "));
    let yaml = |text: &str| -> serde_json::Value { yaml_serde::from_str(text).unwrap() };
    let config = yaml(&static_config(u));
    let resolvers = &config["certificatesResolvers"];
    assert_eq!(
        resolvers["deploy"]["acme"]["email"], "ops@example.com",
        "{config}"
    );
    assert_eq!(
        resolvers["deploy-2"]["acme"]["email"], "other@example.org",
        "{config}"
    );
    let resolver = |app: &str| {
        let file = u
            .home
            .join(format!(".config/traefik/dynamic/{app}_test.yaml"));
        let router = yaml(&std::fs::read_to_string(file).unwrap());
        router["http"]["routers"][format!("{app}_test")]["tls"]["certResolver"].clone()
    };
    assert_eq!(resolver("ma2-e"), "deploy");
    assert_eq!(resolver("ma2-f"), "deploy-2");
}
