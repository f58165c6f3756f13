//! The swap's journal: one JSON entry per line in `.deploy/swap.journal`, appended and
//! fdatasynced before and after every step. It exists exactly while a swap is unfinished: it is
//! removed once the app is in a defined state (the target live, what was live before put back,
//! or the app deliberately stopped), so a journal found by a later command is a swap whose
//! process died, and its entries say how far it got.

use super::Entry;
use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const FILE: &str = "swap.journal";

/// The process that runs a swap. A pid is that process only while the boot and the process's
/// start time are the same: after a reboot (or a wrap-around) another process may have it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<String>,
    /// The process's start time, in clock ticks since boot (`/proc/<pid>/stat`, field 22).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
}

/// This boot's id.
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

/// A process's start time (field 22 of its stat, after the command's closing parenthesis).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(19)?.parse().ok()
}

impl Owner {
    /// This process.
    pub fn this() -> Owner {
        let pid = std::process::id();
        Owner {
            pid,
            boot: boot_id(),
            started: start_time(pid),
        }
    }

    /// A pid alone (a journal from before owners had more): alive while the pid is.
    pub fn pid(pid: u32) -> Owner {
        Owner {
            pid,
            boot: None,
            started: None,
        }
    }

    /// Whether the process still runs: same pid, same boot, same start time.
    pub fn alive(&self) -> bool {
        if self.pid == 0 || !Path::new(&format!("/proc/{}", self.pid)).exists() {
            return false;
        }
        let same_boot = self
            .boot
            .as_ref()
            .is_none_or(|b| Some(b) == boot_id().as_ref());
        let same_start = self.started.is_none_or(|s| Some(s) == start_time(self.pid));
        same_boot && same_start
    }

    /// As one line of text (the fence's marker).
    pub fn to_line(&self) -> String {
        format!(
            "{} {} {}",
            self.pid,
            self.boot.as_deref().unwrap_or("-"),
            self.started
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into())
        )
    }

    /// The inverse of [`Owner::to_line`].
    pub fn from_line(line: &str) -> Option<Owner> {
        let mut f = line.split_whitespace();
        Some(Owner {
            pid: f.next()?.parse().ok()?,
            boot: f.next().filter(|b| *b != "-").map(String::from),
            started: f.next().and_then(|s| s.parse().ok()),
        })
    }
}

/// Whether the owner named on the second line of a marker's text still runs.
pub fn owner_alive_text(text: &str) -> bool {
    text.lines()
        .nth(1)
        .and_then(Owner::from_line)
        .is_some_and(|o| o.alive())
}

pub struct Journal {
    path: PathBuf,
    file: File,
    pub entries: Vec<Entry>,
}

/// The entries of a journal file; a last line torn by a crash is left out.
pub fn read(path: &Path) -> Result<Option<Vec<Entry>>> {
    Ok(read_with_length(path)?.map(|(entries, _)| entries))
}

/// The entries and the length of the file they fill (less than its size after a torn write).
fn read_with_length(path: &Path) -> Result<Option<(Vec<Entry>, u64)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut entries = Vec::new();
    let mut length = 0;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str(line.trim_end()) {
            Ok(e) if line.ends_with('\n') => {
                entries.push(e);
                length += line.len() as u64;
            }
            _ if i + 1 == lines.len() => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "line {} of the swap journal {} is not valid: move the file away to go \
                         on without recovering that swap",
                        i + 1,
                        path.display()
                    )
                })
            }
            Ok(_) => unreachable!("only the last line lacks its newline"),
        }
    }
    Ok(Some((entries, length)))
}

impl Journal {
    /// Opens the journal at `path` for appending: a new one, or one a dead swap left (its
    /// entries read back).
    pub fn open(path: &Path) -> Result<Journal> {
        let (entries, length) = read_with_length(path)?.unwrap_or_default();
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot open the swap journal {}", path.display()))?;
        // A torn last entry goes, so that the next one starts on a line of its own.
        if file.metadata()?.len() > length {
            file.set_len(length)?;
        }
        if entries.is_empty() {
            crate::sys::fsx::sync_dir(path.parent().unwrap_or(Path::new(".")))?;
        }
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            entries,
        })
    }

    /// Appends one entry, durably (one fdatasync), with any written before it: a step's
    /// `begin` is on disk before the step runs.
    pub fn append(&mut self, entry: Entry) -> Result<()> {
        self.write(entry)?;
        self.file
            .sync_data()
            .with_context(|| format!("cannot sync the swap journal {}", self.path.display()))
    }

    /// Appends one entry that the next [`Journal::append`] (or the journal's removal) makes
    /// durable: a step's `done`. A kill loses nothing written; a power cut before the next
    /// step's `begin` can lose it, and the step then reads as begun and not done, which
    /// recovery treats as the more careful case.
    pub fn append_unsynced(&mut self, entry: Entry) -> Result<()> {
        self.write(entry)
    }

    fn write(&mut self, entry: Entry) -> Result<()> {
        let mut line = serde_json::to_vec(&entry)?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .with_context(|| format!("cannot write the swap journal {}", self.path.display()))?;
        self.entries.push(entry);
        Ok(())
    }

    /// The swap ended in a defined state: the journal goes.
    pub fn close(self) -> Result<()> {
        std::fs::remove_file(&self.path)
            .with_context(|| format!("cannot remove {}", self.path.display()))?;
        crate::sys::fsx::sync_dir(self.path.parent().unwrap_or(Path::new(".")))
    }

    /// A swap that could not be recovered is replaced by a new one: its journal is kept aside
    /// under a dated name, for a look.
    pub fn set_aside(self) -> Result<PathBuf> {
        let aside = self.path.with_file_name(format!(
            "{FILE}.abandoned-{}",
            crate::node::snapshot::stamp()
        ));
        crate::sys::fsx::rename_durable(&self.path, &aside)?;
        Ok(aside)
    }
}

#[cfg(test)]
mod owner_tests {
    use super::*;

    #[test]
    fn a_pid_is_its_process_only_in_the_same_boot_with_the_same_start() {
        let me = Owner::this();
        assert!(me.alive());
        assert_eq!(Owner::from_line(&me.to_line()), Some(me.clone()));
        let other_boot = Owner {
            boot: Some("another-boot".into()),
            ..me.clone()
        };
        assert!(
            !other_boot.alive(),
            "a reboot since: another process has the pid"
        );
        let reused = Owner {
            started: me.started.map(|s| s + 1),
            ..me.clone()
        };
        assert!(!reused.alive(), "the pid wrapped around");
        assert!(Owner::pid(me.pid).alive());
        let text = format!("a release\n{}\n", me.to_line());
        assert!(owner_alive_text(&text));
        assert!(!owner_alive_text("a release\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Move, Step};
    use super::*;

    #[test]
    fn entries_survive_a_reopen_and_a_torn_last_line() {
        let dir = std::env::temp_dir().join(format!("deploy-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(FILE);
        let mut j = Journal::open(&path).unwrap();
        j.append(Entry::Move {
            mv: Move::release("v2", Some("v1"), true),
            owner: Owner::pid(7),
            at: "now".into(),
        })
        .unwrap();
        j.append(Entry::Begin { step: Step::Stop }).unwrap();
        drop(j);
        // A crash in the middle of a write.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"t\":\"done\",\"st").unwrap();
        let mut j = Journal::open(&path).unwrap();
        assert_eq!(j.entries.len(), 2);
        assert_eq!(j.entries[1], Entry::Begin { step: Step::Stop });
        j.append(Entry::Begin { step: Step::Start }).unwrap();
        assert_eq!(read(&path).unwrap().unwrap().len(), 3);
        j.close().unwrap();
        assert!(read(&path).unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
