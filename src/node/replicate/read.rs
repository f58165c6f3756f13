//! What `deploy restore` and `deploy verify` read of the replica: its list of databases, one
//! `litestream restore` of a database (as of a point in time), and the credentials Litestream
//! reaches it with.

use super::{litestream_bin, read_manifest_conn, shown_url, Replication, MANIFEST_REPLICA};
use crate::config::Replicate;
use crate::node::shared_path::SharedRel;
use crate::sys::fsx;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// `--at`: an RFC 3339 time as it is, or a duration (`10m`, `2h 30m`) meaning that long before
/// `now`, as RFC 3339 (what `litestream restore -timestamp` takes). Pure.
pub fn point_in_time(at: &str, now: std::time::SystemTime) -> Result<String> {
    // A time with a zone offset (+01:00) goes as it is: Litestream reads RFC 3339 itself.
    if humantime::parse_rfc3339_weak(at.trim_end_matches('Z')).is_ok() || at.contains('T') {
        return Ok(at.to_string());
    }
    match humantime::parse_duration(at) {
        Ok(d) => Ok(humantime::format_rfc3339_seconds(now - d).to_string()),
        Err(_) => bail!(
            "--at `{at}`: give a time (RFC 3339, e.g. 2026-11-24T06:00:00Z) or how long ago \
             (e.g. 10m, 2h)"
        ),
    }
}

/// `KEY=value` lines of an env file (comments and blank lines skipped, one level of quotes
/// taken off the value). Pure.
fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("export ").unwrap_or(l).split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let unquoted = ['"', '\'']
                .iter()
                .find_map(|q| v.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
                .unwrap_or(v);
            (k.trim().to_string(), unquoted.to_string())
        })
        .collect()
}

/// The arguments of `litestream restore` of the database `db` (its path in `config`) into
/// `out`, as of `at`: nothing when the replica has none of it. Pure.
pub fn restore_args(config: &Path, db: &Path, out: &Path, at: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "restore".into(),
        "-config".into(),
        config.display().to_string(),
        "-no-expand-env".into(),
        "-if-replica-exists".into(),
        "-o".into(),
        out.display().to_string(),
    ];
    if let Some(t) = at {
        args.extend(["-timestamp".into(), t.into()]);
    }
    args.push(db.display().to_string());
    args
}

/// `litestream` (`bin`) with `args`, and `env` added to its environment (the replica's
/// credentials).
pub fn litestream_cmd(bin: &Path, args: Vec<String>, env: &[(String, String)]) -> duct::Expression {
    env.iter()
        .fold(duct::cmd(bin, args), |c, (k, v)| c.env(k, v))
}

/// Runs `litestream` (`bin`) with `args` (see [`restore_args`]) and `env`; false when the
/// replica has nothing of the database (then or at all), its output's last lines when it fails.
pub fn run_restore(
    bin: &Path,
    args: Vec<String>,
    env: &[(String, String)],
    out: &Path,
) -> Result<bool> {
    let db = args.last().cloned().unwrap_or_default();
    let run = litestream_cmd(bin, args, env)
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
        .context("cannot run litestream")?;
    if !run.status.success() {
        bail!(
            "litestream could not restore {db}:\n{}",
            crate::sys::podman::tail(&String::from_utf8_lossy(&run.stdout), 10)
        );
    }
    Ok(out.exists())
}

/// The list of databases in the manifest at `path` (the replica's, once downloaded, or this
/// server's own).
pub(crate) fn read_list(path: &Path) -> Result<Vec<String>> {
    let db = rusqlite::Connection::open(path)
        .with_context(|| format!("cannot open the list of databases {}", path.display()))?;
    read_manifest_conn(&db)
}

impl Replication<'_> {
    /// What Litestream needs to reach the replica when run by `deploy restore`: the variables
    /// of shared/.env, env.clear, and the env.secret values sent (or in this environment).
    pub(crate) fn litestream_env(&self, secrets: Option<&Path>) -> Result<Vec<(String, String)>> {
        let mut vars = std::fs::read_to_string(self.layout.shared().join(".env"))
            .map(|t| parse_env_file(&t))
            .unwrap_or_default();
        let env = &self.config.env;
        vars.extend(env.clear.iter().map(|(k, v)| (k.clone(), v.clone())));
        let secrets = crate::node::appenv::SecretValues::on_node(secrets, &env.secret)?;
        for name in &env.secret {
            if let Some(v) = secrets.get(name) {
                vars.push((name.clone(), v.to_string()));
            }
        }
        Ok(vars)
    }

    /// `litestream restore` of the database `db` (its path in the config) into `out`, as of
    /// `at`; false when the replica has nothing of it (then or at all).
    pub(crate) fn litestream_restore(
        &self,
        config: &Path,
        db: &Path,
        out: &Path,
        at: Option<&str>,
        env: &[(String, String)],
    ) -> Result<bool> {
        run_restore(
            &litestream_bin()?,
            restore_args(config, db, out, at),
            env,
            out,
        )
    }

    /// Litestream's config for `dbs` (paths under shared/) and the manifest, written to `path`.
    pub(crate) fn write_litestream_config(
        &self,
        r: &Replicate,
        path: &Path,
        dbs: &[SharedRel],
    ) -> Result<()> {
        let names: Vec<String> = dbs.iter().map(SharedRel::to_string).collect();
        fsx::write_atomic(path, self.litestream_text(r, &names)?.as_bytes(), 0o600)
    }

    /// The replica's list of databases (as of `at`), read into `work`, each entry checked
    /// (paths inside shared/ only: one bad entry stops everything, exit 3), and Litestream's
    /// config in `work` for them; returns that config and the list.
    pub(crate) fn replica_manifest(
        &self,
        r: &Replicate,
        env: &[(String, String)],
        work: &Path,
        at: Option<&str>,
    ) -> Result<(PathBuf, Vec<SharedRel>)> {
        let shown = shown_url(&r.url);
        let when = at.map(|t| format!(" as of {t}")).unwrap_or_default();
        let config = work.join("litestream.yml");
        self.write_litestream_config(r, &config, &[])?;
        let listed = work.join("manifest.db");
        let rels = self.ui.step(
            &format!("Reading the list of databases at {shown}{when}"),
            || {
                let got = self.litestream_restore(&config, &self.manifest(), &listed, at, env)?;
                self.replica_list(r, got, &listed, at)
            },
        )?;
        self.write_litestream_config(r, &config, &rels)?;
        Ok((config, rels))
    }

    /// The replica's list of databases, downloaded to `listed` (`got`: the replica had one as
    /// of `at`), every entry checked before anything changes: a replica is written by whoever
    /// can write the bucket or the account, and names nothing outside shared/ (exit 3).
    pub(crate) fn replica_list(
        &self,
        r: &Replicate,
        got: bool,
        listed: &Path,
        at: Option<&str>,
    ) -> Result<Vec<SharedRel>> {
        let shown = shown_url(&r.url);
        if !got {
            bail!(
                "the replica at {shown} has no list of databases{}: nothing was replicated there \
                 (by `deploy setup` and a release with `replicate:`) by then",
                at.map(|t| format!(" as of {t}")).unwrap_or_default()
            );
        }
        let rels = read_list(listed)?;
        crate::node::shared_path::parse_all(
            &rels,
            &format!("the replica's list of databases ({shown}/{MANIFEST_REPLICA})"),
        )
        .and_then(|rels| self.refuse_shared_files(rels))
        .map_err(|e| crate::exit::with(crate::exit::Code::Config, e))
    }

    /// The databases this server replicated last (its own manifest), each a plain path inside
    /// shared/ and none of the app's shared files; empty when there is no such list.
    pub(crate) fn replicated_last(&self) -> Vec<SharedRel> {
        let path = self.manifest();
        let Some(names) = path.exists().then(|| read_list(&path).ok()).flatten() else {
            return Vec::new();
        };
        names
            .iter()
            .filter_map(|n| SharedRel::parse(n).ok())
            .filter(|rel| self.refuse_shared_files(vec![rel.clone()]).is_ok())
            .collect()
    }

    /// Each of `rels` restored from the replica (as of `at`) into `into`, at its path under
    /// shared/ (`config`: Litestream's, from [`Self::replica_manifest`]); those the replica has.
    pub(crate) fn download_each(
        &self,
        config: &Path,
        rels: &[SharedRel],
        into: &Path,
        at: Option<&str>,
        env: &[(String, String)],
    ) -> Result<Vec<SharedRel>> {
        let when = at.map(|t| format!(" as of {t}")).unwrap_or_default();
        let shared = self.layout.shared();
        let mut restored = Vec::new();
        for rel in rels {
            let out = into.join(rel.as_str());
            std::fs::create_dir_all(out.parent().expect("a parent"))?;
            let got = self.ui.step(&format!("Restoring {rel}{when}"), || {
                self.litestream_restore(config, &shared.join(rel.as_str()), &out, at, env)
            })?;
            if got {
                restored.push(rel.clone());
            } else {
                self.ui
                    .info(&format!("   {rel}: the replica has nothing of it{when}"));
            }
        }
        Ok(restored)
    }

    /// A replica's entries that name one of the config's shared files (`.env`...) or the
    /// manifest's own place are refused: they are never databases of the app.
    fn refuse_shared_files(&self, rels: Vec<SharedRel>) -> Result<Vec<SharedRel>> {
        for rel in &rels {
            let name = rel.as_str();
            if name == ".env" || self.config.shared.files.iter().any(|f| f == name) {
                bail!("the replica's list of databases names shared/{name}, one of the app's shared files: nothing was changed");
            }
        }
        Ok(rels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_in_time_is_a_time_or_how_long_ago() {
        let now = humantime::parse_rfc3339("2026-11-24T06:30:00Z").unwrap();
        let at = |t: &str| point_in_time(t, now).map_err(|e| e.to_string());
        assert_eq!(at("2026-11-24T06:00:00Z").unwrap(), "2026-11-24T06:00:00Z");
        assert_eq!(at("10m").unwrap(), "2026-11-24T06:20:00Z");
        assert_eq!(at("1h 30m").unwrap(), "2026-11-24T05:00:00Z");
        assert!(at("yesterday").unwrap_err().contains("how long ago"));
    }

    #[test]
    fn env_files_as_systemd_and_podman_read_them() {
        let vars = parse_env_file("# creds\nA=1\nexport B=\"two words\"\n\nC='$x'\nD=a=b\n");
        let want = [("A", "1"), ("B", "two words"), ("C", "$x"), ("D", "a=b")];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(vars, want);
    }
}
