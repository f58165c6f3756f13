//! The node-side command line of a command (`deploy --node ... ARGS`): the words that name
//! the command, then its flags. Pure.

use crate::cli::{
    Command, JobsAction, JobsArgs, LockAction, LogsArgs, ReleaseArgs, RollbackArgs, Switch,
};
use crate::version::Version;

/// The node-side command line of a command for `env` (`deploy --node ... ARGS`): the same
/// command, with what was done here already said so (the build ran: `--skip-build`; the
/// upload over SSH: `--uploaded`; `--with-data` confirmed: `--yes`). Pure.
pub fn node_args(command: &Command, env: &str, uploaded: Option<&str>) -> Vec<String> {
    let mut flags = Flags::default();
    let words: Vec<String> = match command {
        Command::Setup(a) => {
            flags.set(a.dry_run, "--dry-run");
            flags.set(a.reset_storage, "--reset-storage");
            vec!["setup".into(), env.into()]
        }
        Command::Release(a) => release(a, env, uploaded, &mut flags),
        Command::Rollback(a) => rollback(a, env, &mut flags),
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
            flags.set(a.interactive, "--interactive");
            flags.set(true, "--");
            flags.0.extend(a.command.iter().cloned());
            vec!["exec".into(), env.into()]
        }
        Command::Logs(a) => logs(a, env, &mut flags),
        Command::Jobs(a) => jobs(a, env),
        Command::Start(a) | Command::Stop(a) | Command::Restart(a) => {
            flags.set(a.dry_run, "--dry-run");
            let verb = match command {
                Command::Start(_) => "start",
                Command::Stop(_) => "stop",
                _ => "restart",
            };
            vec![verb.into(), env.into()]
        }
        Command::Lock(a) => lock(&a.action, env, &mut flags),
        Command::Remove(a) => {
            flags.set(a.data, "--data");
            flags.set(a.all, "--all");
            flags.set((a.data || a.all) && !a.dry_run, "--yes");
            flags.set(a.dry_run, "--dry-run");
            vec!["remove".into(), env.into()]
        }
        Command::Prune(a) => {
            flags.set(a.dry_run, "--dry-run");
            vec!["prune".into(), env.into()]
        }
        Command::Maintenance(a) => {
            let state = if a.state == Switch::On { "on" } else { "off" };
            vec!["maintenance".into(), state.into(), env.into()]
        }
        Command::Restore(a) => {
            flags.set(a.overwrite, "--overwrite");
            flags.set(a.stop_running, "--stop-running");
            flags.set(a.dry_run, "--dry-run");
            let mut w = vec!["restore".to_string(), env.into()];
            if let Some(at) = &a.at {
                w.extend(["--at".into(), at.clone()]);
            }
            w
        }
        Command::MigrateData(a) => {
            flags.set(a.dry_run, "--dry-run");
            flags.set(!a.dry_run, "--yes");
            flags.set(a.stop_running, "--stop-running");
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
    words.into_iter().chain(flags.0).collect()
}

/// The flags of a node-side command line, in the order they are set.
#[derive(Default)]
struct Flags(Vec<String>);

impl Flags {
    fn set(&mut self, on: bool, name: &str) {
        if on {
            self.0.push(name.into())
        }
    }
}

fn release(a: &ReleaseArgs, env: &str, uploaded: Option<&str>, flags: &mut Flags) -> Vec<String> {
    if let Some(run) = uploaded {
        flags.set(true, "--uploaded");
        flags.set(true, run);
    }
    flags.set(!a.dry_run, "--skip-build");
    flags.set(a.replace, "--replace");
    flags.set(a.unprotected, "--unprotected");
    flags.set(a.stop_running, "--stop-running");
    flags.set(a.dry_run, "--dry-run");
    let mut w = vec!["release".to_string()];
    w.extend(a.version.as_ref().map(Version::to_string));
    w.push(env.into());
    w
}

fn rollback(a: &RollbackArgs, env: &str, flags: &mut Flags) -> Vec<String> {
    flags.set(a.with_data, "--with-data");
    flags.set(a.keep_data, "--keep-data");
    flags.set(a.with_data && !a.dry_run, "--yes");
    flags.set(a.data_question, "--data-question");
    flags.set(a.unprotected, "--unprotected");
    flags.set(a.stop_running, "--stop-running");
    flags.set(a.dry_run, "--dry-run");
    let mut w = vec!["rollback".to_string(), env.into()];
    if let Some(t) = &a.to {
        w.extend(["--to".into(), t.to_string()]);
    }
    w
}

fn logs(a: &LogsArgs, env: &str, flags: &mut Flags) -> Vec<String> {
    flags.set(a.follow, "--follow");
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

fn jobs(a: &JobsArgs, env: &str) -> Vec<String> {
    let (verb, j) = match &a.action {
        None => return vec!["jobs".into(), env.into()],
        Some(JobsAction::Run(j)) => ("run", j),
        Some(JobsAction::RunScheduled(j)) => ("run-scheduled", j),
        Some(JobsAction::RunUnit(j)) => ("run-unit", j),
    };
    vec!["jobs".into(), verb.into(), j.name.clone(), env.into()]
}

fn lock(action: &LockAction, env: &str, flags: &mut Flags) -> Vec<String> {
    match action {
        LockAction::Acquire {
            message, dry_run, ..
        } => {
            flags.set(*dry_run, "--dry-run");
            vec![
                "lock".into(),
                "acquire".into(),
                env.into(),
                "--message".into(),
                message.clone(),
            ]
        }
        LockAction::Release { dry_run, .. } => {
            flags.set(*dry_run, "--dry-run");
            vec!["lock".into(), "release".into(), env.into()]
        }
        LockAction::Status { .. } => vec!["lock".into(), "status".into(), env.into()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
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
