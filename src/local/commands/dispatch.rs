//! Where a command runs: on this machine's node (attached, or detached for a release or a
//! rollback), or over SSH by the remote node's own deploy.

use super::ask::{confirm_removal, rollback_answers};
use super::{node_args, print_plan, print_report};
use crate::cli::{Cli, Command, JobsAction, LockAction, ReleaseArgs, RollbackArgs, Switch};
use crate::config;
use crate::local::remote::Remote;
use crate::node::rollback::DataChoice;
use crate::node::runtime::power::Power;
use crate::node::Node;
use crate::ui::Ui;
use anyhow::{bail, Result};

/// Runs the command on the node: here, or over SSH for a remote environment.
pub(super) fn dispatch(
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
    run_on_node(cli, loaded, &node, ui)
}

/// Runs the command on this machine's node, attached.
fn run_on_node(cli: &Cli, loaded: &config::Loaded, node: &Node, ui: Ui) -> Result<()> {
    match &cli.command {
        Command::Setup(a) if a.dry_run => print_plan(node.setup_plan(a.reset_storage)),
        Command::Setup(a) => node.setup(a.reset_storage),
        Command::Release(a) if a.dry_run => release_dry_run(a, loaded, node),
        Command::Release(a) => node.release(&a.try_into()?),
        Command::Rollback(a) if a.dry_run => {
            print_plan(node.rollback_plan(a.to.as_deref(), DataChoice::from(a)))
        }
        Command::Rollback(a) if a.data_question => {
            let q = node.data_question(a.to.as_deref())?;
            println!("{}", serde_json::to_string(&q)?);
            Ok(())
        }
        Command::Rollback(a) => node.rollback(&a.into()),
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
        Command::Exec(a) => node.exec(&a.into()),
        Command::Maintenance(a) => node.maintenance(a.state == Switch::On),
        Command::Logs(a) => node.logs(&a.into(), a.follow),
        Command::Start(a) if a.dry_run => print_plan(node.power_plan(Power::Start)),
        Command::Stop(a) if a.dry_run => print_plan(node.power_plan(Power::Stop)),
        Command::Restart(a) if a.dry_run => print_plan(node.power_plan(Power::Restart)),
        Command::Start(_) => node.power(Power::Start),
        Command::Stop(_) => node.power(Power::Stop),
        Command::Restart(_) => node.power(Power::Restart),
        Command::Lock(a) => lock(&a.action, node, ui),
        Command::Remove(a) if a.dry_run => print_plan(node.remove_plan(a.into())),
        Command::Remove(a) => node.remove(&a.into(), &|previews| {
            crate::local::preview::take_down(cli, loaded, &node.env_name, ui, previews)
        }),
        Command::Prune(a) if a.dry_run => print_plan(node.prune_plan_text()),
        Command::Prune(_) => node.prune_now(),
        Command::Jobs(a) => jobs(a.action.as_ref(), node, ui),
        Command::MigrateData(a) => node.migrate_data(&a.into()),
        Command::Restore(a) if a.dry_run => print_plan(node.restore_plan(a.overwrite)),
        Command::Restore(a) => node.restore(&a.into()),
        Command::Recover(_) => node.recover_unattended(),
        Command::Verify(a) => node.verify(a.secrets.as_deref()),
        Command::Preview(_) => unreachable!("previews return before"),
        crate::no_node_commands!() => unreachable!("the commands without a node returned before"),
    }
}

/// `deploy release --dry-run`: the build that would run here first, then the node's plan.
fn release_dry_run(a: &ReleaseArgs, loaded: &config::Loaded, node: &Node) -> Result<()> {
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

/// `deploy lock ...` on this machine's node.
fn lock(action: &LockAction, node: &Node, ui: Ui) -> Result<()> {
    match action {
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
    }
}

/// `deploy jobs ...` on this machine's node.
fn jobs(action: Option<&JobsAction>, node: &Node, ui: Ui) -> Result<()> {
    match action {
        None => {
            let r = node.jobs_report()?;
            print_report(ui, &r, r.text())
        }
        Some(JobsAction::Run(j)) => node.run_job_now(&j.name),
        Some(JobsAction::RunScheduled(j)) => node.start_scheduled_run(&j.name),
        Some(JobsAction::RunUnit(j)) => node.run_scheduled_job(&j.name),
    }
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
