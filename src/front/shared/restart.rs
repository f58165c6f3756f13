//! The managed Traefik of the node user: its static config built from every app's requests
//! (`deploy setup`, which restarts Traefik only when that config changes, outside every other
//! app's gap), shown with what would change (`setup --dry-run`), and stopped when the last app
//! that relies on it is removed (`deploy remove`).

use super::handover::{cannot_hand_over, hand_over, Handed};
use super::lock::UserLock;
use super::{forget, merge_leaving_out, save, AppRecord, Merged, Registry};
use crate::front::default_cert::{DefaultCert, Ensured};
use crate::front::traefik::{self, AcmeResolver, Https, TRAEFIK_UNIT_NAME};
use crate::sys::fsx;
use crate::sys::systemd::{user_unit_dir, Systemd};
use crate::ui::{indent, line, Ui};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the user's Traefik would run with this app's request, read from the records and the
/// server, changing nothing.
pub struct Preview {
    /// This app's record, checked against the others'.
    mine: AppRecord,
    merged: Merged,
    /// What other apps ask that does not go with the rest (`app: conflict`).
    left_out: Vec<String>,
    /// The apps a restart touches: every app whose router this Traefik serves.
    touched: Vec<String>,
    static_path: PathBuf,
    static_text: String,
    unit_text: String,
    before_static: Option<String>,
    before_unit: Option<String>,
    /// Its static config or unit says something else than the ones in place: a restart.
    changed: bool,
}

/// What a setup of a managed Traefik changes, decided under its locks (the Traefik lock held
/// until the change is made).
pub struct TraefikChange {
    _lock: UserLock,
    preview: Preview,
    /// This app's record before this setup.
    before_record: Option<AppRecord>,
}

/// What removing an app does to the managed Traefik.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Leaving {
    /// The app does not manage Traefik: nothing.
    #[default]
    NotManaged,
    /// Other apps rely on it (these): it keeps running.
    KeptFor(Vec<String>),
    /// No other app relies on it: it is stopped and its unit disabled.
    Stopped,
}

impl Leaving {
    /// The line `remove --dry-run` and `remove` say. Pure.
    pub fn describe(&self) -> String {
        match self {
            Leaving::NotManaged => "the managed Traefik, its static config and acme.json are \
                                    not this app's: kept"
                .into(),
            Leaving::KeptFor(apps) => format!(
                "keeps running, for {} (its static config and acme.json are kept)",
                apps.join(", ")
            ),
            Leaving::Stopped => format!(
                "no other app of this user relies on it: {TRAEFIK_UNIT_NAME} is stopped and \
                 disabled; its static config and acme.json are kept (the next `deploy setup` \
                 with traefik.manage starts it again)"
            ),
        }
    }
}

/// The apps whose router the Traefik with API `api` serves, as [`AppRecord::short_label`]s,
/// sorted. Pure.
fn served_by(api: &str, records: &[&AppRecord]) -> Vec<String> {
    let mut apps: Vec<String> = records
        .iter()
        .filter(|r| r.traefik.as_ref().is_some_and(|t| t.api == api))
        .map(|r| r.short_label())
        .collect();
    apps.sort();
    apps
}

impl Preview {
    /// The static config merged from this app's request (`mine`, checked against `others`) and
    /// the others', and whether it changes what runs. Reads, changes nothing.
    pub fn new(mine: AppRecord, others: Vec<&AppRecord>, home: &Path) -> Result<Preview> {
        let (merged, left_out) = merged_with(&mine, others.clone());
        let merged = merged.context("this app manages Traefik")?;
        check_unprivileged(mine.managed().map(|t| &t.entrypoints))?;
        let (static_path, static_text, unit_text) = traefik_texts(home, &merged)?;
        let before_static = std::fs::read_to_string(&static_path).ok();
        let before_unit = std::fs::read_to_string(user_unit_dir(home).join(TRAEFIK_UNIT_NAME)).ok();
        let changed = !same_yaml(before_static.as_deref(), &static_text)
            || !same_unit(before_unit.as_deref(), &unit_text);
        let all: Vec<&AppRecord> = std::iter::once(&mine).chain(others).collect();
        let touched = served_by(&merged.api, &all);
        Ok(Preview {
            mine,
            merged,
            left_out,
            touched,
            static_path,
            static_text,
            unit_text,
            before_static,
            before_unit,
            changed,
        })
    }

    /// `setup --dry-run` with traefik.manage: the static config merged with the other apps'
    /// requests (what changes in it), and whether Traefik restarts and whom that touches. Pure.
    pub fn plan_lines(&self) -> String {
        let p = self;
        let mut out = String::new();
        let path = p.static_path.display();
        if !p.changed {
            line(
                &mut out,
                "static",
                format!("{path}, merged with the other apps' requests: unchanged"),
            );
            line(&mut out, "restart", "none (Traefik keeps running as it is)");
            return out;
        }
        let what = match &p.before_static {
            Some(_) => "what changes in it",
            None => "new",
        };
        line(
            &mut out,
            "static",
            format!("{path}, merged with the other apps' requests ({what}):"),
        );
        let diff = line_diff(p.before_static.as_deref().unwrap_or(""), &p.static_text);
        out += &indent(&diff.join("\n"));
        if diff.is_empty() {
            out += &indent("(Traefik's unit changes)");
        }
        for conflict in &p.left_out {
            line(&mut out, "left out", conflict);
        }
        line(
            &mut out,
            "restart",
            format!(
                "Traefik restarts once every other app's gap has ended, touching {}",
                p.touched.join(", ")
            ),
        );
        line(&mut out, "how", restart_how(p));
        out
    }
}

impl TraefikChange {
    /// Under the Traefik lock (`lock`: no other app is in its gap) and the records' lock (held
    /// by the caller, who read `registry` under it): the app's request of `preview` recorded.
    pub fn record(
        lock: UserLock,
        registry: &Registry,
        preview: Preview,
        home: &Path,
    ) -> Result<TraefikChange> {
        fsx::ensure_dir(Path::new(&preview.merged.dynamic_dir), 0o755)?;
        let before_record = registry.get(&preview.mine.app, &preview.mine.env).cloned();
        save(home, &preview.mine)?;
        Ok(TraefikChange {
            _lock: lock,
            preview,
            before_record,
        })
    }
}

/// `traefik.manage`, once the change is recorded: the user's Traefik runs with the static
/// config every app asks for; restarted only when that changes (saying which apps it serves).
pub fn apply(ui: Ui, systemd: &Systemd, home: &Path, change: &TraefikChange) -> Result<()> {
    let p = &change.preview;
    for conflict in &p.left_out {
        ui.warn(&format!(
            "left out of Traefik's static config, as it does not go with the other apps' \
             requests: {conflict} (that app's own `deploy setup` says so)"
        ));
    }
    // Before Traefik starts or reads it: a change of a router is then applied in milliseconds.
    let dynamic_dir = Path::new(&p.merged.dynamic_dir);
    let cert = DefaultCert::beside(&p.static_path)
        .ensure(dynamic_dir)
        .context("giving the managed Traefik its default certificate")?;
    if let Ensured::Theirs(file) = cert {
        ui.info(&format!(
            "   Traefik's default certificate is the one {} names: deploy's is left out",
            file.display()
        ));
    }
    if !p.changed {
        // Its comments may have changed: written, and read at Traefik's next start.
        return ui.step("Starting Traefik (its static config is unchanged)", || {
            write_traefik(
                systemd,
                home,
                Some(&p.static_text),
                Some(&p.unit_text),
                false,
            )
        });
    }
    ui.step(
        &format!(
            "Restarting Traefik (its static config changed), which serves {}: {}",
            p.touched.join(", "),
            restart_how(p)
        ),
        || apply_traefik_change(ui, systemd, home, change),
    )
}

/// Where the static config goes, and the texts of it and of Traefik's unit.
fn traefik_texts(home: &Path, merged: &Merged) -> Result<(PathBuf, String, String)> {
    let bin = crate::front::find_in_path("traefik").ok_or_else(|| {
        anyhow!(
            "traefik is not installed: `deploy bootstrap` installs it (a pinned release, \
             checked; on the server as root: deploy bootstrap --local USER --with traefik), \
             or put a traefik binary in /usr/local/bin"
        )
    })?;
    let static_path = crate::front::managed_static_config(home);
    let static_text = render_merged(merged, &static_path)?;
    let unit_text =
        traefik::render_traefik_unit(&bin, &static_path, merged.ca_certificates.as_deref())?;
    Ok((static_path, static_text, unit_text))
}

/// Writes the static config and unit, restarts Traefik and waits for its API; a Traefik
/// that does not come up gets its previous config back (and this app its previous record).
fn apply_traefik_change(ui: Ui, systemd: &Systemd, home: &Path, c: &TraefikChange) -> Result<()> {
    let Err(e) = restart_traefik(ui, systemd, home, &c.preview)
        .and_then(|()| traefik::Api::new(&c.preview.merged.api).ping(traefik::LIVE_TIMEOUT))
    else {
        return Ok(());
    };
    let mine = &c.preview.mine;
    let back = write_traefik(
        systemd,
        home,
        c.preview.before_static.as_deref(),
        c.preview.before_unit.as_deref(),
        true,
    )
    .and_then(|()| match &c.before_record {
        Some(r) => save(home, r),
        None => forget(home, &mine.app, &mine.env),
    });
    let said = match back {
        Ok(()) => "its previous static config is back".to_string(),
        Err(b) => format!("putting its previous static config back failed too: {b:#}"),
    };
    Err(e.context(format!(
        "Traefik did not come up with the static config merged for {} ({}); {said}. See \
         `systemctl --user status {TRAEFIK_UNIT_NAME}` (is an entry point's port taken by \
         another process?), then run `deploy setup` again",
        c.preview.touched.join(", "),
        c.preview.static_path.display()
    )))
}

/// Restarts Traefik with the preview's config: handed over to a Traefik started beside it
/// where the running one allows it (no connection refused), else restarted.
fn restart_traefik(ui: Ui, systemd: &Systemd, home: &Path, p: &Preview) -> Result<()> {
    let write = |restart| {
        write_traefik(
            systemd,
            home,
            Some(&p.static_text),
            Some(&p.unit_text),
            restart,
        )
    };
    let restart = || write(true);
    let bin = crate::front::find_in_path("traefik");
    match (cannot_hand_over(p.before_static.as_deref(), &p.merged), bin) {
        (None, Some(bin)) => {
            match hand_over(systemd, &bin, &p.merged, &p.static_path, || write(false))? {
                Handed::Over => Ok(()),
                Handed::Not(why) => {
                    ui.warn(&format!(
                        "{why}: Traefik restarts plainly (connections refused meanwhile)"
                    ));
                    restart()
                }
            }
        }
        _ => restart(),
    }
}

/// Puts a static config and unit in place (or removes them: `None`) and, when there is a
/// config, restarts Traefik (`restart`) or starts it if it is not running.
fn write_traefik(
    systemd: &Systemd,
    home: &Path,
    static_text: Option<&str>,
    unit_text: Option<&str>,
    restart: bool,
) -> Result<()> {
    let static_path = crate::front::managed_static_config(home);
    match static_text {
        Some(text) => {
            fsx::ensure_dir(static_path.parent().expect("a directory"), 0o755)?;
            fsx::write_atomic(&static_path, text.as_bytes(), 0o644)?;
        }
        None => fsx::remove_durable(&static_path)?,
    }
    let timeout = Duration::from_secs(30);
    let unit_dir = user_unit_dir(home);
    match unit_text {
        Some(text) => systemd.install_unit(&unit_dir, TRAEFIK_UNIT_NAME, text)?,
        None => return systemd.remove_unit(&unit_dir, TRAEFIK_UNIT_NAME, timeout),
    }
    match (static_text, restart) {
        (Some(_), true) => systemd.restart(TRAEFIK_UNIT_NAME, timeout),
        (Some(_), false) => systemd.start(TRAEFIK_UNIT_NAME, timeout),
        (None, _) => systemd.stop(TRAEFIK_UNIT_NAME, timeout),
    }
}

/// What removing an app whose Traefik has the API `api` does to it, given the other apps:
/// stopped unless one of them relies on it (its router is on that API). Pure.
pub fn leaving(api: &str, others: &[&AppRecord]) -> Leaving {
    match served_by(api, others) {
        apps if apps.is_empty() => Leaving::Stopped,
        apps => Leaving::KeptFor(apps),
    }
}

/// The managed Traefik stopped and its unit disabled, when it is installed.
pub fn stop_managed(systemd: &Systemd, home: &Path) -> Result<()> {
    if user_unit_dir(home).join(TRAEFIK_UNIT_NAME).exists() {
        systemd.stop(TRAEFIK_UNIT_NAME, Duration::from_secs(30))?;
        systemd.disable(TRAEFIK_UNIT_NAME)?;
    }
    Ok(())
}

/// What Traefik serves with this app's request: it first (it goes with every other, checked
/// before), then the other apps' own requests, then what was seeded for apps set up before
/// the records; what does not go with those before it is left out (`app: conflict`).
fn merged_with(mine: &AppRecord, others: Vec<&AppRecord>) -> (Option<Merged>, Vec<String>) {
    let (own, seeded): (Vec<&AppRecord>, Vec<&AppRecord>) =
        others.into_iter().partition(|r| !r.seeded);
    let all: Vec<&AppRecord> = std::iter::once(mine).chain(own).chain(seeded).collect();
    merge_leaving_out(&all)
}

/// How a change of the static config reaches Traefik, as setup says it. Pure.
fn restart_how(p: &Preview) -> String {
    match cannot_hand_over(p.before_static.as_deref(), &p.merged) {
        None => "handed over to a Traefik started beside it, no connection refused".into(),
        Some(why) => format!("a plain restart, connections refused for a moment ({why})"),
    }
}

/// Whether a static config says what `after` says (comments and layout aside).
fn same_yaml(before: Option<&str>, after: &str) -> bool {
    let parse = |t: &str| yaml_serde::from_str::<serde_json::Value>(t).ok();
    before.is_some_and(|b| b == after || (parse(b).is_some() && parse(b) == parse(after)))
}

/// Whether a unit says what `after` says (its comments, which name deploy's version, aside).
fn same_unit(before: Option<&str>, after: &str) -> bool {
    let lines = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(String::from)
            .collect()
    };
    before.is_some_and(|b| lines(b) == lines(after))
}

/// The static config of `merged`, its resolvers storing into `acme.json` beside it.
pub fn render_merged(merged: &Merged, static_path: &Path) -> Result<String> {
    let storage = static_path.with_file_name("acme.json");
    let https = Https {
        resolvers: merged
            .resolvers
            .values()
            .map(|a| AcmeResolver {
                name: a.resolver.clone(),
                email: a.email.clone(),
                ca_server: a.ca_server.clone(),
                storage: storage.display().to_string(),
                challenge: a.challenge.clone(),
            })
            .collect(),
        redirect: merged.redirect_web,
    };
    let entrypoints: Vec<(String, String)> = merged.entrypoints.clone().into_iter().collect();
    traefik::render_static(
        &entrypoints,
        &merged.api,
        Path::new(&merged.dynamic_dir),
        &https,
    )
}

/// A rootless Traefik cannot bind ports below `net.ipv4.ip_unprivileged_port_start`.
fn check_unprivileged(entrypoints: Option<&BTreeMap<String, String>>) -> Result<()> {
    let start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024);
    let eps: Vec<(String, String)> = entrypoints
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let low = traefik::privileged_ports(&eps, start);
    if !low.is_empty() {
        bail!(
            "a rootless Traefik cannot bind {} (ports below {start} need privileges). As root, \
             run `sysctl -w net.ipv4.ip_unprivileged_port_start=80` and make it last with `echo \
             net.ipv4.ip_unprivileged_port_start=80 > /etc/sysctl.d/50-unprivileged-ports.conf`; \
             or use ports of 1024 and up in traefik.manage.entrypoints",
            low.join(", ")
        );
    }
    Ok(())
}

/// The lines of `after` that are not in `before` (`+ `) and those of `before` no longer in it
/// (`- `), in order (a longest common subsequence of lines; comments left out). Pure.
fn line_diff(before: &str, after: &str) -> Vec<String> {
    let lines = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(String::from)
            .collect()
    };
    let (a, b) = (lines(before), lines(after));
    // common[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut common = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            common[i][j] = match a[i] == b[j] {
                true => common[i + 1][j + 1] + 1,
                false => common[i + 1][j].max(common[i][j + 1]),
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            (i, j) = (i + 1, j + 1);
        } else if j < b.len() && (i == a.len() || common[i][j + 1] >= common[i + 1][j]) {
            out.push(format!("+ {}", b[j]));
            j += 1;
        } else {
            out.push(format!("- {}", a[i]));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traefik_restarts_for_what_its_config_says_not_for_its_comments() {
        let a = "# by deploy 1\nentryPoints:\n  web:\n    address: \":80\"\n";
        let b = "# by deploy 2, another comment\nentryPoints: {web: {address: \":80\"}}\n";
        assert!(same_yaml(Some(a), b));
        assert!(!same_yaml(Some(a), &b.replace(":80", ":81")));
        assert!(!same_yaml(None, b));
        let unit =
            |v: &str, exec: &str| format!("# Written by deploy {v}\n[Service]\nExecStart={exec}\n");
        assert!(same_unit(Some(&unit("1", "/t")), &unit("2", "/t")));
        assert!(!same_unit(Some(&unit("1", "/t")), &unit("1", "/u")));
    }

    #[test]
    fn the_dry_run_shows_the_lines_that_change() {
        let before = "# v1\nentryPoints:\n  web:\n    address: \":80\"\napi: {}\n";
        let after =
            "# v2\nentryPoints:\n  web:\n    address: \":80\"\n  b2:\n    address: \":81\"\n";
        assert_eq!(
            line_diff(before, after),
            ["+   b2:", "+     address: \":81\"", "- api: {}"]
        );
        assert!(line_diff(after, after).is_empty());
        assert_eq!(line_diff("", "a: 1\n"), ["+ a: 1"]);
    }

    #[test]
    fn a_restart_touches_every_app_on_the_api_and_the_last_one_out_stops_it() {
        let app = |name: &str, api: Option<&str>| AppRecord {
            app: name.into(),
            env: "prod".into(),
            path: format!("/srv/{name}"),
            port: 9000,
            gap_port: None,
            health_path: None,
            traefik: api.map(|api| super::super::TraefikRequest {
                managed: name != "plain",
                api: api.into(),
                dynamic_dir: "/d".into(),
                rule: "Host(`a`)".into(),
                router_entrypoints: vec!["web".into()],
                entrypoints: BTreeMap::new(),
                acme: None,
                ca_certificates: None,
                redirect_https: false,
                redirect_web: false,
            }),
            seeded: false,
            updated_at: "now".into(),
        };
        let (a, own, plain, elsewhere, none) = (
            app("a", Some("http://127.0.0.1:8099")),
            app("own", Some("http://127.0.0.1:8099")),
            app("plain", Some("http://127.0.0.1:8099")),
            app("elsewhere", Some("http://127.0.0.1:9099")),
            app("none", None),
        );
        let api = "http://127.0.0.1:8099";
        assert_eq!(
            served_by(api, &[&a, &own, &plain, &elsewhere, &none]),
            ["a (prod)", "own (prod)", "plain (prod)"]
        );
        assert!(served_by(api, &[&elsewhere, &none]).is_empty());
        assert!(Leaving::Stopped.describe().contains("stopped and disabled"));
        assert!(Leaving::KeptFor(vec!["a (prod)".into()])
            .describe()
            .starts_with("keeps running, for a (prod)"));
    }
}
