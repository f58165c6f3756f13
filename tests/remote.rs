//! Remote environments: the node user on a real sshd (127.0.0.1:2222) is the server, and
//! `deploy` runs as root here, as it would on a laptop.

mod common;
use common::{wait_for_text, Options, Project};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

fn remote(app: &str, port: u16) -> Project {
    Project::new(
        app,
        port,
        Options {
            remote: true,
            ..Options::default()
        },
    )
}

/// `   1.2 MB sent (1234567 bytes)` -> rsync's exact count of bytes sent.
#[track_caller]
fn sent(stderr: &str) -> f64 {
    let line = stderr
        .lines()
        .find(|l| l.trim_end().ends_with(" bytes)") && l.contains(" sent ("))
        .unwrap_or_else(|| panic!("no `sent` line: {stderr}"));
    let exact = line.rsplit_once(" sent (").unwrap().1;
    exact.trim_end_matches(" bytes)").parse().unwrap()
}

#[test]
fn setup_release_rollback_over_ssh_with_unchanged_files_hard_linked() {
    let p = remote("t-remote", 18320);
    // A large artifact that does not change between releases.
    p.write("assets/big.bin", &"b".repeat(8 << 20));

    setup_installs_deploy_and_check_runs_there(&p);
    let r = p.deploy_remote(&["release", "v1"]).ok();
    r.says("t-remote v1 is live on test");
    let full = sent(&r.stderr);
    assert!(full > 8.0 * 1024.0 * 1024.0, "{full}");
    assert_eq!(p.body("/"), "example-app v1 hits=1 greeting=hello one\n");

    v2_sends_only_what_changed(&p, full);
    let r = p.deploy_remote(&["release", "v3", "--dry-run"]).ok();
    assert!(
        r.stdout.contains("Plan: release v3 of t-remote to test"),
        "{}",
        r.stdout
    );
    assert!(!p.root().join("releases/v3").exists());
    let r = p.deploy_remote(&["releases"]).ok();
    r.prints("* v2");
    let r = p.deploy_remote(&["rollback"]).ok();
    r.says("to v1 from v2");
    assert_eq!(p.body("/"), "example-app v1 hits=3 greeting=hello one\n");
    let r = p.deploy_remote(&["status"]).ok();
    r.prints("current:      v1");
    // The history names who typed it, on the laptop, and the command.
    let r = p.deploy_remote(&["history"]).ok();
    r.prints("by root@");
    r.prints("`deploy rollback`");
    common::assert_private(&p.root());

    a_secret_and_exec_input_reach_the_app_over_ssh(&p);
    // The node's deploy must be this build: anything else is refused until setup installs it.
    let sum = p.root().join(".deploy/bin/deploy.sha256");
    std::fs::write(&sum, "0000\n").unwrap();
    let r = p.deploy_remote(&["status"]).failed();
    r.says("has another deploy");
    r.says("deploy setup test");
    p.deploy_remote(&["setup"]).ok();
    p.deploy_remote(&["status"]).ok();
}

#[track_caller]
fn setup_installs_deploy_and_check_runs_there(p: &Project) {
    // Before setup, the node has no deploy: every command says what to do.
    let r = p.deploy_remote(&["release", "v1"]).failed();
    r.says("run `deploy setup test` first");

    let r = p.deploy_remote(&["setup"]).ok();
    r.says("Installing deploy");
    assert!(p.root().join(".deploy/bin/deploy").is_file());
    let r = p.deploy_remote(&["setup"]).ok(); // idempotent, nothing to install
    assert!(!r.stderr.contains("Installing deploy"), "{}", r.stderr);
    // check: the artifacts here, then the server's own checks there.
    let r = p.deploy_remote(&["check", "test"]).ok();
    r.says("Checking the artifacts ... ok");
    r.says("Checking Podman's storage ... ok");
    r.says("test is ready for t-remote");
}

/// v2 changes an asset: an unchanged file costs no transfer and is hard-linked.
#[track_caller]
fn v2_sends_only_what_changed(p: &Project, full: f64) {
    p.write("assets/greeting.txt", "hello two");
    let r = p.deploy_remote(&["release", "v2"]).ok();
    let incremental = sent(&r.stderr);
    assert!(
        incremental < full * 0.02,
        "an unchanged file costs no transfer: {incremental} of {full}"
    );
    let ino = |v: &str, f: &str| {
        std::fs::metadata(p.root().join("releases").join(v).join(f))
            .unwrap()
            .ino()
    };
    assert_eq!(ino("v1", "assets/big.bin"), ino("v2", "assets/big.bin"));
    assert_eq!(ino("v1", "example-app"), ino("v2", "example-app"));
    assert_eq!(p.body("/"), "example-app v2 hits=2 greeting=hello two\n");
}

#[track_caller]
fn a_secret_and_exec_input_reach_the_app_over_ssh(p: &Project) {
    // A secret of the laptop's shell reaches the app over SSH, never a command line or a file
    // left in the run's directory.
    p.add_to_config("env:\n  secret: [GREETING]\n");
    let secret = "over-ssh-5e3a";
    let r = p
        .deploy_remote_env(&[("GREETING", secret)], &["release", "v4"])
        .ok();
    assert!(!r.stderr.contains(secret) && !r.stdout.contains(secret));
    assert!(p.body("/").contains(&format!("greeting={secret}")));
    // exec -i: this side's input reaches the one-off container over SSH.
    let before: u64 = p.body("/hits").trim().parse().unwrap();
    let mut exec = p.remote_cmd(
        &[],
        &[
            "exec",
            "-i",
            "--",
            "/app/example-app",
            "run-sql",
            "/dev/stdin",
        ],
    );
    exec.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = exec.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"INSERT INTO hits (version) VALUES ('exec-i');")
            .unwrap();
    }
    let r = Project::wait(child).ok();
    r.prints("run-sql: ok");
    let after: u64 = p.body("/hits").trim().parse().unwrap();
    assert_eq!(after, before + 1, "the row written through exec -i");
    let left = p.user(
        "grep",
        &["-rl", secret, p.root().join(".deploy").to_str().unwrap()],
    );
    assert_eq!(left.stdout, "", "the secret was left in {}", left.stdout);
}

#[test]
fn a_dropped_connection_during_the_swap_leaves_the_server_finishing_it() {
    let p = remote("t-remote-drop", 18322);
    p.deploy_remote(&["setup"]).ok();
    p.deploy_remote(&["release", "v1"]).ok();
    p.body("/");
    p.write("assets/greeting.txt", "hello two");

    // The node pauses 2 s after stopping the app; the connection is cut then.
    // Its own runtime directory, where deploy makes the shared connection's private one.
    let runtime = std::path::Path::new("/tmp/deploy-xdg");
    let _ = std::fs::remove_dir_all(runtime);
    std::fs::create_dir_all(runtime).unwrap();
    let mut cmd = p.remote_cmd(
        &[
            ("DEPLOY_TEST_HOOK", "sleep@after-stop"),
            ("XDG_RUNTIME_DIR", runtime.to_str().unwrap()),
        ],
        &["release", "v2"],
    );
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    let journal = p.root().join(".deploy/swap.journal");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !journal.exists() {
        assert!(Instant::now() < deadline, "the swap never began");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    kill_everything_on_this_side(runtime, child, pid);
    // The server finishes the release by itself.
    while journal.exists() {
        assert!(
            Instant::now() < deadline,
            "the node never finished the swap"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(p.current().as_deref(), Some("v2"));
    assert!(p.body("/").starts_with("example-app v2 hits=2"));
    let r = p.deploy_remote(&["status"]).ok();
    r.prints("last:         release v2 ok");
}

#[track_caller]
fn kill_everything_on_this_side(runtime: &std::path::Path, child: std::process::Child, pid: u32) {
    // Everything on this side goes: deploy, its ssh clients, and the shared ssh connection,
    // each by its pid (nothing broader: the test must not hit anything else).
    let dir = std::fs::read_dir(runtime)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("deploy-ssh-"))
        .expect("the shared connection's directory")
        .path();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", dir.display());
    let control = format!("ControlPath={}/m", dir.display());
    let check = std::process::Command::new("ssh")
        .args([
            "-o",
            &control,
            "-p",
            "2222",
            "-O",
            "check",
            "deployer@127.0.0.1",
        ])
        .output()
        .unwrap();
    let master: Option<u32> = String::from_utf8_lossy(&check.stderr)
        .split("pid=")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|n| n.trim().parse().ok());
    let clients = std::process::Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()
        .unwrap();
    let mut child = child;
    let _ = child.kill();
    for p in String::from_utf8_lossy(&clients.stdout)
        .split_whitespace()
        .map(String::from)
        .chain(master.map(|m| m.to_string()))
    {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &p])
            .status();
    }
    let _ = child.wait();
    assert!(
        master.is_some(),
        "the shared connection was found: {check:?}"
    );
}

#[test]
fn ssh_options_with_quotes_and_a_symlinked_config_reach_the_server_intact() {
    let p = remote("t-remote-quote", 18324);
    // An ssh option with white space and quotes in it (a known_hosts file in a directory with a
    // space): rsync must pass it whole to ssh, as ssh's own command line does.
    let dir = std::path::Path::new("/tmp/deploy-tests/known hosts here");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(
        format!("{}/known_hosts", common::SSHD_DIR),
        dir.join("known_hosts"),
    )
    .unwrap();
    let yaml = std::fs::read_to_string(p.dir.join("deploy.yaml")).unwrap();
    let quoted = yaml.replace(
        &format!("UserKnownHostsFile={}/known_hosts", common::SSHD_DIR),
        &format!("UserKnownHostsFile=\\\"{}/known_hosts\\\"", dir.display()),
    );
    assert_ne!(quoted, yaml);
    // A `'` in an ssh option is refused with a clear error: ssh itself reads quotes there.
    p.write(
        "deploy.yaml",
        &yaml.replace("StrictHostKeyChecking=yes", "StrictHostKeyChecking='yes'"),
    );
    let r = p.deploy_remote(&["status"]).failed();
    r.says("environments.test.ssh.options");
    // The config is a symlink (as dotfile managers make them): its target is what is sent.
    p.write("real-deploy.yaml", &quoted);
    p.remove("deploy.yaml");
    std::os::unix::fs::symlink("real-deploy.yaml", p.dir.join("deploy.yaml")).unwrap();
    p.deploy_remote(&["setup"]).ok();
    p.deploy_remote(&["release", "v1"]).ok();
    assert!(p.body("/").starts_with("example-app v1 "));
    // --json over SSH: stdout is JSON events only, whatever the node writes to its stderr
    // (here its `error:` line).
    let r = p.deploy_remote(&["--json", "release", "v2"]).ok();
    assert!(r.stdout.contains("\"event\":\"done\""), "{}", r.stdout);
    let r = p.deploy_remote(&["--json", "release", "v2"]).failed();
    for line in r.stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON: {line:?} ({e})\n{}", r.stdout));
        assert!(v["event"].is_string(), "{line}");
    }
    assert!(r.stdout.contains("\"event\":\"error\""), "{}", r.stdout);
    r.says("error: ");
    p.write(
        "real-deploy.yaml",
        &quoted.replace("path: /healthz", "path: /healthz?changed"),
    );
    let r = p.deploy_remote(&["status"]).ok();
    r.prints("/healthz?changed");
}

#[test]
fn two_laptops_releasing_at_once_end_with_one_release_and_one_clean_refusal() {
    let p = remote("t-remote-race", 18326);
    p.deploy_remote(&["setup"]).ok();
    p.deploy_remote(&["release", "v1"]).ok();
    // The second laptop: a copy of the project with other content.
    let other = std::path::PathBuf::from(format!("{}-2", p.dir.display()));
    let _ = std::fs::remove_dir_all(&other);
    let copied = std::process::Command::new("cp")
        .args(["-a"])
        .arg(&p.dir)
        .arg(&other)
        .status()
        .unwrap();
    assert!(copied.success());
    std::fs::write(other.join("assets/greeting.txt"), "second laptop").unwrap();
    p.write("assets/greeting.txt", "first laptop");
    let lock = p.root().join(".deploy/lock");

    for (first, second) in [("v2", "v3"), ("v4", "v4")] {
        // The first holds the node's lock a while (the test hook pauses it there).
        let winner = p
            .remote_cmd(
                &[("DEPLOY_TEST_HOOK", "sleep@after-upload,sleep@after-build")],
                &["release", first],
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_text(&lock, &format!("release {first}"), Duration::from_secs(30));
        let mut cmd = p.remote_cmd(&[], &["release", second]);
        cmd.current_dir(&other);
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "refused cleanly: {err}");
        assert!(err.contains("another deploy is running"), "{err}");
        let won = Project::wait(winner).ok();
        won.says(&format!("t-remote-race {first} is live on test"));
        assert_eq!(
            p.body("/").split_whitespace().nth(1),
            Some(first),
            "the winner's release is live"
        );
        assert!(
            p.body("/").ends_with("greeting=first laptop\n"),
            "nothing of the loser's"
        );
        let left: Vec<String> = p
            .releases_on_disk()
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "no upload left behind: {left:?}");
        let configs = std::fs::read_dir(p.root().join(".deploy/project"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(configs, 0, "each run removed its config");
    }
    std::fs::remove_dir_all(&other).unwrap();
}

#[test]
fn restore_over_ssh_with_the_replicas_secret_sent_from_here() {
    let p = remote("t-remote-rep", 18328);
    let replica = p.file_replica();
    // A secret the restore must bring along (sent as a private file, like a release's).
    p.add_to_config(&format!(
        "env:\n  secret: [GREETING]\nreplicate:\n  url: file://{}\n",
        replica.display()
    ));
    let secret = [("GREETING", "from-the-laptop")];
    p.deploy_remote(&["setup"]).ok();
    p.deploy_remote_env(&secret, &["release", "v1"]).ok();
    for _ in 0..5 {
        p.body("/");
    }
    std::thread::sleep(Duration::from_millis(2500));
    common::lose_the_server(&p);
    let r = p.deploy_remote(&["restore"]).failed();
    r.says("env.secret `GREETING` is not set in this shell");
    let r = p.deploy_remote_env(&secret, &["restore"]).ok();
    r.says("restored 1 database(s)");
    assert_eq!(p.body("/hits"), "5\n");
    assert!(p.body("/").contains("greeting=from-the-laptop"));
}

#[test]
fn a_value_resolved_here_is_not_expanded_again_on_the_server() {
    let p = remote("t-remote-values", 18610);
    p.deploy_remote(&["setup"]).ok();
    // `$${HOME}` is `${HOME}` here, once: the server (whose HOME differs) reads that as a value.
    let yaml = std::fs::read_to_string(p.dir.join("deploy.yaml")).unwrap();
    let once = yaml.replace("  path: /healthz\n", "  path: /healthz?$${HOME}\n");
    assert_ne!(once, yaml);
    p.write("deploy.yaml", &once);
    let r = p.deploy_remote(&["status"]).ok();
    r.prints("/healthz?${HOME}");
}
