//! `deploy.yaml`: parsing and validation. Pure: no file system access beyond reading the file
//! (and [`artifacts`], which finds the artifacts it names in the project).
//!
//! Unknown keys, missing keys and wrong types are reported by the YAML parser with the key and
//! its line (once a `${VAR}` changed a value, the line of the key it names); the checks that
//! come after parsing find the line of the key they complain about.

use crate::sys::ssh::SshOptions;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::time::Duration;

pub mod artifacts;
mod expand;
mod explain;
mod host;
mod load;
mod overrides;
pub mod replica_url;
mod validate;

pub use host::{parse_host, Host};
pub use load::{load, load_resolved, parse, Loaded};
pub use overrides::resolved_yaml;
use overrides::{as_top_level, dotted, key_name};

pub mod preview;
pub use preview::{PortRange, Preview, PreviewOf};
pub use validate::{
    artifact_name, check_app_name, line_of, port_of, MAX_STOP_TIMEOUT, RESERVED_IN_RELEASE,
    UNSAFE_PATH_CHARS,
};

pub const DEFAULT_FILE: &str = "deploy.yaml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Names the unit (`<app>.service`) and the image (`localhost/<app>:<version>`).
    pub app: String,
    #[serde(default = "default_keep_releases")]
    pub keep_releases: usize,
    #[serde(default)]
    pub build: Option<Build>,
    pub artifacts: Vec<String>,
    #[serde(default)]
    pub shared: Shared,
    pub container: Container,
    #[serde(default)]
    pub health: Health,
    /// Optional: Traefik in front, so that the gap of a release shows a maintenance page or
    /// holds requests instead of failing them.
    #[serde(default)]
    pub traefik: Option<Traefik>,
    /// `snapshot` (the default): in every gap, a consistent snapshot of each SQLite database in
    /// `shared/` is kept with the release that wrote it (`deploy rollback --with-data`).
    #[serde(default)]
    pub backup: Backup,
    /// `publish` (the default): the container publishes the app's port. `socket`: systemd holds
    /// the port (a socket unit) and hands it to each release, so connections in the gap wait
    /// in its backlog and are answered by the next release; the app must take an inherited
    /// socket (fd 3, `LISTEN_FDS`).
    #[serde(default)]
    pub listen: Listen,
    /// Optional: commands around a release.
    #[serde(default)]
    pub hooks: Hooks,
    /// Optional: the app's environment variables, set per release (after `shared/.env`).
    #[serde(default)]
    pub env: Env,
    /// Optional: every SQLite database in `shared/` replicated off the server by Litestream.
    #[serde(default)]
    pub replicate: Option<Replicate>,
    /// Optional: how `deploy verify` checks the replica, and when it runs by itself.
    #[serde(default)]
    pub verify: Verify,
    /// Optional: periodic work (cleanups, digests, exports), each job run by a systemd user
    /// timer of its own in a one-off container of the live release, through the fence. A job
    /// set to `null` (in an environment's overrides, say) is not run there.
    #[serde(default, deserialize_with = "jobs")]
    pub jobs: BTreeMap<String, Job>,
    /// Optional: how `deploy preview up NAME --from ENV` makes a preview of an environment on
    /// a copy of its data (see [`preview`]).
    #[serde(default)]
    pub preview: Preview,
    pub environments: BTreeMap<String, Environment>,
    /// Set in a preview's config (derived, never read from the file): what it is a preview of.
    #[serde(skip)]
    pub preview_of: Option<PreviewOf>,
}

/// `deploy verify`'s settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    /// A systemd calendar expression (`daily`, `*-*-* 04:00`): verify runs on a user timer.
    #[serde(default)]
    pub schedule: Option<String>,
    /// How far the replica may be behind the live database's last write (default 1m).
    #[serde(default = "default_max_lag", deserialize_with = "duration")]
    pub max_lag: Duration,
}

impl Default for Verify {
    fn default() -> Self {
        Verify {
            schedule: None,
            max_lag: default_max_lag(),
        }
    }
}

/// One periodic job (`jobs.NAME`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// When it runs: a systemd calendar expression as `OnCalendar=` takes it (`hourly`,
    /// `*-*-* 03:00`, `*:*:0/30`), in the server's time zone unless it names one.
    pub schedule: String,
    /// The program in the image and its arguments, as an `in_gap` hook's: a list, or a string
    /// split into words as a shell would. Kept as a command line (a list is quoted); never
    /// `${VAR}`-expanded.
    #[serde(deserialize_with = "command_line")]
    pub command: String,
    /// How long a run may take (default 10m); then its container is removed.
    #[serde(default = "default_job_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// What happens when a run is still going as the next comes due.
    #[serde(default)]
    pub concurrency: Concurrency,
}

/// `jobs.NAME.concurrency`.
#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Concurrency {
    /// The new run is skipped (and the skip recorded).
    #[default]
    Forbid,
    /// The run still going is stopped, and the new one runs.
    Replace,
}

impl Concurrency {
    pub fn as_str(self) -> &'static str {
        match self {
            Concurrency::Forbid => "forbid",
            Concurrency::Replace => "replace",
        }
    }
}

fn default_max_lag() -> Duration {
    Duration::from_secs(60)
}

fn default_job_timeout() -> Duration {
    Duration::from_secs(600)
}

/// The jobs, those set to `null` left out.
fn jobs<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<BTreeMap<String, Job>, D::Error> {
    let all = Option::<BTreeMap<String, Option<Job>>>::deserialize(d)?.unwrap_or_default();
    Ok(all
        .into_iter()
        .filter_map(|(name, job)| Some((name, job?)))
        .collect())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Run here (`sh -c`, in the config's directory) before the upload; one failing stops the
    /// release before anything is uploaded.
    #[serde(default)]
    pub before_upload: Vec<String>,
    /// Run on the node in a one-off container of the new release's image, with the app's mounts
    /// and env, after the old release stopped and before the new one starts (migrations). Each
    /// is a list (the program in the image, then its arguments) or a string split into words as
    /// a shell would (quotes kept together; nothing expanded). One failing puts the previous
    /// release back, as a failed health check does. Kept as command lines: a list is quoted.
    #[serde(default, deserialize_with = "command_lines")]
    pub in_gap: Vec<String>,
    /// Run here after the release is live (e.g. a notification); one failing makes `deploy`
    /// exit non-zero, the release stays live.
    #[serde(default)]
    pub after_release: Vec<String>,
    /// How long one `in_gap` hook may run (default 10m); then its container is removed and the
    /// previous release is put back, with the data it left.
    #[serde(default = "default_hook_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            before_upload: Vec::new(),
            in_gap: Vec::new(),
            after_release: Vec::new(),
            timeout: default_hook_timeout(),
        }
    }
}

fn default_hook_timeout() -> Duration {
    Duration::from_secs(600)
}

/// Where Litestream replicates the databases: each goes to `<url>/<its path under shared/>`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Replicate {
    /// `sftp://user@host:port/path`, `s3://bucket/path` or `file:///path`.
    pub url: String,
    /// sftp: the private key, a path on the node (`~/` is the node user's home).
    #[serde(default)]
    pub key: Option<String>,
    /// sftp: the server's public host key (`ssh-ed25519 AAAA...`, as in known_hosts): checked
    /// at every connection. Without it the host is not verified (Litestream warns).
    #[serde(default)]
    pub host_key: Option<String>,
    /// s3: the endpoint of an S3-compatible store (path-style requests), e.g. MinIO's.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// s3: the bucket's region.
    #[serde(default)]
    pub region: Option<String>,
}

/// Variables of the app, written on the node into an env file of the release (0600) that the
/// container reads after `shared/.env`: a rollback brings back the values that release had.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Env {
    /// Values in the config.
    #[serde(default)]
    pub clear: BTreeMap<String, String>,
    /// Names only: each value is read from the environment of `deploy release` on this machine
    /// (`op run -- deploy release`, a CI secret), never from a file, never printed.
    #[serde(default)]
    pub secret: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Listen {
    #[default]
    Publish,
    Socket,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backup {
    #[default]
    Snapshot,
    Off,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    pub command: String,
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Shared {
    #[serde(default)]
    pub dirs: Vec<String>,
    #[serde(default)]
    pub files: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Container {
    pub port: u16,
    #[serde(default)]
    pub mounts: BTreeMap<String, String>,
    /// Seconds the unit's stop waits for the app to exit after SIGTERM (or the image's
    /// STOPSIGNAL) before it kills it (at most 5m).
    #[serde(default = "default_stop_timeout", deserialize_with = "duration")]
    pub stop_timeout: Duration,
    /// Run the app (and its hook, exec and job containers) under a small init as PID 1
    /// (podman's `--init`, catatonit): it passes SIGTERM on to the app, which as PID 1 would
    /// ignore it unless it handles it, and reaps zombies. `false` for an image whose own
    /// entrypoint is an init (s6-overlay's `/init`).
    #[serde(default = "yes")]
    pub init: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    #[serde(default = "default_health_path")]
    pub path: String,
    #[serde(default = "default_health_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(default = "default_health_interval", deserialize_with = "duration")]
    pub interval: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            path: default_health_path(),
            timeout: default_health_timeout(),
            interval: default_health_interval(),
        }
    }
}

/// Declares [`Environment`] with a field for each top-level section an environment may
/// override, and [`OVERRIDABLE`], their names: one list for both.
macro_rules! environment_overriding {
    ($($section:ident),* $(,)?) => {
        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Environment {
            /// `local` (this machine), or a server reached over SSH: `user@host:port`, `host`,
            /// or an alias from ~/.ssh/config.
            pub host: String,
            pub path: String,
            pub port: u16,
            /// With `traefik:`: where the gap server (maintenance page, held requests) listens
            /// on 127.0.0.1. Default: `port` + 1.
            #[serde(default)]
            pub gap_port: Option<u16>,
            /// Optional, for a remote host: how to reach it.
            #[serde(default)]
            pub ssh: Option<SshOptions>,
            // The overrides, for this environment only: merged over the top level as Kamal
            // merges a destination's file (maps merge, lists and scalars replace) by
            // [`for_environment`]. Accepted here, read there.
            $(
                #[allow(dead_code)]
                #[serde(default)]
                $section: Option<IgnoredAny>,
            )*
        }

        /// The top-level sections an environment may override (any but `app` and
        /// `environments`).
        pub const OVERRIDABLE: &[&str] = &[$(stringify!($section)),*];
    };
}

environment_overriding!(
    keep_releases,
    build,
    artifacts,
    shared,
    container,
    health,
    traefik,
    backup,
    listen,
    hooks,
    env,
    replicate,
    verify,
    jobs,
    preview,
);

impl Environment {
    pub fn gap_port(&self) -> u16 {
        self.gap_port.unwrap_or(self.port.wrapping_add(1))
    }

    pub fn host(&self) -> Host {
        parse_host(&self.host).expect("validated")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traefik {
    /// Traefik's file provider directory (watched).
    #[serde(default = "default_dynamic_dir")]
    pub dynamic_dir: String,
    /// Traefik's API, used to confirm that a change is live.
    #[serde(default = "default_traefik_api")]
    pub api: String,
    /// The router rule, e.g. Host(`my-app.example.com`).
    pub rule: String,
    #[serde(default = "default_entrypoints")]
    pub entrypoints: Vec<String>,
    /// `true`, or Traefik's router TLS options (e.g. `{certResolver: le}`).
    #[serde(default)]
    pub tls: Option<serde_json::Value>,
    #[serde(default)]
    pub gap: GapMode,
    /// Hold mode: the longest a request is held before it gets the maintenance page.
    #[serde(default = "default_hold", deserialize_with = "duration")]
    pub hold: Duration,
    /// The `Retry-After` of the maintenance page.
    #[serde(default = "default_retry_after", deserialize_with = "duration")]
    pub retry_after: Duration,
    /// An HTML file, relative to the config file; a built-in page otherwise.
    #[serde(default)]
    pub maintenance_page: Option<String>,
    /// `true` or a mapping: `deploy setup` also writes Traefik's static config and runs Traefik
    /// as a user unit.
    #[serde(default)]
    pub manage: Option<Manage>,
    /// With `manage`: certificates from an ACME CA (Let's Encrypt by default) for the router,
    /// through a resolver of the managed Traefik.
    #[serde(default)]
    pub acme: Option<Acme>,
    /// With `manage`: the `web` entry point redirects to `websecure` (https).
    #[serde(default)]
    pub redirect_https: bool,
    /// A preview's router: a `noindex` header on every answer (set when a preview's config is
    /// derived, never read from the file).
    #[serde(skip)]
    pub noindex: bool,
    /// A preview's router: `preview.basic_auth` (htpasswd lines).
    #[serde(skip)]
    pub basic_auth: Vec<String>,
}

/// The name of the managed Traefik's certificate resolver.
pub const ACME_RESOLVER: &str = "deploy";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acme {
    /// The account's contact (the CA's expiry notices).
    pub email: String,
    /// `http` (HTTP-01 on the `web` entry point, the default) or `tls` (TLS-ALPN-01 on
    /// `websecure`).
    #[serde(default)]
    pub challenge: AcmeChallenge,
    /// The CA's ACME directory. Default: Let's Encrypt's.
    #[serde(default = "default_ca_server")]
    pub ca_server: String,
    /// Optional: a PEM file of the root certificates that the CA's server is trusted with (a
    /// private CA); it replaces the system's roots for Traefik's ACME client.
    #[serde(default)]
    pub ca_certificates: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AcmeChallenge {
    #[default]
    Http,
    Tls,
}

fn default_ca_server() -> String {
    "https://acme-v02.api.letsencrypt.org/directory".into()
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GapMode {
    #[default]
    Maintenance,
    Hold,
}

impl GapMode {
    pub fn as_str(self) -> &'static str {
        match self {
            GapMode::Maintenance => "maintenance",
            GapMode::Hold => "hold",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Manage {
    Enabled(bool),
    With(ManageOptions),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManageOptions {
    /// Entry point names and addresses. Default: web ":80", websecure ":443".
    #[serde(default = "default_managed_entrypoints")]
    pub entrypoints: BTreeMap<String, String>,
}

impl Traefik {
    /// The managed Traefik's options, if `manage` is on.
    pub fn managed(&self) -> Option<ManageOptions> {
        match &self.manage {
            None | Some(Manage::Enabled(false)) => None,
            Some(Manage::Enabled(true)) => Some(ManageOptions {
                entrypoints: default_managed_entrypoints(),
            }),
            Some(Manage::With(o)) => Some(o.clone()),
        }
    }
}

/// Where Traefik's dynamic files go unless `traefik.dynamic_dir` says otherwise.
pub const DEFAULT_DYNAMIC_DIR: &str = "~/.config/traefik/dynamic";

fn default_dynamic_dir() -> String {
    DEFAULT_DYNAMIC_DIR.into()
}
fn default_traefik_api() -> String {
    "http://127.0.0.1:8099".into()
}
fn default_entrypoints() -> Vec<String> {
    vec!["web".into()]
}
fn default_hold() -> Duration {
    Duration::from_secs(5)
}
fn default_retry_after() -> Duration {
    Duration::from_secs(5)
}
fn default_managed_entrypoints() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("web".to_string(), ":80".to_string()),
        ("websecure".to_string(), ":443".to_string()),
    ])
}

fn default_keep_releases() -> usize {
    5
}
fn default_health_path() -> String {
    "/healthz".into()
}
fn default_health_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_health_interval() -> Duration {
    Duration::from_millis(250)
}
fn default_stop_timeout() -> Duration {
    Duration::from_secs(10)
}

/// A command as a string or as a list of words.
#[derive(Deserialize)]
#[serde(untagged)]
enum CommandLine {
    Line(String),
    Words(Vec<String>),
}

impl CommandLine {
    /// The command line: a list becomes its shell-quoted line.
    fn line(self) -> String {
        match self {
            CommandLine::Line(l) => l,
            CommandLine::Words(w) => crate::sys::shell::sh_join(&w),
        }
    }
}

/// Commands as strings or as lists of words; a list becomes its shell-quoted line.
fn command_lines<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    Ok(Vec::<CommandLine>::deserialize(d)?
        .into_iter()
        .map(CommandLine::line)
        .collect())
}

/// One command as a string or as a list of words.
fn command_line<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    CommandLine::deserialize(d).map(CommandLine::line)
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{s}` is not a duration ({e}); write e.g. 30s, 250ms, 1m"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Result;
    use load::parse_values;
    use overrides::for_environment;
    use validate::key_at;

    const GOOD: &str = r#"
app: my-app
keep_releases: 3
build:
  command: cargo build --release
artifacts:
  - target/release/my-app
  - assets/
  - Containerfile
shared:
  dirs: [data]
  files: [.env]
container:
  port: 8080
  mounts:
    data: /app/data
health:
  path: /healthz
  timeout: 30s
  interval: 250ms
environments:
  prod:
    host: local
    path: ~/web/my-app
    port: 18080
"#;

    fn err(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    #[test]
    fn parses_the_documented_example() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.app, "my-app");
        assert_eq!(c.keep_releases, 3);
        assert_eq!(c.health.interval, Duration::from_millis(250));
        assert_eq!(c.container.mounts["data"], "/app/data");
        assert_eq!(c.environments["prod"].port, 18080);
        assert_eq!(artifact_name(&c.artifacts[1]).unwrap(), "assets");
    }

    #[test]
    fn the_shipped_example_file_is_valid() {
        let text = include_str!("../../deploy.yaml.example");
        parse(text).unwrap();
    }

    #[test]
    fn defaults_apply() {
        let c = parse(
            "app: a\nartifacts: [x]\ncontainer: {port: 80}\nenvironments: {p: {host: local, path: /srv/a, port: 9}}\n",
        )
        .unwrap();
        assert_eq!(c.keep_releases, 5);
        assert_eq!(c.health.path, "/healthz");
        assert_eq!(c.health.timeout, Duration::from_secs(30));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = err(&GOOD.replace("  interval: 250ms", "  interval: 250ms\n  retries: 3"));
        assert!(e.contains("unknown field `retries`"), "{e}");
        assert!(e.contains("line 21"), "{e}");
    }

    #[test]
    fn missing_key_is_named() {
        let e = err(&GOOD.replace("app: my-app\n", ""));
        assert!(e.contains("missing field `app`"), "{e}");
    }

    #[test]
    fn wrong_type_names_line() {
        let e = err(&GOOD.replace("port: 18080", "port: lots"));
        assert!(e.contains("environments.prod.port"), "{e}");
        assert!(e.contains("line 25"), "{e}");
    }

    #[test]
    fn bad_duration_is_explained() {
        let e = err(&GOOD.replace("timeout: 30s", "timeout: soon"));
        assert!(e.contains("`soon` is not a duration"), "{e}");
    }

    #[test]
    fn semantic_errors_name_key_and_line() {
        let e = err(&GOOD.replace("app: my-app", "app: My App"));
        assert!(e.starts_with("app (line 2):"), "{e}");
        let e = err(&GOOD.replace("data: /app/data", "cache: /app/cache"));
        assert!(e.contains("container.mounts (line 15)"), "{e}");
        let e = err(&GOOD.replace("host: local", "host: a b"));
        assert!(e.contains("environments.prod.host (line 23)"), "{e}");
        let e = err(&GOOD.replace("path: ~/web/my-app", "path: web/my-app"));
        assert!(e.contains("environments.prod.path"), "{e}");
        let e = err(&GOOD.replace("path: ~/web/my-app", "path: /srv/my app"));
        assert!(e.contains("unit files"), "{e}");
    }

    #[test]
    fn a_host_or_jump_that_ssh_would_read_as_an_option_is_refused() {
        let e = err(&GOOD.replace("host: local", "host: \"-oProxyCommand=x@vps\""));
        assert!(e.starts_with("environments.prod.host (line 23):"), "{e}");
        assert!(e.contains("beginning with `-`"), "{e}");
        let with_jump = |jump: &str| {
            GOOD.replace(
                "host: local",
                &format!("host: deploy@vps\n    ssh: {{jump: \"{jump}\"}}"),
            )
        };
        for bad in ["-oProxyCommand=x", "ok,u@-x", "-l@b", "a b"] {
            let e = err(&with_jump(bad));
            assert!(
                e.starts_with("environments.prod.ssh.jump (line 24):"),
                "{bad}: {e}"
            );
        }
        for good in ["bastion", "u@b:2222,ops@inner", "ssh://u@b:22"] {
            assert!(parse(&with_jump(good)).is_ok(), "{good}");
        }
    }

    #[test]
    fn artifact_names_must_not_collide() {
        let e = err(&GOOD.replace("  - Containerfile", "  - other/my-app"));
        assert!(e.contains("would both be uploaded as `my-app`"), "{e}");
        let e = err(&GOOD.replace("  - Containerfile", "  - data"));
        assert!(e.contains("clashes"), "{e}");
        let e = err(&GOOD.replace("  - Containerfile", "  - x/.deploy"));
        assert!(e.contains("reserved"), "{e}");
    }

    #[test]
    fn shared_paths_stay_inside() {
        let e = err(&GOOD.replace("dirs: [data]", "dirs: [data, ../etc]"));
        assert!(e.contains("without `..`"), "{e}");
    }

    #[test]
    fn environment_choice() {
        let loaded = Loaded {
            config: parse(GOOD).unwrap(),
            dir: ".".into(),
            file: "deploy.yaml".into(),
            values: yaml_serde::from_str(GOOD).unwrap(),
        };
        assert_eq!(loaded.environment(None).unwrap().0, "prod");
        assert_eq!(loaded.environment(Some("prod")).unwrap().0, "prod");
        let e = format!("{}", loaded.environment(Some("staging")).unwrap_err());
        assert!(e.contains("unknown environment `staging`"), "{e}");
        assert!(e.contains("`prod`"), "{e}");
    }

    #[test]
    fn a_preview_is_an_environment_derived_from_its_own() {
        let text = format!(
            "{GOOD}    preview:\n      ports: 18200-18209\n      ttl: 2d\n\
             preview:\n  max: 2\n  env:\n    clear: {{MODE: preview}}\n"
        );
        let loaded = Loaded {
            config: parse(&text).unwrap(),
            dir: ".".into(),
            file: "deploy.yaml".into(),
            values: yaml_serde::from_str(&text).unwrap(),
        };
        let pv = loaded.for_environment(Some("prod/pr-7")).unwrap();
        let (name, env) = pv.environment(Some("prod/pr-7")).unwrap();
        assert_eq!(name, "prod/pr-7");
        assert_eq!(env.path, "~/web/my-app.preview-pr-7");
        let of = pv.config.preview_of.as_ref().unwrap();
        assert_eq!(
            (of.from.as_str(), of.ports.to_string()),
            ("prod", "18200-18209".into())
        );
        assert_eq!(pv.config.preview.max, 2);
        assert_eq!(pv.config.preview.ttl, Duration::from_secs(2 * 86400));
        assert_eq!(pv.config.env.clear["MODE"], "preview");
        // What a server is sent: its environment's values, which it derives the same from.
        let sent = loaded.resolved_text_for("prod/pr-7").unwrap();
        assert!(sent.contains("  prod:\n"), "{sent}");
        // No file may name an environment as a preview.
        let e = err(&GOOD.replace("  prod:\n", "  prod/x:\n"));
        assert!(e.contains("not a usable environment name"), "{e}");
        let e = loaded.for_environment(Some("staging/pr-1")).unwrap_err();
        assert_eq!(crate::exit::code_of(&e), 3);
        // Checked per section, with the key's line.
        let e = err(&format!("{GOOD}preview:\n  ports: 18080-18099\n"));
        assert!(
            e.contains("preview.ports: 18080-18099 holds the environment's own port"),
            "{e}"
        );
        let e = err(&format!("{GOOD}preview:\n  host: pv.example.com\n"));
        assert!(e.contains("preview.host (line 27)"), "{e}");
        let e = err(&format!("{GOOD}preview:\n  env:\n    secret: [DEPLOY_X]\n"));
        assert!(e.contains("preview.env.secret"), "{e}");
    }

    #[test]
    fn line_of_finds_nested_keys() {
        let k = |s: &str| s.split('.').map(String::from).collect::<Vec<_>>();
        assert_eq!(line_of(GOOD, &k("app")), Some(2));
        assert_eq!(line_of(GOOD, &k("health.path")), Some(18));
        assert_eq!(line_of(GOOD, &k("environments.prod.port")), Some(25));
        for key in [
            "app",
            "health.path",
            "environments.prod.port",
            "container.mounts.data",
        ] {
            assert_eq!(
                key_at(GOOD, line_of(GOOD, &k(key)).unwrap()),
                k(key),
                "{key}"
            );
        }
        let listed = "a:\n  b:\n  - x: |-\n      y: z\n  c: 1\n";
        assert_eq!(key_at(listed, 3), k("a.b"), "an item is named by its list");
        assert_eq!(key_at(listed, 5), k("a.c"));
    }

    /// `text` loaded as `deploy` typed here loads it, with `vars` as the environment.
    fn load_with(text: &str, vars: &[(&str, &str)]) -> Result<(Config, yaml_serde::Value)> {
        let lookup = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        parse_values(text, Some(&lookup))
    }

    #[test]
    fn an_expanded_value_stays_one_value_and_its_errors_name_key_and_line() {
        let text = format!("{GOOD}env:\n  clear:\n    HASH: a#b ${{H}}\n    RAW: $${{X}}\n");
        let (c, _) = load_with(&text, &[("H", "c # d"), ("X", "here")]).unwrap();
        assert_eq!(c.env.clear["HASH"], "a#b c # d");
        assert_eq!(c.env.clear["RAW"], "${X}");
        let (c, _) = load_with(
            &GOOD.replace("port: 18080", "port: ${P}"),
            &[("P", "18090")],
        )
        .unwrap();
        assert_eq!(c.environments["prod"].port, 18090);

        let text = GOOD.replace("port: 18080", "port: ${P}");
        let e = format!("{:#}", load_with(&text, &[]).unwrap_err());
        assert!(
            e.starts_with(
                "environments.prod.port (line 25): the environment variable P is not set"
            ),
            "{e}"
        );
        let e = format!("{:#}", load_with(&text, &[("P", "lots")]).unwrap_err());
        assert!(
            e.starts_with("environments.prod.port: invalid type") && e.ends_with("(line 25)"),
            "{e}"
        );
        // A key that is no field, once a value changed: still its own line.
        let text = GOOD.replace("  interval: 250ms", "  interval: ${I}\n  retries: 3");
        let e = format!("{:#}", load_with(&text, &[("I", "1s")]).unwrap_err());
        assert!(
            e.contains("unknown field `retries`") && e.ends_with("(line 21)"),
            "{e}"
        );
    }

    #[test]
    fn hooks_are_not_expanded_at_the_top_or_in_an_environment() {
        let text = with_staging(
            "    hooks:\n      in_gap: [\"/app/migrate ${DB}\"]\n      before_upload: [\"echo ${DB}\"]\n",
        ) + "hooks:\n  after_release: [\"echo ${DB} $$\"]\n";
        let (top, values) = load_with(&text, &[("DB", "secret-1")]).unwrap();
        assert_eq!(top.hooks.after_release, ["echo ${DB} $$"]);
        let staging = for_environment(&values, "staging").unwrap();
        assert_eq!(staging.hooks.in_gap, ["/app/migrate ${DB}"]);
        assert_eq!(staging.hooks.before_upload, ["echo ${DB}"]);
        assert_eq!(staging.hooks.after_release, ["echo ${DB} $$"]);
    }

    #[test]
    fn the_resolved_text_is_not_expanded_again_where_it_is_sent() {
        let text =
            format!("{GOOD}env:\n  clear:\n    RAW: $${{X}}\n    PORT: ${{P}}\n    ON: ${{T}}\n");
        let (config, values) =
            load_with(&text, &[("X", "laptop"), ("P", "8080"), ("T", "true")]).unwrap();
        let loaded = Loaded {
            config,
            values,
            dir: ".".into(),
            file: "deploy.yaml".into(),
        };
        let sent = loaded.resolved_text().unwrap();
        // What the node's `--resolved` load does: nothing expanded, `${X}` is a value.
        let (there, _) = parse_values(&sent, None).unwrap();
        assert_eq!(there.env.clear["RAW"], "${X}", "{sent}");
        assert_eq!(there.env.clear["PORT"], "8080", "{sent}");
        assert_eq!(there.env.clear["ON"], "true", "{sent}");
        assert_eq!(there.environments["prod"].port, 18080);
        // A server is sent its own environment only.
        let mut two = loaded.clone();
        two.values["environments"]["staging"] = two.values["environments"]["prod"].clone();
        let one = two.resolved_text_for("prod").unwrap();
        let (there, _) = parse_values(&one, None).unwrap();
        assert_eq!(
            there.environments.keys().collect::<Vec<_>>(),
            ["prod"],
            "{one}"
        );
    }

    #[test]
    fn traefik_api_over_https_is_refused() {
        let with = |api: &str| format!("{GOOD}traefik:\n  rule: Host(`a.test`)\n  api: {api}\n");
        let e = err(&with("https://127.0.0.1:8099"));
        assert!(
            e.contains("traefik.api") && e.contains("without TLS"),
            "{e}"
        );
        assert!(parse(&with("http://127.0.0.1:8099")).is_ok());
    }

    #[test]
    fn traefik_api_is_held_to_a_loopback_address() {
        let with =
            |api: &str| format!("{GOOD}traefik:\n  rule: Host(`a.test`)\n  api: \"{api}\"\n");
        for good in [
            "http://127.0.0.1:8099",
            "http://127.3.4.5:8099/",
            "http://[::1]:8099",
            "http://127.0.0.1",
            "http://[::1]",
        ] {
            assert!(parse(&with(good)).is_ok(), "{good}");
        }
        for bad in [
            "http://10.0.0.5:8099",
            "http://0.0.0.0:8099",
            "http://localhost:8099",
            "http://traefik.example.com:8099",
            "http://[::ffff:127.0.0.1]:8099",
            "http://[::]:8099",
            "http://127.0.0.1:8099@evil.example:80",
            "http://127.0.0.1.evil.example:8099",
            "http://::1:8099",
        ] {
            let e = err(&with(bad));
            assert!(
                e.starts_with("traefik.api (line 28):") && e.contains("loopback"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn names_that_could_collide_are_refused() {
        let e = err(&GOOD.replace("app: my-app", "app: my_app"));
        assert!(e.contains("app") && e.contains("lower-case"), "{e}");
        let e = err(&GOOD.replace("  prod:", "  Prod_1:"));
        assert!(e.contains("environment name"), "{e}");
    }

    #[test]
    fn values_that_reach_the_unit_file_cannot_inject_into_it() {
        let text = GOOD.replace(
            "data: /app/data",
            "data: \"/app/data\\nExecStartPost=/bin/sh -c 'id > /tmp/x'\"",
        );
        let e = err(&text);
        assert!(e.starts_with("container.mounts.data (line "), "{e}");
        assert!(e.contains("cannot carry"), "{e}");
        for bad in ["/app/%h", "/app/$HOME", "/app/a:b", "/app/up loads"] {
            let e = err(&GOOD.replace("data: /app/data", &format!("data: \"{bad}\"")));
            assert!(e.contains("container.mounts.data"), "{bad}: {e}");
        }
        let e = err(&GOOD.replace("dirs: [data]", "dirs: [data, \"up loads\"]"));
        assert!(
            e.contains("shared.dirs") && e.contains("cannot carry"),
            "{e}"
        );
        let e = err(&GOOD.replace("files: [.env]", "files: [\"%n.env\"]"));
        assert!(e.contains("shared.files"), "{e}");
    }

    #[test]
    fn traefik_names_and_paths_stay_one_word() {
        let managed =
            "traefik:\n  rule: Host(`a.test`)\n  manage: true\n  acme:\n    email: a@b.c\n";
        let e = err(&format!(
            "{GOOD}{managed}    ca_certificates: \"/c a.pem\"\n"
        ));
        assert!(e.starts_with("traefik.acme.ca_certificates"), "{e}");
        let e = err(&format!(
            "{GOOD}traefik:\n  rule: Host(`a.test`)\n  entrypoints: [\"web: {{x}}\"]\n"
        ));
        assert!(e.contains("not a usable entry point name"), "{e}");
    }

    #[test]
    fn no_value_holds_a_control_character_but_the_commands_that_may() {
        let managed =
            "traefik:\n  rule: Host(`a.test`)\n  manage: true\n  acme:\n    email: a@b.c\n";
        for (text, key) in [
            (
                GOOD.replace("path: ~/web/my-app", "path: \"~/web/my-app\\r\""),
                "environments.prod.path (line 24)",
            ),
            (
                format!("{GOOD}{managed}    ca_certificates: \"/ca.pem\\nExecStartPre=/bin/id\"\n"),
                "traefik.acme.ca_certificates (line 31)",
            ),
            (
                format!("{GOOD}replicate:\n  url: \"file:///r\\0x\"\n"),
                "replicate.url (line 27)",
            ),
            (
                format!("{GOOD}env:\n  clear:\n    \"A\\tB\": x\n"),
                "env.clear.A\\tB (line 27)",
            ),
            (
                GOOD.replace("  - assets/", "  - \"assets/\\e\""),
                "artifacts[1] (line 6)",
            ),
            (
                with_staging("    env:\n      clear:\n        X: \"a\\rb\"\n"),
                "environments.staging.env.clear.X (line 32)",
            ),
        ] {
            let e = err(&text);
            assert!(
                e.starts_with(&format!("{key}: holds a control character")),
                "{e}"
            );
        }
        let e = err(&GOOD.replace("path: ~/web/my-app", "path: \"~/web/my-app\\r\""));
        assert!(e.contains("(`\\r`)") && e.contains("cannot carry"), "{e}");
        // Commands: the local hooks are a shell's; in_gap's and the build's words may be split
        // by tabs and newlines, nothing else.
        let hooks = "hooks:\n  before_upload: [\"a\\n\\e[1mb\"]\n  after_release: [\"a\\nb\"]\n  in_gap:\n    - \"/app/x\\ta\\nb\"\n";
        parse(&format!("{GOOD}{hooks}")).unwrap();
        parse(&GOOD.replace(
            "command: cargo build --release",
            "command: \"cargo build\\n  strip x\"",
        ))
        .unwrap();
        let e = err(&format!("{GOOD}hooks:\n  in_gap: [\"/app/x\\r\"]\n"));
        assert!(e.starts_with("hooks.in_gap[0] (line 27)"), "{e}");
    }

    #[test]
    fn the_home_directory_root_and_dots_are_no_app_directory() {
        for bad in ["\"~\"", "\"~/\"", "/", "\"~/web/../..\"", "/srv/./a"] {
            let e = err(&GOOD.replace("path: ~/web/my-app", &format!("path: {bad}")));
            assert!(e.contains("environments.prod.path"), "{bad}: {e}");
        }
    }

    fn with_staging(overrides: &str) -> String {
        format!("{GOOD}  staging:\n    host: local\n    path: ~/web/my-app-staging\n    port: 18090\n{overrides}")
    }

    fn as_env(text: &str, env: &str) -> Config {
        parse(text).unwrap();
        for_environment(&yaml_serde::from_str(text).unwrap(), env).unwrap()
    }

    #[test]
    fn an_environment_overrides_sections_maps_merge_lists_and_scalars_replace() {
        let text = with_staging(
            "    keep_releases: 2\n    health:\n      timeout: 5s\n    artifacts: [dist/app]\n    listen: socket\n",
        );
        let staging = as_env(&text, "staging");
        assert_eq!(staging.keep_releases, 2);
        assert_eq!(staging.health.timeout, Duration::from_secs(5));
        assert_eq!(staging.health.path, "/healthz", "a map merges");
        assert_eq!(
            staging.artifacts,
            vec!["dist/app".to_string()],
            "a list replaces"
        );
        assert_eq!(staging.listen, Listen::Socket);
        let prod = as_env(&text, "prod");
        assert_eq!(prod.keep_releases, 3);
        assert_eq!(prod.health.timeout, Duration::from_secs(30));
        assert_eq!(prod.artifacts.len(), 3);
        assert_eq!(prod.listen, Listen::Publish);
    }

    #[test]
    fn every_overridable_section_is_accepted_and_app_is_not() {
        let all: String = OVERRIDABLE
            .iter()
            .map(|k| format!("    {k}: null\n"))
            .collect();
        // `null` replaces: every section parses (required ones then fail as missing).
        assert!(parse(&with_staging(&all)).is_err());
        for k in OVERRIDABLE {
            if let Err(e) = parse(&with_staging(&format!("    {k}: {{}}\n"))) {
                assert!(!format!("{e:#}").contains("unknown field"), "{k}: {e:#}");
            }
        }
        for k in ["app", "environments", "nonsense"] {
            let e = err(&with_staging(&format!("    {k}: x\n")));
            assert!(e.contains(&format!("unknown field `{k}`")), "{k}: {e}");
        }
    }

    #[test]
    fn jobs_parse_with_their_defaults_and_a_list_is_kept_quoted() {
        let text = format!(
            "{GOOD}jobs:\n  digest:\n    schedule: \"*-*-* 03:00\"\n    command: [/app/my-app, digest, --to, \"a b\"]\n  \
             sweep: {{schedule: \"*:*:0/30\", command: /app/my-app sweep, timeout: 30s, concurrency: replace}}\n"
        );
        let c = parse(&text).unwrap();
        let digest = &c.jobs["digest"];
        assert_eq!(digest.schedule, "*-*-* 03:00");
        assert_eq!(digest.command, "/app/my-app digest --to 'a b'");
        assert_eq!(digest.timeout, Duration::from_secs(600));
        assert_eq!(digest.concurrency, Concurrency::Forbid);
        let sweep = &c.jobs["sweep"];
        assert_eq!(sweep.timeout, Duration::from_secs(30));
        assert_eq!(sweep.concurrency, Concurrency::Replace);
        assert!(parse(GOOD).unwrap().jobs.is_empty());
    }

    #[test]
    fn a_job_is_checked_name_schedule_command_and_timeout() {
        let job = |name: &str, body: &str| format!("{GOOD}jobs:\n  {name}: {body}\n");
        let e = err(&job("Dig_est", "{schedule: hourly, command: /x}"));
        assert!(
            e.starts_with("jobs.Dig_est (line 27):") && e.contains("job name"),
            "{e}"
        );
        for bad in ["\"%h\"", "\"03:00 \\\\\"", "\"$X\"", "\"\""] {
            let e = err(&job("d", &format!("{{schedule: {bad}, command: /x}}")));
            assert!(e.starts_with("jobs.d.schedule (line 27):"), "{bad}: {e}");
        }
        let e = err(&job(
            "d",
            "{schedule: \"03:00\\nExecStartPre=/bin/id\", command: /x}",
        ));
        assert!(e.contains("control character"), "{e}");
        let e = err(&job("d", "{schedule: hourly, command: \"\"}"));
        assert!(
            e.starts_with("jobs.d.command (line 27): an empty command"),
            "{e}"
        );
        let e = err(&job("d", "{schedule: hourly, command: \"/x 'a\"}"));
        assert!(e.starts_with("jobs.d.command"), "{e}");
        let e = err(&job("d", "{schedule: hourly, command: /x, timeout: 0s}"));
        assert!(e.starts_with("jobs.d.timeout"), "{e}");
        let e = err(&job(
            "d",
            "{schedule: hourly, command: /x, concurrency: allow}",
        ));
        assert!(e.contains("unknown variant `allow`"), "{e}");
        // Words may be split by tabs and newlines, as in_gap's.
        let c = parse(&job(
            "d",
            "{schedule: \"Mon *-*-* 03:00 Europe/Berlin\", command: \"/x\\ta\"}",
        ))
        .unwrap();
        assert_eq!(c.jobs["d"].command, "/x\ta");
    }

    #[test]
    fn an_environment_overrides_a_job_or_turns_it_off() {
        let text = format!(
            "{}jobs:\n  digest: {{schedule: hourly, command: /app/d}}\n  sweep: {{schedule: daily, command: /app/s}}\n",
            with_staging("    jobs:\n      digest: {schedule: \"*:*:0/5\"}\n      sweep: null\n")
        );
        let staging = as_env(&text, "staging");
        assert_eq!(staging.jobs["digest"].schedule, "*:*:0/5");
        assert_eq!(staging.jobs["digest"].command, "/app/d", "a job merges");
        assert!(
            !staging.jobs.contains_key("sweep"),
            "null: no such job there"
        );
        let prod = as_env(&text, "prod");
        assert_eq!(prod.jobs["digest"].schedule, "hourly");
        assert_eq!(prod.jobs.len(), 2);
    }

    #[test]
    fn an_invalid_override_names_its_environment() {
        let e = err(&with_staging("    health:\n      timeout: soon\n"));
        assert!(e.contains("environment `staging`"), "{e}");
        assert!(e.contains("soon"), "{e}");
        let e = err(&with_staging("    keep_releases: 0\n"));
        assert!(
            e.contains("environment `staging`") && e.contains("keep_releases"),
            "{e}"
        );
    }
}
