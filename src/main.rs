//! The `deploy` command: parses the command line and runs it (see the library).

use clap::FromArgMatches;
use deploy::{cli, exit, help, ui};

fn main() {
    // `DEPLOY_COMPLETE=bash deploy ...`: what a shell's completion script asks (`deploy
    // completions`); a variable of deploy's own, so that no other tool's setting turns a
    // command into a completion.
    clap_complete::CompleteEnv::with_factory(help::command)
        .var(help::COMPLETE_VAR)
        .complete();
    let matches = help::command().get_matches();
    let cli = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let json = cli.json;
    if let Err(e) = deploy::run(cli) {
        // A closed pipe (`deploy man | head`): the reader has what it wanted.
        if ui::broken_pipe(&e) {
            std::process::exit(0);
        }
        let code = exit::code_of(&e);
        if exit::already_said(&e) {
            std::process::exit(code);
        }
        eprintln!("error: {e:#}");
        if json {
            let event = serde_json::json!({"event": "error", "message": format!("{e:#}"), "exit_code": code});
            let _ = ui::print(&format!("{event}\n"));
        }
        std::process::exit(code);
    }
}
