//! From the command line to the node: load the config, pick the environment, run the local
//! steps (the build) and hand over to the node-side steps.

use crate::cli::{Cli, Command};
use crate::config;
use crate::node::{Node, ReleaseRequest};
use crate::ui::Ui;
use anyhow::{bail, Context, Result};

pub fn run(cli: Cli) -> Result<()> {
    let ui = Ui {
        verbose: cli.verbose,
        quiet: cli.quiet,
    };
    if let Command::GapServer(options) = cli.command {
        return crate::gap::serve(options);
    }
    let loaded = config::load(&cli.config)?;
    let env_arg = match &cli.command {
        Command::Setup { env }
        | Command::Release { env, .. }
        | Command::Rollback { env, .. }
        | Command::Releases { env }
        | Command::Status { env }
        | Command::Maintenance { env, .. }
        | Command::MigrateData { env, .. } => env.as_deref(),
        Command::GapServer(_) => unreachable!("handled above"),
    };
    let (env_name, env) = loaded.environment(env_arg)?;
    let node = Node::new(&loaded.config, env_name, env, &loaded.dir, ui)?;
    match &cli.command {
        Command::Setup { .. } => node.setup(),
        Command::Release {
            version,
            force,
            skip_build,
            ..
        } => {
            crate::version::check(version)?;
            if let (Some(build), false) = (&loaded.config.build, skip_build) {
                ui.step(&format!("Building ({})", build.command), || {
                    run_build(&build.command, &loaded.dir, ui.quiet)
                })?;
            }
            node.release(&ReleaseRequest {
                version,
                force: *force,
                project_dir: &loaded.dir,
            })
        }
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
            print!("{}", node.releases_report()?);
            Ok(())
        }
        Command::Status { .. } => {
            print!("{}", node.status_report()?);
            Ok(())
        }
        Command::Maintenance { state, .. } => node.maintenance(state == "on"),
        Command::MigrateData {
            dry_run, release, ..
        } => node.migrate_data(&crate::migrate::MigrateRequest {
            dry_run: *dry_run,
            release,
        }),
        Command::GapServer(_) => unreachable!("handled above"),
    }
}

/// Runs the build command with `sh -c` in the project directory; its output goes to stderr.
fn run_build(command: &str, dir: &std::path::Path, quiet: bool) -> Result<()> {
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
        let tail = crate::podman::tail(&String::from_utf8_lossy(&out.stderr), 20);
        bail!(
            "the build command `{command}` failed ({}); nothing was uploaded\n{tail}",
            out.status
        );
    }
    Ok(())
}
