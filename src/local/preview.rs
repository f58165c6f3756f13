//! `deploy preview up|ls|down|prune`: where you type, and their node-side halves.
//!
//! `up` is three steps, each what an existing command does: on ENV's server, the preview's
//! ports, directory and data (`preview prepare`, through ENV's deploy there); then `deploy
//! setup ENV/NAME` and `deploy release VERSION ENV/NAME`, run by this deploy as if typed (the
//! build, the upload, the swap: a preview is released exactly as an environment is).

use crate::cli::{
    Cli, PreviewAction, PreviewArgs, PreviewDataArgs, PreviewPrepareArgs, PreviewUpArgs,
};
use crate::config::{Host, Loaded};
use crate::local::remote::Remote;
use crate::node::preview::{self as pv, Listed};
use crate::node::request::{Consent, RemoveRequest, Scope};
use crate::node::Node;
use crate::ui::Ui;
use crate::{exit, names};
use anyhow::{bail, Context, Result};

pub fn run(cli: &Cli, a: &PreviewArgs, loaded: &Loaded, ui: Ui) -> Result<()> {
    let env_loaded = loaded.for_environment(a.env())?;
    let (from, _) = env_loaded.environment(a.env())?;
    let at = Place {
        cli,
        loaded,
        env_loaded: &env_loaded,
        from: &from,
        ui,
    };
    match &a.action {
        PreviewAction::Up(u) => up(&at, u),
        PreviewAction::Ls(_) => at.on_node(Via::Read, &["preview", "ls", &from], || {
            let listed = pv::list(&env_loaded.config, &crate::node::home_dir()?, Some(&from))?;
            match ui.json {
                true => println!("{}", serde_json::to_string_pretty(&listed)?),
                false => crate::ui::print(&pv::text(&listed))?,
            }
            Ok(())
        }),
        PreviewAction::Down(d) => {
            let spelling = preview_of(&d.name, &from)?;
            let mut args = vec!["preview", "down", &spelling];
            if d.dry_run {
                args.push("--dry-run");
            }
            at.on_node(Via::read(d.dry_run), &args, || {
                at.down(&spelling, d.dry_run)
            })
        }
        PreviewAction::Prune(p) => {
            let mut args = vec!["preview", "prune", &from];
            if p.dry_run {
                args.push("--dry-run");
            }
            at.on_node(Via::read(p.dry_run), &args, || at.prune(p.dry_run))
        }
        PreviewAction::Prepare(p) => {
            at.node_part("prepare")?;
            at.prepare(p).map(|_| ())
        }
        PreviewAction::Data(d) => {
            at.node_part("data")?;
            at.new_data(d)
        }
    }
}

/// How a preview command reaches a remote server.
#[derive(Clone, Copy, PartialEq)]
enum Via {
    /// Attached, for what only reads.
    Read,
    Run,
    /// With this shell's env.secret values sent (the replica's credentials).
    RunWithSecrets,
}

impl Via {
    fn read(yes: bool) -> Via {
        match yes {
            true => Via::Read,
            false => Via::Run,
        }
    }
}

/// `deploy remove ENV` on its server: ENV's previews (`ENV/NAME`) taken down first, each as
/// `deploy preview down` takes it down. `loaded`: the config as ENV sees it.
pub fn take_down(
    cli: &Cli,
    loaded: &Loaded,
    from: &str,
    ui: Ui,
    previews: &[String],
) -> Result<()> {
    let at = Place {
        cli,
        loaded,
        env_loaded: loaded,
        from,
        ui,
    };
    previews.iter().try_for_each(|p| at.down(p, false))
}

/// `NAME` or `ENV/NAME` as the preview's environment name, checked.
fn preview_of(name: &str, from: &str) -> Result<String> {
    if let Some((f, n)) = names::split_preview(name) {
        if f != from {
            bail!("{name} is a preview of {f}, not of {from}");
        }
        return Ok(names::preview_env(f, n));
    }
    names::check("preview", name)
        .map_err(|m| exit::with(exit::Code::Config, anyhow::anyhow!(m)))?;
    Ok(names::preview_env(from, name))
}

/// Where a preview command acts: ENV (the one previews are of) and how to reach its server.
struct Place<'a> {
    cli: &'a Cli,
    /// The config as loaded (every environment's values).
    loaded: &'a Loaded,
    /// As ENV sees it.
    env_loaded: &'a Loaded,
    from: &'a str,
    ui: Ui,
}

impl Place<'_> {
    fn here(&self) -> Result<bool> {
        let (_, env) = self.env_loaded.environment(Some(self.from))?;
        Ok(self.cli.node || env.host() == Host::Local)
    }

    fn remote(&self, ui: Ui) -> Result<Remote<'_>> {
        let (_, env) = self.env_loaded.environment(Some(self.from))?;
        let mut remote = Remote::new(self.env_loaded, self.from.to_string(), env, ui)?;
        remote.lock_wait = self.cli.lock_wait;
        remote.origin = crate::node::state::Origin::here(&self.env_loaded.dir);
        Ok(remote)
    }

    /// `here` on this machine when ENV is local (or this is its server), else `args` run by
    /// ENV's deploy on its server.
    fn on_node(&self, via: Via, args: &[&str], here: impl FnOnce() -> Result<()>) -> Result<()> {
        if self.here()? {
            return here();
        }
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let remote = self.remote(self.ui)?;
        match via {
            Via::Read => remote.read(&args),
            Via::Run => remote.run(&args),
            Via::RunWithSecrets => remote.run_with_secrets(&args),
        }
    }

    /// The node's parts of `up` are refused where they would not run on ENV's server.
    fn node_part(&self, what: &str) -> Result<()> {
        if !self.here()? {
            bail!("`deploy preview {what}` is the node's part of `deploy preview up`");
        }
        Ok(())
    }

    /// The previews of ENV, read from its server.
    fn listed(&self) -> Result<Vec<Listed>> {
        if self.here()? {
            return pv::list(
                &self.env_loaded.config,
                &crate::node::home_dir()?,
                Some(self.from),
            );
        }
        let ui = Ui {
            json: true,
            ..self.ui
        };
        self.remote(ui)?
            .read_json(&["preview".into(), "ls".into(), self.from.into()])
    }

    /// On the node: `preview prepare ENV/NAME`.
    fn prepare(&self, p: &PreviewPrepareArgs) -> Result<bool> {
        let mut pv_loaded = self.loaded.for_environment(Some(&p.env))?;
        let home = crate::node::home_dir()?;
        let (_, env) = self.env_loaded.environment(Some(self.from))?;
        let env_node = Node::new(
            &self.env_loaded.config,
            self.from.to_string(),
            env,
            &self.env_loaded.dir,
            self.ui,
        )?;
        pv::Prepare {
            config: &mut pv_loaded.config,
            env_name: &p.env,
            home: &home,
            ui: self.ui,
            lock_wait: self.cli.lock_wait,
            fresh: p.fresh_data,
            replica: p.at.as_deref().map(|at| pv::FromReplica {
                node: &env_node,
                at,
                secrets: p.secrets.as_deref(),
            }),
            prune_config: self.loaded.resolved_text_for(self.from)?,
        }
        .run()
    }

    /// The preview `spelling`'s node, its ports read from its record (`known`: whether they
    /// were, i.e. whether it is on this server).
    fn with_preview<T>(
        &self,
        spelling: &str,
        f: impl FnOnce(&Node, Result<()>) -> Result<T>,
    ) -> Result<T> {
        let mut pv_loaded = self.loaded.for_environment(Some(spelling))?;
        let known = pv::with_ports(&mut pv_loaded.config, spelling, &crate::node::home_dir()?);
        let (_, env) = pv_loaded.environment(Some(spelling))?;
        let mut node = Node::new(
            &pv_loaded.config,
            spelling.to_string(),
            env,
            &pv_loaded.dir,
            self.ui,
        )?;
        node.lock_wait = self.cli.lock_wait;
        f(&node, known)
    }

    /// On the node: `preview data ENV/NAME`.
    fn new_data(&self, d: &PreviewDataArgs) -> Result<()> {
        self.with_preview(&d.env, |node, known| {
            known?;
            node.preview_new_data()
        })
    }

    /// On the node: `preview down ENV/NAME`: everything of it, as `remove --all` removes an
    /// environment's (a preview's data is its own copy); one that never got as far as its
    /// setup, its directory and record.
    fn down(&self, spelling: &str, dry_run: bool) -> Result<()> {
        self.with_preview(spelling, |node, known| {
            self.take_down(node, known.is_ok(), dry_run)
        })
    }

    fn take_down(&self, node: &Node, known: bool, dry_run: bool) -> Result<()> {
        let spelling = node.env_name.as_str();
        let home = crate::node::home_dir()?;
        let root = node.layout.root.clone();
        if !known && !root.exists() {
            bail!(
                "there is no preview {spelling} on this server (`deploy preview ls {}` lists them)",
                self.from
            );
        }
        let req = RemoveRequest {
            scope: Scope::All,
            consent: Consent::Given,
        };
        if node.layout.releases().is_dir() {
            if dry_run {
                return crate::ui::print(&node.remove_plan(req.scope)?).map_err(Into::into);
            }
            node.remove(&req, &|_| Ok(()))?;
            return self.after_down(&home);
        }
        if dry_run {
            crate::ui::print(&format!(
                "Plan: take down {spelling} (never set up)\n  directory: {}\nDry run: nothing was changed.\n",
                root.display()
            ))?;
            return Ok(());
        }
        self.ui.step(&format!("Deleting {}", root.display()), || {
            match root.exists() {
                true => std::fs::remove_dir_all(&root)
                    .with_context(|| format!("cannot delete {}", root.display())),
                false => Ok(()),
            }
        })?;
        crate::front::shared::forget(&home, &self.loaded.config.app, spelling)?;
        self.ui.done(
            &format!("took down {spelling}"),
            serde_json::json!({"action": "remove", "environment": spelling, "all": true}),
        );
        self.after_down(&home)
    }

    /// After a preview went: with none of ENV's left, the server's prune timer goes too.
    fn after_down(&self, home: &std::path::Path) -> Result<()> {
        let app = &self.loaded.config.app;
        if pv::timer::remove_if_last(home, app, self.from)? {
            self.ui.info(&format!(
                "   the last preview of {} went: the server's prune timer too",
                self.from
            ));
        }
        Ok(())
    }

    /// On the node: `preview prune ENV`: those past their time, down.
    fn prune(&self, dry_run: bool) -> Result<()> {
        let home = crate::node::home_dir()?;
        let expired: Vec<Listed> = pv::list(&self.env_loaded.config, &home, Some(self.from))?
            .into_iter()
            .filter(|l| l.expired)
            .collect();
        for l in &expired {
            match dry_run {
                true => crate::ui::print(&format!(
                    "would take down {} (expired {})\n",
                    l.environment,
                    l.expires.as_deref().unwrap_or("-")
                ))?,
                false => self.down(&l.environment, false)?,
            }
        }
        let gone: Vec<&str> = expired.iter().map(|l| l.environment.as_str()).collect();
        let verb = if dry_run {
            "would take down"
        } else {
            "took down"
        };
        self.ui.done(
            &format!(
                "{verb} {} expired preview(s) of {}{}",
                gone.len(),
                self.from,
                if gone.is_empty() {
                    String::new()
                } else {
                    format!(": {}", gone.join(", "))
                }
            ),
            serde_json::json!({"action": "preview-prune", "environment": self.from,
                "previews": gone, "dry_run": dry_run}),
        );
        Ok(())
    }

    /// This deploy again, as typed, with the global options of this run.
    fn again(&self, words: &[&str]) -> Result<()> {
        let exe = std::env::current_exe().context("cannot find this deploy binary")?;
        let mut c = std::process::Command::new(exe);
        c.arg("-c").arg(&self.loaded.file);
        if self.ui.json {
            c.arg("--json");
        }
        if self.ui.verbose {
            c.arg("--verbose");
        }
        if self.ui.quiet {
            c.arg("--quiet");
        }
        if let Some(wait) = self.cli.lock_wait {
            c.arg("--lock-wait")
                .arg(humantime::format_duration(wait).to_string());
        }
        let color = match self.cli.color {
            crate::ui::Color::Auto => "auto",
            crate::ui::Color::Always => "always",
            crate::ui::Color::Never => "never",
        };
        c.args(["--color", color]).args(words);
        let status = c.status().context("cannot run deploy")?;
        match status.code() {
            Some(0) => Ok(()),
            Some(code) => Err(exit::said(code)),
            None => bail!("`deploy {}` was killed", words.join(" ")),
        }
    }
}

/// `deploy preview up NAME --from ENV`.
fn up(at: &Place, u: &PreviewUpArgs) -> Result<()> {
    let spelling = preview_of(&u.name, at.from)?;
    // The preview's config, derived here first: what is wrong with it stops everything (exit 3).
    let pv_loaded = at.loaded.for_environment(Some(&spelling))?;
    let version = match &u.version {
        Some(v) => v.clone(),
        None if u.dry_run => "(from git)".into(),
        None => crate::local::git::version(&at.loaded.dir, u.allow_dirty)?,
    };
    if u.dry_run {
        return up_plan(at, u, &pv_loaded.config, &spelling, &version);
    }
    crate::version::check(&version)?;
    let prepare = PreviewPrepareArgs {
        env: spelling.clone(),
        fresh_data: u.fresh_data,
        at: u.at.clone(),
        secrets: None,
    };
    let mut args = vec!["preview", "prepare", &spelling];
    if u.fresh_data {
        args.push("--fresh-data");
    }
    if let Some(t) = &u.at {
        args.extend(["--at", t]);
    }
    let via = match u.at {
        Some(_) => Via::RunWithSecrets,
        None => Via::Run,
    };
    at.on_node(via, &args, || at.prepare(&prepare).map(|_| ()))?;
    at.again(&["setup", &spelling])?;
    let live = find(&at.listed()?, &spelling)?.version;
    if live.as_deref() == Some(version.as_str()) {
        at.ui
            .info(&format!("   {version} is live on {spelling} already"));
        // New data (--fresh-data, --at) goes in under it.
        let data = PreviewDataArgs {
            env: spelling.clone(),
        };
        at.on_node(Via::Run, &["preview", "data", &spelling], || {
            at.new_data(&data)
        })?;
    } else {
        let mut words = vec!["release", &version, &spelling];
        if u.skip_build {
            words.push("--skip-build");
        }
        at.again(&words)?;
    }
    let l = find(&at.listed()?, &spelling)?;
    at.ui.done(
        &format!(
            "preview {spelling}: {version} at {} (expires {})",
            l.url,
            l.expires.as_deref().unwrap_or("-")
        ),
        serde_json::json!({
            "action": "preview-up",
            "name": l.name,
            "environment": spelling,
            "from": at.from,
            "version": version,
            "url": l.url,
            "port": l.port,
            "data_from": l.data_from,
            "expires": l.expires,
        }),
    );
    Ok(())
}

/// `deploy preview up --dry-run`.
fn up_plan(
    at: &Place,
    u: &PreviewUpArgs,
    config: &crate::config::Config,
    spelling: &str,
    version: &str,
) -> Result<()> {
    let of = config.preview_of.as_ref().context("a preview")?;
    let p = &config.preview;
    let from = at.from;
    let data = match (&u.at, u.fresh_data) {
        (Some(t), _) => format!("{from}'s replica as of {t} (Litestream's restore)"),
        (None, true) => format!("a fresh copy of {from}'s shared/"),
        (None, false) => format!("a copy of {from}'s shared/ when it is new, else its own"),
    };
    let mut out = format!("Plan: preview {spelling} of {}\n", at.loaded.config.app);
    let mut line =
        |key: &str, text: String| out += &format!("  {:<10} {text}\n", format!("{key}:"));
    line(
        "ports",
        format!(
            "its own, or the first free pair of {} (at most {} previews of {from})",
            of.ports, p.max
        ),
    );
    line("data", data);
    for command in &p.scrub {
        line(
            "scrub",
            format!("{command} (on the new data, in a one-off container of the release, before it goes in)"),
        );
    }
    line("setup", format!("deploy setup {spelling}"));
    line(
        "release",
        format!(
            "deploy release {version} {spelling} (unless live there: new data then goes in \
             under the live release)"
        ),
    );
    line(
        "timer",
        format!(
            "{} (deploy preview prune {from}, every {})",
            crate::names::Names::new(&at.loaded.config.app, from).previews_timer(),
            pv::timer::EVERY
        ),
    );
    line(
        "expires",
        format!("{} after this up", humantime::format_duration(p.ttl)),
    );
    out += "Dry run: nothing was changed.\n";
    crate::ui::print(&out)?;
    Ok(())
}

fn find(listed: &[Listed], spelling: &str) -> Result<Listed> {
    listed
        .iter()
        .find(|l| l.environment == spelling)
        .cloned()
        .with_context(|| format!("{spelling} is not among the previews on the server"))
}
