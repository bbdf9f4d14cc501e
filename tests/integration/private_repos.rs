//! Private repositories (issue 12), deployed with `--host` onto an sshd test host on a
//! loopback address (this machine plays the host):
//! - a repository served by a second sshd that lets in only the deploy key proxdeck made:
//!   the first deploy stops with the public key and where to add it (nothing recorded), the
//!   same command after the key is added deploys a short commit id (recorded as the full
//!   one), the Git host's key is pinned and shown, the guest reads the repository with the
//!   key staged in memory and nothing of it stays there; a changed Git host key stops a
//!   redeploy naming both fingerprints; destroy forgets the key;
//! - a repository behind git's own `git http-backend` over HTTPS with basic auth: a wrong
//!   token is refused before anything is recorded, the right one (from an environment
//!   variable) deploys, and the token is in no argv, no log, no database and nowhere on the
//!   host but in proxdeck's 0600 file.

use crate::support::git::GitServer;
use crate::support::net::{
    free_port, free_port_any, loopback, random_hex, wait_for_port, wait_http_ok,
};
use crate::support::parts::{Part, skip_without, support_dir, test_python};
use crate::support::process::{ChildGuard, Finished, run_ok};
use crate::support::proxdeck::{AppGuard, ArgvWatch, Proxdeck, files_containing, write_private};
use crate::support::samples;
use crate::support::sshd::SshHost;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const DEPLOY: Duration = Duration::from_secs(900);
const QUICK: Duration = Duration::from_secs(120);

/// The deploy host (sshd letting in proxdeck's own key), a git daemon holding the samples'
/// bare repositories, and a proxdeck data dir.
struct Bench {
    _work: tempfile::TempDir,
    root: PathBuf,
    data_dir: PathBuf,
    app_root: PathBuf,
    host: SshHost,
    git: GitServer,
    proxdeck: Proxdeck,
}

impl Bench {
    fn new(prefix: &str, sshd_extra: &str) -> Bench {
        let work = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        let root = work.path().to_path_buf();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let data_dir = root.join("data");
        let app_root = root.join("apps");
        let keys = data_dir.join("keys/id_ed25519.pub");
        let host = SshHost::start_with(loopback(), &keys, sshd_extra).expect("start sshd");
        let git = GitServer::start(loopback()).expect("start git daemon");
        let config = root.join("config.toml");
        write_private(
            &config,
            &format!(
                "[guest]\nssh_user = \"root\"\napp_root = \"{}\"\n\n\
                 [timeouts]\nssh_secs = 60\nhealth_secs = 180\nprovision_secs = 900\n",
                app_root.display()
            ),
        )
        .unwrap();
        let proxdeck = Proxdeck::new(config, data_dir.clone(), &root);
        Bench {
            _work: work,
            root,
            data_dir,
            app_root,
            host,
            git,
            proxdeck,
        }
    }

    fn host_arg(&self) -> String {
        format!("{}:{}", self.host.addr(), self.host.port())
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Finished {
        let mut cmd = self.proxdeck.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        crate::support::process::run_with_timeout(&mut cmd, timeout)
            .unwrap_or_else(|e| panic!("proxdeck {args:?}: {e:#}"))
    }

    fn logs(&self, name: &str) -> String {
        self.run(&["logs", name], &[], QUICK).stdout
    }

    /// Stops the app and removes its user however the test ends.
    fn installed(&self, name: &str) -> Installed {
        Installed {
            app: AppGuard::new(self.app_root.join(name).join("run/app.pid")),
            user: format!("pd-{name}"),
        }
    }
}

struct Installed {
    app: AppGuard,
    user: String,
}

impl Drop for Installed {
    fn drop(&mut self) {
        self.app.stop();
        let _ = Command::new("pkill")
            .args(["-KILL", "--ns", &std::process::id().to_string()])
            .args(["--nslist", "pid", "-u", &self.user])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("userdel")
            .arg(&self.user)
            .stderr(Stdio::null())
            .status();
    }
}

fn json_of(done: &Finished) -> Value {
    serde_json::from_str(done.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e})\n{}", done.describe()))
}

/// `ssh-keygen -lf`: the SHA256 fingerprint of a public key line.
fn fingerprint(public_key: &str, dir: &Path) -> String {
    let path = dir.join(format!("key-{}.pub", random_hex(6)));
    std::fs::write(&path, format!("{public_key}\n")).unwrap();
    let out = run_ok(Command::new("ssh-keygen").arg("-lf").arg(&path)).unwrap();
    out.stdout
        .split_whitespace()
        .nth(1)
        .expect("a fingerprint")
        .to_string()
}

/// The two tests that stage credentials on this machine (the guest of `--host`) take turns,
/// so that each one's check for leftovers in /dev/shm sees only its own.
static STAGING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Folders proxdeck staged credentials in, left in memory on this machine (the host).
fn staged_leftovers() -> Vec<String> {
    let mut left = Vec::new();
    for dir in ["/dev/shm", "/run/shm"] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name.starts_with("proxdeck-git-") {
                    left.push(format!("{dir}/{name}"));
                }
            }
        }
    }
    left
}

/// The `deploy-keys/pending-*` folder a first `--deploy-key` deploy left its key in.
fn pending_key_dir(data_dir: &Path) -> PathBuf {
    std::fs::read_dir(data_dir.join("deploy-keys"))
        .expect("deploy-keys/ exists")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("pending-"))
        })
        .expect("a pending deploy key")
}

#[test]
fn a_private_repository_deploys_with_its_own_deploy_key() {
    let _turn = STAGING.lock().unwrap_or_else(|e| e.into_inner());
    if skip_without(
        "a_private_repository_deploys_with_its_own_deploy_key",
        &[Part::Sshd, Part::Git, Part::GuestPython],
    ) {
        return;
    }
    let b = Bench::new("proxdeck-deploykey-", "");
    let flask = samples::flask(&b.git, "private-flask", &b.root.join("samples")).unwrap();
    let first = flask.commit.clone();
    let (_second_body, second) = flask.change(&b.git).unwrap();
    assert_ne!(first, second);
    // The Git server: a second sshd that lets in only what its authorized_keys holds (empty
    // until the deploy key is added).
    let git_keys = b.root.join("git-authorized_keys");
    std::fs::write(&git_keys, "").unwrap();
    let mut git_sshd = SshHost::start(loopback(), &git_keys).expect("start the Git sshd");
    let bare = b.git.base().join("private-flask.git");
    let url = format!(
        "ssh://root@{}:{}{}",
        git_sshd.addr(),
        git_sshd.port(),
        bare.display()
    );
    let name = format!("pk-{}", random_hex(5));
    let _cleanup = b.installed(&name);
    let port = free_port_any().unwrap().to_string();
    let short = &first[..9];
    let host = b.host_arg();
    let args = [
        "deploy",
        "--repo",
        &url,
        "--ref",
        short,
        "--deploy-key",
        "--host",
        &host,
        "--name",
        &name,
        "--port",
        &port,
        "--json",
    ];

    // First run: the key cannot read the repository yet. Its public half and where to add
    // it are printed; nothing is recorded.
    let refused = b.run(&args, &[], QUICK);
    assert!(!refused.success(), "{}", refused.describe());
    let said = format!("{}{}", refused.stdout, refused.stderr);
    let pending = pending_key_dir(&b.data_dir);
    let public = std::fs::read_to_string(pending.join("id_ed25519.pub"))
        .unwrap()
        .trim()
        .to_string();
    assert!(said.contains(&public), "the public key is printed: {said}");
    assert!(
        said.contains("READ-ONLY deploy key") && said.contains("authorized_keys"),
        "{said}"
    );
    assert!(said.contains("run the same deploy command again"), "{said}");
    let git_host_print = fingerprint(git_sshd.host_public_key(), &b.root);
    assert!(
        said.contains(&git_host_print) && said.contains("pinned the SSH host key"),
        "the Git host's key is pinned and shown: {said}"
    );
    let mode = std::fs::metadata(pending.join("id_ed25519"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the private key is 0600");
    let listed = b.run(&["list", "--json"], &[], QUICK);
    assert!(
        !listed.stdout.contains(&name),
        "nothing is recorded: {}",
        listed.stdout
    );

    // The key added: the same command deploys the short commit id, recorded in full.
    std::fs::write(&git_keys, format!("{public}\n")).unwrap();
    let done = b.run(&args, &[], DEPLOY);
    assert!(
        done.success(),
        "{}\n--- logs ---\n{}\n--- git sshd ---\n{}",
        done.describe(),
        b.logs(&name),
        git_sshd.log_tail()
    );
    let d = json_of(&done);
    assert_eq!(d["status"], "RUNNING", "{d}");
    assert_eq!(
        d["git_ref"],
        first.as_str(),
        "the full commit is recorded: {d}"
    );
    assert_eq!(d["commit"], first.as_str(), "{d}");
    let id = d["id"].as_str().unwrap().to_string();
    let app_url = format!("http://{}:{port}/", b.host.addr());
    let answer = wait_http_ok(&app_url, Duration::from_secs(60)).unwrap();
    assert!(answer.body.contains(&flask.body), "{}", answer.body);
    let log = b.logs(&name);
    assert!(log.contains("the guest reads"), "{log}");
    assert!(
        log.contains("read with the deployment's deploy key"),
        "{log}"
    );
    // Kept under the deployment's id; the app's repository's remote holds the plain URL; nothing of
    // the key left in memory on the host, nor in the app's folder.
    let key_dir = b.data_dir.join("deploy-keys").join(&id);
    assert!(key_dir.join("id_ed25519").exists() && key_dir.join("known_hosts").exists());
    assert!(!pending.exists(), "the pending key moved under the id");
    let git_config =
        std::fs::read_to_string(b.app_root.join(&name).join("repo.git/config")).unwrap();
    assert!(git_config.contains(&url), "{git_config}");
    let private_line = std::fs::read_to_string(key_dir.join("id_ed25519"))
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    assert!(
        files_containing(&b.app_root, &private_line).is_empty(),
        "the private key is nowhere in the app's folder"
    );
    assert_eq!(staged_leftovers(), Vec::<String>::new());
    let db = std::fs::read(b.data_dir.join("proxdeck.db")).unwrap();
    assert!(
        !db.windows(private_line.len())
            .any(|w| w == private_line.as_bytes()),
        "the private key is not in the database"
    );
    let shown = b.run(&["deploy-key", &name], &[], QUICK);
    assert!(shown.success(), "{}", shown.describe());
    assert!(
        shown.stdout.contains(&public) && shown.stdout.contains(&git_host_print),
        "{}",
        shown.stdout
    );

    // A redeploy to another short commit id: the ref recorded in full, the app rebuilt.
    let second_short = &second[..7];
    let redeployed = b.run(
        &["redeploy", &name, "--ref", second_short, "--json"],
        &[],
        DEPLOY,
    );
    assert!(
        redeployed.success(),
        "{}
{}",
        redeployed.describe(),
        b.logs(&name)
    );
    let d = json_of(&redeployed);
    assert_eq!(d["git_ref"], second.as_str(), "{d}");
    assert_eq!(d["commit"], second.as_str(), "{d}");

    // The Git server's key changes: a redeploy stops, naming both fingerprints.
    let new_key = git_sshd.restart_with_new_host_key().unwrap();
    let new_print = fingerprint(&new_key, &b.root);
    let stopped = b.run(&["redeploy", &name, "--json"], &[], QUICK);
    assert!(!stopped.success(), "{}", stopped.describe());
    let said = format!("{}{}{}", stopped.stdout, stopped.stderr, b.logs(&name));
    assert!(
        said.contains("changed!") && said.contains(&git_host_print) && said.contains(&new_print),
        "{said}"
    );

    // A rollback needs no repository (it switches to the release kept on the host): it goes
    // on although the Git server's key changed.
    let rolled = b.run(&["rollback", &name, "--json"], &[], DEPLOY);
    assert!(rolled.success(), "{}\n{}", rolled.describe(), b.logs(&name));
    assert_eq!(json_of(&rolled)["commit"], first.as_str());
    assert!(b.logs(&name).contains("no fetch, no build"));

    // Destroy forgets the key.
    let gone = b.run(&["destroy", &name, "--yes", "--json"], &[], QUICK);
    assert!(gone.success(), "{}", gone.describe());
    assert!(
        !key_dir.exists(),
        "the deploy key is removed with the deployment"
    );
}

/// A self-signed certificate for `addr` (its IP in subjectAltName): (cert, key).
fn certificate(dir: &Path, addr: std::net::Ipv4Addr) -> (PathBuf, PathBuf) {
    let cert = dir.join("git-https.crt");
    let key = dir.join("git-https.key");
    run_ok(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "2", "-subj", "/CN=proxdeck-test-git"])
            .arg("-addext")
            .arg(format!("subjectAltName=IP:{addr}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null()),
    )
    .unwrap();
    (cert, key)
}

#[test]
fn an_https_token_from_the_environment_reads_a_private_repository_and_is_never_shown() {
    let _turn = STAGING.lock().unwrap_or_else(|e| e.into_inner());
    if skip_without(
        "an_https_token_from_the_environment_reads_a_private_repository_and_is_never_shown",
        &[Part::Sshd, Part::Git, Part::GuestPython, Part::Fakepve],
    ) {
        return;
    }
    // This machine plays the host: its root's sessions (the guest's check) and the app's git
    // (through the app user's ~/.gitconfig, written below) trust the test CA, as a host
    // whose system trusts it would.
    let work = tempfile::Builder::new()
        .prefix("proxdeck-ca-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let addr = loopback();
    let (cert, key) = certificate(work.path(), addr);
    std::fs::set_permissions(&cert, std::fs::Permissions::from_mode(0o644)).unwrap();
    let b = Bench::new(
        "proxdeck-token-",
        &format!("SetEnv GIT_SSL_CAINFO={}\n", cert.display()),
    );
    let flask = samples::flask(&b.git, "token-flask", &b.root.join("samples")).unwrap();
    let token = format!("tok-{}", random_hex(24));
    let port = free_port(addr).unwrap();
    let mut server_cmd = Command::new(test_python().unwrap());
    server_cmd
        .arg(support_dir().join("git_https.py"))
        .arg(addr.to_string())
        .arg(port.to_string())
        .arg(b.git.base())
        .arg(&cert)
        .arg(&key)
        .env("GIT_TEST_TOKEN", &token)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let log = b.root.join("git-https.log");
    let mut server = ChildGuard::spawn("git-https", &mut server_cmd, Some(&log)).unwrap();
    wait_for_port((addr, port).into(), Duration::from_secs(20), || {
        server.check_alive()
    })
    .expect("the HTTPS Git server answers");
    let url = format!("https://{addr}:{port}/token-flask.git");
    let name = format!("tk-{}", random_hex(5));
    let _cleanup = b.installed(&name);
    let home = b.app_root.join(&name).join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join(".gitconfig"),
        format!("[http]\n\tsslCAInfo = {}\n", cert.display()),
    )
    .unwrap();
    let app_port = free_port_any().unwrap().to_string();
    let host = b.host_arg();
    let cainfo = cert.display().to_string();
    let args = [
        "deploy",
        "--repo",
        &url,
        "--git-token-env",
        "PD_TEST_GIT_TOKEN",
        "--host",
        &host,
        "--name",
        &name,
        "--port",
        &app_port,
        "--json",
    ];
    let watch = ArgvWatch::start(&token);

    // A wrong token: refused before anything is recorded, naming the token's variable.
    let wrong = b.run(
        &args,
        &[
            ("PD_TEST_GIT_TOKEN", "not-the-token"),
            ("GIT_SSL_CAINFO", &cainfo),
        ],
        QUICK,
    );
    assert!(!wrong.success(), "{}", wrong.describe());
    let said = format!("{}{}", wrong.stdout, wrong.stderr);
    assert!(said.contains("$PD_TEST_GIT_TOKEN"), "{said}");
    assert!(!said.contains("not-the-token"), "{said}");
    // Unset: the variable is named, with how to set it.
    let unset = b.run(&args, &[("GIT_SSL_CAINFO", &cainfo)], QUICK);
    assert!(
        format!("{}{}", unset.stdout, unset.stderr).contains("PD_TEST_GIT_TOKEN is not set"),
        "{}",
        unset.describe()
    );

    // The token: detected, deployed, answering.
    let done = b.run(
        &args,
        &[("PD_TEST_GIT_TOKEN", &token), ("GIT_SSL_CAINFO", &cainfo)],
        DEPLOY,
    );
    assert!(
        done.success(),
        "{}\n--- logs ---\n{}\n--- server ---\n{}",
        done.describe(),
        b.logs(&name),
        server.log_tail()
    );
    let d = json_of(&done);
    assert_eq!(d["status"], "RUNNING", "{d}");
    assert_eq!(d["framework"], "flask", "detected through the token: {d}");
    let answer = wait_http_ok(
        &format!("http://{}:{app_port}/", b.host.addr()),
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(answer.body.contains(&flask.body), "{}", answer.body);
    let log = b.logs(&name);
    assert!(log.contains("the guest reads"), "{log}");
    assert!(
        log.contains("the HTTPS token from $PD_TEST_GIT_TOKEN"),
        "{log}"
    );

    // Nowhere: argv of any process, the log, the database, the app's folder (its checkout's
    // remote included); only proxdeck's own 0600 file holds it.
    let seen = watch.finish();
    assert!(seen.is_empty(), "the token was on a command line: {seen:?}");
    assert!(!log.contains(&token));
    let id = d["id"].as_str().unwrap();
    let token_file = b.data_dir.join("secrets").join(format!("{id}.git-token"));
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let holders = files_containing(&b.data_dir, &token);
    assert_eq!(holders, vec![token_file], "only the token file holds it");
    assert!(files_containing(&b.app_root, &token).is_empty());
    assert_eq!(staged_leftovers(), Vec::<String>::new());
    let gone = b.run(&["destroy", &name, "--yes", "--json"], &[], QUICK);
    assert!(gone.success(), "{}", gone.describe());

    // A host that cannot read the repository although this machine can (its git does not
    // trust the Git server): the guest's own check stops the deploy before anything is built,
    // naming the credentials; nothing staged stays behind.
    let keys = b.data_dir.join("keys/id_ed25519.pub");
    let blind = SshHost::start_with(
        loopback(),
        &keys,
        "SetEnv GIT_SSL_CAINFO=/nonexistent/ca.pem\n",
    )
    .expect("start the second host");
    let blind_name = format!("tb-{}", random_hex(5));
    let _blind_cleanup = b.installed(&blind_name);
    let blind_host = format!("{}:{}", blind.addr(), blind.port());
    let watch = ArgvWatch::start(&token);
    let failed = b.run(
        &[
            "deploy",
            "--repo",
            &url,
            "--git-token-env",
            "PD_TEST_GIT_TOKEN",
            "--framework",
            "flask",
            "--host",
            &blind_host,
            "--name",
            &blind_name,
            "--port",
            &app_port,
            "--json",
        ],
        &[("PD_TEST_GIT_TOKEN", &token), ("GIT_SSL_CAINFO", &cainfo)],
        DEPLOY,
    );
    assert!(!failed.success(), "{}", failed.describe());
    let said = format!("{}{}", failed.stderr, b.logs(&blind_name));
    assert!(
        said.contains(&format!("the guest {blind_host} cannot read {url}"))
            && said.contains("with the HTTPS token from $PD_TEST_GIT_TOKEN"),
        "{said}"
    );
    assert!(
        !said.contains("--- stage provision ---"),
        "nothing was built: {said}"
    );
    assert!(!said.contains(&token));
    assert!(watch.finish().is_empty());
    assert_eq!(staged_leftovers(), Vec::<String>::new());
}

/// Detection reads the files of a commit named by a short id (a server that will not hand
/// out a commit by its id alone included: the branches are fetched and the id looked up),
/// and `full_ref` turns the short id into the full one.
#[test]
fn a_short_commit_id_is_detected_and_resolved() {
    if skip_without("a_short_commit_id_is_detected_and_resolved", &[Part::Git]) {
        return;
    }
    use proxdeck::domain::Catalog;
    use proxdeck::engine::detect;
    use proxdeck::engine::gitauth::Access;
    let git = GitServer::start(loopback()).expect("start git daemon");
    let work = tempfile::tempdir().unwrap();
    let flask = samples::flask(&git, "short-ids", &work.path().join("samples")).unwrap();
    let first = flask.commit.clone();
    // The newest commit makes it a Vue app: the first one must still read as Flask.
    let second = git
        .push_change(
            "short-ids",
            &[(
                "package.json",
                r#"{"dependencies":{"vue":"3"}}"#.to_string(),
            )],
            "a front end",
        )
        .unwrap();
    let bare = git.base().join("short-ids.git");
    run_ok(
        Command::new("git")
            .arg("-C")
            .arg(&bare)
            .args(["branch", "cafe1234", "main"]),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let scratch = work.path().join("tmp");
    let none = Access::none();
    for url in [flask.git_url.clone(), git.file_url("short-ids")] {
        let found = rt
            .block_on(detect::detect_repo(
                Catalog::builtin(),
                &url,
                Some(&first[..8]),
                "",
                &scratch,
                Duration::from_secs(60),
                &none,
            ))
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(found.framework, "flask", "{url}");
        assert_eq!(found.commit.as_deref(), Some(first.as_str()), "{url}");
        let full = rt
            .block_on(detect::full_ref(
                &url,
                &second[..7],
                &scratch,
                Duration::from_secs(60),
                &none,
            ))
            .unwrap();
        assert_eq!(full, second, "{url}");
        let missing = rt
            .block_on(detect::full_ref(
                &url,
                "0000000",
                &scratch,
                Duration::from_secs(60),
                &none,
            ))
            .unwrap_err();
        assert!(missing.contains("no commit 0000000"), "{missing}");
        // A branch whose name looks like a short id stays a branch.
        assert_eq!(
            rt.block_on(detect::full_ref(
                &url,
                "cafe1234",
                &scratch,
                Duration::from_secs(60),
                &none
            ))
            .unwrap(),
            "cafe1234"
        );
    }
}
