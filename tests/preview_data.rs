//! A preview's data on a real node: `preview.scrub` run on each new copy, in a one-off
//! container of the preview's release, before the app starts on it and never on prod's data; a
//! failed scrub leaving nothing unscrubbed served (a new preview not started, a running one on
//! its own data); `--at` taking the data from prod's `file://` replica as of a time.

mod common;
use common::previews::{count, forget_previews, get, last_event, preview_root, query};
use common::{Options, Project};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// The preview's new data on its way in, left in its `.deploy/`.
fn copies_left(p: &Project, name: &str) -> Vec<String> {
    std::fs::read_dir(preview_root(p, name).join(".deploy"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("preview-data."))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn scrub_runs_on_each_new_copy_before_the_preview_starts_and_never_on_prods_data() {
    let app = "pv-scrub";
    let p = Project::new(app, 18922, Options::default());
    p.add_to_config(
        "preview:\n  ports: 18924-18927\n  scrub:\n    - /app/example-app run-sql /app/assets/scrub.sql\n",
    );
    let config = std::fs::read_to_string(p.dir.join("deploy.yaml")).unwrap();
    forget_previews(&p, &["pr-1", "pr-2"], false);
    p.deploy(&["setup"]).ok();
    p.deploy(&["release", "v1"]).ok();
    for _ in 0..5 {
        p.body("/");
    }
    let prod_db = p.root().join("shared/data/app.db");
    let scrubbed = "SELECT COUNT(*) FROM hits WHERE version = 'scrubbed';";
    // The preview's release: its scrub, and a start that records how many rows it found that
    // were not scrubbed (the app runs `startup.sql` when it starts).
    p.write("assets/scrub.sql", "UPDATE hits SET version = 'scrubbed';");
    p.write(
        "assets/startup.sql",
        "CREATE TABLE IF NOT EXISTS starts (unscrubbed INTEGER NOT NULL);\n\
         INSERT INTO starts SELECT COUNT(*) FROM hits WHERE version <> 'scrubbed';\n",
    );
    let prod_rows = count(&p, &prod_db);
    p.deploy(&["preview", "up", "pr-1", "--version", "v2"])
        .ok()
        .says("Scrub: /app/example-app run-sql /app/assets/scrub.sql");
    let db = preview_root(&p, "pr-1").join("shared/data/app.db");
    let starts = "SELECT group_concat(unscrubbed) FROM starts;";
    assert_eq!(
        query(&p, &db, starts),
        "0",
        "the app started on scrubbed rows"
    );
    assert_eq!(query(&p, &db, scrubbed), prod_rows.to_string());
    assert_eq!(
        query(&p, &prod_db, scrubbed),
        "0",
        "prod's rows were scrubbed"
    );
    assert_eq!(copies_left(&p, "pr-1"), Vec::<String>::new());
    let port = 18924;
    assert!(get(port, None, "/").1.contains("v2"));

    a_failed_scrub_leaves_the_preview_on_its_own_data(&p, &config, &db, starts, port);
    a_new_preview_whose_scrub_fails_never_starts(&p);
    // Scrubbed again, a new version on a fresh copy: each copy is scrubbed before its start.
    p.write("deploy.yaml", &config);
    let prod_rows = count(&p, &prod_db);
    p.deploy(&["preview", "up", "pr-1", "--version", "v3", "--fresh-data"])
        .ok()
        .says("Scrub: ");
    assert_eq!(query(&p, &db, scrubbed), prod_rows.to_string());
    assert_eq!(
        query(&p, &db, "SELECT COUNT(*) FROM hits;"),
        prod_rows.to_string()
    );
    assert_eq!(
        query(&p, &db, starts),
        "0",
        "a fresh copy, started scrubbed"
    );
    assert_eq!(query(&p, &prod_db, scrubbed), "0");
    assert!(get(port, None, "/").1.contains("v3"));
    p.deploy(&["preview", "down", "pr-1"]).ok();
}

#[track_caller]
fn a_failed_scrub_leaves_the_preview_on_its_own_data(
    p: &Project,
    config: &str,
    db: &Path,
    starts: &str,
    port: u16,
) {
    // A scrub that fails: the new copy goes, the preview serves on, on its own data.
    for _ in 0..3 {
        p.body("/");
    }
    let own = count(p, db);
    p.write(
        "deploy.yaml",
        &config.replace("assets/scrub.sql", "assets/missing.sql"),
    );
    p.deploy(&["preview", "up", "pr-1", "--version", "v2", "--fresh-data"])
        .failed()
        .says("was deleted unscrubbed; nothing of test/pr-1 changed");
    assert_eq!(copies_left(p, "pr-1"), Vec::<String>::new());
    let (status, body, _) = get(port, None, "/");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        count(p, db),
        own + 1,
        "its own rows and this one: no copy came in"
    );
    assert_eq!(query(p, db, starts), "0", "it was not started again");
}

#[track_caller]
fn a_new_preview_whose_scrub_fails_never_starts(p: &Project) {
    // A new preview whose scrub fails never starts.
    p.deploy(&["preview", "up", "pr-2", "--version", "v2"])
        .failed()
        .says(
            "the preview.scrub command `/app/example-app run-sql /app/assets/missing.sql` failed",
        );
    assert_eq!(copies_left(p, "pr-2"), Vec::<String>::new());
    assert!(std::net::TcpStream::connect(("127.0.0.1", 18926)).is_err());
    assert!(!preview_root(p, "pr-2").join("current").exists());
    p.deploy(&["preview", "down", "pr-2"]).ok();
}

fn utc_now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

#[test]
fn a_preview_on_prods_data_as_its_replica_had_it_at_a_time() {
    let app = "pv-at";
    let p = Project::new(app, 18928, Options::default());
    let replica = p.file_replica();
    p.add_to_config(&format!(
        "replicate:\n  url: file://{}\npreview:\n  ports: 18930-18933\n",
        replica.display()
    ));
    forget_previews(&p, &["pr-at"], false);
    p.deploy(&["setup"]).ok();
    p.deploy(&["release", "v1"]).ok();
    let prod_db = p.root().join("shared/data/app.db");
    for _ in 0..10 {
        p.body("/");
    }
    let rows_then = count(&p, &prod_db);
    std::thread::sleep(Duration::from_millis(2500));
    let then = utc_now();
    std::thread::sleep(Duration::from_millis(1500));
    for _ in 0..10 {
        p.body("/");
    }
    std::thread::sleep(Duration::from_millis(2500));
    let prod_rows = count(&p, &prod_db);
    assert_eq!(prod_rows, rows_then + 10);

    let r = p
        .deploy(&[
            "preview",
            "up",
            "pr-at",
            "--version",
            "v2",
            "--at",
            &then,
            "--json",
        ])
        .ok();
    let done = last_event(&r.stdout);
    assert_eq!(
        done["data_from"],
        format!("test's replica as of {then}"),
        "{done}"
    );
    let db = preview_root(&p, "pr-at").join("shared/data/app.db");
    assert_eq!(count(&p, &db), rows_then, "the rows of {then}, not of now");
    assert!(get(18930, None, "/").1.contains("v2"));
    assert_eq!(count(&p, &prod_db), prod_rows, "prod's own untouched");
    assert!(
        !preview_root(&p, "pr-at")
            .join(".deploy/litestream.yml")
            .exists(),
        "a preview never replicates"
    );
    p.deploy(&["preview", "down", "pr-at"]).ok();
}
