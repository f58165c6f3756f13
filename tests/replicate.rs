//! Off-site replication with a real Litestream, to the three kinds of place: a path
//! (`file://`), another user's directory over SFTP (the test sshd) and S3 (moto's server). In
//! each, with the app writing rows steadily, every process of the app and of Litestream is
//! SIGKILLed and `shared/data` wiped (the server is lost); `deploy restore` then brings back
//! every row committed at least 2 s before, and `--at` an earlier time the rows of that time.

mod common;
use common::{node, Options, Project};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// `example-app v1 hits=12 ...` -> 12
#[track_caller]
fn hits(body: &str) -> u64 {
    body.split_whitespace()
        .find_map(|w| w.strip_prefix("hits="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no hits in {body:?}"))
}

#[track_caller]
fn count(p: &Project) -> u64 {
    p.body("/hits").trim().parse().unwrap()
}

/// Writes a row every 20 ms (GET /) until stopped; each answer's time and row count.
fn writer(
    port: u16,
) -> (
    Arc<AtomicBool>,
    std::thread::JoinHandle<Vec<(SystemTime, u64)>>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !s.load(Ordering::SeqCst) {
            let answer = ureq::get(format!("http://127.0.0.1:{port}/"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok());
            if let Some(body) = answer.filter(|b| b.contains("hits=")) {
                seen.push((SystemTime::now(), hits(&body)));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        seen
    });
    (stop, thread)
}

fn utc_now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// The scenario every kind of replica goes through; `env`: what `deploy` runs with (S3's
/// credentials as env.secret values).
fn survives_a_lost_server(p: &Project, env: &[(&str, &str)]) {
    p.deploy_env(env, &["setup"]).ok();
    p.deploy_env(env, &["release", "v1"]).ok();
    for _ in 0..30 {
        p.body("/");
    }
    let rows_then = count(p);
    std::thread::sleep(Duration::from_millis(2500));
    let then = utc_now();
    std::thread::sleep(Duration::from_millis(1500));
    let status = p.deploy_env(env, &["status"]).ok();
    status.prints("data/app.db");
    status.prints("replicating");

    let (committed, last) = lose_the_server_under_writes(p);
    let r = p.deploy_env(env, &["restore"]).ok();
    r.says("restored 1 database(s)");
    let back = count(p);
    assert!(
        back >= committed && back <= last,
        "{back} rows back; {committed} were committed 2 s before the loss, {last} in all"
    );

    // Over data it refuses, unless told; then it keeps what it replaces.
    let r = p.deploy_env(env, &["restore", "--at", &then]).failed();
    r.says("has data already (data/app.db): nothing was changed");
    assert_eq!(count(p), back);
    p.deploy_env(env, &["restore", "--at", &then, "--overwrite"])
        .ok()
        .says("Snapshot of the data it replaces");
    assert_eq!(count(p), rows_then, "the rows of {then}");
    // One snapshot of replaced data holds the database (the first restore, onto nothing,
    // kept an empty one).
    let replaced = std::fs::read_dir(p.root().join(".deploy/replaced"))
        .unwrap()
        .flatten()
        .filter(|e| {
            walkdir::WalkDir::new(e.path())
                .into_iter()
                .flatten()
                .any(|f| f.file_name() == "app.db")
        })
        .count();
    assert_eq!(replaced, 1);

    rows_written_after_a_restore_come_back(p, env);
    the_replica_follows_a_rollback_with_data(p, env);
}

/// The rows committed 2 s before the loss, and the last row written.
#[track_caller]
fn lose_the_server_under_writes(p: &Project) -> (u64, u64) {
    // Steady writes, then the loss in the middle of them.
    let (stop, thread) = writer(p.port);
    std::thread::sleep(Duration::from_secs(4));
    let lost_at = SystemTime::now();
    common::lose_the_server(p);
    stop.store(true, Ordering::SeqCst);
    let seen = thread.join().unwrap();
    let committed = seen
        .iter()
        .filter(|(t, _)| *t + Duration::from_secs(2) <= lost_at)
        .map(|(_, n)| *n)
        .max()
        .expect("rows written 2 s before the loss");
    let last = seen.iter().map(|(_, n)| *n).max().unwrap();
    (committed, last)
}

#[track_caller]
fn rows_written_after_a_restore_come_back(p: &Project, env: &[(&str, &str)]) {
    // After the data changed hands (a restore), rows written from then on are replicated too:
    // the next loss brings them back.
    for _ in 0..10 {
        p.body("/");
    }
    let after_restore = count(p);
    std::thread::sleep(Duration::from_millis(3000));
    common::lose_the_server(p);
    p.deploy_env(env, &["restore"])
        .ok()
        .says("restored 1 database(s)");
    assert_eq!(
        count(p),
        after_restore,
        "the rows written after the restore came back from the next one"
    );
}

#[track_caller]
fn the_replica_follows_a_rollback_with_data(p: &Project, env: &[(&str, &str)]) {
    // A rollback with its data: the replica follows the data put back, and what is written
    // after it comes back from the next loss too.
    p.deploy_env(env, &["release", "v2"]).ok();
    for _ in 0..10 {
        p.body("/");
    }
    p.deploy_env(env, &["rollback", "--with-data", "--yes"])
        .ok();
    for _ in 0..3 {
        p.body("/");
    }
    let rolled_back = count(p);
    std::thread::sleep(Duration::from_millis(3000));
    common::lose_the_server(p);
    p.deploy_env(env, &["restore"]).ok();
    assert_eq!(
        count(p),
        rolled_back,
        "the replica has the rolled-back data and what came after it"
    );
}

#[test]
fn a_file_replica_brings_back_a_lost_server_and_follows_a_rollback_with_data() {
    let p = Project::new("t-repfile", 18380, Options::default());
    let dir = p.file_replica();
    p.add_to_config(&format!("replicate:\n  url: file://{}\n", dir.display()));
    survives_a_lost_server(&p, &[]);

    // A database the app creates later is replicated from the next release on.
    let extra = p.root().join("shared/data/extra.db");
    let made = p.user(
        "sqlite3",
        &[
            extra.to_str().unwrap(),
            "PRAGMA journal_mode=WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);",
        ],
    );
    assert_eq!(made.code, 0, "{made:?}");

    // A rollback with data under replication: the replica follows the data put back.
    p.deploy(&["release", "v3"]).ok();
    for _ in 0..10 {
        p.body("/");
    }
    p.deploy(&["status"])
        .ok()
        .prints("replication:  data/extra.db: replicating");
    p.deploy(&["rollback", "--with-data", "--yes"]).ok();
    let rolled_back = count(&p);
    std::thread::sleep(Duration::from_millis(2500));
    common::lose_the_server(&p);
    p.deploy(&["restore"]).ok().says("restored 2 database(s)");
    assert!(extra.exists(), "the database made later came back too");
    assert_eq!(
        count(&p),
        rolled_back,
        "the replica has the rolled-back data"
    );

    // A new server: nothing of the old one but the replica. Setup, then restore and release.
    std::thread::sleep(Duration::from_millis(2500));
    common::lose_the_server(&p);
    std::fs::remove_dir_all(p.root()).unwrap();
    p.deploy(&["setup"]).ok();
    let r = p.deploy(&["restore", "--release", "v4"]).ok();
    r.says("now release: `deploy release VERSION test`");
    r.says("t-repfile v4 is live on test");
    assert_eq!(count(&p), rolled_back, "every row, on the new server");
    assert!(p.body("/").starts_with("example-app v4 "));
}

#[test]
fn an_sftp_replica_in_another_users_directory() {
    let p = Project::new("t-repsftp", 18382, Options::default());
    let remote = "/home/deploy-replica/replicas/t-repsftp";
    let _ = std::fs::remove_dir_all(remote);
    let host_key =
        std::fs::read_to_string("/etc/deploy-test-sshd/ssh_host_ed25519_key.pub").unwrap();
    let host_key: Vec<&str> = host_key.split_whitespace().take(2).collect();
    p.add_to_config(&format!(
        "replicate:\n  url: sftp://deploy-replica@127.0.0.1:2222{remote}\n  key: ~/.ssh/replica_ed25519\n  \
         host_key: \"{}\"\n",
        host_key.join(" ")
    ));
    survives_a_lost_server(&p, &[]);
    assert!(std::path::Path::new(remote).join("data/app.db").is_dir());
}

/// moto's S3 server on 127.0.0.1, with a bucket; stopped when dropped.
struct S3(Child);

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const S3_PORT: u16 = 18490;

fn s3() -> S3 {
    let child = Command::new("/opt/moto/bin/moto_server")
        .args(["-H", "127.0.0.1", "-p", &S3_PORT.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("moto's server (scripts/test installs it into /opt/moto)");
    let s3 = S3(child);
    let t = Instant::now();
    loop {
        let made = Command::new("curl")
            .args([
                "-fsS",
                "-X",
                "PUT",
                &format!("http://127.0.0.1:{S3_PORT}/deploy-test"),
            ])
            .output()
            .is_ok_and(|o| o.status.success());
        if made {
            return s3;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "moto answers");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_s3_replica_with_its_keys_as_secrets() {
    let _s3 = s3();
    let p = Project::new("t-reps3", 18384, Options::default());
    p.add_to_config(&format!(
        "env:\n  secret: [AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY]\n\
         replicate:\n  url: s3://deploy-test/t-reps3\n  endpoint: http://127.0.0.1:{S3_PORT}\n  region: us-east-1\n"
    ));
    let keys = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "s3cr$t-with-a-dollar"),
    ];
    survives_a_lost_server(&p, &keys);
    let _ = node();
}
