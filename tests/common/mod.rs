//! The test harness: a real node on this machine. The tests run as root (as CI does); `deploy`
//! runs as the node's user, with that user's `systemd --user` manager and rootless Podman, which
//! `scripts/node-setup` provides (`deploy bootstrap --local --test-node` with the deploy these
//! tests run: it is run here, idempotently, before the first test).
#![allow(dead_code)]

pub mod apps;
pub mod previews;

use deploy::names::Names;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const NODE_USER: &str = "deployer";

pub struct NodeEnv {
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    /// The deploy binary, where the node's user can run it.
    pub deploy: PathBuf,
    /// The example app's static binary.
    pub example_bin: PathBuf,
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[track_caller]
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `scripts/node-setup` for the node user, with the deploy binary these tests run (it runs
/// `deploy bootstrap --local --test-node`).
pub fn node_setup() -> Command {
    let mut c = Command::new(repo().join("scripts/node-setup"));
    c.arg(NODE_USER)
        .env("DEPLOY_BIN", env!("CARGO_BIN_EXE_deploy"));
    c
}

pub fn node() -> &'static NodeEnv {
    static NODE: OnceLock<NodeEnv> = OnceLock::new();
    NODE.get_or_init(|| {
        let whoami = run_ok(Command::new("id").arg("-u"));
        assert_eq!(
            whoami.trim(),
            "0",
            "the integration tests set up a node user and run as root: use scripts/test"
        );
        run_ok(&mut node_setup());
        run_ok(Command::new(repo().join("scripts/test-sshd")).arg(NODE_USER));
        run_ok(&mut Command::new(repo().join("scripts/build-example")));
        let uid: u32 = run_ok(Command::new("id").args(["-u", NODE_USER]))
            .trim()
            .parse()
            .unwrap();
        let gid: u32 = run_ok(Command::new("id").args(["-g", NODE_USER]))
            .trim()
            .parse()
            .unwrap();
        let home = PathBuf::from(format!("/home/{NODE_USER}"));
        let bin_dir = Path::new("/tmp/deploy-tests/bin");
        std::fs::create_dir_all(bin_dir).unwrap();
        // One copy per build (the test binaries of one run share it): deploy keeps one copy of
        // each build it runs from for the server's own units.
        let built = std::fs::metadata(env!("CARGO_BIN_EXE_deploy")).unwrap();
        let deploy = bin_dir.join(format!(
            "deploy-{}-{}",
            built.len(),
            std::os::unix::fs::MetadataExt::mtime(&built)
        ));
        if !deploy.exists() {
            // Copies of earlier builds (135 MB each) go after an hour: a run still using one
            // has its own open.
            for old in std::fs::read_dir(bin_dir).unwrap().flatten() {
                let age = old
                    .metadata()
                    .ok()
                    .and_then(|m| m.modified().ok()?.elapsed().ok());
                if age.is_some_and(|a| a > std::time::Duration::from_secs(3600)) {
                    let _ = std::fs::remove_file(old.path());
                }
            }
            let tmp = bin_dir.join(format!(".deploy-{}", std::process::id()));
            std::fs::copy(env!("CARGO_BIN_EXE_deploy"), &tmp).unwrap();
            std::fs::rename(&tmp, &deploy).unwrap();
        }
        chmod(bin_dir, 0o755);
        chmod(Path::new("/tmp/deploy-tests"), 0o755);
        NodeEnv {
            uid,
            gid,
            home,
            deploy,
            example_bin: repo().join("examples/app/dist/example-app"),
        }
    })
}

/// A small tmpfs mounted on the app's directory on the node, unmounted when dropped.
pub struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    #[track_caller]
    pub fn mount(dir: &std::path::Path, size: &str) -> SmallDisk {
        // As the node user: a parent made here as root (`~/tests` on a fresh machine) would
        // lock every other test out of it.
        let made = as_user(Path::new("mkdir"), &["-p"], Path::new("/"))
            .arg(dir)
            .status()
            .unwrap();
        assert!(
            made.success(),
            "mkdir -p {} as the node user",
            dir.display()
        );
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755")])
            .arg("tmpfs")
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount a tmpfs on {}", dir.display());
        let n = node();
        std::os::unix::fs::chown(dir, Some(n.uid), Some(n.gid)).unwrap();
        SmallDisk(dir.to_path_buf())
    }
}

impl SmallDisk {
    /// An XFS file system with reflinks (as RHEL's and Rocky's default is), on a loop file of
    /// `mb` megabytes, mounted on `dir`.
    #[track_caller]
    pub fn xfs(dir: &std::path::Path, mb: u32) -> SmallDisk {
        let made = as_user(Path::new("mkdir"), &["-p"], Path::new("/"))
            .arg(dir)
            .status()
            .unwrap();
        assert!(made.success(), "mkdir -p {}", dir.display());
        let image = PathBuf::from(format!(
            "/tmp/deploy-tests/xfs-{}.img",
            dir.file_name().unwrap().to_string_lossy()
        ));
        let _ = std::fs::remove_file(&image);
        let sh = format!(
            "truncate -s {mb}M {img} && mkfs.xfs -q -m reflink=1 {img} && mount -o loop {img} {dir}",
            img = image.display(),
            dir = dir.display()
        );
        let ok = Command::new("sh")
            .args(["-c", &sh])
            .status()
            .unwrap()
            .success();
        assert!(
            ok,
            "an XFS with reflinks on {} (xfsprogs: scripts/test installs it)",
            dir.display()
        );
        let n = node();
        std::os::unix::fs::chown(dir, Some(n.uid), Some(n.gid)).unwrap();
        SmallDisk(dir.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("--lazy")
            .arg(&self.0)
            .status();
    }
}

/// The one data snapshot a release has (deploy keeps only the newest).
#[track_caller]
pub fn only_snapshot(root: &Path, version: &str) -> PathBuf {
    let dir = root
        .join("releases")
        .join(version)
        .join(".deploy/snapshots");
    let all: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(all.len(), 1, "{all:?}");
    all.into_iter().next().unwrap()
}

/// Rows of a table in a database that nothing writes (a snapshot), read without creating any
/// file beside it (the tests run as root; the node user owns these files).
#[track_caller]
pub fn rows(db: &Path, table: &str) -> i64 {
    let uri = format!("file:{}?immutable=1", db.display());
    let conn = rusqlite::Connection::open_with_flags(
        uri,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )
    .unwrap();
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// Everything deploy keeps under `<path>/.deploy/` and `releases/*/.deploy/` (logs, state,
/// snapshots, the config) is the node user's alone: directories 0700, files 0600 (programs
/// 0700).
#[track_caller]
pub fn assert_private(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut metas = vec![root.join(".deploy")];
    for r in std::fs::read_dir(root.join("releases")).unwrap().flatten() {
        metas.push(r.path().join(".deploy"));
    }
    let mut seen = 0;
    while let Some(p) = metas.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let mode = m.permissions().mode() & 0o777;
        seen += 1;
        if m.is_dir() {
            assert_eq!(mode, 0o700, "{} is {mode:o}", p.display());
            metas.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        } else if m.is_file() {
            assert!(
                mode == 0o600 || mode == 0o700,
                "{} is {mode:o}",
                p.display()
            );
        }
    }
    assert!(seen > 5, "walked {seen} entries under {}", root.display());
}

/// Waits until `file` holds `text`, for at most `within`; returns what it holds then.
#[track_caller]
pub fn wait_for_text(file: &Path, text: &str, within: Duration) -> String {
    let t = Instant::now();
    loop {
        let now = std::fs::read_to_string(file).unwrap_or_default();
        if now.contains(text) {
            return now;
        }
        assert!(
            t.elapsed() < within,
            "{} does not hold {text:?} after {within:?}:\n{now}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Raises this process's open-files limit to its hard limit (a test that holds thousands of
/// connections).
pub fn many_files() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = l.rlim_max.min(1 << 16);
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
    }
}

/// Gives a tree to the node user (files a test wrote there as root).
#[track_caller]
pub fn chown_to_node_user(p: &Path) {
    let n = node();
    run_ok(
        Command::new("chown")
            .args(["-R", &format!("{}:{}", n.uid, n.gid)])
            .arg(p),
    );
}

#[track_caller]
pub fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A user of the server that deploy runs as: its name, ids and home.
#[derive(Debug, Clone)]
pub struct NodeUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl NodeUser {
    /// The node user every test shares ([`NODE_USER`]).
    pub fn shared() -> NodeUser {
        let n = node();
        NodeUser {
            name: NODE_USER.into(),
            uid: n.uid,
            gid: n.gid,
            home: n.home.clone(),
        }
    }

    /// A command run as this user, with its session's environment and `env` added.
    pub fn command(
        &self,
        program: &Path,
        args: &[&str],
        dir: &Path,
        env: &[(&str, &str)],
    ) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--init-groups")
            .args(["env", "-i"])
            .arg(format!("HOME={}", self.home.display()))
            .arg(format!("USER={}", self.name))
            .arg("PATH=/usr/local/bin:/usr/bin:/bin")
            .arg(format!("XDG_RUNTIME_DIR=/run/user/{}", self.uid))
            .arg(format!(
                "DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/{}/bus",
                self.uid
            ))
            .args(env.iter().map(|(k, v)| format!("{k}={v}")))
            .arg(program)
            .args(args)
            .current_dir(dir);
        c
    }
}

/// The node user of its own that tests use whose managed Traefik no other test may share (one
/// that stops it, one that counts every failed request while it restarts): made as the shared
/// node user is, by scripts/node-setup, its own `systemd --user` manager and rootless Podman.
pub const LONE_USER: &str = "deploy-alone";

pub fn lone_user() -> &'static NodeUser {
    static LONE: OnceLock<NodeUser> = OnceLock::new();
    LONE.get_or_init(|| {
        node();
        run_ok(Command::new(repo().join("scripts/node-setup")).arg(LONE_USER));
        let id = |flag: &str| -> u32 {
            run_ok(Command::new("id").args([flag, LONE_USER]))
                .trim()
                .parse()
                .unwrap()
        };
        let home = run_ok(Command::new("getent").args(["passwd", LONE_USER]));
        NodeUser {
            name: LONE_USER.into(),
            uid: id("-u"),
            gid: id("-g"),
            home: PathBuf::from(home.trim().split(':').nth(5).unwrap()),
        }
    })
}

/// A command run as the node's user, with its session's environment.
pub fn as_user(program: &Path, args: &[&str], dir: &Path) -> Command {
    as_user_env(program, args, dir, &[])
}

/// [`as_user`] with extra environment variables.
pub fn as_user_env(program: &Path, args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Command {
    NodeUser::shared().command(program, args, dir, env)
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    /// The signal that ended it, if one did (a kill the test hook sent).
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            signal: std::os::unix::process::ExitStatusExt::signal(&out.status),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
    /// Asserts that stderr (where deploy says what it does) contains `text`.
    #[track_caller]
    pub fn says(&self, text: &str) -> &Run {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}:\n{}",
            self.stderr
        );
        self
    }

    /// Asserts that stdout (reports) contains `text`.
    #[track_caller]
    pub fn prints(&self, text: &str) -> &Run {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}:\n{}",
            self.stdout
        );
        self
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "expected success:\n{}\n{}",
            self.stdout, self.stderr
        );
        self
    }
    #[track_caller]
    pub fn failed(self) -> Run {
        assert_ne!(
            self.code, 0,
            "expected failure:\n{}\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// GET through Traefik's entry point with a Host: (status, Retry-After, body).
pub fn get_front_as(host: &str, path: &str) -> Result<(u16, Option<String>, String), String> {
    let mut r = agent()
        .get(format!("http://127.0.0.1:{TRAEFIK_WEB}{path}"))
        .header("Host", host)
        .call()
        .map_err(|e| e.to_string())?;
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap_or_default().to_string());
    Ok((
        r.status().as_u16(),
        retry_after,
        r.body_mut().read_to_string().unwrap_or_default(),
    ))
}

fn agent() -> ureq::Agent {
    agent_for(Duration::from_secs(15))
}

/// An HTTP client for 127.0.0.1 (no proxy) that takes any status as an answer and gives up on a
/// request after `timeout`.
pub fn agent_for(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .proxy(None)
        .build()
        .into()
}

/// A running load; [`Load::finish`] stops it and counts the answers.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<Sample>>>,
}

/// One request of a load: its outcome (the status, or `error: ...`), when it was sent and how
/// long it took.
#[derive(Debug, Clone)]
pub struct Sample {
    pub outcome: String,
    pub sent: std::time::Instant,
    pub took: Duration,
}

#[derive(Debug)]
pub struct LoadSummary {
    pub ok: usize,
    pub maintenance: usize,
    /// Anything else: 502, 504, resets, timeouts, with a sample.
    pub other: Vec<String>,
    pub max_latency: Duration,
}

impl Load {
    #[track_caller]
    pub fn finish(self) -> LoadSummary {
        let mut s = LoadSummary {
            ok: 0,
            maintenance: 0,
            other: Vec::new(),
            max_latency: Duration::ZERO,
        };
        for sample in self.samples() {
            s.max_latency = s.max_latency.max(sample.took);
            match sample.outcome.as_str() {
                "200" => s.ok += 1,
                "503" => s.maintenance += 1,
                _ => s.other.push(sample.outcome),
            }
        }
        s
    }

    /// Stops the load: every request it sent, in no particular order.
    pub fn samples(self) -> Vec<Sample> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    }
}

/// One app deployed by a test: its own name, port and directories.
/// One stage of a release, or one step of its swap, as its `--dry-run --json` plans it.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub name: String,
    /// The fault-injection point a run reaches once it is done (`after-<name>`).
    pub point: String,
    /// It runs inside the swap (its journal exists meanwhile).
    pub swap: bool,
    /// The step lines it shows while it runs.
    pub steps: Vec<String>,
}

pub struct Project {
    pub app: String,
    pub dir: PathBuf,
    pub port: u16,
    /// The node user it is deployed as.
    pub user: NodeUser,
}

pub struct Options {
    pub keep_releases: usize,
    pub health_timeout: &'static str,
    /// A `traefik:` section, if any (see [`traefik_section`]).
    pub traefik: Option<String>,
    /// The environment is the node user on the test sshd (127.0.0.1:2222), not `local`; run
    /// `deploy` then with [`Project::deploy_remote`], as root, like a laptop would.
    pub remote: bool,
    /// The node user deploy runs as (a local environment): the shared one if none.
    pub user: Option<NodeUser>,
}

/// What scripts/test-sshd sets up.
pub const SSHD_DIR: &str = "/etc/deploy-test-sshd";

/// The managed Traefik all tests share (one per node user, as on a real server).
pub const TRAEFIK_WEB: u16 = 18400;
pub const TRAEFIK_API: u16 = 18499;

/// A `traefik:` section with the shared managed Traefik, routing `Host(<app>.test)`.
pub fn traefik_section(app: &str, gap: &str, extra: &str) -> String {
    format!(
        "traefik:\n  api: http://127.0.0.1:{TRAEFIK_API}\n  rule: Host(`{app}.test`)\n  entrypoints: [web]\n  \
         gap: {gap}\n  hold: 5s\n  manage:\n    entrypoints:\n      web: 127.0.0.1:{TRAEFIK_WEB}\n{extra}"
    )
}

impl Default for Options {
    fn default() -> Self {
        Options {
            keep_releases: 5,
            health_timeout: "20s",
            traefik: None,
            remote: false,
            user: None,
        }
    }
}

impl Project {
    #[track_caller]
    pub fn new(app: &str, port: u16, opts: Options) -> Project {
        let n = node();
        let p = Project {
            app: app.to_string(),
            dir: PathBuf::from(format!("/tmp/deploy-tests/{app}")),
            port,
            user: opts.user.clone().unwrap_or_else(NodeUser::shared),
        };
        p.clean();
        std::fs::create_dir_all(p.dir.join("dist")).unwrap();
        std::fs::create_dir_all(p.dir.join("assets")).unwrap();
        std::fs::copy(&n.example_bin, p.dir.join("dist/example-app")).unwrap();
        std::fs::copy(
            repo().join("examples/app/Containerfile"),
            p.dir.join("Containerfile"),
        )
        .unwrap();
        p.write("assets/greeting.txt", "hello one");
        let yaml = format!(
            "app: {app}\nkeep_releases: {keep}\nartifacts:\n  - dist/example-app\n  - assets\n  - Containerfile\n\
             shared:\n  dirs: [data]\n  files: [.env]\ncontainer:\n  port: 8080\n  mounts:\n    data: /app/data\n  stop_timeout: 5s\n\
             health:\n  path: /healthz\n  timeout: {timeout}\n  interval: 100ms\n\
             environments:\n  test:\n    host: {host}\n    path: ~/tests/{app}\n    port: {port}\n{ssh}",
            keep = opts.keep_releases,
            timeout = opts.health_timeout,
            host = if opts.remote { "deployer@127.0.0.1:2222" } else { "local" },
            ssh = if opts.remote {
                format!(
                    "    ssh:\n      identity: {SSHD_DIR}/client_ed25519\n      options: [\"-o\", \"UserKnownHostsFile={SSHD_DIR}/known_hosts\", \"-o\", \"StrictHostKeyChecking=yes\", \"-o\", \"BatchMode=yes\"]\n"
                )
            } else {
                String::new()
            },
        );
        let yaml = yaml + opts.traefik.as_deref().unwrap_or("");
        p.write("deploy.yaml", &yaml);
        p
    }

    /// Writes a file in the project (as the user's).
    #[track_caller]
    pub fn write(&self, rel: &str, text: &str) {
        let path = self.dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        self.chown();
    }

    /// Appends YAML to the project's deploy.yaml (a `hooks:` section, say).
    #[track_caller]
    pub fn add_to_config(&self, yaml: &str) {
        let config = std::fs::read_to_string(self.dir.join("deploy.yaml")).unwrap();
        self.write("deploy.yaml", &format!("{config}{yaml}"));
    }

    #[track_caller]
    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.dir.join(rel)).unwrap();
    }

    #[track_caller]
    fn chown(&self) {
        run_ok(
            Command::new("chown")
                .args(["-R", &format!("{}:{}", self.user.uid, self.user.gid)])
                .arg(&self.dir),
        );
    }

    pub fn root(&self) -> PathBuf {
        self.user.home.join("tests").join(&self.app)
    }

    #[track_caller]
    pub fn deploy(&self, args: &[&str]) -> Run {
        Run::from(self.deploy_cmd(&[], args).output().unwrap())
    }

    /// `deploy` with extra environment (e.g. the test hook), not yet started; setpriv and env
    /// exec, so the child's pid is deploy's.
    pub fn deploy_cmd(&self, env: &[(&str, &str)], args: &[&str]) -> Command {
        let mut c = self.user.command(&node().deploy, args, &self.dir, env);
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c
    }

    /// `deploy` as root in the project directory: the side that reaches a remote environment.
    pub fn remote_cmd(&self, env: &[(&str, &str)], args: &[&str]) -> Command {
        let mut c = Command::new(&node().deploy);
        c.args(args)
            .envs(env.iter().copied())
            .current_dir(&self.dir);
        c
    }

    #[track_caller]
    pub fn deploy_remote(&self, args: &[&str]) -> Run {
        self.deploy_remote_env(&[], args)
    }

    #[track_caller]
    pub fn deploy_remote_env(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        Run::from(self.remote_cmd(env, args).output().unwrap())
    }

    #[track_caller]
    pub fn deploy_env(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        Run::from(self.deploy_cmd(env, args).output().unwrap())
    }

    #[track_caller]
    pub fn wait(child: std::process::Child) -> Run {
        Run::from(child.wait_with_output().unwrap())
    }

    /// Runs a program as the node's user in the project directory.
    #[track_caller]
    pub fn user(&self, program: &str, args: &[&str]) -> Run {
        let dir = match self.dir.is_dir() {
            true => &self.dir,
            false => Path::new("/"),
        };
        Run::from(
            self.user
                .command(Path::new(program), args, dir, &[])
                .output()
                .unwrap(),
        )
    }

    #[track_caller]
    pub fn current(&self) -> Option<String> {
        std::fs::read_link(self.root().join("current"))
            .ok()
            .map(|t| t.file_name().unwrap().to_string_lossy().into_owned())
    }

    #[track_caller]
    pub fn releases_on_disk(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.root().join("releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// GET on the app's port: (status, body).
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        let mut r = agent()
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .call()
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        Ok((status, r.body_mut().read_to_string().unwrap_or_default()))
    }

    /// GET through Traefik's entry point, with this app's Host: (status, Retry-After, body).
    pub fn get_front(&self, path: &str) -> Result<(u16, Option<String>, String), String> {
        get_front_as(&format!("{}.test", self.app), path)
    }

    /// Starts a steady load through Traefik: `clients` threads sending GET / one after another,
    /// each on its own keep-alive connection (as browsers do; a new connection per request would
    /// exhaust loopback ports with TIME_WAIT at these rates).
    pub fn load(&self, clients: usize) -> Load {
        self.load_at(TRAEFIK_WEB, clients)
    }

    /// [`Project::load`] through the Traefik entry point on `port`.
    pub fn load_at(&self, port: u16, clients: usize) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                let host = format!("{}.test", self.app);
                std::thread::spawn(move || {
                    let agent = agent();
                    let mut seen = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        let sent = std::time::Instant::now();
                        let outcome = agent
                            .get(format!("http://127.0.0.1:{port}/"))
                            .header("Host", &host)
                            .call()
                            .map(|r| r.status().as_u16().to_string())
                            .unwrap_or_else(|e| format!("error: {e}"));
                        seen.push(Sample {
                            outcome,
                            sent,
                            took: sent.elapsed(),
                        });
                    }
                    seen
                })
            })
            .collect();
        Load { stop, threads }
    }

    #[track_caller]
    pub fn body(&self, path: &str) -> String {
        let (status, body) = self.get(path).unwrap();
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// GET on another port (another environment's app): the body of a 200.
    #[track_caller]
    pub fn body_at(&self, port: u16, path: &str) -> String {
        let mut r = agent()
            .get(format!("http://127.0.0.1:{port}{path}"))
            .call()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "GET :{port}{path}");
        r.body_mut().read_to_string().unwrap()
    }

    #[track_caller]
    pub fn image_exists(&self, version: &str) -> bool {
        self.user("podman", &["image", "exists", &self.names().image(version)])
            .code
            == 0
    }

    /// Stops the server's own recovery of a swap whose process died (its path unit), for a
    /// test of what the next command does with a journal left behind.
    #[track_caller]
    pub fn without_server_recovery(&self) {
        let names = self.names();
        for unit in [names.recover_path_unit(), names.recover_unit()] {
            self.user("systemctl", &["--user", "stop", &unit]).ok();
        }
    }

    /// The plan of `deploy release VERSION` as the command gives it (`--dry-run --json`): its
    /// stages, each step of its swap among them, in the order a release runs them.
    #[track_caller]
    pub fn release_plan(&self, version: &str) -> Vec<Planned> {
        let r = self
            .deploy(&["release", version, "--dry-run", "--json"])
            .ok();
        let doc: serde_json::Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("the plan is not JSON ({e}): {}", r.stdout));
        let stages = doc["stages"].as_array().expect("stages");
        let text = |v: &serde_json::Value| v.as_str().expect("a string").to_string();
        stages
            .iter()
            .map(|s| Planned {
                name: text(&s["name"]),
                point: text(&s["point"]),
                swap: s["swap"].as_bool().expect("swap"),
                steps: s["steps"]
                    .as_array()
                    .expect("steps")
                    .iter()
                    .map(text)
                    .collect(),
            })
            .collect()
    }

    /// A node with v1 live: `deploy setup`, then `deploy release v1`, both succeeding.
    #[track_caller]
    pub fn with_v1_live(&self) {
        self.deploy(&["setup"]).ok();
        self.deploy(&["release", "v1"]).ok();
        assert_eq!(self.current().as_deref(), Some("v1"), "v1 is live");
    }

    /// The swap's journal (only while a swap runs, or after one died).
    pub fn journal(&self) -> PathBuf {
        self.root().join(".deploy/swap.journal")
    }

    /// Waits (up to 180 s: a loaded CI machine took 60 s to bring a release of the fence tests
    /// to its hook) until the swap's journal has an entry `t` (`begin`, `done`) of `step`;
    /// returns the journal then.
    #[track_caller]
    pub fn wait_for_journal(&self, t: &str, step: &str) -> String {
        let entry = format!("{{\"t\":\"{t}\",\"step\":\"{step}\"");
        wait_for_text(&self.journal(), &entry, Duration::from_secs(180))
    }

    /// Waits (up to `within`) until no swap journal is left and `ready` holds: the server's own
    /// recovery, with no command typed. Fails with `what` beyond it.
    #[track_caller]
    pub fn wait_settled(&self, within: Duration, what: &str, ready: impl Fn(&Project) -> bool) {
        let t = Instant::now();
        loop {
            if !self.journal().exists() && ready(self) {
                return;
            }
            assert!(t.elapsed() < within, "{what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One query of the app's database (`shared/data/app.db`) with the sqlite3 shell, as the
    /// node user: its output, trimmed.
    #[track_caller]
    pub fn sql(&self, query: &str) -> String {
        let db = self.root().join("shared/data/app.db");
        self.user("sqlite3", &[db.to_str().unwrap(), query])
            .ok()
            .stdout
            .trim()
            .to_string()
    }

    /// The names of the app's environment (always `test`): its units, container, images,
    /// from deploy's own naming scheme.
    pub fn names(&self) -> Names {
        Names::new(&self.app, "test")
    }

    /// The app's unit.
    pub fn unit(&self) -> String {
        self.names().unit()
    }

    /// Stops the app and removes everything a previous run left: its `test` environment and,
    /// when a test adds one, its `prod` environment at `~/tests/<app>-prod`.
    pub fn clean(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        for (env, root) in [("test", self.root()), ("prod", self.root_of("prod"))] {
            self.clean_env(env, &root);
        }
    }

    /// An empty directory for this app's `file://` replica, the node user's.
    #[track_caller]
    pub fn file_replica(&self) -> PathBuf {
        let dir = PathBuf::from("/tmp/deploy-tests/replicas").join(&self.app);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // The parent alone, not its tree: other tests' replicas in it come and go meanwhile.
        let n = node();
        std::os::unix::fs::chown(dir.parent().unwrap(), Some(n.uid), Some(n.gid)).unwrap();
        chown_to_node_user(&dir);
        dir
    }

    /// Where an extra environment of the app lives (its `path` must be this).
    pub fn root_of(&self, env: &str) -> PathBuf {
        self.user
            .home
            .join("tests")
            .join(format!("{}-{env}", self.app))
    }

    fn clean_env(&self, env: &str, root: &Path) {
        let n = Names::new(&self.app, env);
        let names = n.base();
        let unit_dir = self.user.home.join(".config/systemd/user");
        // The jobs' timers and services, and their runs' transient units.
        let jobs: Vec<String> = std::fs::read_dir(&unit_dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|f| f.starts_with(&format!("{names}_job_")))
                    .collect()
            })
            .unwrap_or_default();
        let _ = self.user("systemctl", &["--user", "stop", &format!("{names}_job_*")]);
        let had_jobs = !jobs.is_empty();
        for unit in [
            n.unit(),
            n.gap_unit(),
            n.replication_unit(),
            n.recover_path_unit(),
            n.recover_unit(),
            n.verify_timer(),
            n.verify_service(),
        ]
        .into_iter()
        .chain(jobs)
        {
            let _ = self.user("systemctl", &["--user", "stop", &unit]);
            let _ = self.user("systemctl", &["--user", "disable", &unit]);
            let _ = std::fs::remove_file(unit_dir.join(&unit));
        }
        if had_jobs {
            let _ = self.user("systemctl", &["--user", "daemon-reload"]);
        }
        // One-off containers (exec, jobs) a test left running.
        let left = self.user(
            "podman",
            &[
                "ps",
                "--all",
                "--quiet",
                "--filter",
                &format!("label={}", n.writer_label()),
            ],
        );
        for id in left.stdout.split_whitespace() {
            let _ = self.user("podman", &["rm", "--force", "--time", "0", id]);
        }
        // The app's own container, when a test that failed left it (exited, not removed): it
        // would keep its image, and a leftover image would pass for the next run's build.
        let _ = self.user(
            "podman",
            &["rm", "--force", "--ignore", "--time", "0", &n.container()],
        );
        let _ = std::fs::remove_dir_all(root);
        let dynamic = self.user.home.join(".config/traefik/dynamic");
        for file in [
            n.dynamic_file(),
            format!("{}.yaml", deploy::names::legacy::router(&self.app, env)),
        ] {
            let _ = std::fs::remove_file(dynamic.join(file));
        }
        self.remove_images(&n);
    }

    /// The app's images in the node user's store.
    fn remove_images(&self, n: &Names) {
        // By name, never by id: identical builds of other tests' apps share image ids. The
        // filter matches images and lists every name of each, so keep only this app's names.
        let images = self.user(
            "podman",
            &[
                "images",
                "--format",
                "{{.Repository}}:{{.Tag}}",
                "--filter",
                &format!("reference={}", n.image_repository()),
            ],
        );
        let own = format!("{}:", n.image_repository());
        for name in images
            .stdout
            .split_whitespace()
            .filter(|n| n.starts_with(&own))
        {
            let _ = self.user("podman", &["image", "rm", name]);
        }
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.clean();
        } else {
            // Keep the files for a look, but free the port.
            let _ = self.user("systemctl", &["--user", "stop", &self.unit()]);
        }
    }
}

/// A reboot of the node user's world: every container removed, the user's systemd manager
/// stopped (`systemctl --user exit`), then started again as at boot (enabled units start).
#[track_caller]
pub fn reboot_user_manager() {
    let n = node();
    let user = |args: &[&str]| {
        as_user(Path::new(args[0]), &args[1..], Path::new("/"))
            .output()
            .unwrap()
    };
    user(&["podman", "rm", "--force", "--all", "--time", "0"]);
    user(&["systemctl", "--user", "exit"]);
    let t = std::time::Instant::now();
    let manager_runs = || {
        Command::new("pgrep")
            .args(["-u", &n.uid.to_string(), "-f", "systemd --user"])
            .output()
            .unwrap()
            .status
            .success()
    };
    while manager_runs() && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    user(&["podman", "rm", "--force", "--all", "--time", "0"]);
    assert!(!manager_runs(), "the user's manager did not exit");
    run_ok(&mut node_setup());
}

/// The server is lost: every process of the app and of Litestream SIGKILLed (their units then
/// stopped, so nothing restarts them), and shared/data wiped.
/// An app replicating to its own `file://` replica (`extra`: more of its config), set up,
/// released as v1 with `hits` rows written, and replicated (Litestream syncs every second).
#[track_caller]
pub fn replicated(app: &str, port: u16, extra: &str, hits: usize) -> Project {
    let p = Project::new(app, port, Options::default());
    let dir = p.file_replica();
    p.add_to_config(&format!(
        "replicate:\n  url: file://{}\n{extra}",
        dir.display()
    ));
    p.deploy(&["setup"]).ok();
    p.deploy(&["release", "v1"]).ok();
    for _ in 0..hits {
        p.body("/");
    }
    std::thread::sleep(Duration::from_millis(2500));
    p
}

#[track_caller]
pub fn lose_the_server(p: &Project) {
    let units = [p.unit(), p.names().replication_unit()];
    for unit in &units {
        p.user("systemctl", &["--user", "kill", "--signal=SIGKILL", unit]);
    }
    p.user(
        "podman",
        &["kill", "--signal", "KILL", &p.names().container()],
    );
    for unit in &units {
        p.user("systemctl", &["--user", "stop", unit]);
    }
    let data = p.root().join("shared/data");
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    chown_to_node_user(&data);
}
