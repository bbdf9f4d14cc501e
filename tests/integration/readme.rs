//! The README's "First steps", followed as a newcomer would on a fresh clone: each command of
//! its block runs as written, `cargo install --path .` with flags that keep it inside the test
//! (`--root` in a temp dir, `--offline`, `--debug`, and a target dir under
//! `CARGO_TARGET_TMPDIR` that later runs reuse), then the installed binary's `--help`,
//! `config init` and `config check`. The check must name the template's examples; after the
//! edit the README describes, it says ok.

use crate::support::parts::{Part, repo_root, skip_without};
use crate::support::process::{Finished, run_with_timeout};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A debug build of proxdeck and its dependencies from nothing, on two busy cores.
const INSTALL: Duration = Duration::from_secs(1500);
const QUICK: Duration = Duration::from_secs(60);

/// The commands of the README's "First steps" block (comments and blank lines dropped).
fn first_steps(readme: &str) -> Vec<String> {
    let section = readme
        .split("\n## First steps\n")
        .nth(1)
        .expect("the README has a \"## First steps\" section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("\"First steps\" has a sh block");
    block
        .lines()
        .map(|l| l.split(" #").next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// A newcomer's environment: a home of its own, no proxdeck or Proxmox settings inherited.
fn newcomer(cmd: &mut Command, home: &Path) {
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("PROXMOX_VE_") || k.starts_with("PROXDECK_") || k.starts_with("XDG_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("HOME", home).env("NO_COLOR", "1");
}

#[test]
fn the_readme_first_steps_install_and_run_proxdeck_on_a_fresh_clone() {
    if skip_without(
        "the_readme_first_steps_install_and_run_proxdeck_on_a_fresh_clone",
        &[Part::Git],
    ) {
        return;
    }
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let steps = first_steps(&readme);
    assert_eq!(
        steps,
        [
            "cargo install --path .",
            "proxdeck --help",
            "proxdeck config init",
            "proxdeck config check"
        ],
        "the steps this test follows"
    );
    // The README's two commands stay.
    assert!(readme.contains("\ncargo run --release\n") && readme.contains("\nscripts/test\n"));

    let work = tempfile::Builder::new()
        .prefix("proxdeck-readme-")
        .tempdir()
        .unwrap();
    let clone = work.path().join("proxdeck");
    let home = work.path().join("home");
    let root = work.path().join("root");
    std::fs::create_dir_all(&home).unwrap();
    let cloned = run_with_timeout(
        Command::new("git")
            .args(["clone", "--quiet"])
            .arg(repo_root())
            .arg(&clone),
        QUICK,
    )
    .unwrap();
    assert!(cloned.success(), "{}", cloned.describe());

    let target: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("readme-install");
    let mut binary = None;
    let mut last: Option<Finished> = None;
    for step in &steps {
        let words = shlex::split(step).expect("a shell word list");
        let started = std::time::Instant::now();
        let done = match words[0].as_str() {
            "cargo" => {
                let mut cmd = Command::new(env!("CARGO"));
                cmd.args(&words[1..])
                    .args(["--offline", "--debug", "--root"])
                    .arg(&root)
                    .current_dir(&clone)
                    .env("CARGO_TARGET_DIR", &target);
                newcomer(&mut cmd, &home);
                // cargo itself lives under the real home.
                if let Some(h) = std::env::var_os("CARGO_HOME") {
                    cmd.env("CARGO_HOME", h);
                } else if let Some(h) = std::env::var_os("HOME") {
                    cmd.env("CARGO_HOME", Path::new(&h).join(".cargo"));
                }
                let done = run_with_timeout(&mut cmd, INSTALL).unwrap();
                binary = Some(root.join("bin").join("proxdeck"));
                done
            }
            "proxdeck" => {
                let bin = binary
                    .as_ref()
                    .expect("the README installs proxdeck before running it");
                let mut cmd = Command::new(bin);
                cmd.args(&words[1..]).current_dir(work.path());
                newcomer(&mut cmd, &home);
                run_with_timeout(&mut cmd, QUICK).unwrap()
            }
            other => panic!("a first step this test does not know: {other}"),
        };
        eprintln!("{step}: {:.1} s", started.elapsed().as_secs_f64());
        match step.as_str() {
            "proxdeck config check" => {
                // The untouched template is not "ok": both examples are named.
                assert_eq!(done.status.code(), Some(2), "{}", done.describe());
                assert!(
                    done.stderr.contains("proxmox.endpoint: still the example")
                        && done
                            .stderr
                            .contains("proxmox.api_token: still the template"),
                    "{}",
                    done.describe()
                );
                assert!(!done.stdout.contains("ok"), "{}", done.describe());
            }
            _ => assert!(done.success(), "{step}: {}", done.describe()),
        }
        if step == "proxdeck --help" {
            for command in ["deploy", "logs", "sync", "config"] {
                assert!(done.stdout.contains(command), "{}", done.stdout);
            }
        }
        last = Some(done);
    }
    assert!(last.is_some());

    // Where the README says: ~/.config/proxdeck/config.toml, private, node at auto.
    let config = home.join(".config/proxdeck/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(text.contains("\nnode = \"auto\"\n"), "{text}");

    // The edit the README asks for; then the check says ok.
    let edited = text
        .replace(
            "https://pve.example.lan:8006/",
            "https://pve1.lab.internal:8006/",
        )
        .replace(
            "00000000-0000-0000-0000-000000000000",
            "5f0c1d2e-3a4b-4c5d-8e9f-0a1b2c3d4e5f",
        );
    std::fs::write(&config, edited).unwrap();
    let mut cmd = Command::new(binary.expect("installed"));
    cmd.args(["config", "check"]);
    newcomer(&mut cmd, &home);
    let done = run_with_timeout(&mut cmd, QUICK).unwrap();
    assert!(done.success(), "{}", done.describe());
    assert!(
        done.stdout
            .contains("ok (proxmox https://pve1.lab.internal:8006/ node auto"),
        "{}",
        done.describe()
    );
}

#[test]
fn first_steps_are_read_from_the_block() {
    let readme = "x\n## First steps\n\ntext\n\n```sh\ncargo install --path .   # note\n\n# a comment\nproxdeck --help\n```\n## Next\n```sh\nnot this\n```\n";
    assert_eq!(
        first_steps(readme),
        ["cargo install --path .", "proxdeck --help"]
    );
}
