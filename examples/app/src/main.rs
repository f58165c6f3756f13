//! The example app that `deploy` ships in its demo and tests: a small HTTP server with an SQLite
//! database in its data directory.
//!
//! - `GET /`        records a hit, answers `example-app <version> hits=<n> greeting=<assets/greeting.txt>`
//! - `GET /hits`    the number of hits recorded so far (rows of the database)
//! - `GET /healthz` 200 `ok`, or 500 when `<assets>/fail-health` exists (a release that is broken)
//! - `GET /slow?ms=N` answers after N milliseconds (for graceful-stop tests)
//!
//! `example-app run-sql FILE` runs FILE against the database and exits (for `in_gap` hooks).
//! `example-app write-rows MS SECONDS TAG` writes a row tagged TAG every MS milliseconds for
//! SECONDS; `example-app write-row-version [PREFIX]` writes one row tagged PREFIX and its
//! `DEPLOY_VERSION` (a scheduled job's, in the tests) and exits.
//! At start, `<assets>/startup.sql`, when there is one, is run against the database: the
//! example's stand-in for a release's migration.
//!
//! The version comes from `DEPLOY_VERSION` (set by deploy's unit). SIGTERM stops accepting and
//! lets requests in progress finish before exiting 0; with `IGNORE_SIGTERM=1` it installs no
//! handler, as many apps do not (as PID 1 of its container it then ignores SIGTERM: what
//! `container.init` is for). A socket is taken from systemd as `sd_listen_fds` takes it:
//! `LISTEN_FDS=1` and `LISTEN_PID` this process's pid.

use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct App {
    db: Mutex<Connection>,
    version: String,
    assets: PathBuf,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

mod http;

fn main() {
    // `example-app run-sql FILE`: runs FILE against the database and exits (what an `in_gap`
    // hook runs: the example's stand-in for a migration).
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("run-sql") {
        let data = PathBuf::from(env_or("DATA_DIR", "/app/data"));
        let sql = std::fs::read_to_string(args.get(2).expect("run-sql FILE")).expect("read FILE");
        let db = Connection::open(data.join("app.db")).expect("cannot open the database");
        match db.execute_batch(&sql) {
            Ok(()) => println!("run-sql: ok"),
            Err(e) => {
                eprintln!("run-sql: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    // `example-app write-rows MS SECONDS TAG`: a row tagged TAG every MS milliseconds for
    // SECONDS (a console session or a scheduled job that writes while it runs).
    if args.get(1).map(String::as_str) == Some("write-rows") {
        write_rows(&args[2..]);
        return;
    }
    // `example-app write-row-version [PREFIX]`: one row tagged PREFIX + DEPLOY_VERSION (the
    // release a job ran as).
    if args.get(1).map(String::as_str) == Some("write-row-version") {
        let tag = format!(
            "{}{}",
            args.get(2).map(String::as_str).unwrap_or_default(),
            env_or("DEPLOY_VERSION", "dev")
        );
        write_one_row(&tag);
        return;
    }
    let port: u16 = env_or("PORT", "8080")
        .parse()
        .expect("PORT must be a port number");
    let data = PathBuf::from(env_or("DATA_DIR", "/app/data"));
    let assets = PathBuf::from(env_or("ASSETS_DIR", "/app/assets"));
    let version = env_or("DEPLOY_VERSION", "dev");

    let db = Connection::open(data.join("app.db")).expect("cannot open the database");
    db.pragma_update(None, "journal_mode", "WAL").expect("WAL");
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS hits (id INTEGER PRIMARY KEY, at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, version TEXT NOT NULL);",
    )
    .expect("cannot create the schema");
    if let Ok(sql) = std::fs::read_to_string(assets.join("startup.sql")) {
        db.execute_batch(&sql).expect("startup.sql failed");
        println!("example-app {version}: ran startup.sql");
    }
    let app = Arc::new(App {
        db: Mutex::new(db),
        version,
        assets,
    });

    // Socket activation (systemd's socket, handed on by Podman as fd 3), or a port of its own.
    let listen_pid = std::env::var("LISTEN_PID").ok();
    let ours = listen_pid.as_deref() == Some(std::process::id().to_string().as_str());
    if std::env::var("LISTEN_FDS").is_ok() && !ours {
        println!(
            "example-app: LISTEN_FDS is set but LISTEN_PID ({listen_pid:?}) is not this process ({}): not taking the socket",
            std::process::id()
        );
    }
    let server = if std::env::var("LISTEN_FDS").as_deref() == Ok("1") && ours {
        use std::os::fd::FromRawFd;
        // SAFETY: LISTEN_FDS=1 says fd 3 is a listening socket given to this process.
        http::Server::on(unsafe { std::net::TcpListener::from_raw_fd(3) })
    } else {
        http::Server::bind(("0.0.0.0", port)).expect("cannot listen")
    };
    let stop = server.stop_flag();
    let ignore_term = std::env::var("IGNORE_SIGTERM").as_deref() == Ok("1");
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if sig == signal_hook::consts::SIGTERM && ignore_term {
            continue;
        }
        signal_hook::flag::register(sig, Arc::clone(&stop)).expect("signal handler");
    }
    println!("example-app {} listening on :{port}", app.version);
    let handler_app = Arc::clone(&app);
    // Returns once stopped and every request in progress has been answered.
    server
        .run(Arc::new(move |request| handle(&handler_app, request)))
        .expect("server failed");
    println!("example-app {}: stopped", app.version);
}

fn write_rows(args: &[String]) {
    let arg = |i: usize| args.get(i).expect("write-rows MS SECONDS TAG");
    let every = Duration::from_millis(arg(0).parse().expect("MS"));
    let until = std::time::Instant::now() + Duration::from_secs(arg(1).parse().expect("SECONDS"));
    let tag = arg(2);
    let data = PathBuf::from(env_or("DATA_DIR", "/app/data"));
    let db = Connection::open(data.join("app.db")).expect("cannot open the database");
    db.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    // SIGTERM ends it at once (it is not PID 1 under --init; without it, the default).
    while std::time::Instant::now() < until {
        db.execute("INSERT INTO hits (version) VALUES (?1)", [tag])
            .expect("insert");
        std::thread::sleep(every);
    }
    println!("write-rows: done");
}

fn write_one_row(tag: &str) {
    let data = PathBuf::from(env_or("DATA_DIR", "/app/data"));
    let db = Connection::open(data.join("app.db")).expect("cannot open the database");
    db.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    db.execute("INSERT INTO hits (version) VALUES (?1)", [tag])
        .expect("insert");
    println!("write-row-version: {tag}");
}

fn handle(app: &App, request: http::Request) -> http::Response {
    let (path, query) = (request.path(), request.query());
    let (status, body) = match path {
        "/healthz" => {
            if app.assets.join("fail-health").exists() {
                (500, "unhealthy: fail-health is present\n".to_string())
            } else {
                match app
                    .db
                    .lock()
                    .unwrap()
                    .query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                {
                    Ok(_) => (200, "ok\n".to_string()),
                    Err(e) => (500, format!("database: {e}\n")),
                }
            }
        }
        "/" => {
            let db = app.db.lock().unwrap();
            let n = db
                .execute("INSERT INTO hits (version) VALUES (?1)", [&app.version])
                .and_then(|_| {
                    db.query_row("SELECT COUNT(*) FROM hits", [], |r| r.get::<_, i64>(0))
                });
            // GREETING from the environment (deploy's env.clear/env.secret, shared/.env) wins.
            let greeting = std::env::var("GREETING").unwrap_or_else(|_| {
                std::fs::read_to_string(app.assets.join("greeting.txt")).unwrap_or_default()
            });
            match n {
                Ok(n) => (
                    200,
                    format!(
                        "example-app {} hits={n} greeting={}\n",
                        app.version,
                        greeting.trim()
                    ),
                ),
                Err(e) => (500, format!("database: {e}\n")),
            }
        }
        "/hits" => match app
            .db
            .lock()
            .unwrap()
            .query_row("SELECT COUNT(*) FROM hits", [], |r| r.get::<_, i64>(0))
        {
            Ok(n) => (200, format!("{n}\n")),
            Err(e) => (500, format!("database: {e}\n")),
        },
        "/slow" => {
            let ms: u64 = query
                .strip_prefix("ms=")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            std::thread::sleep(Duration::from_millis(ms));
            (200, format!("example-app {} slept {ms}ms\n", app.version))
        }
        _ => (404, "not found\n".to_string()),
    };
    http::Response::new(status, body).header("Content-Type", "text/plain; charset=utf-8")
}
