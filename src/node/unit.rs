//! The systemd user unit of an app and the per-release env file it reads. Pure: renders text
//! from the template in `units/`, embedded in the binary.

use crate::node::layout::Layout;
use anyhow::Result;
use serde::Serialize;

const APP_SERVICE: &str = include_str!("../../units/app.service");
const APP_SOCKET: &str = include_str!("../../units/app.socket");

/// The release variables' file of the current release under the app directory `root`. Pure.
pub fn current_vars(root: &str) -> String {
    format!(
        "{root}/current/{}/{}",
        crate::node::layout::RELEASE_META,
        crate::node::appenv::FILE
    )
}

/// What a unit is made from: everything is fixed per environment, nothing per release.
#[derive(Debug, Clone, Serialize)]
pub struct UnitSpec {
    pub app: String,
    /// The environment's name (hooks get it as DEPLOY_ENV).
    pub env: String,
    /// Socket activation: no published port; a start waits while `hold` exists (a swap).
    pub socket: bool,
    pub hold: String,
    pub start_timeout: u64,
    /// The app's container (`--name`), and the one-off container of an `in_gap` hook.
    pub container: String,
    pub hook_container: String,
    /// The label of every one-off container of the environment ([`crate::names::Names::writer_label`]).
    pub writer_label: String,
    pub root: String,
    /// The per-release env file, read through `current`.
    pub release_env: String,
    pub port: u16,
    pub container_port: u16,
    pub log: String,
    /// The unit's stderr (podman's own messages; the app's output goes to `log`).
    pub unit_log: String,
    pub env_file: Option<String>,
    pub mounts: Vec<Mount>,
    /// Whether the mounts are labelled for the app's containers (SELinux).
    pub label: VolumeLabel,
    pub stop_timeout: u64,
    /// The longest stop any release may ask for (the unit's `TimeoutStopSec` is this + 30).
    pub max_stop_timeout: u64,
    /// `--init`: the app under catatonit as PID 1.
    pub init: bool,
    /// The health check (path, timeout and interval in ms): kept with each release.
    pub health: (String, u64, u64),
}

/// How a release runs, written into its own `release.env` and read by the unit through
/// `current`: its podman arguments (`$DEPLOY_ARGS`, split by systemd on white space: the
/// shared env file, the mounts, `--init`), its container's port and its stop timeout. So a
/// rollback, a put-back, a recovery and a boot run each release as it was made, and the unit's
/// text never changes between releases (no daemon-reload in a gap). Pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSettings {
    pub args: Vec<String>,
    pub container_port: u16,
    pub stop_timeout: u64,
    /// Its health check: the path, and the timeout and interval in milliseconds.
    pub health: (String, u64, u64),
}

impl RunSettings {
    pub fn of(spec: &UnitSpec) -> RunSettings {
        let mut args = Vec::new();
        if spec.init {
            args.push("--init".to_string());
        }
        if let Some(env) = &spec.env_file {
            args.extend(["--env-file".into(), env.clone()]);
        }
        for m in &spec.mounts {
            args.extend(["--volume".into(), spec.volume(m)]);
        }
        RunSettings {
            args,
            container_port: spec.container_port,
            stop_timeout: spec.stop_timeout,
            health: spec.health.clone(),
        }
    }

    /// Its lines of `release.env`.
    fn lines(&self) -> String {
        let (path, timeout, interval) = &self.health;
        format!(
            "{ARGS_KEY}{}\nDEPLOY_CONTAINER_PORT={}\nDEPLOY_STOP_TIMEOUT={}\n\
             DEPLOY_HEALTH_PATH={path}\nDEPLOY_HEALTH_TIMEOUT_MS={timeout}\n\
             DEPLOY_HEALTH_INTERVAL_MS={interval}\n",
            self.args.join(" "),
            self.container_port,
            self.stop_timeout
        )
    }
}

/// The health check a release was made with, from its `release.env`: `None` for one made
/// before releases kept it (the environment's then). Pure.
pub fn health_of(release_env: &str) -> Option<crate::config::Health> {
    let get = |key: &str| {
        release_env
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_string)
    };
    let ms = |key: &str| -> Option<std::time::Duration> {
        get(key)?.parse().ok().map(std::time::Duration::from_millis)
    };
    Some(crate::config::Health {
        path: get("DEPLOY_HEALTH_PATH")?,
        timeout: ms("DEPLOY_HEALTH_TIMEOUT_MS")?,
        interval: ms("DEPLOY_HEALTH_INTERVAL_MS")?,
    })
}

/// The line of `release.env` that holds a release's podman arguments; a release made before
/// it existed lacks it ([`with_run_settings`]).
pub const ARGS_KEY: &str = "DEPLOY_ARGS=";

/// A `release.env` of a release made before releases carried their run settings, completed
/// with `run` (what the environment's unit ran it with then); `None` when it has them. Pure.
pub fn with_run_settings(text: &str, run: &RunSettings) -> Option<String> {
    (!text.lines().any(|l| l.starts_with(ARGS_KEY))).then(|| format!("{text}{}", run.lines()))
}

/// The `release.env` line that names the signal the unit's stop sends (see units/app.service).
pub const STOP_SIGNAL_KEY: &str = "DEPLOY_STOP_SIGNAL=";

/// `release.env`'s text with the number of the signal that stops its image (a line replaced or
/// added). A release without it is stopped by `podman stop`, which asks the image itself. Pure.
pub fn with_stop_signal(text: &str, signal: u8) -> String {
    let mut out: String = text
        .lines()
        .filter(|l| !l.starts_with(STOP_SIGNAL_KEY))
        .map(|l| format!("{l}\n"))
        .collect();
    out += &format!("{STOP_SIGNAL_KEY}{signal}\n");
    out
}

/// A shared directory in the app's containers: `host` (under `shared/`, or a preview's data
/// being scrubbed) at `container`.
#[derive(Debug, Clone, Serialize)]
pub struct Mount {
    pub host: String,
    pub container: String,
}

/// How the app's mounts are labelled. On a server with SELinux enabled a container may only
/// use files labelled for containers: Podman relabels a mount given `:z` (container_file_t,
/// shared by every container of the app: its own, the hooks', execs' and jobs'). The node
/// says which when it makes a unit's settings ([`Self::of`]); the renderers only read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum VolumeLabel {
    /// No SELinux: the mounts as they are.
    #[default]
    Unlabelled,
    /// SELinux enabled: every mount inside the app's directory gets `:z`.
    Shared,
}

impl VolumeLabel {
    /// The labels for a server whose SELinux is enabled (`Some`: enforcing or permissive) or
    /// not. Pure.
    pub fn of(selinux: Option<crate::sys::selinux::Mode>) -> VolumeLabel {
        match selinux {
            Some(_) => VolumeLabel::Shared,
            None => VolumeLabel::Unlabelled,
        }
    }
}

/// The mounts of a release's `release.env` (its `--volume` arguments) that have no label. Pure.
pub fn unlabelled_volumes(release_env: &str) -> Vec<String> {
    let Some(args) = release_env.lines().find_map(|l| l.strip_prefix(ARGS_KEY)) else {
        return Vec::new();
    };
    let words: Vec<&str> = args.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "--volume" && !w[1].ends_with(":z"))
        .map(|w| w[1].to_string())
        .collect()
}

/// `path` is below `root`, each part a plain name: what `:z` may relabel. Pure.
fn inside(path: &str, root: &str) -> bool {
    use std::path::{Component, Path};
    match Path::new(path).strip_prefix(root) {
        Ok(rel) => {
            rel.components().next().is_some()
                && rel.components().all(|c| matches!(c, Component::Normal(_)))
        }
        Err(_) => false,
    }
}

pub fn render(spec: &UnitSpec) -> Result<String> {
    crate::template::render("app.service", APP_SERVICE, spec)
}

/// The socket unit of socket mode: the app's port, held by systemd across releases.
pub fn render_socket(spec: &UnitSpec) -> Result<String> {
    crate::template::render("app.socket", APP_SOCKET, spec)
}

/// `podman run` arguments for an `in_gap` hook: a one-off container of `image` with the app's
/// env and mounts, running `command` (its first word the program, the rest its arguments). Pure.
pub fn hook_args(
    spec: &UnitSpec,
    image: &str,
    release: (&str, Option<&str>),
    command: &str,
) -> Vec<String> {
    // Validated with the config: it splits, into at least one word.
    let words = crate::sys::shell::sh_split(command).unwrap_or_default();
    // `--replace`: a hook container its swap left (killed) goes; the name is the hook's alone.
    let head = [
        "--name".to_string(),
        spec.hook_container.clone(),
        "--replace".into(),
        "--label".into(),
        format!("{}=hook", crate::node::fence::KIND_LABEL),
    ];
    one_off_args(spec, image, release, &head, &words)
}

/// `podman run` arguments for `deploy exec`: a one-off container of the live release under a
/// name of its own (never `--replace`: it could remove a running hook or another exec), with
/// stdin kept open for `-i` and a terminal when there is one. Pure.
pub fn exec_args(
    spec: &UnitSpec,
    image: &str,
    (version, by): (&str, &str),
    name: &str,
    (interactive, tty): (bool, bool),
    words: &[String],
) -> Vec<String> {
    let mut head = vec![
        "--name".to_string(),
        name.to_string(),
        "--label".into(),
        format!("{}=exec", crate::node::fence::KIND_LABEL),
        "--label".into(),
        format!("{}={by}", crate::node::fence::BY_LABEL),
    ];
    if interactive {
        head.push("--interactive".into());
    }
    if tty {
        head.push("--tty".into());
    }
    let mut args = one_off_args(spec, image, (version, None), &head, words);
    // Created under the fence's lock, started after it (`podman start --attach`).
    args[0] = "create".into();
    args
}

/// What a job's run is: which job, who started it (`timer`, or user@host for `deploy jobs
/// run`), and where its output goes.
#[derive(Debug, Clone, Copy)]
pub struct JobRun<'a> {
    pub job: &'a str,
    pub by: &'a str,
    /// The job's log file (Podman's k8s-file log, appended to by every run).
    pub log: &'a str,
}

/// `podman create` arguments for a run of a job: a one-off container of the live release
/// `version` under a name of its own, labelled as a job's (kind, job, who started it), its
/// output in the job's log file. Created under the fence's lock, started after it. Pure.
pub fn job_args(
    spec: &UnitSpec,
    image: &str,
    version: &str,
    name: &str,
    run: JobRun,
    words: &[String],
) -> Vec<String> {
    use crate::node::fence::{BY_LABEL, KIND_LABEL};
    let head = [
        "--name".to_string(),
        name.to_string(),
        "--label".into(),
        format!("{KIND_LABEL}=job"),
        "--label".into(),
        format!("{}={}", crate::names::JOB_LABEL, run.job),
        "--label".into(),
        format!("{BY_LABEL}={}", run.by),
        "--log-driver".into(),
        "k8s-file".into(),
        "--log-opt".into(),
        format!("path={}", run.log),
        "--log-opt".into(),
        "max-size=10mb".into(),
    ];
    let mut args = one_off_args(spec, image, (version, None), &head, words);
    args[0] = "create".into();
    args
}

/// A one-off container of `image` with the app's env file, mounts and DEPLOY_* variables,
/// running `words` (the program, then its arguments). Pure.
fn one_off_args(
    spec: &UnitSpec,
    image: &str,
    (version, previous): (&str, Option<&str>),
    head: &[String],
    words: &[String],
) -> Vec<String> {
    let mut words = words.iter().cloned();
    let program = words.next().unwrap_or_default();
    let mut a: Vec<String> = vec!["run".into(), "--rm".into(), "--pull=never".into()];
    if spec.init {
        a.push("--init".into());
    }
    a.extend(head.iter().cloned());
    a.extend(["--label".into(), spec.writer_label.clone()]);
    a.extend([
        "--env".into(),
        format!("DEPLOY_APP={}", spec.app),
        "--env".into(),
        format!("DEPLOY_ENV={}", spec.env),
        "--env".into(),
        format!("DEPLOY_VERSION={version}"),
        "--env".into(),
        format!("DEPLOY_PREVIOUS={}", previous.unwrap_or_default()),
    ]);
    if let Some(env) = &spec.env_file {
        a.extend(["--env-file".into(), env.clone()]);
    }
    // The release's own variables (env.clear, env.secret) win over shared/.env.
    a.extend(["--env-file".into(), spec.release_vars(version)]);
    for m in &spec.mounts {
        a.extend(["--volume".into(), spec.volume(m)]);
    }
    a.extend(["--entrypoint".into(), program, image.into()]);
    a.extend(words);
    a
}

/// The env file inside each release: the unit reads it through `current`. `vars`: the
/// release's variables file (see [`crate::node::appenv`]), read through `current` too; a release
/// without one (made before it existed) leaves the unit's default, /dev/null.
pub fn release_env(
    app: &str,
    version: &str,
    image: &str,
    vars: Option<&str>,
    run: &RunSettings,
) -> String {
    let vars = vars
        .map(|v| format!("DEPLOY_ENV_FILE={v}\n"))
        .unwrap_or_default();
    format!(
        "# Written by deploy: the release {version} of {app}.\nDEPLOY_VERSION={version}\n\
         DEPLOY_IMAGE={image}\n{vars}{}",
        run.lines()
    )
}

impl UnitSpec {
    /// A mount as podman's `--volume`: `HOST:TARGET`, with `:z` when the mounts are labelled.
    /// `:z` relabels what it mounts, so never a path outside the app's own directory. Pure.
    pub fn volume(&self, m: &Mount) -> String {
        let z = self.label == VolumeLabel::Shared && inside(&m.host, &self.root);
        format!("{}:{}{}", m.host, m.container, if z { ":z" } else { "" })
    }

    /// The variables file of a release (env.clear, env.secret), by its version.
    pub fn release_vars(&self, version: &str) -> String {
        format!(
            "{}/releases/{version}/{}/{}",
            self.root,
            crate::node::layout::RELEASE_META,
            crate::node::appenv::FILE
        )
    }

    /// The same, read through `current` (what the unit passes).
    pub fn current_vars(&self) -> String {
        current_vars(&self.root)
    }

    pub fn new(
        config: &crate::config::Config,
        layout: &Layout,
        port: u16,
        names: &crate::names::Names,
        label: VolumeLabel,
    ) -> UnitSpec {
        let root = layout.root.display().to_string();
        let shared = layout.shared();
        let socket = config.listen == crate::config::Listen::Socket;
        UnitSpec {
            app: config.app.clone(),
            env: names.env().to_string(),
            socket,
            hold: layout.hold_file().display().to_string(),
            // A start in socket mode may wait out a whole swap (its hooks included).
            start_timeout: if socket {
                config.hooks.timeout.as_secs() + 300
            } else {
                120
            },
            container: names.container(),
            hook_container: names.hook_container(),
            writer_label: names.writer_label(),
            root,
            release_env: layout.current_release_env().display().to_string(),
            port,
            container_port: config.container.port,
            log: layout.app_log(&config.app).display().to_string(),
            unit_log: layout.unit_log().display().to_string(),
            env_file: config
                .shared
                .files
                .iter()
                .any(|f| f == ".env")
                .then(|| shared.join(".env").display().to_string()),
            mounts: config
                .container
                .mounts
                .iter()
                .map(|(dir, target)| Mount {
                    host: shared.join(dir).display().to_string(),
                    container: target.clone(),
                })
                .collect(),
            label,
            stop_timeout: config.container.stop_timeout.as_secs().max(1),
            max_stop_timeout: crate::config::MAX_STOP_TIMEOUT.as_secs(),
            init: config.container.init,
            health: (
                config.health.path.clone(),
                config.health.timeout.as_millis() as u64,
                config.health.interval.as_millis() as u64,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(env_file: bool) -> UnitSpec {
        let config = crate::config::parse(&format!(
            "app: shop\nartifacts: [shop]\nshared: {{dirs: [data, uploads], files: [{}]}}\n\
             container: {{port: 8080, mounts: {{data: /app/data}}}}\n\
             environments: {{prod: {{host: local, path: /srv/shop, port: 18080}}}}\n",
            if env_file { ".env" } else { "secrets.txt" }
        ))
        .unwrap();
        UnitSpec::new(
            &config,
            &Layout::new("/srv/shop"),
            18080,
            &crate::names::Names::new("shop", "prod"),
            VolumeLabel::Unlabelled,
        )
    }

    #[test]
    fn in_gap_hooks_run_in_a_one_off_container_with_the_apps_env_and_mounts() {
        let config = crate::config::parse(
            "app: shop\nartifacts: [shop]\nshared: {dirs: [data], files: [.env]}\n\
             container: {port: 8080, mounts: {data: /app/data}}\n\
             environments: {prod: {host: local, path: /srv/shop, port: 18080}}\n",
        )
        .unwrap();
        let spec = UnitSpec::new(
            &config,
            &Layout::new("/srv/shop"),
            18080,
            &crate::names::Names::new("shop", "prod"),
            VolumeLabel::Unlabelled,
        );
        assert_eq!(
            hook_args(
                &spec,
                "localhost/shop:v2",
                ("v2", Some("v1")),
                "/app/shop migrate --all"
            )
            .join(" "),
            "run --rm --pull=never --init --name shop_prod_hook --replace \
             --label deploy.kind=hook --label deploy.writer=shop_prod --env DEPLOY_APP=shop \
             --env DEPLOY_ENV=prod --env DEPLOY_VERSION=v2 --env DEPLOY_PREVIOUS=v1 \
             --env-file /srv/shop/shared/.env --env-file /srv/shop/releases/v2/.deploy/env \
             --volume /srv/shop/shared/data:/app/data \
             --entrypoint /app/shop localhost/shop:v2 migrate --all"
        );
        // A command's quoted words stay whole (a list in the config is kept quoted so).
        let args = hook_args(
            &spec,
            "i",
            ("v2", None),
            "/app/shop run-sql '/app/my file.sql'",
        );
        assert_eq!(args[args.len() - 2..], ["run-sql", "/app/my file.sql"]);
    }

    #[test]
    fn a_jobs_run_is_a_labelled_one_off_container_of_the_live_release_logging_to_its_file() {
        let args = job_args(
            &spec(true),
            "localhost/shop_prod:v2",
            "v2",
            "shop_prod_job_digest_17",
            JobRun {
                job: "digest",
                by: "timer",
                log: "/srv/shop/log/job_digest.log",
            },
            &[
                "/app/shop".into(),
                "digest".into(),
                "--since".into(),
                "1 day".into(),
            ],
        );
        assert_eq!(
            args.join(" "),
            "create --rm --pull=never --init --name shop_prod_job_digest_17 \
             --label deploy.kind=job --label deploy.job=digest --label deploy.by=timer \
             --log-driver k8s-file --log-opt path=/srv/shop/log/job_digest.log \
             --log-opt max-size=10mb --label deploy.writer=shop_prod --env DEPLOY_APP=shop \
             --env DEPLOY_ENV=prod --env DEPLOY_VERSION=v2 --env DEPLOY_PREVIOUS= \
             --env-file /srv/shop/shared/.env --env-file /srv/shop/releases/v2/.deploy/env \
             --volume /srv/shop/shared/data:/app/data \
             --entrypoint /app/shop localhost/shop_prod:v2 digest --since 1 day"
        );
        assert_eq!(
            args.last().map(String::as_str),
            Some("1 day"),
            "a word stays whole"
        );
    }

    #[test]
    fn a_releases_stop_signal_is_one_line_of_its_env() {
        let e = with_stop_signal("A=1\nDEPLOY_STOP_SIGNAL=15\nB=2\n", 3);
        assert_eq!(e, "A=1\nB=2\nDEPLOY_STOP_SIGNAL=3\n");
        assert_eq!(with_stop_signal(&e, 3), e);
    }

    #[test]
    fn unit_reads_everything_through_current() {
        let text = render(&spec(true)).unwrap();
        assert!(text.contains("EnvironmentFile=/srv/shop/current/.deploy/release.env\n"));
        assert!(text.contains("--publish 127.0.0.1:18080:${DEPLOY_CONTAINER_PORT} \\\n"));
        // A release's own arguments, split on white space by systemd (unbraced).
        assert!(text.contains("    $DEPLOY_ARGS \\\n    --env-file ${DEPLOY_ENV_FILE} \\\n"));
        assert!(
            !text.contains("/srv/shop/shared"),
            "nothing of a release in the unit"
        );
        assert!(text.contains("    ${DEPLOY_IMAGE}\n# The stop signals"));
        assert!(text.contains(" p=; { read p; } 2>/dev/null <%t/%n.pid; "));
        assert!(
            text.contains("stop --ignore -t $${DEPLOY_STOP_TIMEOUT} --cidfile=%t/%n.ctr-id; }; ")
        );
        assert!(text.contains("timeout $${DEPLOY_STOP_TIMEOUT} tail --pid=$$p "));
        assert!(text.contains(" kill -$${DEPLOY_STOP_SIGNAL} $$p "));
        assert!(text.contains("--pidfile=%t/%n.pid ") && text.contains("\nKillMode=mixed\n"));
        assert!(text.contains("--log-opt path=/srv/shop/log/shop.log"));
        assert!(text.contains("TimeoutStopSec=330\n"));
        assert!(!text.contains("{{") && !text.contains("{%"));
        // The same text whatever a release changes.
        let mut other = spec(false);
        other.mounts.clear();
        other.container_port = 9090;
        other.stop_timeout = 60;
        other.init = false;
        assert_eq!(render(&other).unwrap(), text);
    }

    #[test]
    fn a_releases_run_settings_are_its_env_file_mounts_and_init() {
        let run = RunSettings::of(&spec(true));
        assert_eq!(
            run.args.join(" "),
            "--init --env-file /srv/shop/shared/.env --volume /srv/shop/shared/data:/app/data"
        );
        let e = release_env("shop", "v2", "localhost/shop:v2", None, &run);
        assert!(e.contains("\nDEPLOY_VERSION=v2\nDEPLOY_IMAGE=localhost/shop:v2\n"));
        assert!(e.contains(&format!(
            "\n{ARGS_KEY}--init --env-file /srv/shop/shared/.env "
        )));
        assert!(e.contains("\nDEPLOY_CONTAINER_PORT=8080\nDEPLOY_STOP_TIMEOUT=10\n"));
        let h = health_of(&e).unwrap();
        assert_eq!(
            (h.path.as_str(), h.timeout.as_secs(), h.interval.as_millis()),
            ("/healthz", 30, 250)
        );
        assert!(health_of("DEPLOY_VERSION=v1\n").is_none());
        let vars = "/srv/shop/current/.deploy/env";
        let e = release_env("shop", "v2", "localhost/shop:v2", Some(vars), &run);
        assert!(e.contains("\nDEPLOY_ENV_FILE=/srv/shop/current/.deploy/env\n"));
        // An older release's file is completed once, never twice.
        let old = "DEPLOY_VERSION=v1\nDEPLOY_IMAGE=localhost/shop:v1\n";
        let done = with_run_settings(old, &run).unwrap();
        assert!(done.starts_with(old) && done.contains(ARGS_KEY));
        assert_eq!(with_run_settings(&done, &run), None);
    }

    #[test]
    fn with_selinux_every_container_of_the_app_mounts_its_volumes_labelled() {
        use crate::sys::selinux::Mode;
        assert_eq!(VolumeLabel::of(None), VolumeLabel::Unlabelled);
        assert_eq!(VolumeLabel::of(Some(Mode::Permissive)), VolumeLabel::Shared);
        let mut spec = spec(true);
        spec.label = VolumeLabel::of(Some(Mode::Enforcing));
        // The release's run settings (the unit's $DEPLOY_ARGS).
        assert_eq!(
            RunSettings::of(&spec).args.join(" "),
            "--init --env-file /srv/shop/shared/.env \
             --volume /srv/shop/shared/data:/app/data:z"
        );
        // The unit's own text does not change: the mounts are the release's.
        assert_eq!(render(&spec).unwrap(), render(&self::spec(true)).unwrap());
        let volume = "--volume /srv/shop/shared/data:/app/data:z --entrypoint";
        let hook = hook_args(&spec, "i", ("v2", None), "/app/shop migrate").join(" ");
        let words = ["/app/shop".to_string(), "console".into()];
        let exec = exec_args(&spec, "i", ("v2", "me@laptop"), "x", (true, true), &words);
        let run = JobRun {
            job: "digest",
            by: "timer",
            log: "/srv/shop/log/job_digest.log",
        };
        let job = job_args(&spec, "i", "v2", "y", run, &words).join(" ");
        for args in [hook, exec.join(" "), job] {
            assert!(args.contains(volume), "{args}");
            assert_eq!(args.matches(":z").count(), 1, "only the mount: {args}");
        }
        // Without SELinux, the same arguments without the label.
        let plain = hook_args(&self::spec(true), "i", ("v2", None), "/app/shop migrate");
        assert!(plain.contains(&"/srv/shop/shared/data:/app/data".to_string()));
        assert!(!plain.join(" ").contains(":z"));
    }

    #[test]
    fn a_label_is_never_put_on_a_path_outside_the_apps_directory() {
        let mut spec = spec(true);
        spec.label = VolumeLabel::Shared;
        let at = |host: &str| {
            spec.volume(&Mount {
                host: host.into(),
                container: "/app/data".into(),
            })
        };
        // A preview's data being scrubbed is the app's too.
        assert_eq!(
            at("/srv/shop/.deploy/preview-data.scrubbing/data"),
            "/srv/shop/.deploy/preview-data.scrubbing/data:/app/data:z"
        );
        for outside in [
            "/srv/shopx/data",
            "/srv/shop/../etc",
            "/srv/shop",
            "/home",
            "data",
        ] {
            assert_eq!(at(outside), format!("{outside}:/app/data"), "{outside}");
        }
    }

    #[test]
    fn the_unlabelled_volumes_of_a_release_are_found() {
        let mut spec = spec(false);
        spec.mounts.push(Mount {
            host: "/srv/shop/shared/uploads".into(),
            container: "/app/uploads".into(),
        });
        let env = |spec: &UnitSpec| release_env("shop", "v2", "i", None, &RunSettings::of(spec));
        assert_eq!(
            unlabelled_volumes(&env(&spec)),
            [
                "/srv/shop/shared/data:/app/data",
                "/srv/shop/shared/uploads:/app/uploads"
            ]
        );
        spec.label = VolumeLabel::Shared;
        assert!(unlabelled_volumes(&env(&spec)).is_empty());
        assert!(unlabelled_volumes("DEPLOY_VERSION=v1\n").is_empty());
    }
}
