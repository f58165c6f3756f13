//! One deploy at a time per app on a node: an exclusive flock(2) on `.deploy/lock`, held for
//! the whole command. A crashed holder's lock is released by the kernel; the file is never
//! deleted. The holder writes who it is into the file so that a second command can say so.

use anyhow::{Context, Result};
use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

pub struct NodeLock {
    _file: File,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Takes the lock, waiting up to `wait` for another deploy to let go (`--lock-wait`); then
/// fails, naming the holder.
pub fn acquire(path: &Path, what: &str, wait: Option<std::time::Duration>) -> Result<NodeLock> {
    let mut file = crate::sys::fsx::open_lock_file(path)?;
    let deadline = std::time::Instant::now() + wait.unwrap_or_default();
    let mut told = false;
    loop {
        match file.try_lock() {
            Err(TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                if !told {
                    eprintln!("   another deploy is running: waiting for it (--lock-wait)");
                    told = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
            other => break acquired(other, &mut file, path)?,
        }
    }
    let info = format!(
        "`{what}` (pid {}, host {}, since {})\n",
        std::process::id(),
        hostname(),
        crate::sys::now()
    );
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(info.as_bytes())?;
    file.sync_data()?;
    Ok(NodeLock { _file: file })
}

/// The outcome of a try: taken, or held by another deploy (named), or an error.
fn acquired(
    result: std::result::Result<(), TryLockError>,
    file: &mut File,
    path: &Path,
) -> Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            Err(crate::exit::with(
                crate::exit::Code::Locked,
                anyhow::anyhow!(
                    "another deploy is running on this node: {}. Wait for it to finish (the lock \
                     is released when it exits, even if it crashes), or pass --lock-wait 5m to \
                     wait for it.",
                    if holder.is_empty() {
                        "holder unknown"
                    } else {
                        holder
                    }
                ),
            ))
        }
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}
