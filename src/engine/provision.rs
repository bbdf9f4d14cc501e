//! Provisioning scripts: rendered per deployment from the templates in `assets/provision/`
//! (one recipe per kind of app, all sharing `common.sh.hbs`), run on the guest with
//! `bash -euo pipefail`. Also the removal script (destroy of a deployment on an existing
//! host), the app-log script, and the activate script (switch to a release already built on
//! the guest: rollback, and the switch back after a failed health check).
//!
//! Every value reaches a script as one shell word quoted by `shlex` (the `q` helper); the
//! templates never splice a value raw, and the scripts pass values on as data (arguments,
//! `printf %q`), never through `eval`. This module renders text only: it runs nothing.
//!
//! Provisioning scripts do not run directly: the runner ([`RUNNER`]) starts them detached on
//! the guest (see `engine::guest::run_detached`).
//!
//! A script prints `proxdeck-commit: <sha>` once it has checked the source out; the pipeline
//! reads the deployed commit from the first such line. It prints `proxdeck-release: FOLDER`
//! when it made a release folder, and `proxdeck-kept: FOLDER STATE [current]` for every
//! release on the guest once it switched (what [`ReleaseLines`] collects). A script that stops on purpose says
//! why in one line on stderr starting with `proxdeck: ` (its `die`); the pipeline makes the
//! last such line the failure's cause.

use crate::domain::{Deployment, Framework};
use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderError,
    RenderErrorReason,
};
use serde::Serialize;

const COMMON: &str = include_str!("../../assets/provision/common.sh.hbs");
const PYTHON: &str = include_str!("../../assets/provision/python.sh.hbs");
const NODE: &str = include_str!("../../assets/provision/node.sh.hbs");
const STATIC: &str = include_str!("../../assets/provision/static.sh.hbs");
const LARAVEL: &str = include_str!("../../assets/provision/laravel.sh.hbs");
const LAMP: &str = include_str!("../../assets/provision/lamp.sh.hbs");
const REMOVE: &str = include_str!("../../assets/provision/remove.sh.hbs");
const LOGS: &str = include_str!("../../assets/provision/logs.sh.hbs");
const ACTIVATE: &str = include_str!("../../assets/provision/activate.sh.hbs");
const POWER: &str = include_str!("../../assets/provision/power.sh.hbs");
const CADDY: &str = include_str!("../../assets/provision/caddy.sh.hbs");
/// The Caddy part alone (`proxdeck domains ID add|remove`): the shared header and helpers,
/// then the app's sites written and Caddy reloaded (a Django app restarted with its hosts).
const DOMAINS: &str = "{{> common}}\n\nsetup_domains\n{{#if django}}refresh_django_hosts\n{{/if}}";

/// The provisioning runner (`assets/provision/runner.sh`): not a template, the same text for
/// every app; it is given the app's runner folder ([`runner_dir`]) as an argument. It runs a
/// script detached on the guest under a per-app lock, keeps its log and exit status, and stops
/// an earlier run still going before it starts another.
pub const RUNNER: &str = include_str!("../../assets/provision/runner.sh");

/// The recipes, by the name the catalog's `recipe` key uses.
pub const RECIPES: [&str; 5] = ["python", "node", "static", "laravel", "lamp"];

/// The line prefix the scripts use to report the deployed commit.
pub const COMMIT_MARKER: &str = "proxdeck-commit: ";

/// The line prefix of the release folder a script made.
pub const RELEASE_MARKER: &str = "proxdeck-release: ";

/// The line prefix of the release folder a script switched the service to.
pub const SWITCHED_MARKER: &str = "proxdeck-switched: ";

/// The line prefix of one release on the guest, as a script lists them after a switch.
pub const KEPT_MARKER: &str = "proxdeck-kept: ";

/// The line prefix (on stderr) of a script's own reason for stopping.
pub const REASON_MARKER: &str = "proxdeck: ";

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(
        "no provisioning recipe {recipe:?} for {framework}; the catalog's recipes are: python, node, static, laravel, lamp"
    )]
    NoRecipe { framework: String, recipe: String },
    #[error("the provisioning script does not render: {0}")]
    Render(String),
    #[error("guest.app_root: {0}")]
    AppRoot(String),
}

/// The app's folder must sit in a root the config would accept: the same check
/// ([`crate::config::validate_app_root`]) guards the config and every script rendered here.
fn check_app_dir(app_dir: &str) -> Result<(), ProvisionError> {
    let root = app_dir.rsplit_once('/').map(|(root, _)| root).unwrap_or("");
    crate::config::validate_app_root(if root.is_empty() { "/" } else { root })
        .map(|_| ())
        .map_err(ProvisionError::AppRoot)
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// Everything a script needs to know about one deployment.
#[derive(Debug, Clone, Serialize)]
pub struct ScriptVars {
    pub name: String,
    pub framework_id: String,
    pub framework_name: String,
    pub recipe: String,
    /// The app's own system user on the guest.
    pub app_user: String,
    /// The service's name (systemd unit, OpenRC service).
    pub service: String,
    pub app_dir: String,
    pub repo: String,
    /// Branch, tag or commit; empty: the repository's default branch.
    pub git_ref: String,
    pub port: u16,
    /// The guest's address as proxdeck reaches it (Django's ALLOWED_HOSTS gets it).
    pub address: String,
    pub install: String,
    pub build: String,
    pub start: String,
    pub docroot: String,
    /// The app's folder in the checkout (`--subdir`); empty: the checkout's root.
    pub subdir: String,
    /// Debian packages the app needs besides the runtime: the catalog's `apt`, then the
    /// deployment's `--apt` (names checked by `spec::validate_apt_package`).
    pub app_apt: String,
    /// The runtime's packages (Debian names, then Alpine's).
    pub apt_packages: String,
    pub apk_packages: String,
    pub env: Vec<EnvVar>,
    pub django: bool,
    /// The project's settings module when the deployment's environment names one.
    pub django_settings: String,
    /// A private MongoDB next to the app (MERN, MEAN) unless MONGODB_URI points elsewhere.
    pub mongodb: bool,
    /// Node apps: the oldest Node.js they run on (`major.minor.patch`; empty: no check), and
    /// why (see `detect::node_need`).
    pub node_min: String,
    pub node_why: String,
    /// Releases kept on the guest (`[releases] keep`).
    pub keep_releases: u32,
    /// The activate script: the release folder to switch to, and the one to mark failed.
    pub target_release: String,
    pub failed_release: String,
    /// Where proxdeck staged the repository's credentials on the guest (in memory; empty: a
    /// public repository), and git's environment for the fetch (`KEY=VALUE`, no secrets).
    pub git_access_dir: String,
    pub git_env: Vec<String>,
    /// What to do when the guest cannot read the repository with them.
    pub git_access_hint: String,
    /// Whether the script checks that the guest reads the repository before it fetches (not
    /// for a rollback to a commit the guest has).
    pub git_access_check: bool,
    /// The names Caddy serves the app under, space-separated (validated DNS names); empty:
    /// no Caddy sites for this app.
    pub domains: String,
    /// `acme`, `internal` or `off`.
    pub tls: String,
    /// Close the app's port to everything but the guest itself (Caddy fronts it).
    pub guard_port: bool,
}

/// The app's system user: `pd-<name>`, shortened with a hash to fit the 32 characters
/// `useradd` allows.
pub fn app_user(name: &str) -> String {
    let user = format!("pd-{name}");
    if user.len() <= 32 {
        return user;
    }
    // FNV-1a: stable across releases, unlike std's hasher.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let head: String = name.chars().take(19).collect();
    format!("pd-{}-{:08x}", head.trim_end_matches('-'), hash as u32)
}

/// The service's name on the guest.
pub fn service_name(name: &str) -> String {
    format!("proxdeck-{name}")
}

/// The runner's folder of an app on its guest (lock, pid files, logs, exit statuses): root's,
/// 0700, inside the app's folder so that removing the app removes it.
pub fn runner_dir(app_dir: &str) -> String {
    format!("{}/run/provision", app_dir.trim_end_matches('/'))
}

/// The app's folder on the guest.
pub fn app_dir(app_root: &str, name: &str) -> String {
    format!("{}/{name}", app_root.trim_end_matches('/'))
}

impl ScriptVars {
    /// The variables for `d` with framework `fw`: the deployment's command overrides win over
    /// the catalog's; `git_ref` is what to check out (the deployment's ref, or a commit).
    pub fn new(
        d: &Deployment,
        fw: &Framework,
        env: &[(String, String)],
        app_root: &str,
        address: &str,
        git_ref: &str,
    ) -> ScriptVars {
        let o = &d.overrides;
        let has_env = |k: &str| env.iter().any(|(name, _)| name == k);
        let external_mongo = has_env("MONGODB_URI") || has_env("MONGO_URI");
        let mongodb = fw.runtime.split_whitespace().any(|p| p == "mongodb-org") && !external_mongo;
        let apt_packages = fw
            .runtime
            .split_whitespace()
            .filter(|p| *p != "mongodb-org" || mongodb)
            .collect::<Vec<_>>()
            .join(" ");
        let django = fw.id == "django";
        let django_settings = env
            .iter()
            .find(|(k, _)| k == "DJANGO_SETTINGS_MODULE")
            .map(|(_, v)| v.clone())
            .filter(|_| django)
            .unwrap_or_default();
        ScriptVars {
            name: d.name.clone(),
            framework_id: fw.id.clone(),
            framework_name: fw.name.clone(),
            recipe: fw.recipe.clone(),
            app_user: app_user(&d.name),
            service: service_name(&d.name),
            app_dir: app_dir(app_root, &d.name),
            repo: d.repo.clone(),
            git_ref: git_ref.to_string(),
            port: d.port,
            address: address.to_string(),
            install: o.install.clone().unwrap_or_else(|| fw.install.clone()),
            build: o.build.clone().unwrap_or_else(|| fw.build.clone()),
            start: o.start.clone().unwrap_or_else(|| fw.start.clone()),
            docroot: fw.docroot.clone(),
            subdir: o.subdir.clone().unwrap_or_default(),
            app_apt: fw
                .apt
                .iter()
                .chain(o.apt.iter())
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" "),
            apt_packages,
            apk_packages: fw.alpine.clone(),
            env: env
                .iter()
                .filter(|(k, _)| !(django && k == "DJANGO_SETTINGS_MODULE"))
                .map(|(name, value)| EnvVar {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            django,
            django_settings,
            mongodb,
            node_min: String::new(),
            node_why: String::new(),
            keep_releases: crate::config::ReleasesConfig::default().keep,
            target_release: String::new(),
            failed_release: String::new(),
            git_access_dir: String::new(),
            git_env: vec!["GIT_TERMINAL_PROMPT=0".to_string()],
            git_access_hint: String::new(),
            git_access_check: false,
            domains: o.domains.join(" "),
            tls: o.tls_mode().as_str().to_string(),
            guard_port: o.port_guarded(),
        }
        .with_node_need(crate::engine::detect::framework_node_need(fw))
    }

    /// The credentials staged on the guest in `dir` and git's environment for them
    /// (`gitauth::guest_env`).
    pub fn with_git_access(
        mut self,
        dir: &str,
        env: Vec<String>,
        hint: String,
        check: bool,
    ) -> Self {
        self.git_access_dir = dir.to_string();
        self.git_env = env;
        self.git_access_hint = hint;
        self.git_access_check = check;
        self
    }

    /// The Node.js the app needs (from `detect::node_need`); `None`: no check.
    pub fn with_node_need(mut self, need: Option<crate::engine::detect::NodeNeed>) -> Self {
        let (min, why) = need.map(|n| (n.min, n.why)).unwrap_or_default();
        self.node_min = min;
        self.node_why = why;
        self
    }
}

/// A release folder name as the scripts make them (`<seq>-<commit>`, or `0-legacy`): checked
/// before it reaches a script as the release to switch to.
pub fn valid_release_folder(folder: &str) -> bool {
    !folder.is_empty()
        && folder.len() <= 64
        && folder
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !folder.starts_with('-')
}

/// `{{q value}}`: the value as one shell word (shlex quoting). Refuses what cannot be quoted.
fn quote_helper(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let param = h
        .param(0)
        .ok_or_else(|| RenderError::from(RenderErrorReason::ParamNotFoundForIndex("q", 0)))?;
    let text = match param.value() {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => (if *b { "1" } else { "0" }).to_string(),
        other => {
            return Err(RenderErrorReason::Other(format!("q: cannot quote {other}")).into());
        }
    };
    let quoted = shlex::try_quote(&text)
        .map_err(|e| RenderError::from(RenderErrorReason::Other(format!("q: {e}"))))?;
    out.write(&quoted)?;
    Ok(())
}

fn engine() -> Result<Handlebars<'static>, ProvisionError> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    hb.register_helper("q", Box::new(quote_helper));
    hb.register_partial("common", COMMON)
        .map_err(|e| ProvisionError::Render(e.to_string()))?;
    hb.register_partial("caddy", CADDY)
        .map_err(|e| ProvisionError::Render(e.to_string()))?;
    Ok(hb)
}

fn template(recipe: &str) -> Option<&'static str> {
    Some(match recipe {
        "python" => PYTHON,
        "node" => NODE,
        "static" => STATIC,
        "laravel" => LARAVEL,
        "lamp" => LAMP,
        _ => return None,
    })
}

/// Renders the provisioning script for `framework` with `vars`.
pub fn render_script(framework: &Framework, vars: &ScriptVars) -> Result<String, ProvisionError> {
    check_app_dir(&vars.app_dir)?;
    let template = template(&framework.recipe).ok_or_else(|| ProvisionError::NoRecipe {
        framework: framework.id.clone(),
        recipe: framework.recipe.clone(),
    })?;
    engine()?
        .render_template(template, vars)
        .map_err(|e| ProvisionError::Render(e.to_string()))
}

/// Renders the script that switches the app to the release folder `target` (already built on
/// the guest) and restarts it, marking `failed` (when given) failed. Nothing is fetched or
/// built.
pub fn render_activate(
    vars: &ScriptVars,
    target: &str,
    failed: Option<&str>,
) -> Result<String, ProvisionError> {
    check_app_dir(&vars.app_dir)?;
    for folder in std::iter::once(target).chain(failed) {
        if !valid_release_folder(folder) {
            return Err(ProvisionError::Render(format!(
                "{folder:?} is not a release folder name"
            )));
        }
    }
    let vars = ScriptVars {
        target_release: target.to_string(),
        failed_release: failed.unwrap_or_default().to_string(),
        ..vars.clone()
    };
    engine()?
        .render_template(ACTIVATE, &vars)
        .map_err(|e| ProvisionError::Render(e.to_string()))
}

/// One release as a script listed it (`proxdeck-kept:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptRelease {
    pub folder: String,
    /// `built`, `failed` or `building`.
    pub state: String,
    pub current: bool,
}

/// The release lines of a script's output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseLines {
    /// The folder the script made (`proxdeck-release:`).
    pub made: Option<String>,
    /// The folder the script switched `current` to (`proxdeck-switched:`).
    pub switched: Option<String>,
    /// Every release on the guest after the switch; empty when the script did not get there.
    pub kept: Vec<KeptRelease>,
}

impl ReleaseLines {
    /// Takes in one line of a script's stdout.
    pub fn read(&mut self, line: &str) {
        if let Some(folder) = line.strip_prefix(RELEASE_MARKER) {
            let folder = folder.trim();
            if valid_release_folder(folder) {
                self.made = Some(folder.to_string());
            }
        } else if let Some(folder) = line.strip_prefix(SWITCHED_MARKER) {
            let folder = folder.trim();
            if valid_release_folder(folder) {
                self.switched = Some(folder.to_string());
            }
        } else if let Some(rest) = line.strip_prefix(KEPT_MARKER) {
            let mut words = rest.split_whitespace();
            if let (Some(folder), Some(state)) = (words.next(), words.next())
                && valid_release_folder(folder)
            {
                self.kept.push(KeptRelease {
                    folder: folder.to_string(),
                    state: state.to_string(),
                    current: words.next() == Some("current"),
                });
            }
        }
    }
}

/// The commit part of a release folder name (`12-0123456789ab` → `0123456789ab`).
pub fn folder_commit(folder: &str) -> Option<&str> {
    folder
        .split_once('-')
        .map(|(_, c)| c)
        .filter(|c| c.len() >= 7 && c.chars().all(|ch| ch.is_ascii_hexdigit()))
}

/// The sequence number of a release folder name (`12-0123456789ab` → 12).
pub fn folder_seq(folder: &str) -> Option<i64> {
    folder.split_once('-').and_then(|(n, _)| n.parse().ok())
}

/// Renders the script that writes the app's Caddy sites from `vars` (its domains, TLS mode,
/// port guard) and reloads Caddy, without touching the app itself.
pub fn render_domains(vars: &ScriptVars) -> Result<String, ProvisionError> {
    check_app_dir(&vars.app_dir)?;
    engine()?
        .render_template(DOMAINS, vars)
        .map_err(|e| ProvisionError::Render(e.to_string()))
}

/// Where an app lives on its guest and what it is called there: all the removal and log
/// scripts need (no framework: they work for any app, even one the catalog dropped).
#[derive(Debug, Clone, Serialize)]
struct Place {
    name: String,
    app_user: String,
    app_dir: String,
    service: String,
    lines: u32,
    follow: bool,
    /// The power script's action: start, stop or restart.
    action: String,
}

impl Place {
    fn new(name: &str, app_root: &str) -> Place {
        Place {
            name: name.to_string(),
            app_user: app_user(name),
            app_dir: app_dir(app_root, name),
            service: service_name(name),
            lines: 0,
            follow: false,
            action: String::new(),
        }
    }
}

/// Renders the script that stops and removes the app `name` (service, folder, user) from its
/// host.
pub fn render_remove(name: &str, app_root: &str) -> Result<String, ProvisionError> {
    let place = Place::new(name, app_root);
    check_app_dir(&place.app_dir)?;
    engine()?
        .render_template(REMOVE, &place)
        .map_err(|e| ProvisionError::Render(e.to_string()))
}

/// Renders the script that prints the last `lines` lines of the app's own log (and with
/// `follow`, keeps printing).
pub fn render_logs(
    name: &str,
    app_root: &str,
    lines: u32,
    follow: bool,
) -> Result<String, ProvisionError> {
    let place = Place {
        lines,
        follow,
        ..Place::new(name, app_root)
    };
    check_app_dir(&place.app_dir)?;
    engine()?
        .render_template(LOGS, &place)
        .map_err(|e| ProvisionError::Render(e.to_string()))
}

/// Renders the script that starts, stops or restarts (`action`) the app `name`'s service on
/// its host (a deployment made with `--host`).
pub fn render_power(name: &str, app_root: &str, action: &str) -> Result<String, ProvisionError> {
    if !["start", "stop", "restart"].contains(&action) {
        return Err(ProvisionError::Render(format!(
            "unknown action {action:?}: start, stop or restart"
        )));
    }
    let place = Place {
        action: action.to_string(),
        ..Place::new(name, app_root)
    };
    check_app_dir(&place.app_dir)?;
    engine()?
        .render_template(POWER, &place)
        .map_err(|e| ProvisionError::Render(e.to_string()))
}

/// The reason a script gave for stopping, if this stderr line is one.
pub fn reason_from_line(line: &str) -> Option<String> {
    let reason = line.strip_prefix(REASON_MARKER)?.trim();
    (!reason.is_empty()).then(|| reason.to_string())
}

/// The commit a script reported, if this line is its marker.
pub fn commit_from_line(line: &str) -> Option<String> {
    let sha = line.strip_prefix(COMMIT_MARKER)?.trim();
    (sha.len() >= 7 && sha.chars().all(|c| c.is_ascii_hexdigit())).then(|| sha.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Catalog, Deployment, DeploymentId};

    fn deployment(framework: &str) -> Deployment {
        Deployment {
            id: DeploymentId("abc234".into()),
            name: "shop".into(),
            repo: "https://github.com/acme/shop.git".into(),
            framework: framework.into(),
            port: 5000,
            ..Deployment::default()
        }
    }

    fn vars(framework: &str, env: &[(&str, &str)]) -> (Framework, ScriptVars) {
        let fw = Catalog::builtin().get(framework).unwrap().clone();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let v = ScriptVars::new(
            &deployment(framework),
            &fw,
            &env,
            "/opt/proxdeck",
            "10.0.0.5",
            "",
        );
        (fw, v)
    }

    const HOSTILE: &str = "it's $(rm -rf /) `id`; \"quoted\" ünïcode";

    #[test]
    fn values_are_single_shell_words() {
        let (fw, v) = vars("flask", &[("GREETING", HOSTILE)]);
        let script = render_script(&fw, &v).unwrap();
        assert!(
            script.contains("START_CMD='gunicorn --bind 0.0.0.0:$PORT app:app'"),
            "{script}"
        );
        assert!(script.contains("GIT_REF=''"));
        assert!(script.contains("APP_PORT=5000"));
        assert!(script.contains("APP_USER=pd-shop"));
        // The hostile value is quoted so that bash reads it back byte for byte.
        let line = script
            .lines()
            .find(|l| l.contains("export %s=%q") && l.contains("GREETING"))
            .unwrap();
        let words = shlex::split(line.trim()).unwrap();
        assert_eq!(words[3], HOSTILE);
    }

    #[test]
    fn every_catalog_framework_has_a_recipe_that_renders() {
        for fw in &Catalog::builtin().frameworks {
            assert!(
                RECIPES.contains(&fw.recipe.as_str()),
                "{}: recipe {:?}",
                fw.id,
                fw.recipe
            );
            let (fw, v) = vars(&fw.id, &[]);
            let script = render_script(&fw, &v).unwrap();
            assert!(script.starts_with("#!/usr/bin/env bash\n"), "{}", fw.id);
            assert!(script.contains("install_service\n"), "{}", fw.id);
        }
    }

    #[test]
    fn overrides_win_over_the_catalog() {
        let fw = Catalog::builtin().get("express").unwrap().clone();
        let mut d = deployment("express");
        d.overrides.install = Some("npm install --omit=dev --ignore-scripts".into());
        d.overrides.build = Some(String::new());
        d.overrides.start = Some("node server.js".into());
        let v = ScriptVars::new(&d, &fw, &[], "/srv/apps/", "host", "v1.2");
        assert_eq!(v.install, "npm install --omit=dev --ignore-scripts");
        assert_eq!(v.build, "");
        assert_eq!(v.start, "node server.js");
        assert_eq!(v.app_dir, "/srv/apps/shop");
        assert_eq!(v.git_ref, "v1.2");
    }

    #[test]
    fn subdir_and_apt_reach_the_script_quoted() {
        let mut fw = Catalog::builtin().get("flask").unwrap().clone();
        fw.apt = vec!["build-essential".into()];
        let mut d = deployment("flask");
        d.overrides.subdir = Some("services/api".into());
        d.overrides.apt = vec!["default-libmysqlclient-dev".into(), "pkg-config".into()];
        let v = ScriptVars::new(&d, &fw, &[], "/opt/proxdeck", "host", "");
        assert_eq!(v.subdir, "services/api");
        assert_eq!(
            v.app_apt,
            "build-essential default-libmysqlclient-dev pkg-config"
        );
        let script = render_script(&fw, &v).unwrap();
        assert!(script.contains("APP_SUBDIR=services/api\n"), "{script}");
        assert!(
            script.contains("APP_APT='build-essential default-libmysqlclient-dev pkg-config'"),
            "{script}"
        );
        assert!(script.contains("$APT_PACKAGES $APP_APT"), "{script}");
        let (fw, v) = vars("flask", &[]);
        let script = render_script(&fw, &v).unwrap();
        assert!(script.contains("APP_SUBDIR=''"), "{script}");
    }

    #[test]
    fn mongodb_only_without_an_external_uri() {
        let (_, v) = vars("mern", &[]);
        assert!(v.mongodb && v.apt_packages.contains("mongodb-org"));
        let (_, v) = vars("mern", &[("MONGODB_URI", "mongodb://db.example/shop")]);
        assert!(!v.mongodb && !v.apt_packages.contains("mongodb-org"));
        let (_, v) = vars("express", &[]);
        assert!(!v.mongodb);
    }

    #[test]
    fn django_settings_module_moves_into_the_overlay() {
        let (fw, v) = vars("django", &[("DJANGO_SETTINGS_MODULE", "shop.prod")]);
        assert!(v.django);
        assert_eq!(v.django_settings, "shop.prod");
        assert!(v.env.is_empty());
        let script = render_script(&fw, &v).unwrap();
        assert!(script.contains("base_settings=shop.prod"), "{script}");
        assert!(script.contains("proxdeck_settings.py"));
        let (fw, v) = vars("flask", &[]);
        assert!(
            !render_script(&fw, &v)
                .unwrap()
                .contains("proxdeck_settings")
        );
    }

    #[test]
    fn app_users_fit_useradd() {
        assert_eq!(app_user("shop"), "pd-shop");
        let long = "a-very-long-application-name-that-goes-on-and-on";
        let u = app_user(long);
        assert!(u.len() <= 32, "{u}");
        assert_eq!(u, app_user(long));
        assert_ne!(
            u,
            app_user("a-very-long-application-name-that-goes-on-and-of")
        );
        assert_eq!(service_name("shop"), "proxdeck-shop");
    }

    #[test]
    fn remove_and_logs_render() {
        let remove = render_remove("shop", "/opt/proxdeck").unwrap();
        assert!(remove.contains("APP_DIR=/opt/proxdeck/shop"));
        assert!(remove.contains("SERVICE=proxdeck-shop"));
        assert!(remove.contains("APP_USER=pd-shop"));
        let logs = render_logs("shop", "/opt/proxdeck/", 200, true).unwrap();
        assert!(
            logs.contains("LINES=200") && logs.contains("FOLLOW=1"),
            "{logs}"
        );
        assert!(logs.contains("APP_DIR=/opt/proxdeck/shop"), "{logs}");
        assert!(
            render_logs("shop", "/opt/proxdeck", 50, false)
                .unwrap()
                .contains("FOLLOW=0")
        );
    }

    #[test]
    fn scripts_refuse_an_app_root_the_config_refuses() {
        let (fw, mut v) = vars("flask", &[]);
        for (root, ok) in [
            ("/opt/proxdeck", true),
            ("/srv/apps/", true),
            ("/opt/my apps", false),
            ("/", false),
            ("/srv/../etc", false),
            ("/srv/$x", false),
        ] {
            v.app_dir = app_dir(root, "shop");
            let by_config = crate::config::validate_app_root(root).is_ok();
            assert_eq!(by_config, ok, "config on {root:?}");
            assert_eq!(render_script(&fw, &v).is_ok(), ok, "script for {root:?}");
            assert_eq!(
                render_remove("shop", root).is_ok(),
                ok,
                "remove for {root:?}"
            );
            assert_eq!(
                render_logs("shop", root, 10, false).is_ok(),
                ok,
                "logs for {root:?}"
            );
        }
        let err = render_remove("shop", "/opt/my apps")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("guest.app_root: "), "{err}");
    }

    #[test]
    fn domains_reach_the_script_as_data() {
        let fw = Catalog::builtin().get("flask").unwrap().clone();
        let mut d = deployment("flask");
        let v = ScriptVars::new(&d, &fw, &[], "/opt/proxdeck", "10.0.0.5", "");
        assert_eq!((v.domains.as_str(), v.guard_port), ("", false));
        let script = render_script(&fw, &v).unwrap();
        assert!(script.contains("APP_DOMAINS=''"), "{script}");
        assert!(script.contains("\nsetup_domains\n"), "{script}");
        d.overrides.domains = vec!["shop.example.com".into(), "www.shop.example.com".into()];
        d.overrides.tls = Some(crate::domain::TlsMode::Internal);
        let v = ScriptVars::new(&d, &fw, &[], "/opt/proxdeck", "10.0.0.5", "");
        assert!(v.guard_port);
        let script = render_domains(&v).unwrap();
        assert!(
            script.contains("APP_DOMAINS='shop.example.com www.shop.example.com'"),
            "{script}"
        );
        assert!(script.contains("TLS_MODE=internal"), "{script}");
        assert!(script.contains("GUARD_PORT=1"), "{script}");
        assert!(script.trim_end().ends_with("setup_domains"), "{script}");
        let dj = Catalog::builtin().get("django").unwrap().clone();
        let mut d = deployment("django");
        d.overrides.domains = vec!["shop.example.com".into()];
        let v = ScriptVars::new(&d, &dj, &[], "/opt/proxdeck", "10.0.0.5", "");
        assert!(
            render_domains(&v)
                .unwrap()
                .trim_end()
                .ends_with("setup_domains\nrefresh_django_hosts")
        );
        d.overrides.expose_port = true;
        let v = ScriptVars::new(&d, &fw, &[], "/opt/proxdeck", "10.0.0.5", "");
        assert!(render_domains(&v).unwrap().contains("GUARD_PORT=0"));
    }

    #[test]
    fn commit_marker() {
        assert_eq!(
            commit_from_line("proxdeck-commit: 0123456789abcdef0123456789abcdef01234567")
                .as_deref(),
            Some("0123456789abcdef0123456789abcdef01234567")
        );
        assert_eq!(commit_from_line("proxdeck-commit: nope"), None);
        assert_eq!(commit_from_line("other"), None);
        assert_eq!(
            reason_from_line("proxdeck: no Node.js 20.19 here").as_deref(),
            Some("no Node.js 20.19 here")
        );
        assert_eq!(reason_from_line("npm ERR! proxdeck: x"), None);
    }

    #[test]
    fn release_lines_are_read_and_folder_names_checked() {
        let mut lines = ReleaseLines::default();
        for l in [
            "proxdeck-commit: 0123456789abcdef0123456789abcdef01234567",
            "proxdeck-release: 3-0123456789ab",
            "proxdeck-switched: 3-0123456789ab",
            "proxdeck-kept: 0-legacy built",
            "proxdeck-kept: 2-ba9876543210 failed",
            "proxdeck-kept: 3-0123456789ab built current",
            "proxdeck-kept: ../etc built",
            "proxdeck-release: $(id)",
        ] {
            lines.read(l);
        }
        assert_eq!(lines.made.as_deref(), Some("3-0123456789ab"));
        assert_eq!(lines.switched.as_deref(), Some("3-0123456789ab"));
        let kept: Vec<_> = lines
            .kept
            .iter()
            .map(|k| (k.folder.as_str(), k.state.as_str(), k.current))
            .collect();
        assert_eq!(
            kept,
            [
                ("0-legacy", "built", false),
                ("2-ba9876543210", "failed", false),
                ("3-0123456789ab", "built", true)
            ]
        );
        assert_eq!(folder_seq("12-0123456789ab"), Some(12));
        assert_eq!(folder_commit("12-0123456789ab"), Some("0123456789ab"));
        assert_eq!(folder_commit("0-legacy"), None);
    }

    #[test]
    fn the_activate_script_switches_and_builds_nothing() {
        let (fw, v) = vars("flask", &[]);
        let script = render_activate(&v, "3-0123456789ab", Some("4-ba9876543210")).unwrap();
        assert!(script.contains("TARGET_RELEASE=3-0123456789ab"), "{script}");
        assert!(script.contains("FAILED_RELEASE=4-ba9876543210"), "{script}");
        assert!(script.trim_end().ends_with("activate_release"), "{script}");
        for bad in ["", "../x", "3-abc;id", "-rf"] {
            assert!(render_activate(&v, bad, None).is_err(), "{bad:?}");
        }
        // A deploy script builds and switches; it keeps what [releases] keep says.
        let mut v = v;
        v.keep_releases = 7;
        let deploy = render_script(&fw, &v).unwrap();
        assert!(deploy.contains("KEEP_RELEASES=7") && deploy.contains("TARGET_RELEASE=''"));
    }

    #[test]
    fn node_apps_carry_their_node_need() {
        let (fw, v) = vars("react", &[]);
        assert_eq!(v.node_min, "20.19.0");
        let script = render_script(&fw, &v).unwrap();
        assert!(script.contains("NODE_MIN=20.19.0"), "{script}");
        assert!(script.contains("check_node\n"), "{script}");
        let (_, v) = vars("flask", &[]);
        assert_eq!(v.node_min, "");
        let v = v.with_node_need(Some(crate::engine::detect::NodeNeed {
            min: "18.0.0".into(),
            why: "package.json says so".into(),
        }));
        assert_eq!(
            (v.node_min.as_str(), v.node_why.as_str()),
            ("18.0.0", "package.json says so")
        );
    }
}
