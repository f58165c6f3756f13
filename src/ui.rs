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
    pub color: Color,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Color {
    #[default]
    Auto,
    Always,
    Never,
}

/// Writes `text` on stdout; a closed pipe comes back as an error ([`broken_pipe`]).
pub fn print(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Whether an error is a closed pipe (`deploy man | head`): the reader has what it wanted.
pub fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
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

fn colour(word: &str, ok: bool, choice: Color) -> String {
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

/// The terminal's width in columns (80 when it cannot say).
fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ writes a `winsize` into the struct it is given, nothing else.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 {
        usize::from(ws.ws_col)
    } else {
        80
    }
}

/// The live line `-> NAME ... 1.2s`, its name shortened (`…`) to fit `width` columns: a longer
/// line would wrap, and each redraw (which clears one row) would leave its first rows behind.
/// Pure.
fn live_line(name: &str, secs: f64, width: usize) -> String {
    let tail = format!(" ... {secs:.1}s");
    let room = width.saturating_sub(1 + 3 + tail.chars().count());
    let name = if name.chars().count() <= room {
        name.to_string()
    } else {
        let keep: String = name.chars().take(room.saturating_sub(1)).collect();
        format!("{keep}…")
    };
    format!("-> {name}{tail}")
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
                let line = live_line(&n, start.elapsed().as_secs_f64(), terminal_width());
                let _ = write!(std::io::stderr(), "\r\x1b[2K{line}");
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
        let word = self.outcome(result.is_ok());
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

    /// A step's outcome, `ok` or `failed`, in colour when colours are on.
    fn outcome(&self, ok: bool) -> String {
        colour(if ok { "ok" } else { "failed" }, ok, self.color)
    }

    /// A step whose child writes to this terminal itself (the build command, a local hook):
    /// no live line then, which would draw over the child's own output (its progress bars);
    /// the step's name on a line before, its outcome on a line after.
    pub fn step_out<T>(
        &self,
        name: &str,
        f: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        if self.json || self.quiet {
            return self.step(name, f);
        }
        let start = Instant::now();
        let _ = writeln!(std::io::stderr(), "-> {name} ...");
        let result = f();
        let took = fmt_duration(start.elapsed());
        let word = self.outcome(result.is_ok());
        let _ = writeln!(std::io::stderr(), "   {name}: {word} ({took})");
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

    /// Whether a question can be asked: a terminal to answer on, and no `--json`.
    pub fn can_ask(&self) -> bool {
        !self.json && std::io::stdin().is_terminal()
    }

    /// Asks a yes/no question on the terminal; without one (CI, a pipe) the answer is no.
    pub fn ask(&self, question: &str) -> anyhow::Result<bool> {
        if !self.can_ask() {
            return Ok(false);
        }
        eprint!("{question} [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
    }

    /// Asks which of `choices` to take, each answered by its number (1, 2...); none without a
    /// terminal, or when the answer names none of them.
    pub fn choose(&self, question: &str, choices: &[&str]) -> anyhow::Result<Option<usize>> {
        if !self.can_ask() {
            return Ok(None);
        }
        let numbers: Vec<String> = (1..=choices.len()).map(|n| n.to_string()).collect();
        let options: Vec<String> = choices
            .iter()
            .zip(&numbers)
            .map(|(c, n)| format!("{n}: {c}"))
            .collect();
        eprint!(
            "{question}\n{}, anything else: neither? ",
            options.join(", ")
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        Ok(chosen(&answer, choices))
    }

    pub fn warn(&self, msg: &str) {
        if self.json {
            emit(serde_json::json!({"event": "warning", "message": msg}));
        } else {
            let _ = writeln!(std::io::stderr(), "warning: {msg}");
        }
    }
}

/// Which of `choices` an answer names: its number, or the choice itself. Pure.
fn chosen(answer: &str, choices: &[&str]) -> Option<usize> {
    let a = answer.trim();
    choices
        .iter()
        .enumerate()
        .find(|(i, c)| a == (i + 1).to_string() || a == **c)
        .map(|(i, _)| i)
}

/// Text shown inside a plan (`--dry-run`), each line behind `    | `.
pub fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    | {l}\n")).collect()
}

/// One line of a plan (`--dry-run`): the step's name, then what it does.
pub fn line(out: &mut String, name: &str, what: impl std::fmt::Display) {
    use std::fmt::Write;
    let _ = writeln!(out, "  {:<11}{what}", format!("{name}:"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_names_a_choice_by_number_or_by_name() {
        let c = ["--with-data", "--keep-data"];
        assert_eq!(chosen("1\n", &c), Some(0));
        assert_eq!(chosen(" --keep-data ", &c), Some(1));
        assert_eq!(chosen("", &c), None);
        assert_eq!(chosen("y", &c), None);
    }

    #[test]
    fn the_live_line_fits_the_terminal() {
        assert_eq!(
            live_line("Stopping a.service", 1.25, 80),
            "-> Stopping a.service ... 1.2s"
        );
        let long = "Building image localhost/a-rather-long-app-name_production:v2026.11.24";
        for width in [20, 40, 60] {
            let line = live_line(long, 12.0, width);
            assert!(line.chars().count() < width, "{width}: {line}");
            assert!(line.ends_with("… ... 12.0s"), "{line}");
        }
        // A terminal too narrow for anything: the time still shows.
        assert!(live_line(long, 1.0, 5).ends_with(" ... 1.0s"));
    }
}
