//! With `replicate:`, the replica's position at the stop, beside the snapshot: a second way back
//! to the data at the stop (`litestream restore -txid`), never the only one.
//!
//! In the gap, once the snapshot has let go of its locks (the app is stopped; Litestream keeps
//! running), Litestream is asked through its control socket to sync what is in the `-wal` into
//! its local log and say its transaction id (a local step of a few milliseconds, never a wait
//! for the replica; a Litestream that does not answer within a second costs the gap no more and
//! leaves the position unrecorded). After the gap, the replica is asked to reach that id (`sync`
//! with `wait`, up to 30 s), and the snapshot's manifest records when it did. Litestream 0.5
//! counts transaction ids on across a restart and a reset of its local state (it reads the
//! replica's), so a put-back in between does not undo the confirmation.

use super::Replication;
use crate::node::snapshot::{Manifest, ReplicaPosition};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the gap gives Litestream to answer, per database.
const IN_GAP: Duration = Duration::from_secs(1);

/// How long the replica has to reach a position after the gap.
const CONFIRM: Duration = Duration::from_secs(30);

/// The request for Litestream's control socket (HTTP over a Unix socket) to sync `db`. Pure.
pub fn sync_request(db: &Path, wait: Option<Duration>) -> String {
    let body = match wait {
        Some(t) => serde_json::json!({"path": db, "wait": true, "timeout": t.as_secs()}),
        None => serde_json::json!({"path": db}),
    }
    .to_string();
    format!(
        "POST /sync HTTP/1.1\r\nHost: litestream\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Litestream's answer to a sync: (its local transaction id, the replica's). Pure.
pub fn parse_sync_answer(answer: &str) -> Result<(u64, Option<u64>)> {
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .context("Litestream's answer has no body")?;
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") {
        bail!("Litestream answered {status}: {}", body.trim());
    }
    let v: serde_json::Value =
        serde_json::from_str(body.trim()).context("Litestream's answer is not JSON")?;
    let txid = v["txid"]
        .as_u64()
        .context("Litestream's answer has no txid")?;
    Ok((txid, v["replicated_txid"].as_u64()))
}

/// A transaction id as Litestream writes and reads it (`-txid`): 16 hex digits. Pure.
pub fn txid_text(txid: u64) -> String {
    format!("{txid:016x}")
}

fn sync(
    socket: &Path,
    db: &Path,
    wait: Option<Duration>,
    within: Duration,
) -> Result<(u64, Option<u64>)> {
    let mut s = UnixStream::connect(socket)
        .with_context(|| format!("Litestream does not answer on {}", socket.display()))?;
    s.set_read_timeout(Some(within))?;
    s.set_write_timeout(Some(within))?;
    s.write_all(sync_request(db, wait).as_bytes())?;
    let mut answer = String::new();
    s.take(64 << 10)
        .read_to_string(&mut answer)
        .context("no answer from Litestream in time")?;
    parse_sync_answer(&answer)
}

impl Replication<'_> {
    /// In the gap: each database's position in Litestream's log now (see the module's text);
    /// none without `replicate:` or when Litestream does not answer at once.
    pub(crate) fn replica_positions(
        &self,
        rels: &[PathBuf],
    ) -> Option<BTreeMap<String, ReplicaPosition>> {
        self.config.replicate.as_ref()?;
        let socket = self.litestream_socket();
        let shared = self.layout.shared();
        let positions: BTreeMap<String, ReplicaPosition> = rels
            .iter()
            .filter_map(|rel| {
                let (txid, _) = sync(&socket, &shared.join(rel), None, IN_GAP).ok()?;
                Some((
                    rel.display().to_string(),
                    ReplicaPosition {
                        txid: txid_text(txid),
                        confirmed_at: None,
                    },
                ))
            })
            .collect();
        (!positions.is_empty()).then_some(positions)
    }

    /// After the gap: the replica brought to each position recorded beside the snapshot `dir`,
    /// and the manifest says when. A position not reached is said, not an error: the snapshot
    /// is the way back.
    pub(crate) fn confirm_replica(&self, dir: &Path) {
        let Ok(mut manifest) = Manifest::read(dir) else {
            return;
        };
        let Some(positions) = manifest.replica.as_mut() else {
            return;
        };
        let socket = self.litestream_socket();
        let mut said = Vec::new();
        for (rel, pos) in positions
            .iter_mut()
            .filter(|(_, p)| p.confirmed_at.is_none())
        {
            let db = self.layout.shared().join(rel);
            let reached = sync(
                &socket,
                &db,
                Some(CONFIRM),
                CONFIRM + Duration::from_secs(5),
            )
            .and_then(|(_, replicated)| {
                let want = u64::from_str_radix(&pos.txid, 16)?;
                match replicated {
                    Some(r) if r >= want => Ok(()),
                    r => bail!(
                        "the replica is at {}",
                        r.map(txid_text).unwrap_or("?".into())
                    ),
                }
            });
            match reached {
                Ok(()) => {
                    pos.confirmed_at = Some(crate::sys::now());
                    said.push(format!("{rel} at {}", pos.txid));
                }
                Err(e) => self.ui.warn(&format!(
                    "replica: {rel} has not reached the position at the stop ({}) within {}s: \
                     {e:#}; the snapshot in {} is the way back",
                    pos.txid,
                    CONFIRM.as_secs(),
                    dir.display()
                )),
            }
        }
        if let Err(e) = manifest.write(dir) {
            self.ui.warn(&format!("replica: {e:#}"));
        } else if !said.is_empty() {
            self.ui.detail(&format!(
                "   the replica holds the data at the stop: {}",
                said.join(", ")
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_is_asked_and_read_as_litestream_speaks_it() {
        let r = sync_request(Path::new("/srv/app/shared/data/app.db"), None);
        assert!(r.starts_with("POST /sync HTTP/1.1\r\n"), "{r}");
        assert!(
            r.ends_with("\r\n\r\n{\"path\":\"/srv/app/shared/data/app.db\"}"),
            "{r}"
        );
        assert!(r.contains("Content-Length: 38\r\n"), "{r}");
        let w = sync_request(Path::new("/a.db"), Some(Duration::from_secs(30)));
        assert!(
            w.contains("\"wait\":true") && w.contains("\"timeout\":30"),
            "{w}"
        );

        let ok = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 85\r\n\r\n\
                  {\"status\":\"synced\",\"path\":\"/a.db\",\"txid\":18,\"replicated_txid\":17}";
        assert_eq!(parse_sync_answer(ok).unwrap(), (18, Some(17)));
        let no =
            "HTTP/1.1 500 Internal Server Error\r\n\r\n{\"error\":\"database not found: /a.db\"}";
        let e = parse_sync_answer(no).unwrap_err().to_string();
        assert!(e.contains("database not found"), "{e}");
        assert_eq!(txid_text(18), "0000000000000012");
    }
}
