//! rsync: the command line of an upload (pure), running it, and reading its `--stats`. Over ssh,
//! [`crate::sys::ssh::Ssh::rsync`] adds the connection.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The rsync command line for an upload. Pure.
/// `dest` is a directory here or `host:dir` on a node; `link_dests` (the live release, an
/// earlier upload of the same version that was cut off) are on the receiving side.
pub fn upload_args<S: AsRef<str>>(
    sources: &[PathBuf],
    dest: &str,
    link_dests: &[S],
) -> Vec<String> {
    let mut args = vec![
        "--archive".to_string(),
        "--delete".into(),
        "--hard-links".into(),
        // Times compared to the nanosecond: a file changed within the second of the last
        // release's copy, at the same size, is sent, not linked to the old one.
        "--modify-window=-1".into(),
    ];
    for l in link_dests {
        args.push(format!("--link-dest={}", l.as_ref()));
    }
    args.extend(sources.iter().map(|s| s.display().to_string()));
    args.push(format!("{}/", dest.trim_end_matches('/')));
    args
}

/// Runs rsync in `dir` and returns what it printed. A failure names `dest` and, for a full
/// disk, says what to do.
pub fn run(args: Vec<String>, dir: &Path, dest: &str) -> Result<String> {
    let out = super::own_group(duct::cmd("rsync", args))
        .dir(dir)
        .stdin_null()
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .context("cannot run rsync: install it (apt-get install rsync)")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "rsync into {dest} failed ({}): {}{}",
            out.status,
            err.trim(),
            if err.contains("No space left on device") {
                "\nthe disk is full: free some space (see `df -h`), or lower keep_releases"
            } else {
                ""
            }
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// rsync is installed here.
pub fn check_installed() -> Result<()> {
    duct::cmd!("rsync", "--version")
        .stdout_null()
        .stderr_null()
        .run()
        .map(|_| ())
        .context("`rsync` is not installed: as root, apt-get install rsync")
}

/// Words as rsync splits its `-e` command: on spaces, with single quotes keeping a word
/// whole and a doubled quote inside them standing for one (rsync knows no backslashes or
/// `'\''`). Pure.
pub fn join<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| {
            let w = w.as_ref();
            if !w.is_empty() && !w.contains([' ', '\'', '"', '\t']) {
                w.to_string()
            } else {
                format!("'{}'", w.replace('\'', "''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `Total bytes sent: 1,234` in rsync's `--stats`. Pure.
pub fn bytes_sent(stats: &str) -> Option<u64> {
    stats
        .lines()
        .find_map(|l| l.strip_prefix("Total bytes sent:"))
        .and_then(|n| n.trim().replace(',', "").parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsync_command() {
        let args = upload_args(
            &["/p/target/release/app".into(), "/p/assets".into()],
            "/srv/a/releases/.incoming-v2",
            &["/srv/a/releases/v1"],
        );
        assert_eq!(
            args.join(" "),
            "--archive --delete --hard-links --modify-window=-1 --link-dest=/srv/a/releases/v1 \
             /p/target/release/app /p/assets /srv/a/releases/.incoming-v2/"
        );
    }

    #[test]
    fn first_release_has_no_link_dest() {
        let args = upload_args::<&str>(&["/p/x".into()], "deploy@vps:/d/", &[]);
        assert_eq!(args.last().unwrap(), "deploy@vps:/d/");
        assert!(!args.iter().any(|a| a.starts_with("--link-dest")));
    }

    #[test]
    fn words_are_joined_as_rsync_splits_them() {
        assert_eq!(
            join(&["ssh", "-o", "UserKnownHostsFile=/k/it's here", ""]),
            "ssh -o 'UserKnownHostsFile=/k/it''s here' ''"
        );
    }

    #[test]
    fn rsync_stats_give_the_bytes_sent() {
        let stats = "Number of files: 3\nTotal bytes sent: 1,234,567\nTotal bytes received: 35\n";
        assert_eq!(bytes_sent(stats), Some(1_234_567));
        assert_eq!(bytes_sent("nothing"), None);
    }
}
