//! `deploy`: Capistrano-style atomic releases of one app to one Linux server, with rootless
//! Podman containers run by systemd user units.

mod check;
mod cli;
mod commands;
mod config;
mod detached;
mod exit;
mod front;
mod fsx;
mod gap;
mod health;
mod init;
mod layout;
mod lock;
mod logs;
mod migrate;
mod node;
mod plan;
mod podman;
mod remote;
mod report;
mod signals;
mod snapshot;
mod ssh;
mod state;
mod systemd;
mod template;
mod traefik;
mod ui;
mod unit;
mod upload;
mod version;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let json = cli.json;
    if let Err(e) = commands::run(cli) {
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
