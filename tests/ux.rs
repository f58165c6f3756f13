//! What users see, on a real node: plain step lines with timings off a terminal, `--json`
//! shapes, `deploy logs`, hooks and exit codes.

mod common;
use common::{Options, Project};
use serde_json::Value;

#[track_caller]
fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn output_off_a_terminal_json_shapes_and_logs() {
    let p = Project::new("t-ux", 18330, Options::default());
    p.deploy(&["setup"]).ok();
    release_v1_prints_plain_step_lines_off_a_terminal(&p);
    // release --json: one event per line on stdout, the last one `done` with the facts.
    let r = p.deploy(&["release", "v2", "--json"]).ok();
    let events = json_lines(&r.stdout);
    assert!(events.iter().any(|e| e["event"] == "step"
        && e["step"] == "Switching current to v2"
        && e["outcome"] == "ok"
        && e["ms"].is_u64()));
    let done = events.last().unwrap();
    assert_eq!(done["event"], "done");
    assert_eq!(done["action"], "release");
    assert_eq!(done["version"], "v2");
    assert_eq!(done["previous"], "v1");
    assert!(
        done["gap_ms"].is_u64() && done["total_ms"].is_u64(),
        "{done}"
    );

    dry_runs_print_the_plan_and_change_nothing(&p);
    // releases --json and status --json: one document each.
    let r = p.deploy(&["releases", "--json"]).ok();
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["app"], "t-ux");
    assert_eq!(v["current"], "v2");
    let rows = v["releases"].as_array().unwrap();
    assert_eq!(rows[0]["version"], "v2");
    assert_eq!(rows[0]["current"], true);
    assert_eq!(rows[1]["outcome"], "ok");
    assert!(
        rows[1]["snapshot_at"].is_string(),
        "v1 left a data snapshot: {v}"
    );
    let r = p.deploy(&["status", "--json"]).ok();
    let s: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(s["current"], "v2");
    assert_eq!(s["unit"]["active"], "active");
    assert_eq!(s["health"]["status"], 200);
    assert_eq!(s["last"]["action"], "release");
    assert_eq!(s["last"]["outcome"], "ok");

    // A failure with --json ends with an `error` event that carries the exit code.
    let r = p.deploy(&["rollback", "--to", "v9", "--json"]).failed();
    let last = json_lines(&r.stdout).pop().unwrap();
    assert_eq!(last["event"], "error");
    assert_eq!(last["exit_code"], 1);

    logs_print_the_last_lines_and_follow(&p);
}

#[track_caller]
fn release_v1_prints_plain_step_lines_off_a_terminal(p: &Project) {
    let r = p.deploy(&["release", "v1"]).ok();
    // Not a terminal: plain lines, no escape codes, each step with its outcome and time.
    assert!(!r.stderr.contains('\x1b'), "{:?}", r.stderr);
    let steps: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with("-> ")).collect();
    assert!(steps.len() >= 6, "{}", r.stderr);
    for s in &steps {
        assert!(
            s.contains(" ... ok (") && (s.ends_with("ms)") || s.ends_with("s)")),
            "{s}"
        );
    }
    r.says("t-ux v1 is live on test (");
    r.says("-> Syncing v1 and its image to disk ... ok");
    // --color always: colours even off a terminal (a CI log that renders them).
    let r = p.deploy(&["--color", "always", "releases"]).ok();
    assert!(
        !r.stderr.contains('\x1b'),
        "releases has no steps: {:?}",
        r.stderr
    );
    let r = p.deploy(&["--color", "always", "check", "test"]).ok();
    assert!(r.stderr.contains("\x1b[32mok\x1b[0m"), "{:?}", r.stderr);
}

#[track_caller]
fn dry_runs_print_the_plan_and_change_nothing(p: &Project) {
    // --dry-run prints the plan and changes nothing.
    let r = p.deploy(&["release", "v3", "--dry-run"]).ok();
    assert!(
        r.stdout.contains("Plan: release v3 of t-ux to test"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("  upload:    rsync --archive"),
        "{}",
        r.stdout
    );
    // The example app's Containerfile only copies files: its image is assembled; with a RUN
    // it is built, with the cache of layers.
    assert!(
        r.stdout
            .contains("  build:     assembled: the base's layers"),
        "{}",
        r.stdout
    );
    let containerfile = p.dir.join("Containerfile");
    let text = std::fs::read_to_string(&containerfile).unwrap();
    std::fs::write(
        &containerfile,
        format!("{text}RUN [\"/app/example-app\", \"--version\"]\n"),
    )
    .unwrap();
    let with_run = p.deploy(&["release", "v3", "--dry-run"]).ok();
    assert!(
        with_run.stdout.contains(&format!(
            "  build:     podman build --tag {} ",
            p.names().image("v3")
        )) && with_run.stdout.contains(" --layers=true "),
        "{}",
        with_run.stdout
    );
    std::fs::write(&containerfile, text).unwrap();
    assert!(r.stdout.contains("  sync:      sync -f "), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("  health:    GET http://127.0.0.1:18330/healthz"),
        "{}",
        r.stdout
    );
    assert!(
        !p.root().join("releases/v3").exists() && !p.root().join("releases/.incoming-v3").exists()
    );
    // The dry run chooses the target as the command does: the live release is refused.
    p.deploy(&["rollback", "--dry-run", "--to", "v2"])
        .failed()
        .says("v2 is already the live release");
    let r = p.deploy(&["rollback", "--dry-run"]).ok();
    assert!(
        r.stdout
            .contains("Plan: rollback of t-ux on test to v1, from v2"),
        "{}",
        r.stdout
    );
    let r = p.deploy(&["setup", "--dry-run"]).ok();
    assert!(r.stdout.contains("  unit:      "), "{}", r.stdout);
    assert_eq!(p.current().as_deref(), Some("v2"));
}

#[track_caller]
fn logs_print_the_last_lines_and_follow(p: &Project) {
    // logs: the app's own output, the last lines; -f follows what comes next.
    let r = p.deploy(&["logs", "-n", "3"]).ok();
    assert!(
        r.stdout.contains("example-app v2 listening on :8080"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.lines().count() <= 3, "{}", r.stdout);
    let follower = p.deploy_cmd(&[], &["logs", "-f", "-n", "0"]);
    let mut follower = follower_spawn(follower);
    p.deploy(&["rollback"]).ok();
    std::thread::sleep(std::time::Duration::from_millis(800));
    let _ = follower.kill();
    let out = follower.wait_with_output().unwrap();
    let followed = String::from_utf8_lossy(&out.stdout);
    assert!(followed.contains("example-app v2: stopped"), "{followed}");
    assert!(
        followed.contains("example-app v1 listening on :8080"),
        "{followed}"
    );
}

#[track_caller]
fn follower_spawn(mut c: std::process::Command) -> std::process::Child {
    c.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn failing_hooks_keep_the_old_release_serving() {
    let p = Project::new("t-hooks", 18332, Options::default());
    p.with_v1_live();
    p.body("/");
    let yaml = std::fs::read_to_string(p.dir.join("deploy.yaml")).unwrap();

    // before_upload fails: nothing is uploaded.
    p.write(
        "deploy.yaml",
        &format!("{yaml}hooks:\n  before_upload: [\"exit 3\"]\n"),
    );
    let r = p.deploy(&["release", "v2"]).failed();
    r.says("a before_upload hook failed: nothing was uploaded or changed");
    assert_eq!(r.code, 1);
    assert!(!p.root().join("releases/v2").exists());

    // in_gap runs in a one-off container of the new image with the app's data: a migration
    // that works...
    // (an argv list: a word with a space stays one word), and local hooks know the release.
    p.write(
        "deploy.yaml",
        &format!(
            "{yaml}hooks:\n  in_gap:\n    - [/app/example-app, run-sql, /app/assets/my migrate.sql]\n  \
             after_release: [\"echo $DEPLOY_APP $DEPLOY_ENV $DEPLOY_VERSION $DEPLOY_PREVIOUS > after.txt\"]\n"
        ),
    );
    p.write(
        "assets/my migrate.sql",
        "INSERT INTO hits (version) VALUES ('migration');",
    );
    let r = p.deploy(&["release", "v2"]).ok();
    r.says("Hook in_gap: /app/example-app run-sql '/app/assets/my migrate.sql' ... ok");
    r.says("Hook after_release: echo $DEPLOY_APP");
    assert_eq!(p.body("/hits"), "2\n", "the migration's row is there");
    assert_eq!(
        std::fs::read_to_string(p.dir.join("after.txt")).unwrap(),
        "t-hooks test v2 v1\n"
    );
    p.write(
        "deploy.yaml",
        &format!(
            "{yaml}hooks:\n  in_gap: [\"/app/example-app run-sql /app/assets/migrate.sql\"]\n"
        ),
    );

    // ...and one that fails: the previous release is put back, with its data, exit code 5.
    p.write(
        "assets/migrate.sql",
        "INSERT INTO no_such_table VALUES (1);",
    );
    let r = p.deploy(&["release", "v3"]).failed();
    assert_eq!(r.code, 5, "rolled back: {}", r.stderr);
    r.says("the in_gap hook `/app/example-app run-sql /app/assets/migrate.sql` failed");
    r.says("no such table: no_such_table");
    r.says("v2 is serving again");
    assert_eq!(p.current().as_deref(), Some("v2"));
    assert_eq!(p.body("/hits"), "2\n");
}

/// `gap 412ms` in a release's last line -> milliseconds.
#[track_caller]
fn reported_gap(text: &str) -> u64 {
    let at = text
        .rfind("gap ")
        .unwrap_or_else(|| panic!("no gap in {text}"));
    let rest = &text[at + 4..];
    let end = rest.find(')').unwrap();
    let g = &rest[..end];
    match g.strip_suffix("ms") {
        Some(ms) => ms.parse().unwrap(),
        None => (g.trim_end_matches('s').parse::<f64>().unwrap() * 1000.0) as u64,
    }
}

#[test]
fn a_terminal_costs_the_gap_nothing() {
    let p = Project::new("t-tty", 18334, Options::default());
    p.deploy(&["setup"]).ok();
    p.deploy(&["release", "v0"]).ok();
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for i in 0..3 {
        p.write("assets/greeting.txt", &format!("off {i}"));
        off.push(reported_gap(
            &p.deploy(&["release", &format!("off{i}")]).ok().stderr,
        ));
        // Under a pseudo-terminal (script(1)), as people release.
        p.write("assets/greeting.txt", &format!("on {i}"));
        let line = format!("{} release on{i}", common::node().deploy.display());
        let r = p.user("script", &["-qec", &line, "/dev/null"]).ok();
        on.push(reported_gap(&r.stdout));
    }
    on.sort();
    off.sort();
    // Medians, within noise (a live line that cost its 100 ms ticks per step would add 400+).
    assert!(
        on[1] <= off[1] + 150,
        "gap on a terminal {on:?} ms, off one {off:?} ms"
    );
}

#[test]
fn the_version_comes_from_git_when_none_is_given() {
    let p = Project::new("t-gitver", 18336, Options::default());
    p.deploy(&["setup"]).ok();
    p.deploy(&["release"])
        .failed()
        .says("is not in a git repository with a commit");
    let git = |args: &[&str]| {
        let mut all = vec!["-c", "user.name=t", "-c", "user.email=t@t.test"];
        all.extend(args);
        p.user("git", &all)
    };
    git(&["init", "-q"]).ok();
    git(&["add", "-A"]).ok();
    git(&["commit", "-qm", "first"]).ok();
    let sha = git(&["rev-parse", "--short", "HEAD"])
        .ok()
        .stdout
        .trim()
        .to_string();
    // One argument that names an environment is the environment.
    let r = p.deploy(&["release", "test"]).ok();
    r.says(&format!("version {sha} (from git)"));
    assert!(p.body("/").starts_with(&format!("example-app {sha} ")));
    // Uncommitted changes: refused, unless --allow-dirty (a version of its own).
    p.write("assets/greeting.txt", "changed");
    p.deploy(&["release"]).failed().says("--allow-dirty");
    let r = p.deploy(&["release", "--allow-dirty"]).ok();
    r.says(&format!("version {sha}-dirty-"));
    assert!(p.body("/").contains(&format!("{sha}-dirty-")));
    // An explicit version works as before; one named like an environment is refused.
    p.deploy(&["release", "v9", "test"]).ok();
    p.deploy(&["release", "test", "test"])
        .failed()
        .says("is also the name of an environment");
    // History: who released what, from which commit, with which command.
    let r = p.deploy(&["history", "-n", "2"]).ok();
    r.prints("release  v9 from ");
    r.prints("by deployer@");
    r.prints(&format!("at {sha} `deploy release v9 test`"));
    let r = p.deploy(&["history", "--json"]).ok();
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let newest = &doc["events"][0];
    assert_eq!(newest["version"], "v9", "{doc}");
    assert_eq!(newest["sha"], sha.as_str(), "{doc}");
    assert_eq!(newest["command"], "deploy release v9 test", "{doc}");
}

#[test]
fn the_live_line_leaves_a_childs_output_alone_and_fits_a_narrow_terminal() {
    let p = Project::new("t-ttychild", 18338, Options::default());
    // A build command that draws its own progress line, as cargo or npm do on a terminal.
    p.add_to_config(
        "build:\n  command: printf 'compiling 1/2\\r'; sleep 0.6; printf 'compiling 2/2\\r'; sleep 0.6; echo compiled\n",
    );
    p.deploy(&["setup"]).ok();
    let line = format!(
        "stty cols 50 rows 20; TERM=xterm {} release v1",
        common::node().deploy.display()
    );
    let out = p.user("script", &["-qec", &line, "/dev/null"]).ok().stdout;
    // Nothing is drawn over the child's output while it runs.
    let child = &out[out.find("compiling 1/2").expect(&out)..out.find("compiled\r\n").expect(&out)];
    assert!(
        !child.contains("\x1b[2K"),
        "a live line over the child's output: {child:?}"
    );
    assert!(p.body("/").starts_with("example-app v1 "));
    // Every live line fits the 50 columns (a wrapped one would leave rows behind): the
    // node-side steps run in the foreground with --node, as on a server.
    let line = format!(
        "stty cols 50 rows 20; TERM=xterm {} --node release v2 --skip-build",
        common::node().deploy.display()
    );
    let out = p.user("script", &["-qec", &line, "/dev/null"]).ok().stdout;
    let mut live = 0;
    for segment in out.split(['\r', '\n']) {
        let text = segment.replace("\x1b[2K", "");
        if text.starts_with("-> ") && text.ends_with('s') && !text.contains(" (") {
            live += 1;
            assert!(
                text.chars().count() < 50,
                "{text:?} is wider than the terminal"
            );
        }
    }
    assert!(live > 0, "no live line drawn: {out:?}");
    assert!(p.body("/").starts_with("example-app v2 "));
}
