//! `deploy bootstrap --local USER`: this machine made a node for USER, as root, with no SSH and
//! no config: the same steps, checks and refusals as a bootstrap over SSH, run here with `sh`.
//! It stops before `deploy setup`, which the user runs in the project. `scripts/node-setup`
//! makes the tests' node with it (`--test-node`, [`super::testnode`]).

use super::programs::{self, Scratch};
use super::runner::RootSession;
use super::steps::{self, Wants};
use super::{
    check_podman, check_server, dry_run_done, key_label, make_node, read_public_key, server_notes,
    testnode, wanted, BootstrapArgs,
};
use crate::ui::Ui;
use anyhow::{anyhow, bail, Result};

/// Runs `deploy bootstrap --local USER`.
pub fn run(a: &BootstrapArgs, user: &str, ui: Ui) -> Result<()> {
    steps::check_user_name(user).map_err(|e| anyhow!("--local {user}: {e}"))?;
    let key = a.key.as_deref().map(read_public_key).transpose()?;
    ui.info(&format!(
        "Bootstrapping this machine for the deploy user {user}{}",
        if a.test_node {
            " (the tests' node)"
        } else {
            ""
        }
    ));
    if let (Some(k), Some(path)) = (&key, &a.key) {
        ui.info(&format!(
            "   the key: {} (from {})",
            key_label(k),
            path.display()
        ));
    }
    let root = RootSession::Local;
    let facts = ui.step("Reading this machine", || root.probe())?;
    let server = check_server(&facts, user)?;
    if let Some(why) = a
        .test_node
        .then(|| testnode::refusal(server.family))
        .flatten()
    {
        bail!("{why}");
    }
    let mut scratch = Scratch::default();
    let wants = Wants {
        user: user.to_string(),
        key,
        uploads: programs::uploads(&wanted(a, &[]), &facts, &mut scratch, ui)?,
        low_port: None,
        public_ports: Vec::new(),
        test_node: a.test_node,
    };
    for note in server_notes(&server, None) {
        ui.info(&note);
    }
    let changed = make_node(&root, &server, &wants, a.dry_run, ui)?;
    let then = format!("then, as {user}, in the project: deploy setup ENV");
    if a.dry_run {
        dry_run_done(&then, changed, ui);
        return Ok(());
    }
    check_podman(&root, user, ui)?;
    ui.done(
        &format!("This machine is a node for {user}: {then}"),
        serde_json::json!({"action": "bootstrap", "local": true, "user": user, "changed": changed}),
    );
    Ok(())
}
