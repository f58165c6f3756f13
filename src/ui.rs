//! What the user sees. Each step: its name, its outcome and its duration, on stderr. On a
//! terminal the running step shows a live line with its time so far (and `ok`/`failed` in colour
//! unless `NO_COLOR` is set); otherwise plain lines, no escape codes. With `--json`, one JSON
//! object per line on stdout instead (see the README for the events).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, Default)]
pub struct Ui {
    pub verbose: bool,
    pub quiet: bool,
    pub json: bool,
    /// `--color`: auto (a terminal, and no NO_COLOR), always, never.
    pub color: crate::cli::Color,
}

pub fn fmt_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

/// Whether stderr is a terminal that may get a live line and colours.
fn live_terminal() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("TERM").is_some_and(|t| t != "dumb")
}

fn colour(word: &str, ok: bool, choice: crate::cli::Color) -> String {
    use crate::cli::Color;
    let auto = || std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && live_terminal();
    let on = match choice {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => auto(),
    };
    if !on {
        return word.to_string();
    }
    format!("\x1b[{}m{word}\x1b[0m", if ok { 32 } else { 31 })
}

/// One line of JSON on stdout.
fn emit(value: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// The live line of a running step: a thread that redraws it every 100 ms until stopped.
struct Ticker {
    done: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    fn start(name: &str, start: Instant) -> Ticker {
        let done = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let (d, n) = (Arc::clone(&done), name.to_string());
        let thread = std::thread::spawn(move || {
            let (lock, wake) = &*d;
            let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
            while !*stopped {
                let _ = write!(
                    std::io::stderr(),
                    "\r\x1b[2K-> {n} ... {:.1}s",
                    start.elapsed().as_secs_f64()
                );
                stopped = wake
                    .wait_timeout(stopped, Duration::from_millis(100))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        });
        Ticker {
            done,
            thread: Some(thread),
        }
    }

    /// Stops redrawing at once (the thread is woken, not waited for a tick).
    fn stop(mut self) {
        let (lock, wake) = &*self.done;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
        // Joined here: it holds the lock only while drawing, which takes microseconds.
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Ui {
    /// Runs one step, showing its name, then `ok` or `failed` and how long it took.
    pub fn step<T>(&self, name: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
        let start = Instant::now();
        if self.json {
            let result = f();
            emit(serde_json::json!({
                "event": "step",
                "step": name,
                "outcome": if result.is_ok() { "ok" } else { "failed" },
                "ms": start.elapsed().as_millis() as u64,
            }));
            return result;
        }
        if self.quiet {
            return f();
        }
        let live = !self.verbose && live_terminal();
        let ticker = live.then(|| Ticker::start(name, start));
        if !live {
            let _ = write!(std::io::stderr(), "-> {name} ...");
            if self.verbose {
                let _ = writeln!(std::io::stderr());
            }
            let _ = std::io::stderr().flush();
        }
        let result = f();
        // The step's time is read before any UI work, and ending the live line never waits
        // for its thread's next tick: the thread is woken and joined at once, so its last
        // draw cannot overwrite the result.
        let took = fmt_duration(start.elapsed());
        if let Some(t) = ticker {
            t.stop();
        }
        let word = colour(
            if result.is_ok() { "ok" } else { "failed" },
            result.is_ok(),
            self.color,
        );
        let line = if live {
            format!("\r\x1b[2K-> {name} ... {word} ({took})")
        } else if self.verbose {
            format!("   {name}: {word} ({took})")
        } else {
            format!(" {word} ({took})")
        };
        let _ = writeln!(std::io::stderr(), "{line}");
        result
    }

    pub fn info(&self, msg: &str) {
        if self.json {
            emit(serde_json::json!({"event": "info", "message": msg.trim()}));
        } else if !self.quiet {
            let _ = writeln!(std::io::stderr(), "{msg}");
        }
    }

    /// A line shown with `-v` only.
    pub fn detail(&self, msg: &str) {
        if self.verbose && !self.json {
            let _ = writeln!(std::io::stderr(), "{msg}");
        }
    }

    /// The end of a command that changed something: a line for people (shown even with `-q`),
    /// or the `done` event with its facts.
    pub fn done(&self, msg: &str, facts: serde_json::Value) {
        if self.json {
            let mut event = serde_json::json!({"event": "done", "message": msg});
            if let (Some(e), serde_json::Value::Object(f)) = (event.as_object_mut(), facts) {
                e.extend(f);
            }
            emit(event);
        } else {
            let _ = writeln!(std::io::stderr(), "{msg}");
        }
    }

    /// Asks a yes/no question on the terminal; without one (CI, a pipe) the answer is no.
    pub fn ask(&self, question: &str) -> anyhow::Result<bool> {
        if self.json || !std::io::stdin().is_terminal() {
            return Ok(false);
        }
        eprint!("{question} [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
    }

    pub fn warn(&self, msg: &str) {
        if self.json {
            emit(serde_json::json!({"event": "warning", "message": msg}));
        } else {
            let _ = writeln!(std::io::stderr(), "warning: {msg}");
        }
    }
}
