//! Provisioning scripts as text (issue 5): every recipe of the catalog renders, passes
//! `bash -n` and ShellCheck, and matches its golden file under
//! `tests/fixtures/golden/provision/` (Laravel, MERN and MEAN cannot run here: Packagist and
//! MongoDB's packages are out of reach, so this is how they are checked). Hostile values
//! (quotes, `$()`, backticks, `;`, spaces, unicode) stay single shell words.
//!
//! The provisioning runner (`assets/provision/runner.sh`) runs here on this machine, as it runs
//! on a guest (as root, with bash, flock and setsid): a run that ignores SIGTERM is killed by the
//! next run after the grace, the two never overlap, and `follow` prints a run's tagged log
//! and its end.
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
    // The runner is not a template: the same text for every app.
    if lint {
        check_script("runner", provision::RUNNER, dir.path());
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

/// The runner as proxdeck calls it (`bash -c RUNNER proxdeck-runner ARGS`), `stdin` fed.
fn runner(args: &[&str], stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(provision::RUNNER)
        .arg("proxdeck-runner")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_runner_kills_a_run_that_ignores_term_before_the_next_and_follows_a_log_to_its_end() {
    if !crate::support::parts::is_root() {
        assert!(!in_ci(), "the runner test needs root");
        eprintln!("skipping the runner test: it needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("app/run/provision");
    let state = state.to_str().unwrap();
    // A run that ignores SIGTERM (and so does its sleep): only SIGKILL ends it.
    let stubborn = "trap '' TERM\necho first run\nsleep 120\necho never\n";
    let (rc, out, err) = runner(&["start", state, "run-1-1"], stubborn);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.starts_with("R started run-1-1 "), "{out}");
    let group: i32 = out.split_whitespace().nth(3).unwrap().parse().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // The two streams are tagged by two processes: the pauses keep their order here.
    let second = "echo out line\nsleep 0.3\necho 'proxdeck: a reason' >&2\nsleep 0.3\nprintf 'no newline'\nexit 3\n";
    let started = std::time::Instant::now();
    let (rc, out, err) = runner(&["start", state, "run-2-2"], second);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(
        out.contains("R note an earlier provisioning run (run-1-1")
            && out.contains("did not stop within 10 s: killing it"),
        "{out}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    assert!(
        nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group), None).is_err(),
        "the first run's group {group} is still there"
    );
    let first_log = std::fs::read_to_string(format!("{state}/run-1-1.log")).unwrap();
    assert!(first_log.starts_with("O first run\n"), "{first_log}");
    assert!(
        first_log.contains(
            "E proxdeck: this provisioning run was stopped: a newer run (run-2-2) starts"
        ),
        "{first_log}"
    );
    assert!(!first_log.contains("never"));
    // Follow the second run from its first line, then from its second: tagged lines, then
    // its end with the status and the line count.
    let (rc, out, err) = runner(&["follow", state, "run-2-2", "0"], "");
    assert_eq!(rc, 0, "{out}{err}");
    assert_eq!(
        out, "O out line\nE proxdeck: a reason\nO no newline\nR end 3 3\n",
        "{err}"
    );
    let (_, out, _) = runner(&["follow", state, "run-2-2", "2"], "");
    assert_eq!(out, "O no newline\nR end 3 3\n");
    // The history: one run after the other, never two at once.
    let history = std::fs::read_to_string(format!("{state}/history")).unwrap();
    let kinds: Vec<&str> = history
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(kinds, ["start", "end", "start", "end"], "{history}");
    assert!(
        history.lines().nth(1).unwrap().ends_with(" 143"),
        "{history}"
    );
    assert!(history.lines().nth(3).unwrap().ends_with(" 3"), "{history}");
    // Private: the folder 0700, the scripts gone once run.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert!(!Path::new(&format!("{state}/run-1-1.sh")).exists());
    assert!(!Path::new(&format!("{state}/run-2-2.sh")).exists());
    // Nothing going: stop has nothing to do.
    let (rc, out, err) = runner(&["stop", state, "test"], "");
    assert_eq!((rc, out.as_str()), (0, ""), "{err}");
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
