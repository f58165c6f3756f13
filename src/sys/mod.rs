//! Thin wrappers over the outside world: systemd's user manager over D-Bus, Podman, ssh and
//! rsync, crash-safe file operations, the HTTP health probe; and shell quoting (`shell.rs`,
//! pure, used from every layer).

pub mod assemble;
pub mod build_cache;
pub mod fsx;
pub mod health;
pub mod podman;
pub mod rsync;
pub mod selinux;
pub mod shell;
pub mod ssh;
pub mod systemd;

/// The time now as deploy writes it (records, flags, the history): RFC 3339, to the second.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Runs a child in a process group of its own: a Ctrl-C on the terminal (sent to the
/// foreground group) does not reach it, so a step under way is finished, not cut.
pub fn own_group(expr: duct::Expression) -> duct::Expression {
    use std::os::unix::process::CommandExt;
    expr.before_spawn(|cmd| {
        cmd.process_group(0);
        Ok(())
    })
}
