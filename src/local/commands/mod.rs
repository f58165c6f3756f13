//! From the command line to the node: load the config, pick the environment, run the local
//! steps (the build) and hand over to the node-side steps.
//!
//! `dispatch`: where a command runs; `hooks`: the build and the hooks run here; `ask`: what is
//! asked here before the node acts; `node_args`: the node-side command line.

mod ask;
mod dispatch;
mod hooks;
mod node_args;

pub use node_args::node_args;

use crate::cli::{Cli, Command, ReleaseArgs};
use crate::local::remote::Remote;
use crate::node::Node;
use crate::ui::Ui;
use crate::version::Version;
use crate::{config, exit};
use anyhow::{bail, Context, Result};
use hooks::LocalHooks;
use std::path::Path;

pub fn run(mut cli: Cli) -> Result<()> {
    let ui = Ui {
        verbose: cli.verbose,
        quiet: cli.quiet,
        json: cli.json,
        color: cli.color,
    };
    if let Some(done) = run_without_node(&cli, ui) {
        return done;
    }
    let loaded = load(&cli.config, cli.resolved)?;
    if let Command::Preview(a) = &cli.command {
        return crate::local::preview::run(&cli, a, &loaded, ui);
    }
    if let Command::Release(a) = &mut cli.command {
        let envs: Vec<String> = loaded.config.environments.keys().cloned().collect();
        resolve_release(a, &envs, &loaded.dir, ui)?;
    }
    let node_env = cli
        .command
        .env()
        .expect("every other command acts on a node");
    let mut loaded = loaded.for_environment(node_env)?;
    with_preview_ports(&mut loaded, node_env, cli.node)?;
    let (env_name, env) = loaded.environment(node_env)?;
    let hooks = match &cli.command {
        Command::Release(a) => {
            let hooks = LocalHooks::new(&loaded, &env_name, env, a.version()?, ui);
            hooks::before_release(a, &loaded, &hooks, cli.node)?;
            Some(hooks)
        }
        _ => None,
    };
    let env_for_later = env_name.clone();
    let result = dispatch::dispatch(&cli, &loaded, env_name, env, ui);
    if let (Ok(()), Command::Restore(a), false) = (&result, &cli.command, cli.node) {
        if let Some(version) = &a.release {
            return release_after_restore(&loaded.file, version, &env_for_later);
        }
    }
    if let (Ok(()), Command::Release(a), false, Some(h)) = (&result, &cli.command, cli.node, &hooks)
    {
        if !a.dry_run {
            hooks::after_release(&loaded, h)?;
        }
    }
    result
}

/// The commands that act on no node: `Some` with how they ended, `None` for the others.
fn run_without_node(cli: &Cli, ui: Ui) -> Option<Result<()>> {
    let file = &cli.config;
    Some(match &cli.command {
        Command::GapServer(options) => crate::front::gap::serve(options.clone()),
        Command::Completions { shell } => {
            crate::help::completions(*shell, &mut std::io::stdout().lock())
        }
        Command::Man(a) => man(a, ui),
        Command::Init(a) => crate::local::init::run(file, a.full, ui),
        Command::Bootstrap(a) => crate::local::bootstrap::run(cli, a, ui),
        Command::TestPoints => {
            crate::signals::MIGRATE_STEPS
                .iter()
                .for_each(|s| println!("{s}"));
            Ok(())
        }
        Command::Check(a) => load(file, cli.resolved)
            .and_then(|loaded| check(&loaded, a.env.as_deref(), ui, cli.node)),
        Command::Config(a) => print_config(cli, a.env.as_deref()),
        _ => return None,
    })
}

/// `deploy config [ENV]`: the config as resolved for the environment, as YAML or JSON.
fn print_config(cli: &Cli, env: Option<&str>) -> Result<()> {
    let loaded = load(&cli.config, cli.resolved)?.for_environment(env)?;
    let (env, _) = loaded.environment(env)?;
    let yaml = config::resolved_yaml(&loaded.values, &env)?;
    match cli.json {
        true => {
            let value: serde_json::Value = yaml_serde::from_str(&yaml)?;
            crate::ui::print(&format!("{}\n", serde_json::to_string_pretty(&value)?))
        }
        false => crate::ui::print(&yaml),
    }
    .map_err(Into::into)
}

/// A preview's ports, kept on its server: read there (this machine, for a local environment)
/// into its config before anything acts on it. Elsewhere its server does so.
fn with_preview_ports(loaded: &mut config::Loaded, env: Option<&str>, on_node: bool) -> Result<()> {
    let Some(env) = env.filter(|e| crate::names::split_preview(e).is_some()) else {
        return Ok(());
    };
    let (_, e) = loaded.environment(Some(env))?;
    if on_node || e.host() == config::Host::Local {
        crate::node::preview::with_ports(&mut loaded.config, env, &crate::node::home_dir()?)?;
    }
    Ok(())
}

/// `deploy restore --release VERSION`: then the release, as `deploy release VERSION ENV` typed
/// here does it (the build, the upload, the hooks).
fn release_after_restore(file: &Path, version: &str, env: &str) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find this deploy binary")?;
    let status = std::process::Command::new(exe)
        .arg("-c")
        .arg(file)
        .args(["release", version, env])
        .status()
        .context("cannot run the release")?;
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => Err(crate::exit::said(code)),
        None => bail!("the release after the restore was killed"),
    }
}

/// `deploy release [VERSION] [ENV]`: one argument that names an environment is the
/// environment; a version that is also an environment's name is refused; no version is the
/// one git gives.
fn resolve_release(a: &mut ReleaseArgs, envs: &[String], dir: &Path, ui: Ui) -> Result<()> {
    let an_env = |word: &str| {
        envs.iter().any(|e| e == word)
            || crate::names::split_preview(word)
                .is_some_and(|(from, _)| envs.iter().any(|e| e == from))
    };
    match &a.version {
        Some(v) if an_env(v.as_str()) && a.env.is_none() => {
            a.env = a.version.take().map(Version::into_string);
        }
        Some(v) if an_env(v.as_str()) => bail!(
            "the version `{v}` is also the name of an environment: choose another version name \
             (with one argument, an environment's name means the environment)"
        ),
        _ => {}
    }
    if a.version.is_none() {
        let v = Version::new(&crate::local::git::version(dir, a.allow_dirty)?)?;
        ui.info(&format!("   version {v} (from git)"));
        a.version = Some(v);
    }
    Ok(())
}

/// The config; `resolved`: a file a laptop sent, its values expanded there already.
fn load(file: &Path, resolved: bool) -> Result<config::Loaded> {
    let loaded = if resolved {
        config::load_resolved(file)
    } else {
        config::load(file)
    };
    loaded.map_err(|e| exit::with(exit::Code::Config, e))
}

/// `deploy check [ENV]`: the config is loaded already; then the artifacts, then the node.
fn check(loaded: &config::Loaded, env: Option<&str>, ui: Ui, on_node: bool) -> Result<()> {
    let loaded = &match env {
        Some(_) => loaded.for_environment(env)?,
        None => loaded.clone(),
    };
    if on_node {
        // A remote environment's server checks itself: the artifacts are on the laptop.
        let (env_name, env) = loaded.environment(env)?;
        return Node::new(&loaded.config, env_name, env, &loaded.dir, ui)?.check();
    }
    ui.step("Checking the artifacts", || {
        crate::config::artifacts::sources(&loaded.config, &loaded.dir).map(|_| ())
    })?;
    let Some(env) = env else {
        ui.done(
            &format!(
                "{} is valid (environments: {}); `deploy check ENV` also checks the node",
                loaded.file.display(),
                loaded
                    .config
                    .environments
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            serde_json::json!({"action": "check"}),
        );
        return Ok(());
    };
    let (env_name, env) = loaded.environment(Some(env))?;
    if env.host() != config::Host::Local {
        return Remote::new(loaded, env_name, env, ui)?.check();
    }
    Node::new(&loaded.config, env_name, env, &loaded.dir, ui)?.check()
}

fn print_plan(plan: Result<String>) -> Result<()> {
    Ok(crate::ui::print(&plan?)?)
}

/// A report as text, or as one JSON document with `--json`.
fn print_report(ui: Ui, report: &impl serde::Serialize, text: String) -> Result<()> {
    let text = match ui.json {
        true => format!("{}\n", serde_json::to_string_pretty(report)?),
        false => text,
    };
    Ok(crate::ui::print(&text)?)
}

/// `deploy man`: the page on stdout, or every page into `--dir`.
fn man(a: &crate::cli::ManArgs, ui: Ui) -> Result<()> {
    let Some(dir) = &a.dir else {
        return Ok(crate::help::man(&mut std::io::stdout().lock())?);
    };
    let written = crate::help::man_pages(dir)?;
    ui.done(
        &format!("wrote {} man pages into {}", written.len(), dir.display()),
        serde_json::json!({"action": "man", "pages": written}),
    );
    Ok(())
}
