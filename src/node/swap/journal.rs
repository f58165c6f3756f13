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
            pid: 7,
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
