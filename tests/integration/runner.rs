//! The terraform runner (`engine::terraform`) with the real terraform on `terraform_data`
//! stacks (built in, no provider, no network): every line arrives in order, including a burst
//! of 100k lines and what terraform prints right before it exits; a failing provisioner fails
//! with terraform's diagnostic (summary and detail); cancellation mid-apply leaves a
//! consistent workspace (state written, lock released) and a retry converges; a timeout does
//! the same and names its setting; destroy after a partial apply removes what was made; a
//! remote backend (the `local` backend at another path, set through `TF_CLI_ARGS_init`) holds
//! the state; a second init reuses the shared plugin cache, fed from a filesystem mirror.

use crate::support::parts::{Part, skip_without};
use proxdeck::config::Config;
use proxdeck::engine::process::Output;
use proxdeck::engine::terraform::{self, Limits, Progress, Terraform, TerraformError};
use proxdeck::protocol::LogStream;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// A config with a (never contacted) Proxmox: terraform_data stacks need no provider.
fn config(extra: &str) -> Config {
    let text = format!(
        "[proxmox]\nendpoint = \"https://127.0.0.1:9/\"\napi_token = \"ci@pve!runner=not-a-real-secret\"\n\
         node = \"pve\"\n{extra}"
    );
    Config::parse(&text, &HashMap::new()).expect("test config")
}

/// A workspace with `main.tf` under a fresh temp dir (kept by the returned guard).
struct Stack {
    _dir: tempfile::TempDir,
    root: PathBuf,
    ws: PathBuf,
}

impl Stack {
    fn new(main_tf: &str) -> Stack {
        let dir = tempfile::Builder::new()
            .prefix("proxdeck-runner-")
            .tempdir()
            .unwrap();
        let root = dir.path().to_path_buf();
        let ws = root.join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::write(ws.join("main.tf"), main_tf).unwrap();
        Stack {
            _dir: dir,
            root,
            ws,
        }
    }

    fn terraform(&self, config: &Config) -> Terraform {
        Terraform::new(
            config,
            config.proxmox().unwrap(),
            &self.ws,
            &self.root.join("plugin-cache"),
        )
        .expect("terraform runner")
    }
}

/// Every line a run sent, in order.
#[derive(Default)]
struct Lines(Vec<(LogStream, String)>);

impl Lines {
    fn texts(&self) -> Vec<&str> {
        self.0.iter().map(|(_, t)| t.as_str()).collect()
    }
    fn has(&self, needle: &str) -> bool {
        self.0.iter().any(|(_, t)| t.contains(needle))
    }
    fn dump(&self) -> String {
        let n = self.0.len();
        let from = n.saturating_sub(60);
        self.0[from..]
            .iter()
            .map(|(s, t)| format!("{}: {t}", s.as_str()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn collector() -> (
    mpsc::UnboundedSender<Output>,
    mpsc::UnboundedReceiver<Output>,
) {
    mpsc::unbounded_channel()
}

fn drain(rx: &mut mpsc::UnboundedReceiver<Output>) -> Lines {
    let mut lines = Lines::default();
    while let Ok(o) = rx.try_recv() {
        lines.0.extend(o.lines.into_iter().map(|l| (o.stream, l)));
    }
    lines
}

fn no_cancel() -> watch::Receiver<bool> {
    // The sender is dropped: the runner keeps going to the end.
    watch::channel(false).1
}

async fn init(tf: &Terraform) -> Lines {
    let (tx, mut rx) = collector();
    let r = tf.init(tx, no_cancel()).await;
    let lines = drain(&mut rx);
    r.unwrap_or_else(|e| panic!("init: {e}\n{}", lines.dump()));
    lines
}

/// plan + apply, as the pipeline runs them.
async fn plan_apply(
    tf: &Terraform,
    cancel: watch::Receiver<bool>,
) -> (Result<Progress, TerraformError>, Lines) {
    let (tx, mut rx) = collector();
    if let Err(e) = tf.plan(tx.clone(), cancel.clone()).await {
        return (Err(e), drain(&mut rx));
    }
    let r = tf.apply(tx, cancel).await;
    (r, drain(&mut rx))
}

fn lock_released(ws: &Path) -> bool {
    !ws.join(".terraform.tfstate.lock.info").exists()
}

const BURST: usize = 100_000;

#[tokio::test]
async fn every_line_arrives_in_order_including_a_burst_and_the_last_words() {
    if skip_without("runner: lines in order", &[Part::Terraform]) {
        return;
    }
    let stack = Stack::new(&format!(
        r#"
resource "terraform_data" "burst" {{
  provisioner "local-exec" {{
    command = "seq -f 'burst-%.0f' 1 {BURST}; echo burst-done >&2"
  }}
}}

resource "terraform_data" "last" {{
  depends_on = [terraform_data.burst]
  provisioner "local-exec" {{
    command = "printf 'last words without a newline'"
  }}
}}

output "answer" {{
  value = "forty-two"
}}
"#
    ));
    let config = config("");
    let tf = stack.terraform(&config);
    let init_lines = init(&tf).await;
    assert!(
        !init_lines.has("CLI configuration"),
        "init warned about its CLI config:\n{}",
        init_lines.dump()
    );
    let started = Instant::now();
    let (r, lines) = plan_apply(&tf, no_cancel()).await;
    let progress = r.unwrap_or_else(|e| panic!("apply: {e}\n{}", lines.dump()));
    assert!(started.elapsed() < Duration::from_secs(120));

    // Every line of the burst, once, in order.
    let burst: Vec<&str> = lines
        .texts()
        .into_iter()
        .filter_map(|t| t.strip_prefix("terraform_data.burst: (local-exec): "))
        .filter(|t| t.starts_with("burst-"))
        .collect();
    assert_eq!(burst.len(), BURST + 1, "{}", lines.dump());
    for (i, t) in burst.iter().take(BURST).enumerate() {
        assert_eq!(*t, format!("burst-{}", i + 1));
    }
    assert_eq!(burst[BURST], "burst-done");
    assert!(lines.has("terraform_data.last: (local-exec): last words without a newline"));
    // Progress: per resource, with its time, and the summary terraform prints last.
    assert!(
        lines.has("terraform_data.burst: Creation complete after")
            && lines.has("[1 of 2 resources]")
            && lines.has("[2 of 2 resources]"),
        "{}",
        lines.dump()
    );
    assert_eq!((progress.done(), progress.total()), (2, 2));
    let texts = lines.texts();
    let n = texts.len();
    // Terraform's last words, then proxdeck's progress summary.
    assert_eq!(
        texts[n - 3],
        "Apply complete! Resources: 2 added, 0 changed, 0 destroyed."
    );
    assert_eq!(texts[n - 2], "Outputs: 1");
    assert!(
        texts[n - 1].starts_with("terraform apply: 2 of 2 resources done in"),
        "{}",
        texts[n - 1]
    );
    assert!(texts[n - 1].contains("terraform_data.burst create"));
    assert_eq!(lines.0[n - 1].0, LogStream::Info);
    // No JSON reaches the log: every message was turned into its text.
    assert!(
        !lines.0.iter().any(|(_, t)| t.starts_with("{\"@level\"")),
        "{}",
        lines.dump()
    );
    // No plan left behind: it was spent.
    assert!(!stack.ws.join(terraform::PLAN_FILE).exists());
    assert!(terraform::has_state(&stack.ws));
}

#[tokio::test]
async fn a_failing_provisioner_fails_with_terraforms_diagnostic_and_destroy_cleans_up() {
    if skip_without("runner: failing provisioner", &[Part::Terraform]) {
        return;
    }
    let stack = Stack::new(
        r#"
resource "terraform_data" "made" {
  input = path.module
  provisioner "local-exec" {
    command = "touch made.marker"
  }
  provisioner "local-exec" {
    when    = destroy
    command = "rm -f made.marker"
  }
}

resource "terraform_data" "breaks" {
  depends_on = [terraform_data.made]
  provisioner "local-exec" {
    command = "echo 'the disk is on fire' >&2; exit 7"
  }
}

resource "terraform_data" "never" {
  depends_on = [terraform_data.breaks]
}
"#,
    );
    let config = config("");
    let tf = stack.terraform(&config);
    init(&tf).await;
    let (r, lines) = plan_apply(&tf, no_cancel()).await;
    let err = r.expect_err("the provisioner fails");
    let msg = err.to_string();
    assert!(
        msg.starts_with("terraform apply failed (exit 1): local-exec provisioner error"),
        "{msg}"
    );
    assert!(msg.contains("exit status 7"), "{msg}");
    assert!(msg.contains("the disk is on fire"), "{msg}");
    assert!(msg.contains("(terraform_data.breaks)"), "{msg}");
    // The diagnostic is in the log too, on stderr, with its place.
    assert!(
        lines
            .0
            .iter()
            .any(|(s, t)| *s == LogStream::Stderr && t == "Error: local-exec provisioner error"),
        "{}",
        lines.dump()
    );
    assert!(lines.has("  with terraform_data.breaks"));
    assert!(
        lines.has("failed: terraform_data.breaks"),
        "{}",
        lines.dump()
    );
    assert!(stack.ws.join("made.marker").exists());

    // Destroy after the partial apply: what was made goes, nothing is left in the state.
    let state = tf.state_list().await.unwrap();
    assert!(
        state.contains(&"terraform_data.made".to_string()),
        "{state:?}"
    );
    assert!(
        !state.contains(&"terraform_data.never".to_string()),
        "{state:?}"
    );
    let (tx, mut rx) = collector();
    let r = tf.destroy(tx, no_cancel()).await;
    let lines = drain(&mut rx);
    let progress = r.unwrap_or_else(|e| panic!("destroy: {e}\n{}", lines.dump()));
    assert_eq!(progress.done(), state.len(), "{}", lines.dump());
    assert!(lines.has("Destroy complete!"), "{}", lines.dump());
    assert!(tf.state_list().await.unwrap().is_empty());
    assert!(!stack.ws.join("made.marker").exists());
    assert!(!terraform::has_state(&stack.ws));
    assert!(lock_released(&stack.ws));
}

/// a → b (slow the first time) → c.
const SLOW_STACK: &str = r#"
resource "terraform_data" "a" {
  provisioner "local-exec" {
    command = "echo a-done"
  }
}

resource "terraform_data" "b" {
  depends_on = [terraform_data.a]
  provisioner "local-exec" {
    command = "if [ -e slow.once ]; then echo b-fast; else touch slow.once; echo b-started; touch b.started; sleep 60; echo b-finished; fi"
  }
}

resource "terraform_data" "c" {
  depends_on = [terraform_data.b]
}
"#;

async fn wait_for_file(path: &Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn cancellation_mid_apply_keeps_the_workspace_consistent_and_a_retry_converges() {
    if skip_without("runner: cancellation", &[Part::Terraform]) {
        return;
    }
    let stack = Stack::new(SLOW_STACK);
    let config = config("");
    let tf = stack.terraform(&config);
    init(&tf).await;
    let (cancel_tx, cancel) = watch::channel(false);
    let ws = stack.ws.clone();
    let run = async { plan_apply(&tf, cancel).await };
    let trigger = async {
        wait_for_file(&ws.join("b.started"), Duration::from_secs(60)).await;
        cancel_tx.send(true).unwrap();
        Instant::now()
    };
    let ((r, lines), cancelled_at) = tokio::join!(run, trigger);
    // Terraform stopped on SIGINT, well within the grace period.
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(15),
        "took {:?}",
        cancelled_at.elapsed()
    );
    let err = r.expect_err("cancelled");
    assert!(
        matches!(err, TerraformError::Cancelled { command: "apply" }),
        "{err:?}\n{}",
        lines.dump()
    );
    assert!(err.to_string().contains("retry continues"), "{err}");
    assert!(!lines.has("(local-exec): b-finished"), "{}", lines.dump());
    // The lines up to the interrupt are all there, terraform's notice included.
    assert!(lines.has("terraform_data.a: (local-exec): a-done"));
    assert!(lines.has("Interrupt received."), "{}", lines.dump());
    // Consistent: state written (a is there), lock released.
    assert!(lock_released(&stack.ws));
    let state = tf.state_list().await.unwrap();
    assert!(state.contains(&"terraform_data.a".to_string()), "{state:?}");
    assert!(
        !state.contains(&"terraform_data.c".to_string()),
        "{state:?}"
    );

    // The retry continues from there: a is kept, b is made again, c is added.
    let (r, lines) = plan_apply(&tf, no_cancel()).await;
    r.unwrap_or_else(|e| panic!("retry: {e}\n{}", lines.dump()));
    assert!(!lines.has("terraform_data.a: Creating"), "{}", lines.dump());
    assert!(lines.has("(local-exec): b-fast"));
    let mut state = tf.state_list().await.unwrap();
    state.sort();
    assert_eq!(
        state,
        ["terraform_data.a", "terraform_data.b", "terraform_data.c"]
    );
    // Converged: nothing left to do.
    let (tx, _rx) = collector();
    tf.plan(tx, no_cancel()).await.unwrap();
    assert!(tf.show_plan().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_timeout_stops_terraform_cleanly_and_names_its_setting() {
    if skip_without("runner: timeout", &[Part::Terraform]) {
        return;
    }
    let stack = Stack::new(SLOW_STACK);
    let config = config("");
    let tf = stack.terraform(&config).with_limits(Limits {
        init: Duration::from_secs(120),
        plan: Duration::from_secs(120),
        apply: Duration::from_secs(3),
        destroy: Duration::from_secs(120),
    });
    init(&tf).await;
    let started = Instant::now();
    let (r, lines) = plan_apply(&tf, no_cancel()).await;
    assert!(started.elapsed() < Duration::from_secs(30));
    let err = r.expect_err("times out");
    assert!(
        matches!(
            err,
            TerraformError::TimedOut {
                command: "apply",
                secs: 3,
                ..
            }
        ),
        "{err:?}\n{}",
        lines.dump()
    );
    assert!(
        err.to_string().contains("timeouts.terraform_apply_secs"),
        "{err}"
    );
    assert!(lock_released(&stack.ws));
    assert!(
        tf.state_list()
            .await
            .unwrap()
            .contains(&"terraform_data.a".to_string())
    );
}

#[tokio::test]
async fn a_backend_from_the_config_holds_the_state_outside_the_workspace() {
    if skip_without("runner: backend", &[Part::Terraform]) {
        return;
    }
    let stack = Stack::new(
        r#"
resource "terraform_data" "kept" {
  input = "remote"
}
"#,
    );
    let states = stack.root.join("state store");
    std::fs::create_dir_all(&states).unwrap();
    let config = config(&format!(
        "[terraform.backend]\ntype = \"local\"\nconfig = {{ path = \"{}/{{id}}.tfstate\" }}\n",
        states.display()
    ));
    let backend = config.terraform.backend.clone().unwrap();
    proxdeck::engine::workspace::write_backend(&stack.ws, Some(&backend)).unwrap();
    let tf = stack
        .terraform(&config)
        .with_backend(Some(&backend), "k3x9ta", &HashMap::new())
        .unwrap();
    init(&tf).await;
    let (r, lines) = plan_apply(&tf, no_cancel()).await;
    r.unwrap_or_else(|e| panic!("apply: {e}\n{}", lines.dump()));
    // The state is where the backend says (a path with a space in it), not in the workspace.
    let remote = states.join("k3x9ta.tfstate");
    let text = std::fs::read_to_string(&remote).expect("state at the backend's path");
    assert!(text.contains("terraform_data"), "{text}");
    assert!(!stack.ws.join("terraform.tfstate").exists());
    // proxdeck still knows the workspace holds a guest.
    assert!(terraform::has_state(&stack.ws));
    let (tx, _rx) = collector();
    tf.destroy(tx, no_cancel()).await.unwrap();
    assert!(!terraform::has_state(&stack.ws));
    let text = std::fs::read_to_string(&remote).unwrap();
    assert!(!text.contains("terraform_data"), "{text}");
}

/// An unpacked provider in a filesystem mirror: `init` installs it without a registry (it
/// never runs it), so this works offline.
fn fake_provider_mirror(root: &Path) -> PathBuf {
    let mirror = root.join("mirror");
    let dir = mirror.join("registry.terraform.io/bpg/proxmox/0.111.1/linux_amd64");
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("terraform-provider-proxmox_v0.111.1");
    std::fs::write(&bin, "#!/bin/sh\necho 'not a real provider' >&2\nexit 1\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    mirror
}

const NEEDS_BPG: &str = r#"
terraform {
  required_providers {
    proxmox = {
      source  = "bpg/proxmox"
      version = "~> 0.111"
    }
  }
}
"#;

#[tokio::test]
async fn a_second_init_reuses_the_plugin_cache_fed_from_a_mirror() {
    if skip_without("runner: plugin cache", &[Part::Terraform]) {
        return;
    }
    if std::env::consts::ARCH != "x86_64" {
        eprintln!(
            "SKIPPED a_second_init_reuses_the_plugin_cache: the fake provider is linux_amd64"
        );
        return;
    }
    let stack = Stack::new(NEEDS_BPG);
    let mirror = fake_provider_mirror(&stack.root);
    let config = config(&format!("[terraform]\nmirror = \"{}\"\n", mirror.display()));
    let first = stack.terraform(&config);
    let lines = init(&first).await;
    assert!(
        lines.has("Installed bpg/proxmox v0.111.1"),
        "{}",
        lines.dump()
    );
    assert!(!lines.has("CLI configuration"), "{}", lines.dump());

    // A second workspace, same data dir: the provider comes from the cache.
    let ws2 = stack.root.join("ws2");
    std::fs::create_dir_all(&ws2).unwrap();
    std::fs::write(ws2.join("main.tf"), NEEDS_BPG).unwrap();
    let second = Terraform::new(
        &config,
        config.proxmox().unwrap(),
        &ws2,
        &stack.root.join("plugin-cache"),
    )
    .unwrap();
    let lines = init(&second).await;
    assert!(
        lines.has("Using bpg/proxmox v0.111.1 from the shared cache directory"),
        "{}",
        lines.dump()
    );
    let installed =
        ws2.join(".terraform/providers/registry.terraform.io/bpg/proxmox/0.111.1/linux_amd64");
    let link = std::fs::read_link(&installed).expect("a link into the cache");
    assert!(
        link.starts_with(stack.root.join("plugin-cache")),
        "{}",
        link.display()
    );
}
