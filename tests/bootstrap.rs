//! `deploy bootstrap` against this machine as the server, over a root login: a second sshd of
//! the test's own (127.0.0.1:2223; the test sshd lets only the node user in) whose config, host
//! key and root's authorized keys live in a private directory of the test's, removed after (the
//! root account itself is not touched). The deploy user is a new one, removed at the end.
//! And `deploy bootstrap --local` of another new user, reached after by an sshd of its own that
//! sets no runtime directory (127.0.0.1:18751): deploy's remote commands set it themselves.

mod common;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The user bootstrap creates: never the node user the other tests share.
const USER: &str = "deploy-boot";
const SSH_PORT: u16 = 2223;
const APP_PORT: u16 = 18540;
/// The user `bootstrap --local` creates, and the sshd that lets it in.
const LOCAL_USER: &str = "bs2local";
const LOCAL_SSH_PORT: u16 = 18751;

/// One bootstrap at a time: each picks the next free subordinate range.
static SERIAL: Mutex<()> = Mutex::new(());

#[track_caller]
fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[track_caller]
fn ok(out: Output) -> (String, String) {
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

#[track_caller]
fn id_of(flag: &str, user: &str) -> Option<u32> {
    let out = run(Command::new("id").args([flag, user]));
    out.status
        .success()
        .then(|| text(&out).0.trim().parse().unwrap())
}

/// A command as the bootstrapped user, with its session's environment.
fn as_boot_user(args: &[&str]) -> Command {
    as_user_of(USER, args)
}

/// A command as `user`, with its session's environment.
fn as_user_of(user: &str, args: &[&str]) -> Command {
    let (uid, gid) = (id_of("-u", user).unwrap(), id_of("-g", user).unwrap());
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={uid}"),
        &format!("--regid={gid}"),
        "--init-groups",
        "env",
        "-i",
        &format!("HOME=/home/{user}"),
        "PATH=/usr/local/bin:/usr/bin:/bin",
        &format!("XDG_RUNTIME_DIR=/run/user/{uid}"),
        &format!("DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/{uid}/bus"),
    ])
    .args(args)
    .current_dir("/");
    c
}

/// The user's processes, by id.
fn pids_of(uid: u32) -> Vec<String> {
    let out = run(Command::new("pgrep").args(["-u", &uid.to_string()]));
    text(&out).0.split_whitespace().map(String::from).collect()
}

/// Stops everything of the user, as a reboot would: its containers removed, its manager
/// exited, the processes left (Podman's pause process) killed, each by its id.
fn stop_user_world(user: &str, uid: u32) {
    let _ = run(&mut as_user_of(
        user,
        &["podman", "rm", "--force", "--all", "--time", "0"],
    ));
    let _ = run(&mut as_user_of(user, &["systemctl", "--user", "exit"]));
    let t = Instant::now();
    while !pids_of(uid).is_empty() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
    }
    for _ in 0..20 {
        let pids = pids_of(uid);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = run(Command::new("kill").args(["-KILL", &pid]));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Removes a bootstrapped user and everything of it: its containers, its manager and the
/// processes it started (each by its id), its account and home, its runtime directory, its
/// cgroups and lingering file.
fn remove_user(user: &str) {
    let Some(uid) = id_of("-u", user) else {
        return;
    };
    stop_user_world(user, uid);
    let removed = run(Command::new("userdel").args(["-r", user]));
    assert!(
        removed.status.success() || id_of("-u", user).is_none(),
        "userdel -r {user}: {:?}",
        text(&removed)
    );
    let _ = std::fs::remove_dir_all(format!("/run/user/{uid}"));
    let _ = std::fs::remove_file(format!("/var/lib/systemd/linger/{user}"));
    for root in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"] {
        let dir = format!("{root}/user.slice/user-{uid}.slice");
        if Path::new(&dir).is_dir() {
            let _ = run(Command::new("find")
                .args([&dir, "-depth", "-type", "d", "-exec", "rmdir", "{}", ";"]));
        }
    }
}

/// An sshd that lets root (and the user bootstrap makes) in with the test's key, on
/// 127.0.0.1:`port`, with no PAM session and no `SetEnv` of the runtime directory (deploy sets
/// it itself).
struct RootSshd {
    dir: PathBuf,
    child: Child,
    port: u16,
}

impl RootSshd {
    fn start(port: u16, user: &str) -> RootSshd {
        // Not under /tmp: sshd's StrictModes refuses a keys file below a world-writable
        // directory.
        let dir = PathBuf::from(format!(
            "/run/deploy-test-bootstrap-{}-{port}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        common::chmod(&dir, 0o700);
        for (name, comment) in [
            ("host_ed25519", "host"),
            ("client_ed25519", "bootstrap-test"),
        ] {
            ok(run(Command::new("ssh-keygen").args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                comment,
                "-f",
                dir.join(name).to_str().unwrap(),
            ])));
        }
        let public = std::fs::read_to_string(dir.join("client_ed25519.pub")).unwrap();
        std::fs::write(dir.join("root_authorized_keys"), &public).unwrap();
        common::chmod(&dir.join("root_authorized_keys"), 0o600);
        let host_key = std::fs::read_to_string(dir.join("host_ed25519.pub")).unwrap();
        let host_key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        std::fs::write(
            dir.join("known_hosts"),
            format!("[127.0.0.1]:{port} {}\n", host_key.join(" ")),
        )
        .unwrap();
        let d = dir.display();
        std::fs::write(
            dir.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\n\
                 PidFile {d}/sshd.pid\nUsePAM no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 PermitRootLogin prohibit-password\nAllowUsers root {user}\n\
                 AuthorizedKeysFile .ssh/authorized_keys\nMaxSessions 50\n\
                 MaxStartups 50:30:100\n\
                 Match User root\n  AuthorizedKeysFile {d}/root_authorized_keys\n"
            ),
        )
        .unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stderr(log)
            .spawn()
            .unwrap();
        let sshd = RootSshd { dir, child, port };
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "sshd did not listen on {port}: {}",
                std::fs::read_to_string(sshd.dir.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        sshd
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// ssh's options that trust this sshd's host key only, and never ask.
    fn options(&self) -> Vec<String> {
        let known = format!("UserKnownHostsFile={}", self.file("known_hosts"));
        [
            "-o",
            &known,
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
        ]
        .map(String::from)
        .to_vec()
    }
}

impl Drop for RootSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The project (the example app) whose environment is the bootstrapped user on 2223.
fn project(sshd: &RootSshd) -> PathBuf {
    let n = common::node();
    let dir = PathBuf::from("/tmp/deploy-tests/t-boot");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("dist")).unwrap();
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::copy(&n.example_bin, dir.join("dist/example-app")).unwrap();
    std::fs::copy(
        common::repo().join("examples/app/Containerfile"),
        dir.join("Containerfile"),
    )
    .unwrap();
    std::fs::write(dir.join("assets/greeting.txt"), "hello boot").unwrap();
    std::fs::write(
        dir.join("deploy.yaml"),
        format!(
            "app: t-boot\nkeep_releases: 3\nartifacts:\n  - dist/example-app\n  - assets\n  - Containerfile\n\
             shared:\n  dirs: [data]\n  files: [.env]\ncontainer:\n  port: 8080\n  mounts:\n    data: /app/data\n  stop_timeout: 5s\n\
             health:\n  path: /healthz\n  timeout: 30s\n  interval: 100ms\n\
             environments:\n  test:\n    host: {USER}@127.0.0.1:{SSH_PORT}\n    path: ~/app\n    port: {APP_PORT}\n\
             \x20   ssh:\n      identity: {key}\n      options: [\"-o\", \"UserKnownHostsFile={known}\", \"-o\", \"StrictHostKeyChecking=yes\", \"-o\", \"BatchMode=yes\"]\n",
            key = sshd.file("client_ed25519"),
            known = sshd.file("known_hosts"),
        ),
    )
    .unwrap();
    dir
}

/// `deploy` as root in the project: the laptop's side.
fn deploy(dir: &Path, args: &[&str]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_deploy"))
        .args(args)
        .current_dir(dir))
}

/// The app's answer to GET /, if it answers.
fn get_app_once() -> Option<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(15)))
        .build()
        .into();
    let mut r = agent
        .get(format!("http://127.0.0.1:{APP_PORT}/"))
        .call()
        .ok()?;
    r.body_mut().read_to_string().ok()
}

/// The app's answer to GET /.
#[track_caller]
fn get_app() -> String {
    get_app_once().expect("the app answers")
}

/// Everything the test made goes, whatever happened: the app, the user, the sshd.
struct CleanUp(&'static str);

impl Drop for CleanUp {
    fn drop(&mut self) {
        remove_user(self.0);
        let _ = std::fs::remove_dir_all("/tmp/deploy-tests/t-boot");
    }
}

/// A test's start: the node, the other bootstrap done (one at a time), `user` gone (and gone
/// again at the end, whatever happens), and an sshd on `port` that lets root and `user` in.
fn begin(user: &'static str, port: u16) -> (MutexGuard<'static, ()>, CleanUp, RootSshd) {
    common::node();
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    remove_user(user);
    (serial, CleanUp(user), RootSshd::start(port, user))
}

/// The lines of bootstrap's own steps: those that change the server (not the read first,
/// the login check after, or `deploy setup`'s).
fn step_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .take_while(|l| !l.starts_with("-> Logging in as"))
        .filter(|l| l.starts_with("-> ") && !l.starts_with("-> Reading the server"))
        .collect()
}

/// The subordinate ranges of /etc/subuid: (name, first, count).
fn subuid_ranges() -> Vec<(String, u64, u64)> {
    std::fs::read_to_string("/etc/subuid")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            Some((
                f.next()?.to_string(),
                f.next()?.parse().ok()?,
                f.next()?.parse().ok()?,
            ))
        })
        .collect()
}

#[test]
fn bootstrap_makes_a_node_from_nothing_and_a_second_run_changes_nothing() {
    let (_serial, _clean, sshd) = begin(USER, SSH_PORT);
    let dir = project(&sshd);
    let root = format!("root@127.0.0.1:{SSH_PORT}");
    let key = sshd.file("client_ed25519.pub");
    let boot = ["bootstrap", "--root", &root, "--key", &key];

    refused_and_dry_runs_change_nothing(&dir, &boot);
    let uid = first_bootstrap_makes_the_user(&dir, &boot);
    release_v1_as_the_new_user(&dir);
    a_second_run_changes_nothing(&dir, &boot);
    dry_runs_on_a_node_have_nothing_to_do(&dir, &boot);
    bootstrap_again_after_a_reboot_without_subordinate_ids(&dir, &boot, uid);
    drop(sshd);
}

#[track_caller]
fn refused_and_dry_runs_change_nothing(dir: &Path, boot: &[&str]) {
    // A binary to upload that is no program stops it before anything changes.
    let config = dir.join("deploy.yaml").display().to_string();
    let out = deploy(dir, &[boot, &["--traefik-bin", &config]].concat());
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("is not a Linux program"), "{stderr}");
    assert_eq!(id_of("-u", USER), None, "a refused bootstrap made the user");

    // --dry-run: every command it would run (an upload too), and nothing done.
    let dry = [boot, &["--dry-run", "--traefik-bin", "/bin/true"]].concat();
    let (stdout, stderr) = ok(deploy(dir, &dry));
    assert!(stdout.contains("# (its stdin: /bin/true)"), "{stdout}");
    assert!(
        stdout.contains("mv -f \"$t\" /usr/local/bin/traefik"),
        "{stdout}"
    );
    assert!(
        stdout.contains("useradd -m -s /bin/bash \"$u\""),
        "{stdout}"
    );
    assert!(stdout.contains("usermod -p '*' \"$u\""), "{stdout}");
    assert!(stdout.contains("Dry run: nothing was changed."), "{stdout}");
    assert!(
        stderr.contains("from /run/deploy-test-bootstrap"),
        "{stderr}"
    );
    assert_eq!(id_of("-u", USER), None, "a dry run made the user");
    assert!(!Path::new(&format!("/var/lib/systemd/linger/{USER}")).exists());
}

/// The bootstrap of a user that does not exist yet: its uid.
#[track_caller]
fn first_bootstrap_makes_the_user(dir: &Path, boot: &[&str]) -> u32 {
    // The bootstrap of a user that does not exist yet.
    let (_, stderr) = ok(deploy(dir, boot));
    for said in [
        format!("Creating the user {USER} ... ok"),
        format!("Authorizing the key ssh-ed25519 bootstrap-test for {USER} ... ok"),
        "does not survive a reboot".into(),
        "rootless Podman 4.".into(),
        ", storage: overlay".into(),
        format!("Logging in as {USER}@127.0.0.1 ... ok"),
        "Then: deploy setup test".into(),
        "Installing deploy".into(),
        "is bootstrapped".into(),
    ] {
        assert!(stderr.contains(&said), "lacks {said:?}:\n{stderr}");
    }
    let uid = id_of("-u", USER).expect("the user exists");
    // Its subordinate range is its own: no overlap with any other.
    let ranges = subuid_ranges();
    let own = ranges.iter().find(|r| r.0 == USER).expect("a subuid range");
    for other in ranges.iter().filter(|r| r.0 != USER) {
        assert!(
            own.1 + own.2 <= other.1 || other.1 + other.2 <= own.1,
            "{own:?} overlaps {other:?}"
        );
    }
    let shadow = text(&run(Command::new("getent").args(["shadow", USER]))).0;
    assert_eq!(shadow.split(':').nth(1), Some("*"), "{shadow}");
    let ssh_dir = PathBuf::from(format!("/home/{USER}/.ssh"));
    let mode = |p: &Path| {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let m = std::fs::metadata(p).unwrap();
        (m.permissions().mode() & 0o777, m.uid())
    };
    assert_eq!(mode(&ssh_dir), (0o700, uid));
    assert_eq!(mode(&ssh_dir.join("authorized_keys")), (0o600, uid));
    let conf =
        std::fs::read_to_string(format!("/home/{USER}/.config/containers/storage.conf")).unwrap();
    assert!(conf.contains("driver = \"overlay\""), "{conf}");

    uid
}

#[track_caller]
fn release_v1_as_the_new_user(dir: &Path) {
    // A release as that user: rootless Podman on overlay, the unit running.
    let (_, stderr) = ok(deploy(dir, &["release", "v1"]));
    assert!(stderr.contains("t-boot v1 is live on test"), "{stderr}");
    let body = get_app();
    assert_eq!(body, "example-app v1 hits=1 greeting=hello boot\n");
    let driver = ok(run(&mut as_boot_user(&[
        "podman",
        "info",
        "--format",
        "{{.Store.GraphDriverName}}",
    ])));
    assert_eq!(driver.0.trim(), "overlay");
    let active = ok(run(&mut as_boot_user(&[
        "systemctl",
        "--user",
        "is-active",
        "t-boot_test.service",
    ])));
    assert_eq!(active.0.trim(), "active");
}

#[track_caller]
fn a_second_run_changes_nothing(dir: &Path, boot: &[&str]) {
    let ssh_dir = PathBuf::from(format!("/home/{USER}/.ssh"));
    // A second run changes nothing, and says so for every step.
    let authorized = std::fs::read_to_string(ssh_dir.join("authorized_keys")).unwrap();
    let (_, stderr) = ok(deploy(dir, boot));
    let steps = step_lines(&stderr);
    assert!(steps.len() >= 8, "{stderr}");
    for line in &steps {
        assert!(line.ends_with("ok, already"), "{line}\n{stderr}");
    }
    assert!(stderr.contains("nothing to change: every step was done already"));
    assert!(stderr.contains("is bootstrapped"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(ssh_dir.join("authorized_keys")).unwrap(),
        authorized,
        "the key was added again"
    );
    assert_eq!(
        subuid_ranges().iter().filter(|r| r.0 == USER).count(),
        1,
        "a second range"
    );
}

#[track_caller]
fn dry_runs_on_a_node_have_nothing_to_do(dir: &Path, boot: &[&str]) {
    // --dry-run on a node: nothing to run.
    let (stdout, stderr) = ok(deploy(dir, &[boot, &["--dry-run"]].concat()));
    assert!(
        !stdout
            .lines()
            .any(|l| l.starts_with("# ") && !l.starts_with("# then")),
        "{stdout}"
    );
    for line in step_lines(&stderr) {
        assert!(line.ends_with("ok, already"), "{line}\n{stderr}");
    }
    // --json: one event per line, none a plan.
    let (stdout, _) = ok(deploy(dir, &[boot, &["--dry-run", "--json"]].concat()));
    for line in stdout.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_ne!(event["event"], "plan", "{line}");
    }
    assert!(stdout.contains("\"outcome\":\"already\""), "{stdout}");
    // The app kept serving through both.
    let body = get_app();
    assert!(body.starts_with("example-app v1"), "{body}");
}

#[track_caller]
fn bootstrap_again_after_a_reboot_without_subordinate_ids(dir: &Path, boot: &[&str], uid: u32) {
    // A reboot of the user's world (where PID 1 is not systemd its manager does not come
    // back by itself), and a user with no subordinate ids (made before, or by a useradd that
    // gives none): bootstrap again starts the manager, which starts the app, and adds the
    // next free range, in both files, overlapping none.
    stop_user_world(USER, uid);
    let own = subuid_ranges().into_iter().find(|r| r.0 == USER).unwrap();
    let range = format!("{}-{}", own.1, own.1 + own.2 - 1);
    ok(run(Command::new("usermod").args([
        "--del-subuids",
        &range,
        "--del-subgids",
        &range,
        USER,
    ])));
    let (_, stderr) = ok(deploy(dir, boot));
    for said in [
        format!("Giving {USER} subordinate uids and gids (rootless Podman) ... ok ("),
        format!("Starting {USER}'s systemd user manager and its D-Bus bus ... ok ("),
    ] {
        assert!(stderr.contains(&said), "lacks {said:?}:\n{stderr}");
    }
    let t = Instant::now();
    while !get_app_once().is_some_and(|b| b.starts_with("example-app v1")) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the app did not come back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let ranges = subuid_ranges();
    let own = ranges
        .iter()
        .find(|r| r.0 == USER)
        .expect("a new subuid range");
    for other in ranges.iter().filter(|r| r.0 != USER) {
        assert!(
            own.1 + own.2 <= other.1 || other.1 + other.2 <= own.1,
            "{own:?} overlaps {other:?}"
        );
    }
    let subgid = std::fs::read_to_string("/etc/subgid").unwrap();
    assert!(
        subgid.contains(&format!("{USER}:{}:{}", own.1, own.2)),
        "{subgid}"
    );
}

#[test]
fn bootstrap_local_makes_this_machine_a_node_and_deploys_ssh_sets_the_runtime_dir() {
    let (_serial, _clean, sshd) = begin(LOCAL_USER, LOCAL_SSH_PORT);
    let key = sshd.file("client_ed25519.pub");
    let local = [
        "bootstrap",
        "--local",
        LOCAL_USER,
        "--key",
        &key,
        "--with",
        "litestream",
    ];
    let here = Path::new("/");

    // --dry-run: the commands, and nothing done.
    let (stdout, _) = ok(deploy(here, &[&local[..], &["--dry-run"]].concat()));
    assert!(
        stdout.contains("useradd -m -s /bin/bash \"$u\""),
        "{stdout}"
    );
    assert!(stdout.contains("Dry run: nothing was changed."), "{stdout}");
    assert_eq!(id_of("-u", LOCAL_USER), None, "a dry run made the user");

    // From nothing: the same steps as over SSH, run here; Litestream, which this machine
    // has, kept (no download); none of the tests' extras.
    let (_, stderr) = ok(deploy(here, &local));
    for said in [
        "-> Reading this machine ... ok".to_string(),
        format!("Creating the user {LOCAL_USER} ... ok"),
        format!("Authorizing the key ssh-ed25519 bootstrap-test for {LOCAL_USER} ... ok"),
        format!("Checking that rootless Podman runs for {LOCAL_USER} ... ok"),
        ", storage: overlay".into(),
        format!("This machine is a node for {LOCAL_USER}"),
    ] {
        assert!(stderr.contains(&said), "lacks {said:?}:\n{stderr}");
    }
    for never in ["Downloading", "for the tests", "a test node's"] {
        assert!(!stderr.contains(never), "{never:?}:\n{stderr}");
    }
    let (_, stderr) = ok(deploy(here, &local));
    let steps: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("-> ") && !l.starts_with("-> Reading"))
        .collect();
    assert!(steps.len() >= 9, "{stderr}");
    for line in &steps {
        assert!(line.ends_with("ok, already"), "{line}\n{stderr}");
    }

    remote_commands_set_the_runtime_dir(&sshd);
    drop(sshd);
}

#[track_caller]
fn remote_commands_set_the_runtime_dir(sshd: &RootSshd) {
    // deploy's remote commands set XDG_RUNTIME_DIR themselves. This sshd sets none (no PAM
    // session, no SetEnv): a plain login of the new user has none and no user manager...
    let uid = id_of("-u", LOCAL_USER).unwrap();
    let script = "echo \"[${XDG_RUNTIME_DIR:-}]\"; systemctl --user is-system-running";
    let plain = run(Command::new("ssh")
        .args([
            "-i",
            &sshd.file("client_ed25519"),
            "-p",
            &sshd.port.to_string(),
        ])
        .args(sshd.options())
        .args(["--", &format!("{LOCAL_USER}@127.0.0.1"), script]));
    let (stdout, stderr) = text(&plain);
    assert!(stdout.starts_with("[]\n"), "{stdout}\n{stderr}");
    assert!(!plain.status.success(), "{stdout}\n{stderr}");
    // ...and deploy's own ssh session reaches both.
    let options = deploy::sys::ssh::SshOptions {
        identity: Some(sshd.file("client_ed25519")),
        jump: None,
        options: sshd.options(),
    };
    let ssh = deploy::sys::ssh::Ssh::new(
        &format!("{LOCAL_USER}@127.0.0.1"),
        Some(sshd.port),
        Some(&options),
        Path::new("/root"),
    )
    .unwrap();
    let (stdout, stderr) = ok(ssh.capture(script).unwrap());
    assert!(
        stdout.starts_with(&format!("[/run/user/{uid}]\n")),
        "{stdout}\n{stderr}"
    );
    let state = stdout.lines().nth(1).unwrap_or_default();
    assert!(
        matches!(state, "running" | "degraded"),
        "{stdout}\n{stderr}"
    );
    drop(ssh);
}
