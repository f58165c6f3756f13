//! From the command line to the node: load the config, pick the environment, run the local
//! steps (the build) and hand over to the node-side steps.

use crate::cli::{Cli, Command};
use crate::local::remote::Remote;
use crate::node::{Node, ReleaseRequest};
use crate::ui::Ui;
use crate::{config, exit};
use anyhow::{bail, Context, Result};

pub fn run(cli: Cli) -> Result<()> {
    let ui = Ui {
        verbose: cli.verbose,
        quiet: cli.quiet,
        json: cli.json,
    };
    if let Command::GapServer(options) = cli.command {
        return crate::front::gap::serve(options);
    }
    if let Command::Completions { shell } = cli.command {
        use clap::CommandFactory;
        let mut command = Cli::command();
        clap_complete::generate(shell, &mut command, "deploy", &mut std::io::stdout());
        return Ok(());
    }
    if let Command::Man = cli.command {
        use clap::CommandFactory;
        clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
        return Ok(());
    }
    if let Command::Init = cli.command {
        return crate::local::init::run(&cli.config, ui);
    }
    let loaded = config::load(&cli.config).map_err(|e| exit::with(exit::Code::Config, e))?;
    if let Command::Check { env } = &cli.command {
        return check(&loaded, env.as_deref(), ui);
    }
    let env_arg = cli
        .command
        .env()
        .expect("the commands without a node returned above");
    let (env_name, env) = loaded.environment(env_arg)?;
    if let Command::Release {
        version,
        skip_build,
        dry_run: false,
        ..
    } = &cli.command
    {
        crate::version::check(version)?;
        if let (Some(build), false) = (&loaded.config.build, skip_build) {
            ui.step(&format!("Building ({})", build.command), || {
                run_local(&build.command, &loaded.dir, ui.quiet)
            })?;
        }
        if !cli.node {
            for hook in &loaded.config.hooks.before_upload {
                ui.step(&format!("Hook before_upload: {hook}"), || {
                    run_local(hook, &loaded.dir, ui.quiet)
                })
                .context("a before_upload hook failed: nothing was uploaded or changed")?;
            }
        }
    }
    let result = dispatch(&cli, &loaded, env_name, env, ui);
    if let (Ok(()), Command::Release { .. }, false) = (&result, &cli.command, cli.node) {
        for hook in &loaded.config.hooks.after_release {
            ui.step(&format!("Hook after_release: {hook}"), || {
                run_local(hook, &loaded.dir, ui.quiet)
            })
            .context("an after_release hook failed (the release is live)")?;
        }
    }
    result
}

/// Runs the command on the node: here, or over SSH for a remote environment.
fn dispatch(
    cli: &Cli,
    loaded: &config::Loaded,
    env_name: String,
    env: &config::Environment,
    ui: Ui,
) -> Result<()> {
    if !cli.node && env.host() != config::Host::Local {
        let remote = Remote::new(loaded, env_name, env, ui)?;
        return run_remote(&cli.command, &remote);
    }
    let node = Node::new(&loaded.config, env_name, env, &loaded.dir, ui)?;
    if !cli.node {
        if let Some(done) = run_detached(cli, loaded, &node)? {
            return Ok(done);
        }
    }
    match &cli.command {
        Command::Setup { dry_run: true, .. } => print_plan(node.setup_plan()),
        Command::Release {
            version,
            dry_run: true,
            uploaded,
            skip_build,
            ..
        } => {
            if let (Some(b), false, false) = (&loaded.config.build, skip_build, uploaded) {
                println!("  (first, here: {} in {})", b.command, loaded.dir.display());
            }
            print_plan(node.release_plan(version, *uploaded))
        }
        Command::Rollback {
            to,
            with_data,
            dry_run: true,
            ..
        } => print_plan(node.rollback_plan(to.as_deref(), *with_data)),
        Command::Setup { .. } => node.setup(),
        Command::Release {
            version,
            force,
            uploaded,
            ..
        } => node.release(&ReleaseRequest {
            version,
            force: *force,
            uploaded: *uploaded,
            project_dir: &loaded.dir,
        }),
        Command::Rollback {
            to,
            with_data,
            yes,
            force,
            ..
        } => node.rollback(&crate::node::RollbackRequest {
            to: to.as_deref(),
            with_data: *with_data,
            yes: *yes,
            force: *force,
        }),
        Command::Releases { .. } => {
            let r = node.releases_report()?;
            print_report(ui, &r, r.text())
        }
        Command::Status { .. } => {
            let s = node.status_report()?;
            print_report(ui, &s, s.text())
        }
        Command::Maintenance { state, .. } => node.maintenance(state == "on"),
        Command::Logs { follow, lines, .. } => node.logs(*lines, *follow),
        Command::MigrateData {
            dry_run, release, ..
        } => node.migrate_data(&crate::node::migrate::MigrateRequest {
            dry_run: *dry_run,
            release,
        }),
        _ => unreachable!("the commands without a node returned before"),
    }
}

/// `deploy check [ENV]`: the config is loaded already; then the artifacts, then the node.
fn check(loaded: &config::Loaded, env: Option<&str>, ui: Ui) -> Result<()> {
    ui.step("Checking the artifacts", || {
        crate::node::upload::artifact_sources(&loaded.config, &loaded.dir).map(|_| ())
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
    print!("{}", plan?);
    Ok(())
}

/// A report as text, or as one JSON document with `--json`.
fn print_report(ui: Ui, report: &impl serde::Serialize, text: String) -> Result<()> {
    if ui.json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{text}");
    }
    Ok(())
}

/// A remote environment: the same command, run by the node's own deploy over SSH.
fn run_remote(command: &Command, remote: &Remote) -> Result<()> {
    let env = remote.env_name.clone();
    let mut args: Vec<String> = Vec::new();
    let flag = |on: bool, name: &str, args: &mut Vec<String>| {
        if on {
            args.push(name.into());
        }
    };
    match command {
        Command::Setup { dry_run, .. } => return remote.setup(*dry_run),
        Command::Release {
            version,
            force,
            dry_run,
            ..
        } => return remote.release(version, *force, *dry_run),
        Command::Rollback {
            to,
            with_data,
            yes,
            force,
            dry_run,
            ..
        } => {
            if *dry_run {
                args.extend(["rollback".into(), env.clone()]);
                if let Some(t) = to {
                    args.extend(["--to".into(), t.clone()]);
                }
                flag(*with_data, "--with-data", &mut args);
                args.push("--dry-run".into());
                return remote.read(&args);
            }
            args = rollback_args(remote.ui, &env, to.as_deref(), *with_data, *yes, *force)?;
        }
        Command::Releases { .. } => return remote.read(&["releases".into(), env]),
        Command::Status { .. } => return remote.read(&["status".into(), env]),
        Command::Logs { follow, lines, .. } => {
            let mut args = vec!["logs".into(), env, "-n".into(), lines.to_string()];
            flag(*follow, "--follow", &mut args);
            return remote.read(&args);
        }
        Command::Maintenance { state, .. } => {
            args.extend(["maintenance".into(), state.clone(), env]);
        }
        Command::MigrateData {
            dry_run, release, ..
        } => {
            args.extend(["migrate-data".into(), env, "--as".into(), release.clone()]);
            flag(*dry_run, "--dry-run", &mut args);
        }
        _ => unreachable!("the commands without a node returned before"),
    }
    remote.run(&args)
}

/// The node-side arguments of a rollback; `--with-data` is confirmed here first (the node side
/// runs detached and cannot ask).
fn rollback_args(
    ui: Ui,
    env: &str,
    to: Option<&str>,
    with_data: bool,
    yes: bool,
    force: bool,
) -> Result<Vec<String>> {
    let mut args = vec!["rollback".to_string(), env.to_string()];
    if let Some(t) = to {
        args.extend(["--to".into(), t.to_string()]);
    }
    if with_data {
        if !yes {
            let question = format!(
                "--with-data replaces the SQLite data on {env} with what {} left (the data there \
                 now is kept as a snapshot). Go on?",
                to.unwrap_or("the previous release")
            );
            if !ui.ask(&question)? {
                bail!("--with-data not confirmed, nothing changed (pass --yes to confirm without a prompt)");
            }
        }
        args.extend(["--with-data".into(), "--yes".into()]);
    }
    if force {
        args.push("--force".into());
    }
    Ok(args)
}

/// A release or rollback on a local environment: its node-side steps run detached (see
/// `detached`), unless the node is not set up (nothing is live there to protect).
fn run_detached(cli: &Cli, loaded: &config::Loaded, node: &Node) -> Result<Option<()>> {
    let env = node.env_name.clone();
    let (args, what) = match &cli.command {
        Command::Release {
            version,
            force,
            dry_run: false,
            uploaded: false,
            ..
        } => {
            let mut args = vec![
                "release".into(),
                version.clone(),
                env.clone(),
                "--skip-build".into(),
            ];
            if *force {
                args.push("--force".into());
            }
            (args, format!("release {version} {env}"))
        }
        Command::Rollback {
            to,
            with_data,
            yes,
            force,
            dry_run: false,
            ..
        } => (
            rollback_args(node.ui, &env, to.as_deref(), *with_data, *yes, *force)?,
            format!("rollback {env}"),
        ),
        _ => return Ok(None),
    };
    if !node.layout.meta().is_dir() {
        return Ok(None);
    }
    let argv = crate::local::detached::node_argv(&loaded.file, node.ui, &args);
    crate::local::detached::run(&node.layout.meta().join("runs"), &argv, &what, &env).map(Some)
}

/// Runs a local command (the build, a hook) with `sh -c` in the project directory; its output
/// goes to stderr.
fn run_local(command: &str, dir: &std::path::Path, quiet: bool) -> Result<()> {
    let expr = duct::cmd!("sh", "-c", command)
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
