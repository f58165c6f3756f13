//! `deploy.yaml`: parsing and validation. Pure: no file system access beyond reading the file.
//!
//! Unknown keys, missing keys and wrong types are reported by the YAML parser with the key and
//! its line; the checks that come after parsing find the line of the key they complain about.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// Optional: commands around a release.
    #[serde(default)]
    pub hooks: Hooks,
    pub environments: BTreeMap<String, Environment>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Run here (`sh -c`, in the config's directory) before the upload; one failing stops the
    /// release before anything is uploaded.
    #[serde(default)]
    pub before_upload: Vec<String>,
    /// Run on the node in a one-off container of the new release's image, with the app's mounts
    /// and env, after the old release stopped and before the new one starts (migrations). The
    /// first word is the program in the image, the others its arguments. One failing puts the
    /// previous release back, as a failed health check does.
    #[serde(default)]
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
    /// Seconds `podman stop` waits for the app to exit after SIGTERM before it kills it.
    #[serde(default = "default_stop_timeout", deserialize_with = "duration")]
    pub stop_timeout: Duration,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// `local` (this machine), or a server reached over SSH: `user@host:port`, `host`, or an
    /// alias from ~/.ssh/config.
    pub host: String,
    pub path: String,
    pub port: u16,
    /// With `traefik:`: where the gap server (maintenance page, held requests) listens on
    /// 127.0.0.1. Default: `port` + 1.
    #[serde(default)]
    pub gap_port: Option<u16>,
    /// Optional, for a remote host: how to reach it.
    #[serde(default)]
    pub ssh: Option<SshOptions>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshOptions {
    /// A private key (`ssh -i`); `~/` is this machine's home.
    #[serde(default)]
    pub identity: Option<String>,
    /// A jump host (`ssh -J`).
    #[serde(default)]
    pub jump: Option<String>,
    /// More ssh arguments, e.g. ["-o", "ServerAliveInterval=15"].
    #[serde(default)]
    pub options: Vec<String>,
}

/// Where an environment's node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Local,
    Ssh {
        /// `user@host` or `host` (or an ssh config alias), as ssh takes it.
        destination: String,
        port: Option<u16>,
    },
}

/// Parses `local`, `host`, `user@host`, `user@host:port` (also `[v6]:port`).
pub fn parse_host(text: &str) -> std::result::Result<Host, String> {
    let text = text.trim();
    if text == "local" {
        return Ok(Host::Local);
    }
    let bad = || {
        format!("`{text}`: use `local`, `host`, `user@host` or `user@host:port` (or an ssh alias)")
    };
    if text.is_empty()
        || text
            .chars()
            .any(|c| c.is_whitespace() || c == '/' || c == '\'')
    {
        return Err(bad());
    }
    let (user, rest) = match text.rsplit_once('@') {
        Some((u, r)) if !u.is_empty() && !r.is_empty() => (Some(u), r),
        Some(_) => return Err(bad()),
        None => (None, text),
    };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(bad()),
        }
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() || host.starts_with('-') {
        return Err(bad());
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?),
        None => None,
    };
    Ok(Host::Ssh {
        destination: match user {
            Some(u) => format!("{u}@{host}"),
            None => host.to_string(),
        },
        port,
    })
}

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

fn default_dynamic_dir() -> String {
    "~/.config/traefik/dynamic".into()
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

fn duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{s}` is not a duration ({e}); write e.g. 30s, 250ms, 1m"
        ))
    })
}

/// A loaded configuration with where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// The config file's directory: artifacts and the build command are relative to it.
    pub dir: PathBuf,
    pub file: PathBuf,
}

impl Loaded {
    /// Picks the environment: the one named, or the only one when none is named.
    pub fn environment(&self, name: Option<&str>) -> Result<(String, &Environment)> {
        let envs = &self.config.environments;
        match name {
            Some(n) => envs
                .get_key_value(n)
                .map(|(k, v)| (k.clone(), v))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "unknown environment `{n}` in {}: it defines {}",
                        self.file.display(),
                        names(envs.keys())
                    )
                }),
            None if envs.len() == 1 => {
                let (k, v) = envs.iter().next().expect("one environment");
                Ok((k.clone(), v))
            }
            None => bail!(
                "{} defines several environments ({}): name the one to use",
                self.file.display(),
                names(envs.keys())
            ),
        }
    }
}

fn names<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    keys.map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads and validates a config file.
pub fn load(file: &Path) -> Result<Loaded> {
    let text = std::fs::read_to_string(file).with_context(|| {
        format!(
            "cannot read {}: run deploy where your {DEFAULT_FILE} is, or pass -c FILE",
            file.display()
        )
    })?;
    let config = parse(&text).with_context(|| format!("invalid config {}", file.display()))?;
    let file = std::path::absolute(file)?;
    let dir = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ".".into());
    Ok(Loaded { config, dir, file })
}

/// Parses and validates config text.
pub fn parse(text: &str) -> Result<Config> {
    let config: Config = serde_norway::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    validate(&config).map_err(|Invalid { key, message }| {
        let at = line_of(text, &key)
            .map(|l| format!(" (line {l})"))
            .unwrap_or_default();
        anyhow::anyhow!("{}{at}: {message}", key.join("."))
    })?;
    Ok(config)
}

struct Invalid {
    key: Vec<String>,
    message: String,
}

fn invalid(key: &[&str], message: impl Into<String>) -> Invalid {
    Invalid {
        key: key.iter().map(|s| s.to_string()).collect(),
        message: message.into(),
    }
}

/// App names become unit and image names: lower case, so that both accept them.
pub fn check_app_name(app: &str) -> std::result::Result<(), String> {
    let ok = !app.is_empty()
        && app.len() <= 64
        && app.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && app
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{app}` is not a usable app name: use 1 to 64 lower-case letters, digits, `-` or `_`, \
             starting with a letter or digit (it names the unit and the image)"
        ))
    }
}

/// A relative path inside a release or `shared/`: no `..`, not absolute, not empty.
fn check_relative(p: &str) -> bool {
    let path = Path::new(p);
    !p.is_empty()
        && !path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// The name an artifact takes inside the release: its base name.
pub fn artifact_name(artifact: &str) -> Option<String> {
    Path::new(artifact.trim_end_matches('/'))
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// Names inside a release that deploy itself uses.
pub const RESERVED_IN_RELEASE: &[&str] = &[".deploy"];

fn validate(c: &Config) -> std::result::Result<(), Invalid> {
    check_app_name(&c.app).map_err(|m| invalid(&["app"], m))?;
    if c.hooks
        .in_gap
        .iter()
        .any(|h| h.split_whitespace().next().is_none())
    {
        return Err(invalid(
            &["hooks", "in_gap"],
            "an empty command: each is a program in the image and its arguments",
        ));
    }
    if c.keep_releases == 0 {
        return Err(invalid(
            &["keep_releases"],
            "must be at least 1 (current and previous are always kept anyway)",
        ));
    }
    if let Some(b) = &c.build {
        if b.command.trim().is_empty() {
            return Err(invalid(&["build", "command"], "is empty"));
        }
    }
    if c.artifacts.is_empty() {
        return Err(invalid(
            &["artifacts"],
            "lists nothing: name the files and directories a release is made of",
        ));
    }
    let mut in_release: BTreeMap<String, String> = BTreeMap::new();
    for a in &c.artifacts {
        let name = artifact_name(a)
            .filter(|n| n != "." && n != "..")
            .ok_or_else(|| invalid(&["artifacts"], format!("`{a}` has no file name")))?;
        if RESERVED_IN_RELEASE.contains(&name.as_str()) {
            return Err(invalid(
                &["artifacts"],
                format!("`{a}`: the name `{name}` is reserved for deploy's own files"),
            ));
        }
        if let Some(other) = in_release.insert(name.clone(), a.clone()) {
            return Err(invalid(
                &["artifacts"],
                format!("`{other}` and `{a}` would both be uploaded as `{name}`"),
            ));
        }
    }
    for (kind, list) in [("dirs", &c.shared.dirs), ("files", &c.shared.files)] {
        for s in list {
            if !check_relative(s) {
                return Err(invalid(
                    &["shared", kind],
                    format!("`{s}` must be a relative path inside shared/, without `..`"),
                ));
            }
            let top = s.split('/').next().unwrap_or(s);
            if in_release.contains_key(top) || RESERVED_IN_RELEASE.contains(&top) {
                return Err(invalid(
                    &["shared", kind],
                    format!("`{s}` clashes with an artifact or a reserved name in the release"),
                ));
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for s in c.shared.dirs.iter().chain(&c.shared.files) {
        if !seen.insert(s) {
            return Err(invalid(&["shared"], format!("`{s}` is listed twice")));
        }
    }
    if c.container.port == 0 {
        return Err(invalid(&["container", "port"], "must be 1 to 65535"));
    }
    for (dir, target) in &c.container.mounts {
        if !c.shared.dirs.contains(dir) {
            return Err(invalid(
                &["container", "mounts"],
                format!("`{dir}` is not one of shared.dirs ({:?})", c.shared.dirs),
            ));
        }
        if !target.starts_with('/') {
            return Err(invalid(
                &["container", "mounts", dir],
                format!("`{target}` must be an absolute path inside the container"),
            ));
        }
    }
    if !c.health.path.starts_with('/') {
        return Err(invalid(&["health", "path"], "must start with `/`"));
    }
    if c.health.interval.is_zero() || c.health.timeout < c.health.interval {
        return Err(invalid(
            &["health", "timeout"],
            "must be at least health.interval, and the interval above zero",
        ));
    }
    if let Some(t) = &c.traefik {
        validate_traefik(t)?;
    }
    if c.environments.is_empty() {
        return Err(invalid(&["environments"], "defines no environment"));
    }
    for (name, env) in &c.environments {
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            || name.is_empty()
        {
            return Err(invalid(
                &["environments", name],
                "environment names use letters, digits, `-` and `_`",
            ));
        }
        let host =
            parse_host(&env.host).map_err(|m| invalid(&["environments", name, "host"], m))?;
        if host == Host::Local && env.ssh.is_some() {
            return Err(invalid(
                &["environments", name, "ssh"],
                "is for a remote host; `host: local` is this machine",
            ));
        }
        if !(env.path.starts_with('/') || env.path == "~" || env.path.starts_with("~/")) {
            return Err(invalid(
                &["environments", name, "path"],
                format!("`{}` must be absolute or start with `~/`", env.path),
            ));
        }
        if let Some(bad) = env.path.chars().find(|c| UNSAFE_PATH_CHARS.contains(*c)) {
            return Err(invalid(
                &["environments", name, "path"],
                format!(
                    "`{}` contains {bad:?}, which unit files cannot carry safely",
                    env.path
                ),
            ));
        }
        if env.port == 0 {
            return Err(invalid(
                &["environments", name, "port"],
                "must be 1 to 65535",
            ));
        }
        if c.traefik.is_some() && (env.gap_port() == env.port || env.gap_port() == 0) {
            return Err(invalid(
                &["environments", name, "gap_port"],
                "must differ from `port` (and be 1 to 65535): the gap server listens there",
            ));
        }
    }
    Ok(())
}

fn validate_traefik(t: &Traefik) -> std::result::Result<(), Invalid> {
    if t.rule.trim().is_empty() {
        return Err(invalid(
            &["traefik", "rule"],
            "is empty: e.g. Host(`my-app.example.com`)",
        ));
    }
    if !(t.api.starts_with("http://") || t.api.starts_with("https://")) {
        return Err(invalid(
            &["traefik", "api"],
            format!("`{}` is not an http:// URL", t.api),
        ));
    }
    if t.entrypoints.is_empty() {
        return Err(invalid(&["traefik", "entrypoints"], "names no entry point"));
    }
    match &t.tls {
        None | Some(serde_json::Value::Bool(_)) | Some(serde_json::Value::Object(_)) => {}
        Some(other) => {
            return Err(invalid(
                &["traefik", "tls"],
                format!("must be true, false or a mapping of Traefik's TLS options, not {other}"),
            ))
        }
    }
    if t.hold.is_zero() {
        return Err(invalid(&["traefik", "hold"], "must be above zero"));
    }
    if let Some(m) = t.managed() {
        for ep in &t.entrypoints {
            if !m.entrypoints.contains_key(ep) {
                return Err(invalid(
                    &["traefik", "entrypoints"],
                    format!("`{ep}` is not one of the entry points of traefik.manage"),
                ));
            }
        }
        for (name, address) in &m.entrypoints {
            if crate::front::traefik::port_of(address).is_none() || name == "traefik" {
                return Err(invalid(
                    &["traefik", "manage", "entrypoints", name],
                    format!("`{address}` is not an address like \":80\" or \"127.0.0.1:8000\" (and `traefik` is the API's name)"),
                ));
            }
        }
    }
    Ok(())
}

/// Characters a node path may not contain: it is written into unit files unquoted.
pub const UNSAFE_PATH_CHARS: &str = " \t\n\"'\\%$;`";

/// Finds the 1-based line of a nested key (e.g. `environments.prod.port`) in YAML text: each
/// component is searched below the previous one, at a deeper indentation.
pub fn line_of(text: &str, key: &[String]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0;
    let mut min_indent = 0;
    let mut found = None;
    for (depth, k) in key.iter().enumerate() {
        let hit = lines.iter().enumerate().skip(start).find(|(_, l)| {
            let indent = l.len() - l.trim_start().len();
            let t = l.trim_start().trim_start_matches("- ");
            (depth == 0 || indent >= min_indent)
                && (t.starts_with(&format!("{k}:")) || t.starts_with(&format!("\"{k}\":")))
        });
        match hit {
            Some((i, l)) => {
                found = Some(i + 1);
                start = i + 1;
                min_indent = l.len() - l.trim_start().len() + 1;
            }
            None => return found,
        }
    }
    found
}

#[cfg(test)]
mod host_tests {
    use super::*;

    fn ssh(destination: &str, port: Option<u16>) -> Host {
        Host::Ssh {
            destination: destination.into(),
            port,
        }
    }

    #[test]
    fn hosts_parse_as_ssh_takes_them() {
        assert_eq!(parse_host("local"), Ok(Host::Local));
        assert_eq!(parse_host("vps"), Ok(ssh("vps", None)));
        assert_eq!(
            parse_host("deploy@vps.example.com:22"),
            Ok(ssh("deploy@vps.example.com", Some(22)))
        );
        assert_eq!(
            parse_host("deploy@10.0.0.1"),
            Ok(ssh("deploy@10.0.0.1", None))
        );
        assert_eq!(parse_host("d@[::1]:2222"), Ok(ssh("d@::1", Some(2222))));
        for bad in [
            "",
            "a b",
            "@h",
            "u@",
            "h:0",
            "h:x",
            "-oProxyCommand=x",
            "u@h/x",
        ] {
            assert!(parse_host(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        };
        assert_eq!(loaded.environment(None).unwrap().0, "prod");
        assert_eq!(loaded.environment(Some("prod")).unwrap().0, "prod");
        let e = format!("{}", loaded.environment(Some("staging")).unwrap_err());
        assert!(e.contains("unknown environment `staging`"), "{e}");
        assert!(e.contains("`prod`"), "{e}");
    }

    #[test]
    fn line_of_finds_nested_keys() {
        let k = |s: &str| s.split('.').map(String::from).collect::<Vec<_>>();
        assert_eq!(line_of(GOOD, &k("app")), Some(2));
        assert_eq!(line_of(GOOD, &k("health.path")), Some(18));
        assert_eq!(line_of(GOOD, &k("environments.prod.port")), Some(25));
    }
}
