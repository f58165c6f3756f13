//! One naming scheme for everything derived from an app and an environment: units, sockets,
//! containers, images, Traefik routers and files, hook, exec and job containers, replication
//! units, jobs' timers.
//!
//! App and environment names are lower-case letters, digits and `-` (validated with the
//! config), so they can never hold the separator `_`, which systemd unit, container, image and
//! router names all accept. The base name is `<app>_<env>`, and every role adds a suffix after
//! another `_`: `shop_prod.service`, `shop_prod_gap.service`, `shop_prod_hook`. No two pairs of
//! (app, environment), and no role of one app, can produce the same name.

use crate::version::image_tag;

/// What a name may be made of: app, environment and job names.
pub fn check(kind: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 48
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a usable {kind} name: use 1 to 48 lower-case letters, digits and \
             `-`, starting and ending with a letter or digit (it names units, containers, images \
             and routers, joined with `_`)"
        ))
    }
}

/// What separates an environment's name from a preview's in a preview's environment name
/// (`prod/pr-12`): never in an environment's name, so a preview can never be a configured
/// environment.
pub const PREVIEW_SEPARATOR: char = '/';

/// The environment name of the preview `name` of `from` (`prod/pr-12`): what every command
/// takes as its environment to act on the preview.
pub fn preview_env(from: &str, name: &str) -> String {
    format!("{from}{PREVIEW_SEPARATOR}{name}")
}

/// `prod/pr-12` -> (`prod`, `pr-12`), when both are names; `None` for an environment's name.
pub fn split_preview(env: &str) -> Option<(&str, &str)> {
    let (from, name) = env.split_once(PREVIEW_SEPARATOR)?;
    (check("environment", from).is_ok() && check("preview", name).is_ok()).then_some((from, name))
}

/// The role between an environment's base and a preview's name: `shop_prod_preview_pr-12`.
const PREVIEW: &str = "_preview_";

/// The label key on the one-off containers that may write an environment's data.
pub const WRITER_LABEL: &str = "deploy.writer";

/// The label key on a job's containers: the job's name (with [`WRITER_LABEL`] naming the
/// environment).
pub const JOB_LABEL: &str = "deploy.job";

/// The stem of a job's units: `<app>_<env>_job_<name>`.
const JOB: &str = "_job_";

/// The names of one app in one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    base: String,
    env: String,
}

impl Names {
    /// The names of `app` in `env`: an environment, or a preview (`prod/pr-12`), whose names
    /// are its environment's base, the role `preview` and its own name
    /// (`shop_prod_preview_pr-12.service`): no role of an environment is `preview`, and a
    /// preview's name holds no `_`, so none of its names is another's.
    pub fn new(app: &str, env: &str) -> Names {
        let base = match split_preview(env) {
            Some((from, name)) => format!("{app}_{from}{PREVIEW}{name}"),
            None => format!("{app}_{env}"),
        };
        Names {
            base,
            env: env.to_string(),
        }
    }

    /// The environment these names are of.
    pub fn env(&self) -> &str {
        &self.env
    }

    /// `<app>_<env>`: the app's container, router, Traefik service and file stem.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn unit(&self) -> String {
        format!("{}.service", self.base)
    }

    pub fn container(&self) -> String {
        self.base.clone()
    }

    /// `localhost/<app>_<env>`: the image repository of the app's releases.
    pub fn image_repository(&self) -> String {
        format!("localhost/{}", self.base)
    }

    pub fn image(&self, version: &str) -> String {
        format!("{}:{}", self.image_repository(), image_tag(version))
    }

    pub fn router(&self) -> String {
        self.base.clone()
    }

    /// The Traefik service of the gap server.
    pub fn gap_service(&self) -> String {
        format!("{}_gap", self.base)
    }

    /// The file in Traefik's dynamic directory.
    pub fn dynamic_file(&self) -> String {
        format!("{}.yaml", self.base)
    }

    pub fn gap_unit(&self) -> String {
        format!("{}_gap.service", self.base)
    }

    /// The label (`key=value`) on every one-off container of the environment that may write
    /// `shared/` (an `in_gap` hook, `deploy exec`, a job): what a put-back and a recovery remove.
    pub fn writer_label(&self) -> String {
        format!("{WRITER_LABEL}={}", self.base)
    }

    /// The one-off container of an `in_gap` hook.
    pub fn hook_container(&self) -> String {
        format!("{}_hook", self.base)
    }

    /// A one-off container of `deploy exec`, unique per run.
    pub fn exec_container(&self, id: &str) -> String {
        format!("{}_exec_{id}", self.base)
    }

    pub fn socket_unit(&self) -> String {
        format!("{}.socket", self.base)
    }

    /// The path unit that starts [`Names::recover_unit`] while a swap's journal exists.
    pub fn recover_path_unit(&self) -> String {
        format!("{}_recover.path", self.base)
    }

    /// The service that puts right a swap whose process died, with no command typed.
    pub fn recover_unit(&self) -> String {
        format!("{}_recover.service", self.base)
    }

    /// The timer of `verify.schedule`, and the service it starts.
    pub fn verify_timer(&self) -> String {
        format!("{}_verify.timer", self.base)
    }

    pub fn verify_service(&self) -> String {
        format!("{}_verify.service", self.base)
    }

    /// The server's prune of the previews of this environment, and the service it starts
    /// (`shop_prod_previews.timer`: a preview's base is `shop_prod_preview_<name>`, never this).
    pub fn previews_timer(&self) -> String {
        format!("{}_previews.timer", self.base)
    }

    pub fn previews_service(&self) -> String {
        format!("{}_previews.service", self.base)
    }

    pub fn replication_unit(&self) -> String {
        format!("{}_litestream.service", self.base)
    }

    /// The timer of the job `name`: when it comes due, it starts [`Names::job_service`].
    pub fn job_timer(&self, name: &str) -> String {
        format!("{}{JOB}{name}.timer", self.base)
    }

    /// The service a job's timer starts: it starts a run, in a unit of its own.
    pub fn job_service(&self, name: &str) -> String {
        format!("{}{JOB}{name}.service", self.base)
    }

    /// The transient unit of one scheduled run of the job `name` (`id` unique per run).
    pub fn job_run_unit(&self, name: &str, id: &str) -> String {
        format!("{}{JOB}{name}_run_{id}.service", self.base)
    }

    /// The one-off container of one run of the job `name`, unique per run.
    pub fn job_container(&self, name: &str, id: &str) -> String {
        format!("{}{JOB}{name}_{id}", self.base)
    }

    /// The job a timer's file name is of (`shop_prod_job_digest.timer` -> `digest`), if it is
    /// one of this environment's. Pure.
    pub fn job_of_timer<'a>(&self, file: &'a str) -> Option<&'a str> {
        file.strip_prefix(self.base.as_str())?
            .strip_prefix(JOB)?
            .strip_suffix(".timer")
            .filter(|name| check("job", name).is_ok())
    }
}

/// Names of releases before this scheme (`<app>.service`, `localhost/<app>:<tag>`, the
/// container `<app>`, `<app>-gap.service`): what `deploy setup` moves from.
pub mod legacy {
    pub fn unit(app: &str) -> String {
        format!("{app}.service")
    }

    pub fn gap_unit(app: &str) -> String {
        format!("{app}-gap.service")
    }

    pub fn image_repository(app: &str) -> String {
        format!("localhost/{app}")
    }

    /// Router and file stem: `<app>-<env>`.
    pub fn router(app: &str, env: &str) -> String {
        format!("{app}-{env}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_has_its_own_name() {
        let n = Names::new("shop", "prod");
        assert_eq!(n.unit(), "shop_prod.service");
        assert_eq!(n.gap_unit(), "shop_prod_gap.service");
        assert_eq!(n.image("v1.2"), "localhost/shop_prod:v1.2");
        assert_eq!(n.hook_container(), "shop_prod_hook");
        assert_eq!(n.router(), "shop_prod");
        assert_eq!(n.dynamic_file(), "shop_prod.yaml");
        assert_eq!(n.socket_unit(), "shop_prod.socket");
        assert_eq!(n.job_timer("digest"), "shop_prod_job_digest.timer");
        assert_eq!(n.job_service("digest"), "shop_prod_job_digest.service");
        assert_eq!(
            n.job_run_unit("digest", "17"),
            "shop_prod_job_digest_run_17.service"
        );
        assert_eq!(n.job_container("digest", "17"), "shop_prod_job_digest_17");
    }

    #[test]
    fn a_timers_file_names_its_job_only_for_its_own_environment() {
        let n = Names::new("shop", "prod");
        assert_eq!(n.job_of_timer("shop_prod_job_digest.timer"), Some("digest"));
        for other in [
            "shop_prod_job_digest.service",
            "shop_prod-x_job_digest.timer",
            "shop_staging_job_digest.timer",
            "shop_prod_job_a_run_1.timer",
            "shop_prod_job_.timer",
            "shop_prod.timer",
        ] {
            assert_eq!(n.job_of_timer(other), None, "{other}");
        }
    }

    #[test]
    fn names_cannot_collide() {
        // What collided before: app `a-b` in `c` and app `a` in `b-c`.
        assert_ne!(
            Names::new("a-b", "c").router(),
            Names::new("a", "b-c").router()
        );
        // An app named like another's role cannot exist: `_` is not allowed in names.
        assert!(check("app", "shop_prod").is_err());
        assert!(check("app", "shop-hook").is_ok());
        assert_ne!(
            Names::new("shop-hook", "prod").container(),
            Names::new("shop", "prod").hook_container()
        );
        // Every name over every role, for a set of apps and environments, is distinct.
        let words = ["a", "b", "a-b", "b-c", "c", "gap", "hook", "a-gap"];
        let mut seen = std::collections::HashMap::new();
        for app in words {
            for env in words {
                let n = Names::new(app, env);
                for name in [
                    n.unit(),
                    n.gap_unit(),
                    n.hook_container(),
                    n.container(),
                    n.socket_unit(),
                    n.replication_unit(),
                    n.exec_container("x1"),
                    n.job_timer(app),
                    n.job_service(env),
                    n.job_run_unit(app, "1"),
                    n.job_container(env, "1"),
                ] {
                    if let Some(other) = seen.insert(name.clone(), (app, env)) {
                        assert_eq!(other, (app, env), "{name} is made twice");
                    }
                }
            }
        }
    }

    #[test]
    fn a_preview_is_named_as_its_environment_plus_its_role_and_never_collides() {
        assert_eq!(preview_env("prod", "pr-12"), "prod/pr-12");
        assert_eq!(split_preview("prod/pr-12"), Some(("prod", "pr-12")));
        for not_one in ["prod", "prod/", "/pr", "prod/pr_1", "Prod/pr", "a/b/c"] {
            assert_eq!(split_preview(not_one), None, "{not_one}");
        }
        let n = Names::new("shop", "prod/pr-12");
        assert_eq!(n.unit(), "shop_prod_preview_pr-12.service");
        assert_eq!(n.image("v2"), "localhost/shop_prod_preview_pr-12:v2");
        assert_eq!(n.env(), "prod/pr-12");
        // Never one of its environment's names, nor another environment's or preview's.
        let words = ["a", "gap", "hook", "preview", "job", "a-b"];
        let mut seen = std::collections::HashMap::new();
        for env in words {
            let mut envs = vec![env.to_string()];
            envs.extend(words.iter().map(|p| preview_env(env, p)));
            for e in envs {
                let n = Names::new("shop", &e);
                for name in [
                    n.unit(),
                    n.gap_unit(),
                    n.hook_container(),
                    n.container(),
                    n.job_timer("a"),
                    n.job_container("gap", "1"),
                    n.recover_unit(),
                ] {
                    if let Some(other) = seen.insert(name.clone(), e.clone()) {
                        assert_eq!(other, e, "{name} is made twice");
                    }
                }
            }
        }
        // A preview's job timers are not its environment's.
        let prod = Names::new("shop", "prod");
        let timer = Names::new("shop", "prod/pr-1").job_timer("digest");
        assert_eq!(prod.job_of_timer(&timer), None);
    }

    #[test]
    fn names_are_checked() {
        for good in ["shop", "a", "my-app2", "0day"] {
            assert!(check("app", good).is_ok(), "{good}");
        }
        for bad in ["", "Shop", "a_b", "-a", "a-", "a.b", "a b", &"x".repeat(49)] {
            assert!(check("app", bad).is_err(), "{bad}");
        }
    }
}
