//! Exit codes (documented in the README and in `deploy --help`), carried by errors.

/// What a failed command's exit code says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Something failed; the message says what, and what to do.
    Failed = 1,
    /// The configuration is invalid (or missing).
    Config = 3,
    /// Another deploy holds the app's lock on the node.
    Locked = 4,
    /// The new release failed to start or its health check, and what was live before is back.
    RolledBack = 5,
    /// Interrupted (SIGINT/SIGTERM): stopped before the swap, or finished it first.
    Interrupted = 6,
    /// `deploy verify`: a backup failed its check (a database missing from the replica,
    /// corrupt, or too far behind).
    BackupFailed = 7,
}

/// An error with an exit code; it shows as the error it wraps.
#[derive(Debug)]
pub struct Coded {
    pub code: i32,
    pub error: anyhow::Error,
}

impl std::fmt::Display for Coded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for Coded {}

pub fn with(code: Code, error: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(Coded {
        code: code as i32,
        error,
    })
}

/// The node's deploy (over SSH) failed with `code` and has said why already.
pub fn remote(code: i32, destination: &str) -> anyhow::Error {
    anyhow::Error::new(Coded {
        code,
        error: anyhow::anyhow!("the command failed on {destination} (exit code {code}, see above)"),
    })
}

/// A failure that was said already (the node-side run's own output, relayed): its code only.
#[derive(Debug)]
pub struct Said(pub i32);

impl std::fmt::Display for Said {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the node-side run failed (exit code {}, see above)",
            self.0
        )
    }
}

impl std::error::Error for Said {}

pub fn said(code: i32) -> anyhow::Error {
    anyhow::Error::new(Said(code))
}

/// Whether the error was said already, so that nothing more is printed.
pub fn already_said(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Said>().is_some()
}

/// The exit code for an error: the first code found in its chain, else 1.
pub fn code_of(e: &anyhow::Error) -> i32 {
    e.chain()
        .find_map(|c| {
            c.downcast_ref::<Coded>()
                .map(|c| c.code)
                .or_else(|| c.downcast_ref::<Said>().map(|s| s.0))
        })
        .unwrap_or(Code::Failed as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_code_survives_context_and_the_message_reads_as_before() {
        let e = with(Code::Locked, anyhow::anyhow!("held by pid 7"));
        let e: anyhow::Result<()> = Err(e);
        let e = e.context("cannot release").unwrap_err();
        assert_eq!(code_of(&e), 4);
        assert_eq!(format!("{e:#}"), "cannot release: held by pid 7");
        assert_eq!(code_of(&anyhow::anyhow!("plain")), 1);
    }
}
