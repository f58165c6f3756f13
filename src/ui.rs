//! What the user sees: one line per step with its outcome and duration, on stderr.

use std::io::Write;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, Default)]
pub struct Ui {
    pub verbose: bool,
    pub quiet: bool,
}

pub fn fmt_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

impl Ui {
    /// Runs one step, printing its name, then `ok` or `failed` and how long it took.
    pub fn step<T>(&self, name: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
        let start = Instant::now();
        if !self.quiet {
            eprint!("-> {name} ...");
            if self.verbose {
                eprintln!();
            }
            let _ = std::io::stderr().flush();
        }
        let result = f();
        if !self.quiet {
            let took = fmt_duration(start.elapsed());
            let word = if result.is_ok() { "ok" } else { "failed" };
            if self.verbose {
                eprintln!("   {name}: {word} ({took})");
            } else {
                eprintln!(" {word} ({took})");
            }
        }
        result
    }

    pub fn info(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }

    /// A line shown with `-v` only.
    pub fn detail(&self, msg: &str) {
        if self.verbose {
            eprintln!("{msg}");
        }
    }

    /// Asks a yes/no question on the terminal; without one (CI, a pipe) the answer is no.
    pub fn ask(&self, question: &str) -> anyhow::Result<bool> {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            return Ok(false);
        }
        eprint!("{question} [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
    }

    pub fn warn(&self, msg: &str) {
        eprintln!("warning: {msg}");
    }
}
