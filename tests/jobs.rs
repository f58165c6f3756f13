//! `jobs:` on a real node: each job a user timer; a run is a one-off container of the live
//! release, made through the fence. A job every 2 s while releases go on under load writes its
//! rows as each new release and never as the old one after the new one answered, nor while a
//! hook works in the gap; timers follow the config; `deploy jobs`, `deploy status` and `deploy
//! logs --job` say how runs went; concurrency forbid skips a run while one goes, replace stops
//! it; `deploy jobs run` runs one now, and a run out of time has its container removed.

mod common;
use common::{Options, Project};
use std::time::{Duration, Instant};

/// A job every 2 s writing one row tagged `job-<the release it ran as>`.
const STAMP: &str = "  stamp:\n    schedule: \"*:*:0/2\"\n    command: [/app/example-app, write-row-version, job-]\n";

fn number(p: &Project, query: &str) -> i64 {
    p.sql(query).parse().unwrap_or(0)
}

fn rows(p: &Project, tag: &str) -> i64 {
    if !p.root().join("shared/data/app.db").exists() {
        return 0;
    }
    number(
        p,
        &format!("SELECT COUNT(*) FROM hits WHERE version = '{tag}'"),
    )
}

/// The runs of `job` as `.deploy/jobs.json` records them, oldest first.
fn runs(p: &Project, job: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(p.root().join(".deploy/jobs.json")).unwrap_or_default();
    let all: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    all["jobs"][job].as_array().cloned().unwrap_or_default()
}

#[track_caller]
fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The job's containers in the test environment now.
fn containers_of(p: &Project, job: &str) -> Vec<String> {
    let r = p.user(
        "podman",
        &[
            "ps",
            "--all",
            "--filter",
            &format!("label={}", p.names().writer_label()),
            "--format",
            "{{.Names}} {{index .Labels \"deploy.job\"}}",
        ],
    );
    r.stdout
        .lines()
        .filter(|l| l.ends_with(&format!(" {job}")))
        .map(String::from)
        .collect()
}

/// GET / on the app in a loop (each answer is a row tagged with the release), until stopped.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl Load {
    fn start(p: &Project) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let port = p.port;
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(5)))
                .proxy(None)
                .build()
                .into();
            let mut answered = 0;
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                if agent
                    .get(format!("http://127.0.0.1:{port}/"))
                    .call()
                    .is_ok()
                {
                    answered += 1;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            answered
        });
        Load { stop, thread }
    }

    #[track_caller]
    fn finish(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

#[test]
fn a_job_runs_as_the_live_release_and_never_in_a_swaps_gap() {
    let p = Project::new("t-job-swap", 18480, Options::default());
    p.add_to_config(&format!("jobs:\n{STAMP}"));
    p.deploy(&["setup"])
        .ok()
        .says("Checking the jobs' schedules ... ok")
        .says("Installing the jobs' timers ... ok");
    p.deploy(&["release", "v1"]).ok();
    wait_until("a row of the job as v1", Duration::from_secs(20), || {
        rows(&p, "job-v1") > 0
    });
    // Gaps of 4 s at least, a hook writing in them: the job comes due inside each.
    p.add_to_config("hooks:\n  in_gap:\n    - /app/example-app write-rows 500 4 gap\n");
    let load = Load::start(&p);
    for v in ["v2", "v3"] {
        p.deploy(&["release", v, "--lock-wait", "60s"]).ok();
        // A run that came due in the gap waited for the fence, then ran as the new release.
        wait_until(
            &format!("a run that waited for the fence of {v}, then ran as {v}"),
            Duration::from_secs(20),
            || waited_then_ran(&p, "stamp", v),
        );
    }
    wait_until("a row of the job as v3", Duration::from_secs(20), || {
        rows(&p, "job-v3") > 0
    });
    assert!(load.finish() > 50, "the app answered under load");
    let halted: Vec<_> = runs(&p, "stamp")
        .into_iter()
        .filter(|r| r["why"].as_str().is_some_and(|w| w.contains("halted")))
        .collect();
    assert!(halted.is_empty(), "a swap is no halt: {halted:?}");

    for (old, new) in [("v1", "v2"), ("v2", "v3")] {
        let first_new = number(
            &p,
            &format!("SELECT MIN(id) FROM hits WHERE version = '{new}'"),
        );
        let last_old = number(
            &p,
            &format!("SELECT MAX(id) FROM hits WHERE version = '{old}'"),
        );
        let last_old_job = number(
            &p,
            &format!("SELECT MAX(id) FROM hits WHERE version = 'job-{old}'"),
        );
        assert!(rows(&p, &format!("job-{new}")) > 0, "the job ran as {new}");
        assert!(
            last_old_job < first_new,
            "a row of the job as {old} (id {last_old_job}) after {new}'s first answer (id \
             {first_new})"
        );
        // The hook's rows of this gap, and no row of the job among them.
        let gap = format!("version = 'gap' AND id > {last_old} AND id < {first_new}");
        let (lo, hi) = (
            number(&p, &format!("SELECT MIN(id) FROM hits WHERE {gap}")),
            number(&p, &format!("SELECT MAX(id) FROM hits WHERE {gap}")),
        );
        assert!(lo > 0 && hi > lo, "the hook wrote in the gap of {new}");
        let in_gap = number(
            &p,
            &format!(
                "SELECT COUNT(*) FROM hits WHERE version LIKE 'job-%' AND id > {lo} AND id < {hi}"
            ),
        );
        assert_eq!(in_gap, 0, "the job wrote while {new}'s hook had the data");
    }
    let r = p.deploy(&["jobs"]).ok();
    r.prints("stamp").prints("*:*:0/2");
}

/// deploy's own lines in a job's log (`== <time> <job>: ...`), without the time.
fn notes(p: &Project, job: &str) -> Vec<String> {
    let log =
        std::fs::read_to_string(p.root().join(format!("log/job_{job}.log"))).unwrap_or_default();
    log.lines()
        .filter_map(|l| l.strip_prefix("== "))
        .filter_map(|l| l.split_once(' ').map(|(_, note)| note.to_string()))
        .collect()
}

/// Whether a run of `job` waited for the fence closed by the swap to `version`, and its run
/// then was of `version`.
fn waited_then_ran(p: &Project, job: &str, version: &str) -> bool {
    let notes = notes(p, job);
    let waited = notes
        .iter()
        .position(|n| n.starts_with(&format!("{job}: waited ")) && n.contains(version));
    waited.is_some_and(|at| {
        notes[at..]
            .iter()
            .find(|n| n.starts_with(&format!("{job}: run of ")))
            .is_some_and(|n| n.starts_with(&format!("{job}: run of {version} ")))
    })
}

/// The project's config with `jobs` as its jobs (written over the ones it had).
#[track_caller]
fn set_jobs(p: &Project, jobs: &str) {
    let config = std::fs::read_to_string(p.dir.join("deploy.yaml")).unwrap();
    let base = config.split("jobs:\n").next().unwrap();
    p.write("deploy.yaml", &format!("{base}jobs:\n{jobs}"));
}

fn is_active(p: &Project, unit: &str) -> String {
    p.user("systemctl", &["--user", "is-active", unit])
        .stdout
        .trim()
        .to_string()
}

#[test]
fn timers_follow_the_config_and_runs_are_listed_in_jobs_status_and_logs() {
    let p = Project::new("t-job-list", 18482, Options::default());
    p.write("assets/broken.sql", "SELECT * FROM no_such_table;");
    let broken = "  broken:\n    schedule: \"*:*:0/2\"\n    command: /app/example-app run-sql /app/assets/broken.sql\n";
    let nightly = "  nightly:\n    schedule: \"*-*-* 03:00\"\n    command: /app/example-app run-sql /app/assets/broken.sql\n";
    let slow = "  slow:\n    schedule: \"*-*-* 04:00\"\n    command: /app/example-app write-rows 100 60 slow\n    timeout: 2s\n";

    a_bad_schedule_stops_setup(&p);
    set_jobs(&p, &format!("{STAMP}{broken}{nightly}{slow}"));
    an_earlier_jobs_last_run_is_not_caught_up(&p, "nightly");
    p.deploy(&["setup"]).ok();
    let timer = |job: &str| p.names().job_timer(job);
    let unit_file = |job: &str| timer_file(&p, job);
    for job in ["stamp", "broken", "nightly", "slow"] {
        assert!(unit_file(job).is_file(), "{job}'s timer");
        assert_eq!(is_active(&p, &timer(job)), "active", "{job}'s timer");
    }
    a_skipped_run_then_an_ok_and_a_failed_one(&p);
    jobs_lists_schedules_and_last_runs(&p);
    a_failing_job_shows_in_status_and_logs(&p);
    jobs_run_runs_now_unless_held(&p);
    a_run_out_of_time_is_stopped(&p);
    removed_jobs_lose_their_timers_with_the_next_release(&p, slow);
}

/// The user's manager remembers when a timer last ran, under the timer's name, after the timer
/// is gone (a job removed, an app of the same name removed). A stamp two days old for `job`:
/// were it kept, its daily schedule would run the job at once, and `nightly` would not be
/// "never run" below.
#[track_caller]
fn an_earlier_jobs_last_run_is_not_caught_up(p: &Project, job: &str) {
    let dir = p.user.home.join(".local/share/systemd/timers");
    std::fs::create_dir_all(&dir).unwrap();
    let stamp = dir.join(format!("stamp-{}", p.names().job_timer(job)));
    let f = std::fs::File::create(&stamp).unwrap();
    let two_days = std::time::Duration::from_secs(2 * 24 * 3600);
    f.set_modified(std::time::SystemTime::now() - two_days)
        .unwrap();
    common::chown_to_node_user(&dir);
}

#[track_caller]
fn a_bad_schedule_stops_setup(p: &Project) {
    // A schedule systemd does not take stops setup before anything is made (exit 3).
    p.add_to_config("jobs:\n  bad:\n    schedule: \"*-*-* 25:00\"\n    command: /x\n");
    let r = p.deploy(&["setup"]).failed();
    assert_eq!(r.code, 3, "{}", r.stderr);
    r.says("jobs.bad.schedule `*-*-* 25:00`: systemd does not take it");
    assert!(!p.root().join(".deploy").exists(), "nothing was made");
    p.deploy(&["check", "test"])
        .failed()
        .says("jobs.bad.schedule");
}

#[track_caller]
fn a_skipped_run_then_an_ok_and_a_failed_one(p: &Project) {
    // Nothing is live yet: a run is skipped, and the skip recorded.
    wait_until("a skipped run", Duration::from_secs(10), || {
        runs(p, "stamp").iter().any(|r| {
            r["result"] == "skipped" && r["why"].as_str().unwrap_or("").contains("nothing is live")
        })
    });

    p.deploy(&["release", "v1"]).ok();
    wait_until("an ok and a failed run", Duration::from_secs(20), || {
        runs(p, "stamp").last().is_some_and(|r| r["result"] == "ok")
            && runs(p, "broken")
                .last()
                .is_some_and(|r| r["result"] == "failed")
    });
    let failed = runs(p, "broken").last().cloned().unwrap();
    assert_eq!(failed["exit_code"], 1, "{failed}");
    assert!(
        failed["why"].as_str().unwrap().contains("no such table"),
        "{failed}"
    );
    assert_eq!(failed["version"], "v1");
    assert_eq!(failed["by"], "timer");
}

#[track_caller]
fn jobs_lists_schedules_and_last_runs(p: &Project) {
    // `deploy jobs`: schedule, next run (systemd's), last run, result, duration.
    let r = p.deploy(&["jobs"]).ok();
    let line = |job: &str| {
        r.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{job} ")))
            .unwrap_or_else(|| panic!("no line for {job}:\n{}", r.stdout))
            .to_string()
    };
    assert!(line("stamp").contains(" *:*:0/2 "), "{}", r.stdout);
    assert!(line("broken").contains(" failed (exit 1) "), "{}", r.stdout);
    assert!(line("nightly").contains(" *-*-* 03:00 "), "{}", r.stdout);
    let r = p.deploy(&["jobs", "--json"]).ok();
    let listed: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let job = |name: &str| {
        listed["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {listed}"))
    };
    let now = std::time::SystemTime::now();
    for name in ["stamp", "nightly"] {
        let next = job(name)["next_run"].as_str().unwrap().to_string();
        let next = humantime::parse_rfc3339(&next).unwrap();
        assert!(
            next + Duration::from_secs(2) >= now,
            "{name} comes due next in the future: {listed}"
        );
    }
    let stamp_next = humantime::parse_rfc3339(job("stamp")["next_run"].as_str().unwrap()).unwrap();
    assert!(stamp_next <= now + Duration::from_secs(4), "{listed}");
    assert_eq!(job("stamp")["timer"], "active");
    assert_eq!(job("stamp")["last"]["result"], "ok");
    assert!(job("stamp")["last"]["duration_ms"].as_u64().unwrap() > 0);
    assert_eq!(job("broken")["last"]["exit_code"], 1);
    assert!(job("nightly")["last"].is_null());
}

#[track_caller]
fn a_failing_job_shows_in_status_and_logs(p: &Project) {
    // A failing job shows in `deploy status`, text and JSON, and its output in its log.
    p.deploy(&["status"])
        .ok()
        .prints("job failed:   broken: failed (exit 1) at ")
        .prints("`deploy logs --job broken`");
    let r = p.deploy(&["status", "--json"]).ok();
    let status: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(status["failed_jobs"][0]["job"], "broken", "{status}");
    assert_eq!(
        status["failed_jobs"].as_array().unwrap().len(),
        1,
        "{status}"
    );
    p.deploy(&["logs", "--job", "broken", "-n", "20"])
        .ok()
        .prints("run-sql: no such table: no_such_table");
}

#[track_caller]
fn jobs_run_runs_now_unless_held(p: &Project) {
    // `deploy jobs run`: now, its output here.
    p.deploy(&["jobs", "run", "stamp", "--lock-wait", "10s"])
        .ok()
        .prints("write-row-version: job-v1");
    let mine = runs(p, "stamp")
        .into_iter()
        .rev()
        .find(|r| r["by"] != "timer")
        .expect("the run typed here is recorded");
    assert_eq!(mine["result"], "ok");
    p.deploy(&["jobs", "run", "broken", "--lock-wait", "10s"])
        .failed()
        .says("the job broken failed (exit 1)");
    p.deploy(&["jobs", "run", "nope"])
        .failed()
        .says("has no job `nope`");
    // Held by hand (`deploy lock acquire`): a job's run is skipped, and says why.
    p.deploy(&["lock", "acquire", "-m", "orders by hand"]).ok();
    let r = p
        .deploy(&["jobs", "run", "stamp", "--lock-wait", "10s"])
        .failed();
    assert_eq!(r.code, 4, "{}", r.stderr);
    r.says("held by hand: orders by hand");
    p.deploy(&["lock", "release"]).ok();
}

#[track_caller]
fn a_run_out_of_time_is_stopped(p: &Project) {
    // A run out of time: its container is removed, and it writes no more.
    let t = Instant::now();
    p.deploy(&["jobs", "run", "slow"])
        .failed()
        .says("the job slow timed out");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert!(containers_of(p, "slow").is_empty(), "the container is gone");
    let written = rows(p, "slow");
    assert!(written > 0, "it ran before its timeout");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rows(p, "slow"), written, "nothing more after its timeout");
    assert_eq!(runs(p, "slow").last().unwrap()["result"], "timed-out");
}

#[track_caller]
fn removed_jobs_lose_their_timers_with_the_next_release(p: &Project, slow: &str) {
    let timer = |job: &str| p.names().job_timer(job);
    let unit_file = |job: &str| timer_file(p, job);
    // Jobs gone from the config: their timers go with the next release.
    set_jobs(p, &format!("{STAMP}{slow}"));
    p.deploy(&["release", "v2", "--dry-run"])
        .ok()
        .prints(&format!(
            "{} removed (the job nightly is no longer in the config)",
            timer("nightly")
        ));
    p.deploy(&["release", "v2", "--lock-wait", "30s"])
        .ok()
        .says("the job broken is no longer in the config: its timer was removed")
        .says("the job nightly is no longer in the config");
    for job in ["broken", "nightly"] {
        assert!(!unit_file(job).exists(), "{job}'s timer file");
        assert_ne!(is_active(p, &timer(job)), "active", "{job}'s timer");
    }
    assert_eq!(is_active(p, &timer("stamp")), "active");
    let r = p.deploy(&["jobs"]).ok();
    assert!(!r.stdout.contains("nightly"), "{}", r.stdout);
    let r = p.deploy(&["status", "--json"]).ok();
    let status: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let failed: Vec<&str> = status["failed_jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job"].as_str().unwrap())
        .collect();
    assert_eq!(
        failed,
        ["slow"],
        "a job no longer in the config is not said: {status}"
    );
    assert_eq!(status["failed_jobs"][0]["result"], "timed out");
}

#[test]
fn concurrency_forbid_skips_a_run_while_one_goes_and_replace_stops_it() {
    let p = Project::new("t-job-conc", 18484, Options::default());
    let long = |concurrency: &str| {
        format!(
            "  long:\n    schedule: \"*:*:0/2\"\n    command: /app/example-app write-rows 200 7 long\n    concurrency: {concurrency}\n"
        )
    };
    p.add_to_config(&format!("jobs:\n{}", long("forbid")));
    p.with_v1_live();
    let mut most = 0;
    wait_until(
        "a skip, then the run kept ends ok",
        Duration::from_secs(40),
        || {
            most = most.max(containers_of(&p, "long").len());
            let all = runs(&p, "long");
            let skipped = all.iter().any(|r| {
                r["result"] == "skipped"
                    && r["why"]
                        .as_str()
                        .unwrap_or("")
                        .contains("is still going (concurrency: forbid)")
            });
            skipped && all.iter().any(|r| r["result"] == "ok")
        },
    );
    assert_eq!(most, 1, "one run at a time");
    assert!(
        runs(&p, "long")
            .iter()
            .all(|r| r["result"] == "ok" || r["result"] == "skipped"),
        "{:?}",
        runs(&p, "long")
    );

    set_jobs(&p, &long("replace"));
    p.deploy(&["release", "v2", "--lock-wait", "60s"]).ok();
    let mut most = 0;
    wait_until("a run stopped by the next", Duration::from_secs(40), || {
        most = most.max(containers_of(&p, "long").len());
        runs(&p, "long")
            .iter()
            .any(|r| r["result"] == "stopped" && r["version"] == "v2")
    });
    for _ in 0..20 {
        most = most.max(containers_of(&p, "long").len());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        most, 1,
        "the old run's container goes before the new one is made"
    );
    // Stopped, not ended by itself (that would be `ok`), by SIGTERM to its run.
    let stopped = runs(&p, "long")
        .into_iter()
        .find(|r| r["result"] == "stopped" && r["version"] == "v2")
        .unwrap();
    assert!(
        stopped["why"].as_str().unwrap().contains("SIGTERM"),
        "{stopped}"
    );
    let before = rows(&p, "long");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        rows(&p, "long") > before,
        "the runs that replace go on writing"
    );
}

#[test]
fn jobs_over_ssh_list_run_and_show_their_output() {
    let p = Project::new(
        "t-job-remote",
        18486,
        Options {
            remote: true,
            ..Options::default()
        },
    );
    p.add_to_config(&format!("jobs:\n{STAMP}"));
    p.deploy_remote(&["setup"]).ok();
    p.deploy_remote(&["release", "v1"]).ok();
    wait_until("a row of the timer's run", Duration::from_secs(20), || {
        rows(&p, "job-v1") > 0
    });
    p.deploy_remote(&["jobs"])
        .ok()
        .prints("stamp")
        .prints("*:*:0/2");
    p.deploy_remote(&["jobs", "run", "stamp", "--lock-wait", "10s"])
        .ok()
        .prints("write-row-version: job-v1");
    p.deploy_remote(&["logs", "--job", "stamp", "-n", "5"])
        .ok()
        .prints("write-row-version: job-v1");
    // The document after the connection's step event (as `status --json` over SSH).
    let r = p.deploy_remote(&["jobs", "--json"]).ok();
    let doc = r.stdout.find("\n{\n").map_or(0, |at| at + 1);
    let listed: serde_json::Value =
        serde_json::from_str(&r.stdout[doc..]).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    assert_eq!(listed["jobs"][0]["name"], "stamp");
}

#[test]
fn a_job_is_skipped_while_the_app_is_halted_and_runs_again_once_a_release_is_started() {
    let p = Project::new("t-job-halt", 18488, Options::default());
    // No snapshot to put back: a failed hook leaves the app stopped (halted).
    p.add_to_config(&format!("backup: off\njobs:\n{STAMP}"));
    p.with_v1_live();
    wait_until("a row of the job as v1", Duration::from_secs(20), || {
        rows(&p, "job-v1") > 0
    });
    p.write("assets/broken.sql", "SELECT * FROM no_such_table;");
    p.add_to_config("hooks:\n  in_gap:\n    - /app/example-app run-sql /app/assets/broken.sql\n");
    p.deploy(&["release", "v2", "--lock-wait", "60s"])
        .failed()
        .says("The app is stopped");
    assert!(p.root().join(".deploy/hold").exists(), "halted");
    let halted_at = number(&p, "SELECT COALESCE(MAX(id), 0) FROM hits");
    wait_until(
        "a run skipped: the app is halted",
        Duration::from_secs(20),
        || {
            runs(&p, "stamp").iter().any(|r| {
                r["result"] == "skipped"
                    && r["why"]
                        .as_str()
                        .unwrap_or("")
                        .contains("the app is halted")
            })
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    let written = number(
        &p,
        &format!("SELECT COUNT(*) FROM hits WHERE version LIKE 'job-%' AND id > {halted_at}"),
    );
    assert_eq!(written, 0, "no job wrote while the app was halted");
    // The timer's own run (skipped at once) may hold the job's lock at this moment: wait for it,
    // so the answer is the halt and not "still going".
    p.deploy(&["jobs", "run", "stamp", "--lock-wait", "30s"])
        .failed()
        .says("the app is halted");

    p.remove("assets/broken.sql");
    p.write(
        "deploy.yaml",
        &std::fs::read_to_string(p.dir.join("deploy.yaml"))
            .unwrap()
            .replace(
                "hooks:\n  in_gap:\n    - /app/example-app run-sql /app/assets/broken.sql\n",
                "",
            ),
    );
    p.deploy(&["rollback", "--to", "v1"]).ok();
    wait_until("the job runs again", Duration::from_secs(20), || {
        number(
            &p,
            &format!("SELECT COUNT(*) FROM hits WHERE version = 'job-v1' AND id > {halted_at}"),
        ) > 0
    });
}

/// Where the node user's timer of `job` is installed.
fn timer_file(p: &Project, job: &str) -> std::path::PathBuf {
    common::node()
        .home
        .join(".config/systemd/user")
        .join(p.names().job_timer(job))
}
