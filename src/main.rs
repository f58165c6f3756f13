//! `deploy`: Capistrano-style atomic releases of one app to one Linux server, with rootless
//! Podman containers run by systemd user units.

mod cli;
mod commands;
mod config;
mod front;
mod fsx;
mod gap;
mod health;
mod layout;
mod lock;
mod migrate;
mod node;
mod podman;
mod remote;
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
    if let Err(e) = commands::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
