//! A hold by hand: `deploy lock acquire -m MESSAGE` keeps deploy's changing commands off an
//! environment (a migration done by hand, an incident) until `deploy lock release`. It is a
//! file on the server, `.deploy/hold-by-hand`, with the message, who took it and since when:
//! it outlives the command that took it, unlike the deploy lock (a flock held while a command
//! runs). Every command that takes the deploy lock through [`Node::lock`] refuses while it is
//! there (exit 4), and `--lock-wait` never waits for it: a hold by hand ends by hand.

use crate::exit::{self, Code};
use crate::node::Node;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file of a hold by hand, in `.deploy/`.
pub const FILE: &str = "hold-by-hand";

/// A hold by hand: why, who, since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub message: String,
    pub who: String,
    pub since: String,
}

impl Hold {
    /// `"MESSAGE" (by WHO since SINCE)`. Pure.
    pub fn describe(&self) -> String {
        format!(
            "\"{}\" (by {} since {})",
            self.message, self.who, self.since
        )
    }
}

/// The hold in `path`, if there is one.
pub fn read(path: &Path) -> Result<Option<Hold>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| {
            format!(
                "{} is not a hold by hand deploy wrote: look at it, then remove it to end the \
                 hold",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The refusal of `what` while `hold` holds `env` (exit 4). Pure.
pub fn refusal(what: &str, env: &str, hold: &Hold) -> anyhow::Error {
    exit::with(
        Code::Locked,
        anyhow!(
            "`{what}` refused: {env} is held by hand: {}. Nothing was changed; `deploy lock \
             release {env}` ends the hold (--lock-wait does not wait for it)",
            hold.describe()
        ),
    )
}

/// `deploy lock acquire|release --dry-run` (`message`: an acquire), with the hold there is
/// now. Pure.
pub fn plan(app: &str, env: &str, message: Option<&str>, now: Option<&Hold>) -> String {
    let what = match (message, now) {
        (Some(_), Some(h)) => format!("refused: {env} is held by hand already: {}", h.describe()),
        (Some(m), None) => format!(
            "hold {app} on {env} by hand: \"{m}\" (in .deploy/{FILE}) until `deploy lock \
             release {env}`"
        ),
        (None, Some(h)) => format!("end the hold {}", h.describe()),
        (None, None) => format!("nothing: {env} is not held"),
    };
    format!("Plan: {what}\nDry run: nothing was changed.\n")
}

/// `deploy lock status`: the hold, if any.
#[derive(Debug, Serialize)]
pub struct HoldStatus {
    pub app: String,
    pub environment: String,
    pub held: bool,
    pub hold: Option<Hold>,
}

impl HoldStatus {
    /// For people. Pure.
    pub fn text(&self) -> String {
        match &self.hold {
            Some(h) => format!(
                "{} on {} is held by hand: {}\n`deploy lock release {}` ends it\n",
                self.app,
                self.environment,
                h.describe(),
                self.environment
            ),
            None => format!("{} on {} is not held\n", self.app, self.environment),
        }
    }
}

impl Node<'_> {
    fn hold_by_hand_file(&self) -> PathBuf {
        self.layout.meta().join(FILE)
    }

    /// The hold by hand on this environment, if any.
    pub(crate) fn held_by_hand(&self) -> Result<Option<Hold>> {
        read(&self.hold_by_hand_file())
    }

    /// Fails (exit 4) while the environment is held by hand: the one check that every command
    /// taking the deploy lock for a change passes.
    pub(crate) fn refuse_if_held(&self, what: &str) -> Result<()> {
        match self.held_by_hand()? {
            Some(hold) => Err(refusal(what, &self.env_name, &hold)),
            None => Ok(()),
        }
    }

    /// `deploy lock acquire -m MESSAGE`: the hold, written under the deploy lock (a command
    /// running now finishes first, or `--lock-wait` waits for it).
    pub fn hold_acquire(&self, message: &str) -> Result<()> {
        let message = message.trim();
        if message.is_empty() || message.chars().any(char::is_control) {
            bail!(
                "the message of a hold is one line of text that says why (e.g. -m \"migrating \
                 orders by hand\")"
            );
        }
        self.require_setup()?;
        let _lock = self.take_lock(&format!("deploy lock acquire {}", self.env_name))?;
        if let Some(hold) = self.held_by_hand()? {
            return Err(exit::with(
                Code::Locked,
                anyhow!(
                    "{} is held by hand already: {}. `deploy lock release {}` ends that hold \
                     first",
                    self.env_name,
                    hold.describe(),
                    self.env_name
                ),
            ));
        }
        let hold = Hold {
            message: message.to_string(),
            who: crate::node::state::Origin::current()
                .who
                .unwrap_or_else(|| "?".into()),
            since: crate::sys::now(),
        };
        let text = serde_json::to_vec_pretty(&hold)?;
        crate::sys::fsx::write_atomic(&self.hold_by_hand_file(), &text, 0o600)?;
        self.ui.done(
            &format!(
                "{} on {} is held by hand: {} (`deploy lock release {}` ends it)",
                self.config.app,
                self.env_name,
                hold.describe(),
                self.env_name
            ),
            serde_json::json!({"action": "lock-acquire", "environment": self.env_name,
                "message": hold.message, "who": hold.who, "since": hold.since}),
        );
        Ok(())
    }

    /// `deploy lock release`: the hold ends (none: said so, not an error).
    pub fn hold_release(&self) -> Result<()> {
        self.require_setup()?;
        let _lock = self.take_lock(&format!("deploy lock release {}", self.env_name))?;
        let hold = self.held_by_hand()?;
        if hold.is_some() {
            crate::sys::fsx::remove_durable(&self.hold_by_hand_file())?;
        }
        let msg = match &hold {
            Some(h) => format!(
                "{} on {} is no longer held (was {})",
                self.config.app,
                self.env_name,
                h.describe()
            ),
            None => format!(
                "{} on {} was not held: nothing to release",
                self.config.app, self.env_name
            ),
        };
        self.ui.done(
            &msg,
            serde_json::json!({"action": "lock-release", "environment": self.env_name,
                "was_held": hold.is_some()}),
        );
        Ok(())
    }

    /// `deploy lock acquire|release --dry-run`: what it would do (`message`: an acquire).
    pub fn hold_plan(&self, message: Option<&str>) -> Result<String> {
        self.require_setup()?;
        Ok(plan(
            &self.config.app,
            &self.env_name,
            message,
            self.held_by_hand()?.as_ref(),
        ))
    }

    /// `deploy lock status`.
    pub fn hold_report(&self) -> Result<HoldStatus> {
        self.require_setup()?;
        let hold = self.held_by_hand()?;
        Ok(HoldStatus {
            app: self.config.app.clone(),
            environment: self.env_name.clone(),
            held: hold.is_some(),
            hold,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_says_why_who_and_since_when() {
        let h = Hold {
            message: "fixing orders".into(),
            who: "ann@laptop".into(),
            since: "2026-11-24T06:00:00Z".into(),
        };
        let e = refusal("deploy release v2 prod", "prod", &h);
        assert_eq!(exit::code_of(&e), 4);
        let said = format!("{e:#}");
        assert!(
            said.contains("prod is held by hand: \"fixing orders\" (by ann@laptop since 2026-11-24T06:00:00Z)"),
            "{said}"
        );
        assert!(said.contains("`deploy lock release prod`"), "{said}");
        let s = HoldStatus {
            app: "shop".into(),
            environment: "prod".into(),
            held: true,
            hold: Some(h),
        };
        assert!(s
            .text()
            .starts_with("shop on prod is held by hand: \"fixing orders\""));
        let p = plan("shop", "prod", None, s.hold.as_ref());
        assert!(p.starts_with("Plan: end the hold \"fixing orders\""), "{p}");
        let p = plan("shop", "prod", Some("why"), None);
        assert!(p.contains("hold shop on prod by hand: \"why\""), "{p}");
    }
}
