//! The `deploy` command: parses the command line and runs it (see the library).

use clap::Parser;
use deploy::{cli, exit};

fn main() {
    let cli = cli::Cli::parse();
    let json = cli.json;
    if let Err(e) = deploy::run(cli) {
        let code = exit::code_of(&e);
        if exit::already_said(&e) {
            std::process::exit(code);
        }
        eprintln!("error: {e:#}");
        if json {
            println!(
                "{}",
                serde_json::json!({"event": "error", "message": format!("{e:#}"), "exit_code": code})
            );
        }
        std::process::exit(code);
    }
}
