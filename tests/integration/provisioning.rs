//! Provisioning scripts as text (issue 5): every recipe of the catalog renders, passes
//! `bash -n` and ShellCheck, and matches its golden file under
//! `tests/fixtures/golden/provision/` (Laravel, MERN and MEAN cannot run here: Packagist and
//! MongoDB's packages are out of reach, so this is how they are checked). Hostile values
//! (quotes, `$()`, backticks, `;`, spaces, unicode) stay single shell words.
//!
//! `PROXDECK_UPDATE_GOLDEN=1 cargo test --test integration provisioning` rewrites the goldens.

use crate::support::parts::{Part, in_ci, repo_root, skip_without};
use crate::support::process::run_with_timeout;
use proxdeck::domain::{Catalog, Deployment, DeploymentId};
use proxdeck::engine::provision::{self, ScriptVars};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn golden_dir() -> PathBuf {
    repo_root().join("tests/fixtures/golden/provision")
}

fn update_golden() -> bool {
    std::env::var_os("PROXDECK_UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

/// A deployment with fixed values, so the rendering is the same on every run.
fn sample(framework: &str) -> Deployment {
    Deployment {
        id: DeploymentId("gold23".into()),
        name: format!("{framework}-app"),
        repo: "https://git.example.com/acme/shop.git".into(),
        git_ref: "main".into(),
        framework: framework.into(),
        port: Catalog::builtin().get(framework).unwrap().default_port,
        ..Deployment::default()
    }
}

fn env() -> Vec<(String, String)> {
    vec![
        ("SECRET_KEY".to_string(), "s3cr3t-value".to_string()),
        ("GREETING".to_string(), "hello world".to_string()),
    ]
}

fn render(framework: &str, env: &[(String, String)]) -> String {
    let fw = Catalog::builtin().get(framework).unwrap();
    let vars = ScriptVars::new(
        &sample(framework),
        fw,
        env,
        "/opt/proxdeck",
        "10.0.0.5",
        "main",
    );
    provision::render_script(fw, &vars).unwrap_or_else(|e| panic!("{framework}: {e}"))
}

/// The activate script (rollback; the switch back after a failed health check) of a Flask app.
fn activate_script() -> String {
    let fw = Catalog::builtin().get("flask").unwrap();
    let vars = ScriptVars::new(
        &sample("flask"),
        fw,
        &env(),
        "/opt/proxdeck",
        "10.0.0.5",
        "",
    );
    provision::render_activate(&vars, "3-0123456789ab", Some("4-ba9876543210"))
        .unwrap_or_else(|e| panic!("activate: {e}"))
}

/// `bash -n` and ShellCheck on a script; panics with their output.
fn check_script(name: &str, script: &str, dir: &Path) {
    let path = dir.join(format!("{name}.sh"));
    std::fs::write(&path, script).unwrap();
    let syntax = run_with_timeout(
        Command::new("bash").arg("-n").arg(&path),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(syntax.success(), "{name}: bash -n\n{}", syntax.describe());
    let lint = run_with_timeout(
        Command::new("shellcheck")
            .args(["--shell=bash", "--external-sources", "--format=gcc"])
            .arg(&path),
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(
        lint.success(),
        "{name}: shellcheck found problems\n{}\n--- script ---\n{script}",
        lint.describe()
    );
}

fn compare_golden(name: &str, text: &str) {
    let path = golden_dir().join(name);
    if update_golden() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run PROXDECK_UPDATE_GOLDEN=1 cargo test --test integration provisioning",
            path.display()
        )
    });
    if want != text {
        let first = want
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(text.lines().count()));
        panic!(
            "{name} differs from its golden file at line {}:\n golden: {:?}\n now:    {:?}\n\
             (if the change is intended: PROXDECK_UPDATE_GOLDEN=1 cargo test --test integration provisioning)",
            first + 1,
            want.lines().nth(first),
            text.lines().nth(first)
        );
    }
}

fn shellcheck_available() -> bool {
    let ok = Command::new("shellcheck").arg("--version").output().is_ok();
    if !ok {
        assert!(
            !in_ci(),
            "shellcheck is missing under CI=true: run scripts/test"
        );
        eprintln!("SKIPPED shellcheck checks: apt-get install shellcheck");
    }
    ok
}

#[test]
fn every_recipe_renders_lints_and_matches_its_golden_file() {
    let lint = shellcheck_available();
    let dir = tempfile::tempdir().unwrap();
    for fw in &Catalog::builtin().frameworks {
        let script = render(&fw.id, &env());
        if lint {
            check_script(&fw.id, &script, dir.path());
        }
        compare_golden(&format!("{}.sh", fw.id), &script);
        // The catalog's values, not another framework's, went in.
        assert!(
            script.contains(&format!(
                "START_CMD={}",
                shlex::try_quote(&fw.start).unwrap()
            )),
            "{}: start command",
            fw.id
        );
        assert!(script.contains("APP_USER=pd-"), "{}", fw.id);
    }
    for (name, text) in [
        (
            "remove",
            provision::render_remove("flask-app", "/opt/proxdeck").unwrap(),
        ),
        (
            "logs",
            provision::render_logs("flask-app", "/opt/proxdeck", 200, true).unwrap(),
        ),
        ("activate", activate_script()),
        (
            "power",
            provision::render_power("flask-app", "/opt/proxdeck", "restart").unwrap(),
        ),
    ] {
        if lint {
            check_script(name, &text, dir.path());
        }
        compare_golden(&format!("{name}.sh"), &text);
    }
}

#[test]
fn the_full_stack_recipes_set_up_their_services() {
    let mern = render("mern", &env());
    assert!(
        mern.contains("repo.mongodb.org/apt/debian"),
        "MongoDB's apt repo"
    );
    assert!(mern.contains("mongod --dbpath"), "a private mongod");
    assert!(mern.contains("MONGODB_URI=mongodb://127.0.0.1:27017/"));
    let mean = render("mean", &env());
    assert!(mean.contains("mongod --dbpath") && mean.contains("npm run build --if-present"));
    // With a database elsewhere, no MongoDB on the guest.
    let external = render(
        "mern",
        &[(
            "MONGODB_URI".into(),
            "mongodb://db.example:27017/shop".into(),
        )],
    );
    assert!(!external.contains("mongod --dbpath") && !external.contains("repo.mongodb.org"));
    let packages = external
        .lines()
        .find(|l| l.starts_with("APT_PACKAGES="))
        .unwrap();
    assert!(!packages.contains("mongodb-org"), "{packages}");
    let laravel = render("laravel", &env());
    for part in [
        "php-fpm -F -O -y",
        "fastcgi_pass unix:$APP_DIR/var/php-fpm.sock",
        "php artisan key:generate",
        "php artisan migrate --force",
        "composer install",
    ] {
        assert!(laravel.contains(part), "laravel: {part}");
    }
    let lamp = render("lamp", &env());
    for part in [
        "mariadbd --no-defaults",
        "LoadModule php_module",
        "DB_PASSWORD=",
    ] {
        assert!(lamp.contains(part), "lamp: {part}");
    }
}

#[test]
fn hostile_values_stay_single_words_and_valid_bash() {
    if skip_without(
        "hostile_values_stay_single_words_and_valid_bash",
        &[Part::Git],
    ) {
        return;
    }
    let hostile = "it's \"$(touch /tmp/pwned)\" `id`; rm -rf / & ünï cödé \\ $HOME";
    let env = vec![("HOSTILE".to_string(), hostile.to_string())];
    let fw = Catalog::builtin().get("express").unwrap();
    let mut d = sample("express");
    d.overrides.start = Some(hostile.to_string());
    let vars = ScriptVars::new(&d, fw, &env, "/opt/proxdeck", "10.0.0.5", "main");
    let script = provision::render_script(fw, &vars).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sh");
    std::fs::write(&path, &script).unwrap();
    let syntax = run_with_timeout(
        Command::new("bash").arg("-n").arg(&path),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(syntax.success(), "{}", syntax.describe());
    // Bash itself reads the assignments back byte for byte (without running anything else).
    let start_line = script
        .lines()
        .find(|l| l.starts_with("START_CMD="))
        .unwrap();
    let env_line = script
        .lines()
        .find(|l| l.contains("HOSTILE"))
        .unwrap()
        .trim()
        .to_string();
    let probe = format!(
        "{start_line}\nprintf '%s\\n' \"$START_CMD\"\n{}\n",
        env_line.replace("printf 'export %s=%q\\n'", "printf '%s=%s\\n'")
    );
    let out = run_with_timeout(
        Command::new("bash").args(["-c", &probe]),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(out.success(), "{}", out.describe());
    assert_eq!(out.stdout, format!("{hostile}\nHOSTILE={hostile}\n"));
}

/// A private repository's access: the staged folder, git's environment (a GIT_SSH_COMMAND
/// with spaces and quotes) and the hint stay single words, and the script is valid bash that
/// ShellCheck accepts; no credential is in it.
#[test]
fn private_repository_access_renders_as_valid_bash() {
    use proxdeck::domain::GitAuth;
    use proxdeck::engine::gitauth::{self, Access};
    let lint = shellcheck_available();
    let dir = tempfile::tempdir().unwrap();
    let fw = Catalog::builtin().get("flask").unwrap();
    let stage = "/dev/shm/proxdeck-git-Ab3dE5gH7j";
    for access in [
        Access {
            auth: Some(GitAuth::DeployKey),
            ..Access::default()
        },
        Access {
            auth: Some(GitAuth::TokenEnv("GITHUB_TOKEN".into())),
            token: Some("ghp_never-in-the-script".into()),
            username: Some("x-access-token".into()),
            ..Access::default()
        },
    ] {
        let d = sample("flask");
        let vars = ScriptVars::new(&d, fw, &env(), "/opt/proxdeck", "10.0.0.5", "main")
            .with_git_access(
                stage,
                gitauth::guest_env(&access, stage),
                gitauth::unreadable_hint(&access, &d.repo, &d.id),
                true,
            );
        let script = provision::render_script(fw, &vars).unwrap();
        if lint {
            check_script("private", &script, dir.path());
        }
        assert!(
            script.contains(&format!("GIT_ACCESS_DIR={stage}")),
            "{script}"
        );
        assert!(!script.contains("ghp_never-in-the-script"));
        let expected = match access.auth {
            Some(GitAuth::DeployKey) => "StrictHostKeyChecking=yes",
            _ => "cat /dev/shm/proxdeck-git-Ab3dE5gH7j/token",
        };
        assert!(script.contains(expected), "{script}");
    }
}
