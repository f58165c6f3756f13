//! The command line's arguments made the node's requests (`node::request`), once: the node
//! reads no clap type.

use super::{ExecArgs, LogsArgs, MigrateArgs, ReleaseArgs, RemoveArgs, RestoreArgs, RollbackArgs};
use crate::node::logs::Filter;
use crate::node::request::{
    Artifacts, Consent, ExecRequest, Existing, MigrateRequest, Mode, Protection, ReleaseRequest,
    RemoveRequest, RestoreRequest, RollbackRequest, Scope, Stdin, Writers,
};
use crate::node::rollback::DataChoice;

fn writers(stop_running: bool) -> Writers {
    match stop_running {
        true => Writers::Stop,
        false => Writers::Wait,
    }
}

fn protection(unprotected: bool) -> Protection {
    match unprotected {
        true => Protection::Optional,
        false => Protection::Required,
    }
}

fn consent(yes: bool) -> Consent {
    match yes {
        true => Consent::Given,
        false => Consent::Ask,
    }
}

impl TryFrom<&ReleaseArgs> for ReleaseRequest {
    type Error = anyhow::Error;

    /// Fails without a version (the laptop takes one from git before).
    fn try_from(a: &ReleaseArgs) -> anyhow::Result<ReleaseRequest> {
        Ok(ReleaseRequest {
            version: a.version()?.clone(),
            existing: match a.replace {
                true => Existing::Replace,
                false => Existing::Refuse,
            },
            protection: protection(a.unprotected),
            writers: writers(a.stop_running),
            artifacts: match &a.uploaded {
                Some(run) => Artifacts::Uploaded(run.clone()),
                None => Artifacts::Here,
            },
            secrets: a.secrets.clone(),
        })
    }
}

impl From<&RollbackArgs> for DataChoice {
    fn from(a: &RollbackArgs) -> DataChoice {
        match (a.with_data, a.keep_data) {
            (true, _) => DataChoice::WithData,
            (false, true) => DataChoice::KeepData,
            (false, false) => DataChoice::Unsaid,
        }
    }
}

impl From<&RollbackArgs> for RollbackRequest {
    fn from(a: &RollbackArgs) -> RollbackRequest {
        RollbackRequest {
            to: a.to.clone(),
            data: DataChoice::from(a),
            consent: consent(a.yes),
            writers: writers(a.stop_running),
            protection: protection(a.unprotected),
        }
    }
}

impl From<&ExecArgs> for ExecRequest {
    fn from(a: &ExecArgs) -> ExecRequest {
        ExecRequest {
            stdin: match a.interactive {
                true => Stdin::Open,
                false => Stdin::Closed,
            },
            command: a.command.clone(),
        }
    }
}

impl From<&RemoveArgs> for Scope {
    fn from(a: &RemoveArgs) -> Scope {
        match (a.all, a.data) {
            (true, _) => Scope::All,
            (false, true) => Scope::Data,
            (false, false) => Scope::App,
        }
    }
}

impl From<&RemoveArgs> for RemoveRequest {
    fn from(a: &RemoveArgs) -> RemoveRequest {
        RemoveRequest {
            scope: Scope::from(a),
            consent: consent(a.yes),
        }
    }
}

impl From<&RestoreArgs> for RestoreRequest {
    fn from(a: &RestoreArgs) -> RestoreRequest {
        RestoreRequest {
            at: a.at.clone(),
            overwrite: a.overwrite,
            writers: writers(a.stop_running),
            secrets: a.secrets.clone(),
        }
    }
}

impl From<&MigrateArgs> for MigrateRequest {
    fn from(a: &MigrateArgs) -> MigrateRequest {
        MigrateRequest {
            mode: match a.dry_run {
                true => Mode::DryRun,
                false => Mode::Change,
            },
            release: a.release.clone(),
            consent: consent(a.yes),
            writers: writers(a.stop_running),
        }
    }
}

impl From<&LogsArgs> for Filter {
    fn from(a: &LogsArgs) -> Filter {
        Filter {
            lines: a.lines,
            since: a.since,
            grep: a.grep.clone(),
            job: a.job.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::version::Version;
    use clap::Parser;

    #[track_caller]
    fn parse(line: &str) -> Command {
        Cli::try_parse_from(line.split_whitespace())
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .command
    }

    fn v(text: &str) -> Version {
        Version::new(text).unwrap()
    }

    #[track_caller]
    fn release(line: &str) -> ReleaseRequest {
        match parse(line) {
            Command::Release(a) => ReleaseRequest::try_from(&a).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_release_request_carries_each_flag_as_its_own_choice() {
        assert_eq!(
            release("deploy release v2 prod --replace --stop-running"),
            ReleaseRequest {
                version: v("v2"),
                existing: Existing::Replace,
                protection: Protection::Required,
                writers: Writers::Stop,
                artifacts: Artifacts::Here,
                secrets: None,
            }
        );
        assert_eq!(
            release("deploy release v3 prod --unprotected --uploaded 17 --secrets /t/s"),
            ReleaseRequest {
                version: v("v3"),
                existing: Existing::Refuse,
                protection: Protection::Optional,
                writers: Writers::Wait,
                artifacts: Artifacts::Uploaded("17".into()),
                secrets: Some("/t/s".into()),
            }
        );
        // Each flag apart from the others: a conversion that reads one for another fails.
        let r = release("deploy release v4 prod --replace");
        assert_eq!((r.existing, r.writers), (Existing::Replace, Writers::Wait));
    }

    #[test]
    fn a_release_without_a_version_is_no_request() {
        let Command::Release(a) = parse("deploy release") else {
            panic!("not a release");
        };
        let e = ReleaseRequest::try_from(&a).unwrap_err().to_string();
        assert!(e.contains("no version to release"), "{e}");
    }

    #[track_caller]
    fn rollback(line: &str) -> RollbackRequest {
        match parse(line) {
            Command::Rollback(a) => RollbackRequest::from(&a),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_rollback_request_carries_the_data_choice_and_each_flag() {
        assert_eq!(
            rollback("deploy rollback prod --to v1 --with-data -y"),
            RollbackRequest {
                to: Some(v("v1")),
                data: DataChoice::WithData,
                consent: Consent::Given,
                writers: Writers::Wait,
                protection: Protection::Required,
            }
        );
        assert_eq!(
            rollback("deploy rollback prod --keep-data --stop-running --unprotected"),
            RollbackRequest {
                to: None,
                data: DataChoice::KeepData,
                consent: Consent::Ask,
                writers: Writers::Stop,
                protection: Protection::Optional,
            }
        );
        assert_eq!(
            rollback("deploy rollback prod --unprotected"),
            RollbackRequest {
                to: None,
                data: DataChoice::Unsaid,
                consent: Consent::Ask,
                writers: Writers::Wait,
                protection: Protection::Optional,
            }
        );
        assert_eq!(rollback("deploy rollback prod").data, DataChoice::Unsaid);
    }

    #[test]
    fn an_exec_request_keeps_stdin_only_when_interactive() {
        let exec = |line: &str| match parse(line) {
            Command::Exec(a) => ExecRequest::from(&a),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            exec("deploy exec prod -i -- /app/x console"),
            ExecRequest {
                stdin: Stdin::Open,
                command: vec!["/app/x".into(), "console".into()],
            }
        );
        assert_eq!(exec("deploy exec prod -- true").stdin, Stdin::Closed);
    }

    #[test]
    fn a_remove_request_takes_the_widest_scope_named() {
        let remove = |line: &str| match parse(line) {
            Command::Remove(a) => RemoveRequest::from(&a),
            other => panic!("{other:?}"),
        };
        let req = |scope, consent| RemoveRequest { scope, consent };
        assert_eq!(remove("deploy remove prod"), req(Scope::App, Consent::Ask));
        assert_eq!(
            remove("deploy remove prod --data"),
            req(Scope::Data, Consent::Ask)
        );
        assert_eq!(
            remove("deploy remove prod --data -y"),
            req(Scope::Data, Consent::Given)
        );
        assert_eq!(
            remove("deploy remove prod --all"),
            req(Scope::All, Consent::Ask)
        );
        assert_eq!(
            remove("deploy remove prod --all --data -y"),
            req(Scope::All, Consent::Given)
        );
        assert!(Scope::All.data() && Scope::All.all());
        assert!(Scope::Data.data() && !Scope::Data.all());
        assert!(!Scope::App.data() && !Scope::App.all());
    }

    #[test]
    fn a_restore_request_carries_its_time_and_flags() {
        let Command::Restore(a) =
            parse("deploy restore prod --at 10m --overwrite --stop-running --secrets /t/s")
        else {
            panic!("not a restore");
        };
        assert_eq!(
            RestoreRequest::from(&a),
            RestoreRequest {
                at: Some("10m".into()),
                overwrite: true,
                writers: Writers::Stop,
                secrets: Some("/t/s".into()),
            }
        );
        let Command::Restore(a) = parse("deploy restore prod --stop-running") else {
            panic!("not a restore");
        };
        let r = RestoreRequest::from(&a);
        assert_eq!((r.at, r.overwrite, r.writers), (None, false, Writers::Stop));
    }

    #[test]
    fn a_migrate_request_carries_its_mode_release_and_consent() {
        let migrate = |line: &str| match parse(line) {
            Command::MigrateData(a) => MigrateRequest::from(&a),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            migrate("deploy migrate-data prod --dry-run --as v0 --stop-running"),
            MigrateRequest {
                mode: Mode::DryRun,
                release: v("v0"),
                consent: Consent::Ask,
                writers: Writers::Stop,
            }
        );
        assert_eq!(
            migrate("deploy migrate-data prod -y --stop-running"),
            MigrateRequest {
                mode: Mode::Change,
                release: v("legacy"),
                consent: Consent::Given,
                writers: Writers::Stop,
            }
        );
    }

    #[test]
    fn a_logs_filter_carries_each_option() {
        let Command::Logs(a) = parse("deploy logs prod -n 5 --since 10m --grep GET --job tidy")
        else {
            panic!("not logs");
        };
        assert_eq!(
            Filter::from(&a),
            Filter {
                lines: Some(5),
                since: Some(std::time::Duration::from_secs(600)),
                grep: Some("GET".into()),
                job: Some("tidy".into()),
            }
        );
    }
}
