//! From the command line to the node: load the config, pick the environment, run the local
//! steps (the build) and hand over to the node-side steps.

use crate::cli::{Cli, Command, JobsAction, LockAction, ReleaseArgs, RollbackArgs, Switch};
use crate::local::remote::Remote;
use crate::node::power::Power;
use crate::node::rollback::{refusal, DataChoice, DataQuestion};
use crate::node::Node;
use crate::ui::Ui;
use crate::version::Version;
use crate::{config, exit};
use anyhow::{bail, Context, Result};
use std::path::Path;

pub fn run(mut cli: Cli) -> Result<()> {
    let ui = Ui {
        verbose: cli.verbose,
        quiet: cli.quiet,
        json: cli.json,
        color: cli.color,
    };
    let file = &cli.config;
    match &cli.command {
        Command::GapServer(options) => return crate::front::gap::serve(options.clone()),
        Command::Completions { shell } => {
            return crate::help::completions(*shell, &mut std::io::stdout().lock())
        }
        Command::Man(a) => return man(a, ui),
        Command::Init(a) => return crate::local::init::run(file, a.full, ui),
        Command::Bootstrap(a) => return crate::local::bootstrap::run(&cli, a, ui),
        Command::TestPoints => {
            crate::signals::MIGRATE_STEPS
                .iter()
                .for_each(|s| println!("{s}"));
            return Ok(());
        }
        Command::Check(a) => {
            return check(&load(file, cli.resolved)?, a.env.as_deref(), ui, cli.node)
        }
        Command::Config(a) => {
            let loaded = load(file, cli.resolved)?.for_environment(a.env.as_deref())?;
            let (env, _) = loaded.environment(a.env.as_deref())?;
            let yaml = config::resolved_yaml(&loaded.values, &env)?;
            return match cli.json {
                true => {
                    let value: serde_json::Value = yaml_serde::from_str(&yaml)?;
                    crate::ui::print(&format!("{}\n", serde_json::to_string_pretty(&value)?))
                }
                false => crate::ui::print(&yaml),
            }
            .map_err(Into::into);
        }
        _ => {}
    }
    let loaded = load(file, cli.resolved)?;
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
            before_release(a, &loaded, &hooks, cli.node)?;
            Some(hooks)
        }
        _ => None,
    };
    let env_for_later = env_name.clone();
    let result = dispatch(&cli, &loaded, env_name, env, ui);
    if let (Ok(()), Command::Restore(a), false) = (&result, &cli.command, cli.node) {
        if let Some(version) = &a.release {
            return release_after_restore(&loaded.file, version, &env_for_later);
        }
    }
    if let (Ok(()), Command::Release(a), false, Some(h)) = (&result, &cli.command, cli.node, &hooks)
    {
        if !a.dry_run {
            for hook in &loaded.config.hooks.after_release {
                ui.step_out(&format!("Hook after_release: {hook}"), || h.run(hook))
                    .context("an after_release hook failed (the release is live)")?;
            }
        }
    }
    result
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

/// Where and how a release's local commands run (the build, before_upload and after_release
/// hooks): in the config's directory, with DEPLOY_APP, DEPLOY_ENV, DEPLOY_VERSION and (for a
/// local environment) DEPLOY_PREVIOUS, the release live before, in their environment.
struct LocalHooks<'a> {
    dir: &'a Path,
    ui: Ui,
    env: Vec<(&'static str, String)>,
}

impl<'a> LocalHooks<'a> {
    fn new(
        loaded: &'a config::Loaded,
        env_name: &str,
        env: &config::Environment,
        version: &str,
        ui: Ui,
    ) -> LocalHooks<'a> {
        let previous = (env.host() == config::Host::Local)
            .then(|| Node::new(&loaded.config, env_name.to_string(), env, &loaded.dir, ui).ok())
            .flatten()
            .and_then(|n| n.current().ok().flatten())
            .unwrap_or_default();
        LocalHooks {
            dir: &loaded.dir,
            ui,
            env: vec![
                ("DEPLOY_APP", loaded.config.app.clone()),
                ("DEPLOY_ENV", env_name.to_string()),
                ("DEPLOY_VERSION", version.to_string()),
                ("DEPLOY_PREVIOUS", previous),
            ],
        }
    }

    fn run(&self, command: &str) -> Result<()> {
        run_local(command, self.dir, self.ui.quiet, &self.env)
    }
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

/// What a release runs here first: `build.command`, then the `before_upload` hooks.
fn before_release(
    a: &ReleaseArgs,
    loaded: &config::Loaded,
    hooks: &LocalHooks,
    node: bool,
) -> Result<()> {
    if a.dry_run {
        return Ok(());
    }
    if !node {
        // Every env.secret is set here, before anything is built or uploaded.
        crate::node::appenv::text(&loaded.config.env, |n| std::env::var(n).ok())?;
    }
    let ui = hooks.ui;
    if let (Some(build), false) = (&loaded.config.build, a.skip_build) {
        ui.step_out(&format!("Building ({})", build.command), || {
            hooks.run(&build.command)
        })?;
    }
    if !node {
        for hook in &loaded.config.hooks.before_upload {
            ui.step_out(&format!("Hook before_upload: {hook}"), || hooks.run(hook))
                .context("a before_upload hook failed: nothing was uploaded or changed")?;
        }
    }
    Ok(())
}

/// Runs the command on the node: here, or over SSH for a remote environment.
fn dispatch(
    cli: &Cli,
    loaded: &config::Loaded,
    env_name: String,
    env: &config::Environment,
    ui: Ui,
) -> Result<()> {
    if let (Command::Setup(a), config::Host::Local) = (&cli.command, env.host()) {
        if a.server_binary.is_some() {
            bail!(
                "--server-binary is for a remote environment's server; {} is local and runs \
                 this deploy",
                env_name
            );
        }
    }
    if !cli.node && env.host() != config::Host::Local {
        let mut remote = Remote::new(loaded, env_name, env, ui)?;
        remote.lock_wait = cli.lock_wait;
        remote.origin = crate::node::state::Origin::here(&loaded.dir);
        return run_remote(&cli.command, &remote);
    }
    let text = loaded.resolved_text_for(&env_name)?;
    let mut node = Node::new(&loaded.config, env_name, env, &loaded.dir, ui)?;
    node.lock_wait = cli.lock_wait;
    node.config_text = Some(text);
    if !cli.node {
        if let Some(done) = run_detached(cli, loaded, &node)? {
            return Ok(done);
        }
    }
    match &cli.command {
        Command::Setup(a) if a.dry_run => print_plan(node.setup_plan(a.reset_storage)),
        Command::Setup(a) => node.setup(a.reset_storage),
        Command::Release(a) if a.dry_run => {
            if let (Some(b), false, None) = (&loaded.config.build, a.skip_build, &a.uploaded) {
                let first = format!(
                    "  (first, here: {} in {})\n",
                    b.command,
                    loaded.dir.display()
                );
                crate::ui::print(&first)?;
            }
            print_plan(node.release_plan(a.version()?, a.uploaded.is_some()))
        }
        Command::Release(a) => node.release(a),
        Command::Rollback(a) if a.dry_run => {
            print_plan(node.rollback_plan(a.to.as_deref(), DataChoice::of(a)))
        }
        Command::Rollback(a) if a.data_question => {
            let q = node.data_question(a.to.as_deref())?;
            println!("{}", serde_json::to_string(&q)?);
            Ok(())
        }
        Command::Rollback(a) => node.rollback(a),
        Command::Releases(_) => {
            let r = node.releases_report()?;
            print_report(ui, &r, r.text())
        }
        Command::Status(_) => {
            let s = node.status_report()?;
            print_report(ui, &s, s.text())
        }
        Command::Server(_) => {
            let s = node.server_report()?;
            print_report(ui, &s, s.text())
        }
        Command::History(a) => {
            let h = node.history_report(a.lines)?;
            print_report(ui, &h, h.text())
        }
        Command::Exec(a) => node.exec(a),
        Command::Maintenance(a) => node.maintenance(a.state == Switch::On),
        Command::Logs(a) => node.logs(&crate::node::logs::Filter::of(a), a.follow),
        Command::Start(a) if a.dry_run => print_plan(node.power_plan(Power::Start)),
        Command::Stop(a) if a.dry_run => print_plan(node.power_plan(Power::Stop)),
        Command::Restart(a) if a.dry_run => print_plan(node.power_plan(Power::Restart)),
        Command::Start(_) => node.power(Power::Start),
        Command::Stop(_) => node.power(Power::Stop),
        Command::Restart(_) => node.power(Power::Restart),
        Command::Lock(a) => match &a.action {
            LockAction::Acquire {
                message,
                dry_run: true,
                ..
            } => print_plan(node.hold_plan(Some(message))),
            LockAction::Release { dry_run: true, .. } => print_plan(node.hold_plan(None)),
            LockAction::Acquire { message, .. } => node.hold_acquire(message),
            LockAction::Release { .. } => node.hold_release(),
            LockAction::Status { .. } => {
                let h = node.hold_report()?;
                print_report(ui, &h, h.text())
            }
        },
        Command::Remove(a) if a.dry_run => print_plan(node.remove_plan(a)),
        Command::Remove(a) => node.remove(a, &|previews| {
            crate::local::preview::take_down(cli, loaded, &node.env_name, ui, previews)
        }),
        Command::Prune(a) if a.dry_run => print_plan(node.prune_plan_text()),
        Command::Prune(_) => node.prune_now(),
        Command::Jobs(a) => match &a.action {
            None => {
                let r = node.jobs_report()?;
                print_report(ui, &r, r.text())
            }
            Some(JobsAction::Run(j)) => node.run_job_now(&j.name),
            Some(JobsAction::RunScheduled(j)) => node.start_scheduled_run(&j.name),
            Some(JobsAction::RunUnit(j)) => node.run_scheduled_job(&j.name),
        },
        Command::MigrateData(a) => node.migrate_data(a),
        Command::Restore(a) if a.dry_run => print_plan(node.restore_plan(a.overwrite)),
        Command::Restore(a) => node.restore(a),
        Command::Recover(_) => node.recover_unattended(),
        Command::Verify(a) => node.verify(a.secrets.as_deref()),
        Command::Preview(_) => unreachable!("previews return before"),
        crate::no_node_commands!() => unreachable!("the commands without a node returned before"),
    }
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

/// The node-side command line of a command for `env` (`deploy --node ... ARGS`): the same
/// command, with what was done here already said so (the build ran: `--skip-build`; the
/// upload over SSH: `--uploaded`; `--with-data` confirmed: `--yes`). Pure.
pub fn node_args(command: &Command, env: &str, uploaded: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    let mut flag = |on: bool, name: &str| {
        if on {
            args.push(name.into())
        }
    };
    let words: Vec<String> = match command {
        Command::Setup(a) => {
            flag(a.dry_run, "--dry-run");
            flag(a.reset_storage, "--reset-storage");
            vec!["setup".into(), env.into()]
        }
        Command::Release(a) => {
            if let Some(run) = uploaded {
                flag(true, "--uploaded");
                flag(true, run);
            }
            flag(!a.dry_run, "--skip-build");
            flag(a.replace, "--replace");
            flag(a.unprotected, "--unprotected");
            flag(a.stop_running, "--stop-running");
            flag(a.dry_run, "--dry-run");
            let mut w = vec!["release".to_string()];
            w.extend(a.version.as_ref().map(Version::to_string));
            w.push(env.into());
            w
        }
        Command::Rollback(a) => {
            flag(a.with_data, "--with-data");
            flag(a.keep_data, "--keep-data");
            flag(a.with_data && !a.dry_run, "--yes");
            flag(a.data_question, "--data-question");
            flag(a.unprotected, "--unprotected");
            flag(a.stop_running, "--stop-running");
            flag(a.dry_run, "--dry-run");
            let mut w = vec!["rollback".to_string(), env.into()];
            if let Some(t) = &a.to {
                w.extend(["--to".into(), t.to_string()]);
            }
            w
        }
        Command::Releases(_) => vec!["releases".into(), env.into()],
        Command::Status(_) => vec!["status".into(), env.into()],
        Command::Server(_) => vec!["server".into(), env.into()],
        Command::History(a) => vec![
            "history".into(),
            env.into(),
            "-n".into(),
            a.lines.to_string(),
        ],
        Command::Exec(a) => {
            flag(a.interactive, "--interactive");
            flag(true, "--");
            args.extend(a.command.iter().cloned());
            vec!["exec".into(), env.into()]
        }
        Command::Logs(a) => {
            flag(a.follow, "--follow");
            let mut w = vec!["logs".to_string(), env.into()];
            if let Some(n) = a.lines {
                w.extend(["-n".into(), n.to_string()]);
            }
            if let Some(since) = a.since {
                w.extend([
                    "--since".into(),
                    humantime::format_duration(since).to_string(),
                ]);
            }
            if let Some(text) = &a.grep {
                w.extend(["--grep".into(), text.clone()]);
            }
            if let Some(job) = &a.job {
                w.extend(["--job".into(), job.clone()]);
            }
            w
        }
        Command::Jobs(a) => {
            let (verb, j) = match &a.action {
                None => return vec!["jobs".into(), env.into()],
                Some(JobsAction::Run(j)) => ("run", j),
                Some(JobsAction::RunScheduled(j)) => ("run-scheduled", j),
                Some(JobsAction::RunUnit(j)) => ("run-unit", j),
            };
            vec!["jobs".into(), verb.into(), j.name.clone(), env.into()]
        }
        Command::Start(a) | Command::Stop(a) | Command::Restart(a) => {
            flag(a.dry_run, "--dry-run");
            let verb = match command {
                Command::Start(_) => "start",
                Command::Stop(_) => "stop",
                _ => "restart",
            };
            vec![verb.into(), env.into()]
        }
        Command::Lock(a) => match &a.action {
            LockAction::Acquire {
                message, dry_run, ..
            } => {
                flag(*dry_run, "--dry-run");
                vec![
                    "lock".into(),
                    "acquire".into(),
                    env.into(),
                    "--message".into(),
                    message.clone(),
                ]
            }
            LockAction::Release { dry_run, .. } => {
                flag(*dry_run, "--dry-run");
                vec!["lock".into(), "release".into(), env.into()]
            }
            LockAction::Status { .. } => vec!["lock".into(), "status".into(), env.into()],
        },
        Command::Remove(a) => {
            flag(a.data, "--data");
            flag(a.all, "--all");
            flag((a.data || a.all) && !a.dry_run, "--yes");
            flag(a.dry_run, "--dry-run");
            vec!["remove".into(), env.into()]
        }
        Command::Prune(a) => {
            flag(a.dry_run, "--dry-run");
            vec!["prune".into(), env.into()]
        }
        Command::Maintenance(a) => {
            let state = if a.state == Switch::On { "on" } else { "off" };
            vec!["maintenance".into(), state.into(), env.into()]
        }
        Command::Restore(a) => {
            flag(a.overwrite, "--overwrite");
            flag(a.stop_running, "--stop-running");
            flag(a.dry_run, "--dry-run");
            let mut w = vec!["restore".to_string(), env.into()];
            if let Some(at) = &a.at {
                w.extend(["--at".into(), at.clone()]);
            }
            w
        }
        Command::MigrateData(a) => {
            flag(a.dry_run, "--dry-run");
            flag(!a.dry_run, "--yes");
            flag(a.stop_running, "--stop-running");
            vec![
                "migrate-data".into(),
                env.into(),
                "--as".into(),
                a.release.to_string(),
            ]
        }
        Command::Recover(_) => vec!["recover".into(), env.into()],
        Command::Verify(_) => vec!["verify".into(), env.into()],
        Command::Preview(_) => unreachable!("previews build their own"),
        crate::no_node_commands!() => unreachable!("these run no node command"),
    };
    words.into_iter().chain(args).collect()
}

/// The rollback the node runs, with what was asked here, where there is a terminal (the node
/// side runs detached, or over SSH, and cannot ask): `--with-data` confirmed, and, when the
/// schema of the data changed since the target left it and neither `--with-data` nor
/// `--keep-data` was given, which of the two (`question` reads that from the node; the answer
/// names the target, so it is the one the node checks again). Without a terminal nothing is
/// asked: the node refuses what needs an answer.
fn rollback_answers(
    ui: Ui,
    a: &RollbackArgs,
    env: &str,
    question: impl FnOnce() -> Result<Option<DataQuestion>>,
) -> Result<RollbackArgs> {
    if a.dry_run || a.data_question {
        return Ok(a.clone());
    }
    if DataChoice::of(a) != DataChoice::Unsaid {
        confirm_with_data(ui, a, env)?;
        return Ok(a.clone());
    }
    if !ui.can_ask() {
        return Ok(a.clone());
    }
    let Some(q) = question()? else {
        return Ok(a.clone());
    };
    let mut answered = RollbackArgs {
        to: Some(Version::new(&q.target)?),
        ..a.clone()
    };
    match ui.choose(&q.text, &["--with-data", "--keep-data"])? {
        Some(0) => (answered.with_data, answered.yes) = (true, true),
        Some(1) => answered.keep_data = true,
        _ => return Err(refusal(&q)),
    }
    Ok(answered)
}

/// `rollback --with-data` replaces the data: asked here, where there is a terminal (the node
/// side runs detached, or over SSH, and cannot ask).
fn confirm_with_data(ui: Ui, a: &RollbackArgs, env: &str) -> Result<()> {
    if !a.with_data || a.yes || a.dry_run {
        return Ok(());
    }
    let question = format!(
        "--with-data replaces the SQLite data on {env} with what {} left (the data there now is \
         kept as a snapshot). Go on?",
        a.to.as_deref().unwrap_or("the previous release")
    );
    if !ui.ask(&question)? {
        bail!(
            "--with-data not confirmed, nothing changed (pass --yes to confirm without a prompt)"
        );
    }
    Ok(())
}

/// `remove --data/--all` deletes data: asked where there is a terminal (here), unless --yes.
fn confirm_removal(ui: Ui, a: &crate::cli::RemoveArgs, env: &str) -> Result<()> {
    if !(a.data || a.all) || a.yes || a.dry_run {
        return Ok(());
    }
    let question = crate::node::remove::question(a, env, None);
    if !ui.ask(&question)? {
        bail!(
            "not confirmed, nothing was removed (`--dry-run` lists what would go; pass --yes to \
             confirm without a prompt)"
        );
    }
    Ok(())
}

/// A remote environment: the same command, run by the node's own deploy over SSH.
fn run_remote(command: &Command, remote: &Remote) -> Result<()> {
    let env = remote.env_name.clone();
    match command {
        Command::Setup(a) => remote.setup(
            a.dry_run,
            &node_args(command, &env, None),
            a.server_binary.as_deref(),
        ),
        Command::Release(a) if a.dry_run => remote.read(&node_args(command, &env, Some("RUN"))),
        Command::Release(a) => {
            let args = node_args(command, &env, Some(remote.run_id()));
            remote.release(a.version()?, &args)
        }
        Command::Rollback(a) if a.dry_run => remote.read(&node_args(command, &env, None)),
        Command::Exec(a) if a.interactive => {
            remote.exec_interactive(&node_args(command, &env, None))
        }
        Command::Releases(_)
        | Command::Status(_)
        | Command::Server(_)
        | Command::History(_)
        | Command::Logs(_)
        | Command::Jobs(_)
        | Command::Exec(_) => remote.read(&node_args(command, &env, None)),
        Command::Start(a) | Command::Stop(a) | Command::Restart(a) if a.dry_run => {
            remote.read(&node_args(command, &env, None))
        }
        Command::Prune(a) if a.dry_run => remote.read(&node_args(command, &env, None)),
        Command::Remove(a) if a.dry_run => remote.read(&node_args(command, &env, None)),
        Command::Lock(a)
            if matches!(
                a.action,
                LockAction::Status { .. }
                    | LockAction::Acquire { dry_run: true, .. }
                    | LockAction::Release { dry_run: true, .. }
            ) =>
        {
            remote.read(&node_args(command, &env, None))
        }
        Command::Remove(a) => {
            confirm_removal(remote.ui, a, &env)?;
            // --all deletes the directory a detached run logs into: this one runs attached.
            match a.all {
                true => remote.read(&node_args(command, &env, None)),
                false => remote.run(&node_args(command, &env, None)),
            }
        }
        Command::Rollback(a) => {
            let a = rollback_answers(remote.ui, a, &env, || {
                let ask = RollbackArgs {
                    data_question: true,
                    ..a.clone()
                };
                remote.read_json(&node_args(&Command::Rollback(ask), &env, None))
            })?;
            remote.run(&node_args(&Command::Rollback(a), &env, None))
        }
        Command::MigrateData(a) if !a.dry_run && !a.yes => {
            let question = format!(
                "migrate-data moves the app directory of {env} on {} into shared/ and \
                 releases/{} (`--dry-run` shows the plan). Go on?",
                remote.ssh_destination(),
                a.release
            );
            if !remote.ui.ask(&question)? {
                bail!("not confirmed, nothing was moved (pass --yes to confirm without a prompt)");
            }
            remote.run(&node_args(command, &env, None))
        }
        Command::Restore(_) | Command::Verify(_) => {
            remote.run_with_secrets(&node_args(command, &env, None))
        }
        _ => remote.run(&node_args(command, &env, None)),
    }
}

/// A release or rollback on a local environment: its node-side steps run detached (see
/// `detached`), unless the node is not set up (nothing is live there to protect).
fn run_detached(cli: &Cli, loaded: &config::Loaded, node: &Node) -> Result<Option<()>> {
    let env = &node.env_name;
    let (what, command) = match &cli.command {
        Command::Release(a) if !a.dry_run && a.uploaded.is_none() => {
            (format!("release {} {env}", a.version()?), None)
        }
        Command::Rollback(a) if !a.dry_run && !a.data_question => {
            let a = rollback_answers(node.ui, a, env, || node.data_question(a.to.as_deref()))?;
            (format!("rollback {env}"), Some(Command::Rollback(a)))
        }
        _ => return Ok(None),
    };
    if !node.layout.meta().is_dir() {
        return Ok(None);
    }
    let args = node_args(command.as_ref().unwrap_or(&cli.command), env, None);
    let argv = crate::local::detached::node_argv(&loaded.file, node.ui, cli.lock_wait, &args);
    let origin = crate::node::state::Origin::here(&loaded.dir);
    crate::local::detached::run(&node.layout.runs(), &argv, (&what, env), &origin).map(Some)
}

/// Runs a local command (the build, a hook) with `sh -c` in the project directory; its output
/// goes to stderr.
fn run_local(
    command: &str,
    dir: &std::path::Path,
    quiet: bool,
    env: &[(&'static str, String)],
) -> Result<()> {
    let expr = env
        .iter()
        .fold(duct::cmd!("sh", "-c", command), |e, (k, v)| e.env(k, v))
        .dir(dir)
        .stdout_to_stderr()
        .unchecked();
    let out = if quiet {
        expr.stderr_capture().run()
    } else {
        expr.run()
    }
    .with_context(|| format!("cannot run the build command `{command}`"))?;
    if !out.status.success() {
        let tail = crate::sys::podman::tail(&String::from_utf8_lossy(&out.stderr), 20);
        bail!(
            "the build command `{command}` failed ({}); nothing was uploaded\n{tail}",
            out.status
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(line: &str) -> Vec<String> {
        let cli = Cli::try_parse_from(line.split_whitespace()).unwrap();
        node_args(&cli.command, "prod", None)
    }

    #[test]
    fn node_side_command_lines() {
        assert_eq!(
            args("deploy release v2 --replace --unprotected"),
            [
                "release",
                "v2",
                "prod",
                "--skip-build",
                "--replace",
                "--unprotected"
            ]
        );
        assert_eq!(
            args("deploy release v2 --dry-run"),
            ["release", "v2", "prod", "--dry-run"]
        );
        assert_eq!(
            args("deploy rollback --to v1 --with-data"),
            ["rollback", "prod", "--to", "v1", "--with-data", "--yes"]
        );
        assert_eq!(
            args("deploy rollback --with-data --dry-run"),
            ["rollback", "prod", "--with-data", "--dry-run"]
        );
        assert_eq!(
            args("deploy logs -f -n 5"),
            ["logs", "prod", "-n", "5", "--follow"]
        );
        assert_eq!(args("deploy maintenance on"), ["maintenance", "on", "prod"]);
        assert_eq!(
            args("deploy migrate-data --as old --dry-run"),
            ["migrate-data", "prod", "--as", "old", "--dry-run"]
        );
        assert_eq!(
            args("deploy exec -i -- /app/x console --now"),
            [
                "exec",
                "prod",
                "--interactive",
                "--",
                "/app/x",
                "console",
                "--now"
            ]
        );
        assert_eq!(
            args("deploy migrate-data"),
            ["migrate-data", "prod", "--as", "legacy", "--yes"]
        );
    }

    #[test]
    fn the_jobs_commands_reach_the_node_as_typed() {
        assert_eq!(args("deploy jobs"), ["jobs", "prod"]);
        assert_eq!(args("deploy jobs staging"), ["jobs", "prod"]);
        assert_eq!(
            args("deploy jobs run digest"),
            ["jobs", "run", "digest", "prod"]
        );
        assert_eq!(
            args("deploy jobs run-scheduled digest prod"),
            ["jobs", "run-scheduled", "digest", "prod"]
        );
        assert_eq!(
            args("deploy logs --job digest -n 5"),
            ["logs", "prod", "-n", "5", "--job", "digest"]
        );
        let env_of = |line: &str| {
            let cli = Cli::try_parse_from(line.split_whitespace()).unwrap();
            cli.command.env().unwrap().map(String::from)
        };
        assert_eq!(env_of("deploy jobs staging").as_deref(), Some("staging"));
        assert_eq!(
            env_of("deploy jobs run digest staging").as_deref(),
            Some("staging")
        );
        assert_eq!(env_of("deploy jobs run digest"), None);
        assert_eq!(env_of("deploy jobs"), None);
    }

    #[test]
    fn node_side_command_lines_of_the_everyday_commands() {
        assert_eq!(args("deploy stop --dry-run"), ["stop", "prod", "--dry-run"]);
        assert_eq!(args("deploy restart"), ["restart", "prod"]);
        assert_eq!(
            args("deploy lock acquire -m why"),
            ["lock", "acquire", "prod", "--message", "why"]
        );
        assert_eq!(args("deploy lock status"), ["lock", "status", "prod"]);
        assert_eq!(
            args("deploy remove --data"),
            ["remove", "prod", "--data", "--yes"]
        );
        assert_eq!(
            args("deploy remove --all --dry-run"),
            ["remove", "prod", "--all", "--dry-run"]
        );
        assert_eq!(args("deploy prune"), ["prune", "prod"]);
        assert_eq!(
            args("deploy logs --since 10m --grep boom"),
            ["logs", "prod", "--since", "10m", "--grep", "boom"]
        );
    }
}
