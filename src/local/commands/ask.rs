//! What a command asks here, where there is a terminal, before the node acts: the node side
//! runs detached, or over SSH, and cannot ask.

use crate::cli::RollbackArgs;
use crate::node::rollback::{refusal, DataChoice, DataQuestion};
use crate::ui::Ui;
use crate::version::Version;
use anyhow::{bail, Result};

/// The rollback the node runs, with what was asked here, where there is a terminal (the node
/// side runs detached, or over SSH, and cannot ask): `--with-data` confirmed, and, when the
/// schema of the data changed since the target left it and neither `--with-data` nor
/// `--keep-data` was given, which of the two (`question` reads that from the node; the answer
/// names the target, so it is the one the node checks again). Without a terminal nothing is
/// asked: the node refuses what needs an answer.
pub(super) fn rollback_answers(
    ui: Ui,
    a: &RollbackArgs,
    env: &str,
    question: impl FnOnce() -> Result<Option<DataQuestion>>,
) -> Result<RollbackArgs> {
    if a.dry_run || a.data_question {
        return Ok(a.clone());
    }
    if DataChoice::from(a) != DataChoice::Unsaid {
        confirm_with_data(ui, a, env)?;
        return Ok(a.clone());
    }
    if !ui.can_ask() {
        return Ok(a.clone());
    }
    let Some(q) = question()? else {
        return Ok(a.clone());
    };
    let mut answered = RollbackArgs {
        to: Some(Version::new(&q.target)?),
        ..a.clone()
    };
    match ui.choose(&q.text, &["--with-data", "--keep-data"])? {
        Some(0) => (answered.with_data, answered.yes) = (true, true),
        Some(1) => answered.keep_data = true,
        _ => return Err(refusal(&q)),
    }
    Ok(answered)
}

/// `rollback --with-data` replaces the data: asked here, where there is a terminal (the node
/// side runs detached, or over SSH, and cannot ask).
fn confirm_with_data(ui: Ui, a: &RollbackArgs, env: &str) -> Result<()> {
    if !a.with_data || a.yes || a.dry_run {
        return Ok(());
    }
    let question = format!(
        "--with-data replaces the SQLite data on {env} with what {} left (the data there now is \
         kept as a snapshot). Go on?",
        a.to.as_deref().unwrap_or("the previous release")
    );
    if !ui.ask(&question)? {
        bail!(
            "--with-data not confirmed, nothing changed (pass --yes to confirm without a prompt)"
        );
    }
    Ok(())
}

/// `remove --data/--all` deletes data: asked where there is a terminal (here), unless --yes.
pub(super) fn confirm_removal(ui: Ui, a: &crate::cli::RemoveArgs, env: &str) -> Result<()> {
    if !(a.data || a.all) || a.yes || a.dry_run {
        return Ok(());
    }
    let question = crate::node::remove::question(a.into(), env, None);
    if !ui.ask(&question)? {
        bail!(
            "not confirmed, nothing was removed (`--dry-run` lists what would go; pass --yes to \
             confirm without a prompt)"
        );
    }
    Ok(())
}
