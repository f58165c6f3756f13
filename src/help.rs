//! The command line as people read it: the commands in the order of work, the global flags
//! under their own heading, `[ENV]` described everywhere, the exit codes; man pages (one per
//! command, with EXIT STATUS and EXAMPLES) and completions that know the config's environments.
//! Built over the derived [`Cli`]: what parses is what is documented.

use crate::cli::Cli;
use clap::CommandFactory;
use std::io::Write;

/// The exit codes, as `--help` and the man pages list them (and the README).
pub const EXIT_CODES: &[(i32, &str)] = &[
    (0, "done"),
    (
        1,
        "failed; the message says what and what to do (nothing live changed unless it says so)",
    ),
    (2, "usage: an unknown command or option, or a bad value"),
    (
        3,
        "the configuration is invalid or missing, or names no such environment",
    ),
    (
        4,
        "another deploy holds the app's lock, it is held by hand (`deploy lock`), or a one-off \
         container writes its data",
    ),
    (
        5,
        "the new release failed (start, health check, in_gap hook) and what was live before is \
         back",
    ),
    (
        6,
        "interrupted (SIGINT/SIGTERM/SIGHUP): stopped before the swap, or after finishing it",
    ),
];

/// The commands in the order of work: first run, every day, now and then, tools.
pub const ORDER: &[&str] = &[
    "init",
    "bootstrap",
    "check",
    "setup",
    "release",
    "rollback",
    "releases",
    "status",
    "server",
    "history",
    "logs",
    "jobs",
    "exec",
    "preview",
    "start",
    "stop",
    "restart",
    "maintenance",
    "lock",
    "restore",
    "verify",
    "migrate-data",
    "prune",
    "remove",
    "config",
    "completions",
    "man",
];

/// The variable that asks `deploy` for completions instead of running a command.
pub const COMPLETE_VAR: &str = "DEPLOY_COMPLETE";

/// The flags every command takes (their ids).
const GLOBAL: &[&str] = &["config", "lock_wait", "color", "verbose", "quiet", "json"];

/// What `[ENV]` is, wherever a command takes it.
pub const ENV_HELP: &str = "The environment, a name under `environments:` in the config, or a \
                            preview of one as ENV/NAME; may be left out when the config defines \
                            only one";

/// A few command lines to begin with (the man page's EXAMPLES).
pub const EXAMPLES: &[(&str, &str)] = &[
    ("deploy init", "write a commented deploy.yaml here"),
    (
        "deploy check prod",
        "check the config, the artifacts and the server",
    ),
    ("deploy setup prod", "prepare the server once"),
    ("deploy release v1.2.0 prod", "build, upload and swap"),
    ("deploy rollback prod", "back to the release before"),
    ("deploy status prod --json", "what runs, as JSON"),
    (
        "deploy logs prod --since 10m --grep error",
        "what the app said lately",
    ),
    (
        "deploy lock acquire prod -m \"fixing orders by hand\"",
        "keep deploys off for a while",
    ),
];

/// `--help`'s closing text: where the config is read, and the exit codes. Pure.
pub fn after_help() -> String {
    let mut out = String::from(
        "Configuration is read from ./deploy.yaml (or -c FILE, or DEPLOY_CONFIG); ENV may be left \
         out when it defines one environment.\n\nExit codes:\n",
    );
    for (code, meaning) in EXIT_CODES {
        out += &format!("  {code}  {meaning}\n");
    }
    out
}

/// The command line, as parsed and as documented.
pub fn command() -> clap::Command {
    let mut cmd = Cli::command().after_help(after_help());
    for (i, name) in ORDER.iter().enumerate() {
        cmd = cmd.mut_subcommand(name, |s| s.display_order(i));
    }
    // `mut_args`, not `mut_arg`: it keeps the arguments in their order (a positional's index).
    cmd = cmd.mut_args(|a| match GLOBAL.contains(&a.get_id().as_str()) {
        true => a.help_heading("Global options"),
        false => a,
    });
    with_env_described(cmd)
}

/// Every `env` argument, in every command and below: described, and completed with the
/// environments of the config.
fn with_env_described(mut cmd: clap::Command) -> clap::Command {
    cmd =
        cmd.mut_args(|a| match a.get_id() == "env" {
            true => a.value_name("ENV").help(ENV_HELP).add(
                clap_complete::engine::ArgValueCandidates::new(environment_candidates),
            ),
            false => a,
        });
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        cmd = cmd.mut_subcommand(name, with_env_described);
    }
    cmd
}

/// The environments of the config where completion runs (`$DEPLOY_CONFIG`, else
/// ./deploy.yaml): read as YAML, nothing validated, nothing expanded.
fn environment_candidates() -> Vec<clap_complete::engine::CompletionCandidate> {
    let file = std::env::var_os("DEPLOY_CONFIG")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| crate::config::DEFAULT_FILE.into());
    let text = std::fs::read_to_string(file).unwrap_or_default();
    environment_names(&text)
        .into_iter()
        .map(clap_complete::engine::CompletionCandidate::new)
        .collect()
}

/// The names under `environments:` in config text. Pure.
pub fn environment_names(text: &str) -> Vec<String> {
    let Ok(values) = yaml_serde::from_str::<yaml_serde::Value>(text) else {
        return Vec::new();
    };
    values
        .get("environments")
        .and_then(|e| e.as_mapping())
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The roff of the EXIT STATUS and EXAMPLES sections. Pure.
pub fn man_sections() -> String {
    let roff = |s: &str| s.replace('\\', "\\\\").replace('-', "\\-");
    let mut out = String::from(".SH \"EXIT STATUS\"\n");
    for (code, meaning) in EXIT_CODES {
        out += &format!(".TP\n\\fB{code}\\fR\n{}\n", roff(meaning));
    }
    out += ".SH EXAMPLES\n";
    for (line, what) in EXAMPLES {
        out += &format!(".TP\n\\fB{}\\fR\n{}\n", roff(line), roff(what));
    }
    out
}

/// One man page: clap_mangen's sections, then EXIT STATUS and EXAMPLES.
fn render_page(cmd: clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd);
    let mut buf = Vec::new();
    man.render(&mut buf)?;
    out.write_all(&buf)?;
    out.write_all(man_sections().as_bytes())
}

/// `deploy man`: the page of `deploy` on `out`.
pub fn man(out: &mut dyn Write) -> std::io::Result<()> {
    let mut cmd = command();
    cmd.build();
    render_page(cmd, out)
}

/// `deploy man --dir DIR`: `deploy.1` and one page per command (`deploy-release.1`...);
/// returns the files written.
pub fn man_pages(dir: &std::path::Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    use anyhow::Context;
    crate::sys::fsx::ensure_dir(dir, 0o755)?;
    let mut cmd = command();
    cmd.build();
    let mut pages = vec![("deploy".to_string(), cmd.clone())];
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("deploy-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    let mut written = Vec::new();
    for (name, page) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut text = Vec::new();
        render_page(page, &mut text)?;
        crate::sys::fsx::write_atomic(&path, &text, 0o644)
            .with_context(|| format!("cannot write the man page {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// `deploy completions SHELL`: the script that makes SHELL ask `deploy` itself for completions
/// (commands, options, and the config's environments where an ENV goes).
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) -> anyhow::Result<()> {
    let name = shell.to_string();
    let shells = clap_complete::env::Shells::builtins();
    let completer = shells
        .completer(&name)
        .ok_or_else(|| anyhow::anyhow!("no completions for {name}"))?;
    completer.write_registration(COMPLETE_VAR, "deploy", "deploy", "deploy", out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commands_come_in_the_order_of_work_and_every_env_is_described() {
        let mut cmd = command();
        cmd.build();
        let mut listed: Vec<(usize, String)> = cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
            .map(|s| (s.get_display_order(), s.get_name().to_string()))
            .collect();
        listed.sort();
        let names: Vec<&str> = listed.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ORDER, "every visible command has its place");
        fn walk(cmd: &clap::Command, path: &str) {
            for a in cmd.get_arguments().filter(|a| a.get_id() == "env") {
                let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                assert!(help.contains("environment"), "{path}: [ENV] undescribed");
            }
            for s in cmd.get_subcommands() {
                walk(s, &format!("{path} {}", s.get_name()));
            }
        }
        walk(&cmd, "deploy");
        let global = cmd.get_arguments().find(|a| a.get_id() == "json").unwrap();
        assert_eq!(global.get_help_heading(), Some("Global options"));
    }

    #[test]
    fn the_documented_command_line_parses_as_the_derived_one() {
        use clap::FromArgMatches;
        let parse = |line: &str| {
            let m = command()
                .try_get_matches_from(line.split_whitespace())
                .unwrap();
            Cli::from_arg_matches(&m).unwrap().command
        };
        match parse("deploy exec -i -- /app/x run-sql /dev/stdin") {
            crate::cli::Command::Exec(a) => {
                assert_eq!(a.env, None);
                assert_eq!(a.command, ["/app/x", "run-sql", "/dev/stdin"]);
            }
            other => panic!("{other:?}"),
        }
        match parse("deploy release v2 prod") {
            crate::cli::Command::Release(a) => {
                assert_eq!(
                    (a.version.as_deref(), a.env.as_deref()),
                    (Some("v2"), Some("prod"))
                )
            }
            other => panic!("{other:?}"),
        }
        match parse("deploy maintenance on prod") {
            crate::cli::Command::Maintenance(a) => assert_eq!(a.env.as_deref(), Some("prod")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exit_codes_are_in_the_help_and_the_man_page() {
        let help = after_help();
        assert!(
            help.contains("  4  another deploy holds the app's lock"),
            "{help}"
        );
        let man = man_sections();
        assert!(
            man.starts_with(".SH \"EXIT STATUS\"\n.TP\n\\fB0\\fR\ndone\n"),
            "{man}"
        );
        assert!(man.contains(".SH EXAMPLES\n"), "{man}");
        assert!(man.contains("\\fBdeploy release v1.2.0 prod\\fR"), "{man}");
    }

    #[test]
    fn environments_are_read_from_the_config_for_completion() {
        let text = "app: a\nenvironments:\n  prod: {host: local}\n  staging: {}\n";
        assert_eq!(environment_names(text), ["prod", "staging"]);
        assert!(environment_names(": not yaml: [").is_empty());
    }
}
