//! SIGINT, SIGTERM and SIGHUP (a closed terminal) during a release or rollback: the command is not killed mid-step. Before
//! the swap it stops at the next step boundary, changing nothing live; once the swap has begun it
//! finishes the swap (or puts the previous release back) and then exits.
//!
//! Also the test hook of the fault-injection suite: `DEPLOY_TEST_HOOK=kill@STEP` SIGKILLs this
//! process when it reaches STEP, `sleep@STEP` pauses there for 2 s (for sending a signal then;
//! `sleep@STEP` given n times pauses 2n s).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// From now on SIGINT, SIGTERM and SIGHUP set a flag instead of ending the process.
pub fn defer() {
    INTERRUPTED.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
        ] {
            let _ = signal_hook::flag::register(sig, Arc::clone(&flag));
        }
        flag
    });
}

/// Whether SIGINT or SIGTERM has arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.get().is_some_and(|f| f.load(Ordering::SeqCst))
}

/// Fails when interrupted: for the step boundaries before the swap.
pub fn check(before: &str) -> anyhow::Result<()> {
    if interrupted() {
        return Err(crate::exit::with(
            crate::exit::Code::Interrupted,
            anyhow::anyhow!(
                "interrupted before {before}: nothing live was changed (an upload is resumed by \
                 the next release)"
            ),
        ));
    }
    Ok(())
}

/// A gap outside a swap (setup moving a live app), for the test hook: once Traefik routes to
/// the gap server, before the app is stopped.
pub const GAP_POINTS: &[&str] = &["in-gap"];

/// The steps of `migrate-data`, for the test hook.
pub const MIGRATE_STEPS: &[&str] = &[
    "migrate-after-plan",
    "migrate-after-rename",
    "migrate-after-copy",
    "migrate-after-shared",
    "migrate-after-release-files",
];

/// The points inside a snapshot's steps, for the test hook: after a database's copy before
/// the stop is written (before its sync), and half-way through bringing one up to date in the
/// gap.
pub const SNAPSHOT_POINTS: &[&str] = &["in-pre-copy", "in-snapshot"];

/// A named point of a gap, a migrate-data or a snapshot ([`GAP_POINTS`], [`MIGRATE_STEPS`],
/// [`SNAPSHOT_POINTS`]); does something only under `DEPLOY_TEST_HOOK`.
pub fn point(step: &str) {
    debug_assert!(
        GAP_POINTS.contains(&step)
            || MIGRATE_STEPS.contains(&step)
            || SNAPSHOT_POINTS.contains(&step),
        "unknown step {step}"
    );
    reach(step);
}

/// The point after a stage of a release or a step of its swap: `after-<its name>` (one of
/// the release's `Stage::name`s or the swap's `Step::name`s).
pub fn after(name: &str) {
    reach(&format!("after-{name}"));
}

/// Does what `DEPLOY_TEST_HOOK` asks at `step`, if anything.
fn reach(step: &str) {
    let Ok(spec) = std::env::var("DEPLOY_TEST_HOOK") else {
        return;
    };
    // `kill@after-stop#2`: at the second time this run reaches the point (a put-back's stop).
    static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let nth = {
        let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
        seen.push(step.to_string());
        seen.iter().filter(|s| *s == step).count()
    };
    let here = |at: &str| match at.split_once('#') {
        Some((point, n)) => point == step && n.parse() == Ok(nth),
        None => at == step,
    };
    for part in spec.split(',') {
        match part.split_once('@') {
            Some(("kill", at)) if here(at) => {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &std::process::id().to_string()])
                    .status();
                std::thread::sleep(std::time::Duration::from_secs(60));
            }
            Some(("sleep", at)) if here(at) => {
                std::thread::sleep(std::time::Duration::from_secs(2));
            }
            _ => {}
        }
    }
}
