//! `preview:`: how `deploy preview up NAME --from ENV` makes a preview of ENV, and the config a
//! preview runs with, derived from ENV's (pure: values in, values out).
//!
//! A preview's environment is named `ENV/NAME` ([`crate::names::preview_env`]); its config is
//! ENV's with: its own directory beside ENV's (`<path>.preview-NAME`), ports from
//! `preview.ports` (chosen on the server, [`PLACEHOLDER`] until then), no `replicate:` and no
//! `verify.schedule` (a preview never replicates), no `jobs:` unless `preview.jobs`, the env of
//! `preview.env` (over ENV's `env` only with `preview.copy_env`), and with `traefik:` a router
//! for `preview.host` marked `noindex`, behind `preview.basic_auth` when it is set.

use super::{command_lines, duration, Env};
use serde::Deserialize;
use std::time::Duration;
use yaml_serde::{Mapping, Value};

/// The `preview:` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Preview {
    /// `FROM-TO`: the ports previews take their app and gap ports from, two by two. Default:
    /// the 20 ports after the environment's port and gap port.
    #[serde(default)]
    pub ports: Option<String>,
    /// How many previews of one environment may exist at once.
    #[serde(default = "default_max")]
    pub max: usize,
    /// With `traefik:`: the host of a preview's router, `{name}` its name
    /// (`{name}.preview.example.com`).
    #[serde(default)]
    pub host: Option<String>,
    /// With `traefik:`: `user:hash` lines (htpasswd's, e.g. `htpasswd -nB user`) a browser must
    /// give: a preview serves real data.
    #[serde(default)]
    pub basic_auth: Vec<String>,
    /// The preview's variables (clear and secret, like `env`).
    #[serde(default)]
    pub env: Env,
    /// Copy ENV's `shared/.env` and its `env.secret` values into the preview (default: not: a
    /// preview gets ENV's `env.clear` and `preview.env` only).
    #[serde(default)]
    pub copy_env: bool,
    /// Commands run each time the data is copied, in a one-off container of the preview's
    /// release on its data, before the preview starts (anonymise it).
    #[serde(default, deserialize_with = "command_lines")]
    pub scrub: Vec<String>,
    /// Run the config's jobs in previews too (default: none).
    #[serde(default)]
    pub jobs: bool,
    /// How long a preview lives after its last `up`: `deploy preview prune` (and the server's
    /// timer) takes it down after.
    #[serde(default = "default_ttl", deserialize_with = "duration")]
    pub ttl: Duration,
}

impl Default for Preview {
    fn default() -> Self {
        Preview {
            ports: None,
            max: default_max(),
            host: None,
            basic_auth: Vec::new(),
            env: Env::default(),
            copy_env: false,
            scrub: Vec::new(),
            jobs: false,
            ttl: default_ttl(),
        }
    }
}

fn default_max() -> usize {
    5
}

fn default_ttl() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

/// How many ports follow an environment's own by default.
pub const DEFAULT_PORTS: u16 = 20;

/// The port a preview's config has until the server chose its own (never listened on).
pub const PLACEHOLDER: u16 = 1;

/// A range of ports, both ends in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub from: u16,
    pub to: u16,
}

impl PortRange {
    /// `FROM-TO`, at least two ports. Pure.
    pub fn parse(text: &str) -> Result<PortRange, String> {
        let bad = || {
            format!("`{text}` is not a range of ports: write FROM-TO, e.g. 18100-18119 (two ports per preview)")
        };
        let (a, b) = text.split_once('-').ok_or_else(bad)?;
        let from: u16 = a.trim().parse().map_err(|_| bad())?;
        let to: u16 = b.trim().parse().map_err(|_| bad())?;
        if from == 0 || to <= from {
            return Err(bad());
        }
        Ok(PortRange { from, to })
    }

    /// The range a preview of an environment takes its ports from: `preview.ports`, or the
    /// [`DEFAULT_PORTS`] after the environment's port and gap port. Pure.
    pub fn of(p: &Preview, port: u16, gap_port: u16) -> Result<PortRange, String> {
        match &p.ports {
            Some(text) => PortRange::parse(text),
            None => {
                let from = port.max(gap_port).checked_add(1);
                let to = from.and_then(|f| f.checked_add(DEFAULT_PORTS - 1));
                match (from, to) {
                    (Some(from), Some(to)) => Ok(PortRange { from, to }),
                    _ => Err(format!(
                        "the {DEFAULT_PORTS} ports after {port} go beyond 65535: set preview.ports"
                    )),
                }
            }
        }
    }

    /// The (app, gap) pairs of the range, in order.
    pub fn pairs(self) -> impl Iterator<Item = (u16, u16)> {
        (self.from..self.to)
            .step_by(2)
            .map(|p| (p, p + 1))
            .filter(move |(_, g)| *g <= self.to)
    }

    pub fn contains(self, port: u16) -> bool {
        (self.from..=self.to).contains(&port)
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.from, self.to)
    }
}

/// The section's own checks: (key under `preview`, message).
pub(super) fn check(p: &Preview) -> Result<(), (&'static str, String)> {
    if let Some(text) = &p.ports {
        PortRange::parse(text).map_err(|m| ("ports", m))?;
    }
    if p.max == 0 {
        return Err(("max", "must be at least 1".into()));
    }
    if let Some(host) = &p.host {
        let sample = host.replace("{name}", "pr-1");
        let ok = host.contains("{name}")
            && !sample.is_empty()
            && sample
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !ok {
            return Err((
                "host",
                format!(
                    "`{host}` must be a host name with `{{name}}` in it (each preview its own \
                     host), e.g. {{name}}.preview.example.com"
                ),
            ));
        }
    }
    for line in &p.basic_auth {
        let ok = line.split_once(':').is_some_and(|(user, hash)| {
            !user.is_empty() && hash.len() >= 8 && !line.contains(char::is_whitespace)
        });
        if !ok {
            return Err((
                "basic_auth",
                "each entry is `user:hash` as htpasswd writes it (`htpasswd -nB USER`), never \
                 a password in clear"
                    .into(),
            ));
        }
    }
    if p.ttl < Duration::from_secs(60) {
        return Err(("ttl", "must be at least 1m".into()));
    }
    Ok(())
}

/// The directory of a preview, beside its environment's: `<path>.preview-NAME`. Pure.
pub fn path_of(env_path: &str, name: &str) -> String {
    format!("{}.preview-{name}", env_path.trim_end_matches('/'))
}

/// A preview's router rule.
pub fn rule_of(host: &str, name: &str) -> String {
    format!("Host(`{}`)", host.replace("{name}", name))
}

/// The values of a preview's config: `merged` (ENV's config, its overrides merged) changed
/// as the module says. `env_keys`: ENV's own keys (host, path, port, gap_port, ssh). Pure.
pub(super) fn derive(
    mut merged: Value,
    env_keys: Mapping,
    from: &str,
    name: &str,
    p: &Preview,
) -> Result<Value, String> {
    let root = merged.as_mapping_mut().ok_or("a config is a mapping")?;
    let mut own = env_keys;
    let path = own
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("environments.{from}.path is missing"))?
        .to_string();
    own.insert("path".into(), path_of(&path, name).into());
    own.insert("port".into(), Value::from(PLACEHOLDER));
    own.insert("gap_port".into(), Value::from(PLACEHOLDER + 1));
    let key = crate::names::preview_env(from, name);
    root.insert(
        "environments".into(),
        Value::Mapping(Mapping::from_iter([(key.into(), Value::Mapping(own))])),
    );
    root.remove("replicate");
    root.remove("verify");
    if !p.jobs {
        root.remove("jobs");
    }
    root.insert("env".into(), preview_env_values(root.get("env"), p)?);
    if let Some(Value::Mapping(t)) = root.get_mut("traefik") {
        let host = p.host.as_deref().ok_or(
            "with traefik:, a preview needs preview.host (e.g. `{name}.preview.example.com`): \
             its router's host",
        )?;
        t.insert("rule".into(), rule_of(host, name).into());
    }
    Ok(merged)
}

/// A preview's `env`: ENV's `env.clear` with `preview.env.clear` over it, and
/// `preview.env.secret`; with `copy_env`, ENV's `env.secret` too.
fn preview_env_values(env: Option<&Value>, p: &Preview) -> Result<Value, String> {
    let mut clear: Mapping = env
        .and_then(|e| e.get("clear"))
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    for (k, v) in &p.env.clear {
        clear.insert(k.as_str().into(), v.as_str().into());
    }
    let mut secret: Vec<String> = match p.copy_env {
        true => env
            .and_then(|e| e.get("secret"))
            .and_then(Value::as_sequence)
            .map(|s| {
                s.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
        false => Vec::new(),
    };
    for s in &p.env.secret {
        if !secret.contains(s) {
            secret.push(s.clone());
        }
    }
    // A name set in clear for the preview is no longer a secret of ENV's.
    secret.retain(|s| !p.env.clear.contains_key(s));
    let secret: Vec<Value> = secret.into_iter().map(Value::from).collect();
    let mut out = Mapping::new();
    out.insert("clear".into(), Value::Mapping(clear));
    out.insert("secret".into(), Value::Sequence(secret));
    Ok(Value::Mapping(out))
}

/// What a preview's config knows of what it is a preview of (not read from the file: set when
/// the config is derived).
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewOf {
    /// The environment it is a preview of.
    pub from: String,
    pub name: String,
    /// That environment's directory (`~` as written).
    pub from_path: String,
    /// The range its ports are chosen in.
    pub ports: PortRange,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_parse_and_default_after_the_environments_ports() {
        assert_eq!(
            PortRange::parse("18100-18119"),
            Ok(PortRange {
                from: 18100,
                to: 18119
            })
        );
        for bad in ["18100", "18100-18100", "b-c", "0-5", "9-3", "1-70000"] {
            assert!(PortRange::parse(bad).is_err(), "{bad}");
        }
        let p = Preview::default();
        let r = PortRange::of(&p, 18086, 18087).unwrap();
        assert_eq!(r.to_string(), "18088-18107");
        assert_eq!(r.pairs().count(), 10);
        assert_eq!(r.pairs().next(), Some((18088, 18089)));
        // An odd range ends with a whole pair.
        let odd = PortRange::parse("10-14").unwrap();
        assert_eq!(odd.pairs().collect::<Vec<_>>(), [(10, 11), (12, 13)]);
        assert!(PortRange::of(&p, 65530, 65531).is_err());
    }

    #[test]
    fn the_section_is_checked() {
        let with = |f: &dyn Fn(&mut Preview)| {
            let mut p = Preview::default();
            f(&mut p);
            check(&p).map_err(|(k, _)| k)
        };
        assert_eq!(with(&|_| {}), Ok(()));
        assert_eq!(with(&|p| p.max = 0), Err("max"));
        assert_eq!(with(&|p| p.ports = Some("5".into())), Err("ports"));
        assert_eq!(
            with(&|p| p.host = Some("pv.example.com".into())),
            Err("host")
        );
        assert_eq!(
            with(&|p| p.host = Some("{name}.pv.example.com".into())),
            Ok(())
        );
        assert_eq!(
            with(&|p| p.basic_auth = vec!["alice".into()]),
            Err("basic_auth")
        );
        assert_eq!(
            with(&|p| p.basic_auth = vec!["alice:$2y$05$abcdefgh".into()]),
            Ok(())
        );
        assert_eq!(with(&|p| p.ttl = Duration::from_secs(5)), Err("ttl"));
    }

    #[test]
    fn a_preview_is_its_environment_without_replication_jobs_or_secrets() {
        let merged: Value = yaml_serde::from_str(
            "app: shop\nreplicate: {url: 'file:///r'}\nverify: {schedule: daily}\n\
             jobs: {digest: {schedule: daily, command: x}}\n\
             env: {clear: {A: '1', B: '2'}, secret: [TOKEN]}\n\
             traefik: {rule: 'Host(`shop.example.com`)'}\n",
        )
        .unwrap();
        let own: Mapping =
            yaml_serde::from_str("host: local\npath: ~/web/shop/\nport: 9000").unwrap();
        let mut p = Preview {
            host: Some("{name}.pv.example.com".into()),
            ..Preview::default()
        };
        p.env.clear.insert("B".into(), "preview".into());
        p.env.secret.push("PV_TOKEN".into());
        let out = derive(merged.clone(), own.clone(), "prod", "pr-1", &p).unwrap();
        let env = &out["environments"]["prod/pr-1"];
        assert_eq!(env["path"], "~/web/shop.preview-pr-1");
        assert_eq!(env["port"], Value::from(PLACEHOLDER));
        assert!(out.get("replicate").is_none() && out.get("verify").is_none());
        assert!(out.get("jobs").is_none());
        assert_eq!(out["env"]["clear"]["A"], "1");
        assert_eq!(out["env"]["clear"]["B"], "preview");
        assert_eq!(out["env"]["secret"], Value::from(vec!["PV_TOKEN"]));
        assert_eq!(out["traefik"]["rule"], "Host(`pr-1.pv.example.com`)");
        p.copy_env = true;
        p.jobs = true;
        let out = derive(merged.clone(), own.clone(), "prod", "pr-1", &p).unwrap();
        assert_eq!(out["env"]["secret"], Value::from(vec!["TOKEN", "PV_TOKEN"]));
        assert!(out.get("jobs").is_some());
        p.host = None;
        let e = derive(merged, own, "prod", "pr-1", &p).unwrap_err();
        assert!(e.contains("preview.host"), "{e}");
    }
}
