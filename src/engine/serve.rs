//! `Engine::serve`: the engine's side of the TUI. Requests arrive on a tokio channel; events
//! leave on a std channel the UI thread reads. Owns the watch on the store (`PRAGMA
//! data_version`, so work done by the worker for any front end shows too), the log the UI
//! follows (by sequence number, from the store: what a user sees is what the store holds),
//! the jobs this UI queued until they end, the app-log stream and the Proxmox connection probe.
//! Operations are queued through `ops` (`OpQueued`, then `OpFinished` from the store); reads
//! come from `reads`; the shell from `shell`.
//!
//! It adds no logic of its own to an operation and never touches the terminal. A read that
//! fails, and an operation that fails, become events the UI shows; serving goes on.

use super::ops::{self, OpRequest};
use super::proxmox::Client;
use super::{Engine, applogs, detect, pipeline, reads, sync};
use crate::domain::spec::DeployInput;
use crate::domain::{Catalog, DeploymentId, Job, JobId, JobState, Op, Overrides};
use crate::protocol::{
    ClusterSnapshot, Detected, EngineEvent, GuestEntry, GuestInfo, LOG_FILTER_KEEP, LogPageKind,
    NodeInfo, OpKind, Power, ProxmoxState, Request, SeqLine, Settings,
};
use crate::store::search::LogFilter;
use crate::store::{Db, Store, now_ms};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How often the store is looked at for changes (cheap: one pragma when nothing moved).
/// Rows sent ahead of a long list on the first snapshot: more than a tall terminal shows.
const HEAD_ROWS: usize = 200;
const TICK: Duration = Duration::from_millis(50);
/// Lines sent when a log is opened (later pages: `reads::LOG_PAGE`).
const LOG_TAIL: usize = 1_000;
/// New lines of a followed log sent per look at the store, at most.
const LOG_FOLLOW_BATCH: usize = 5_000;
/// How often Proxmox is asked whether it answers.
const PROXMOX_EVERY: Duration = Duration::from_secs(30);
/// Days of per-day statistics.
const STATS_DAYS: u32 = 30;
/// Bounds on the repository check and the framework detection of the deploy wizard.
const REPO_CHECK_TIMEOUT: Duration = Duration::from_secs(30);
const DETECT_TIMEOUT: Duration = Duration::from_secs(90);

/// The UI's end: sending fails once the UI is gone, which ends serving.
#[derive(Clone)]
struct Outbox(std::sync::mpsc::Sender<EngineEvent>);

impl Outbox {
    fn send(&self, event: EngineEvent) -> bool {
        self.0.send(event).is_ok()
    }
}

/// The log the UI shows: new lines after `after` are sent as they are stored.
struct Follow {
    id: DeploymentId,
    after: i64,
}

struct AppLogJob {
    stop: Arc<AtomicBool>,
}

#[derive(Default)]
struct Serving {
    last_version: Option<i64>,
    last_marker: Option<(i64, i64, i64)>,
    follow: Option<Follow>,
    app_log: Option<AppLogJob>,
    /// One review at a time: a review runs `terraform plan` with a temporary record, so it is
    /// never cut short (that would leave the record behind) and two never race for a name.
    review: Option<JoinHandle<()>>,
    /// The newest review asked for while one ran; the ones in between are skipped.
    next_review: Option<Box<DeployInput>>,
    probe: Option<JoinHandle<()>>,
    /// Jobs this UI queued, until their end is reported: (job, op, target).
    watched: Vec<(JobId, OpKind, String)>,
    /// The active jobs last sent.
    last_jobs: Option<Vec<Job>>,
}

impl Serving {
    fn stop_app_log(&mut self) {
        if let Some(job) = self.app_log.take() {
            job.stop.store(true, Ordering::Relaxed);
        }
    }
}

impl Engine {
    /// Serves a UI: answers its requests and sends a fresh snapshot of the deployments (and
    /// the statistics) whenever the store changed, in this process or another one. Stops on
    /// `Request::Shutdown` or when either channel closes.
    pub async fn serve(
        &self,
        mut requests: mpsc::UnboundedReceiver<Request>,
        events: std::sync::mpsc::Sender<EngineEvent>,
    ) {
        let out = Outbox(events);
        // A separate connection: `data_version` only moves for commits by *other* connections,
        // which is every writer, since the watcher itself never writes.
        let watcher = match Store::open(&self.paths.database()) {
            Ok(s) => Db::new(s),
            Err(e) => {
                out.send(EngineEvent::Error(format!("cannot open the store: {e}")));
                return;
            }
        };
        out.send(EngineEvent::Settings(Settings {
            default_node: self.config.proxmox().ok().map(|p| p.node.clone()),
            network: match (&self.config.network.pool, &self.config.guest.vlan) {
                (Some(pool), _) => format!("static from {pool} on {}", self.config.guest.bridge),
                (None, _) => format!("DHCP on {}", self.config.guest.bridge),
            },
        }));
        if !self.recovered.is_empty() {
            let names: Vec<String> = self
                .recovered
                .iter()
                .map(|d| format!("{} ({})", d.name, d.id))
                .collect();
            out.send(EngineEvent::Error(format!(
                "Interrupted while in flight, now FAILED: {}. Select one and press t to retry \
                 (each stage is idempotent) or d to destroy it.",
                names.join(", ")
            )));
        }
        // Operations report here; their status events go on to the UI at once.
        let (pipe_tx, mut pipe_rx) = mpsc::unbounded_channel::<EngineEvent>();
        let mut st = Serving::default();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut probe_tick = tokio::time::interval(PROXMOX_EVERY);
        probe_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let mut force = false;
            tokio::select! {
                req = requests.recv() => match req {
                    None | Some(Request::Shutdown) => break,
                    Some(Request::RefreshDeployments) => force = true,
                    Some(request) => self.handle(request, &mut st, &watcher, &pipe_tx, &out).await,
                },
                Some(event) = pipe_rx.recv() => {
                    if let EngineEvent::OpQueued { op, target, job } = &event {
                        st.watched.push((job.id, *op, target.clone()));
                        // Look at the store at the next tick even if nothing moved since: a
                        // quick job may already have ended.
                        st.last_version = None;
                    }
                    // Log lines reach the UI from the store, by sequence number (`Follow`).
                    if !matches!(event, EngineEvent::Log { .. }) && !out.send(event) {
                        break;
                    }
                    continue;
                }
                _ = probe_tick.tick() => {
                    if st.probe.as_ref().is_none_or(JoinHandle::is_finished) {
                        st.probe = Some(self.spawn_probe(&out));
                    }
                    continue;
                }
                _ = tick.tick() => {}
            }
            self.start_review(&mut st, &out);
            if !self.poll(&watcher, force, &mut st, &out).await {
                break;
            }
        }
        st.stop_app_log();
        if let Some(probe) = st.probe {
            probe.abort();
        }
    }

    /// Starts the newest review asked for, unless one is still running.
    fn start_review(&self, st: &mut Serving, out: &Outbox) {
        if st.review.as_ref().is_some_and(|r| !r.is_finished()) {
            return;
        }
        let Some(input) = st.next_review.take() else {
            return;
        };
        let (engine, out) = (self.clone(), out.clone());
        st.review = Some(tokio::spawn(async move {
            let result = reads::review(&engine, &input).await;
            out.send(EngineEvent::Reviewed { input, result });
        }));
    }

    /// Sends what changed in the store: the deployments and statistics when a deployment
    /// changed, new lines of the followed log. False when the UI is gone.
    async fn poll(&self, watcher: &Db, force: bool, st: &mut Serving, out: &Outbox) -> bool {
        let version = match watcher.call(|s| s.data_version()).await {
            Ok(v) => v,
            Err(e) => return out.send(EngineEvent::Error(format!("reading the store: {e}"))),
        };
        // Nothing committed since the last look, and nothing asked for: nothing to send.
        if !force && st.last_version == Some(version) {
            return true;
        }
        st.last_version = Some(version);
        let marker = match watcher.call(|s| s.deployments_marker()).await {
            Ok(m) => m,
            Err(e) => return out.send(EngineEvent::Error(format!("reading the store: {e}"))),
        };
        if force || st.last_marker != Some(marker) {
            let first = st.last_marker.is_none();
            st.last_marker = Some(marker);
            // The first time, a long list starts with its newest rows: the table is drawn from
            // them while the rest is read.
            if first
                && let Ok((head, total)) = watcher.call(|s| s.newest(HEAD_ROWS)).await
                && total > head.len() as u64
                && !out.send(EngineEvent::DeploymentsHead { list: head, total })
            {
                return false;
            }
            // The list next: the table is drawn from it while the statistics are computed.
            let sent = match watcher.call(|s| s.list()).await {
                Ok(list) => out.send(EngineEvent::Deployments(list)),
                Err(e) => out.send(EngineEvent::Error(format!("reading the store: {e}"))),
            };
            if !sent {
                return false;
            }
            let offset = local_offset_secs();
            let stats = watcher
                .call(move |s| s.statistics(now_ms(), STATS_DAYS, offset))
                .await;
            let sent = match stats {
                Ok(stats) => out.send(EngineEvent::Statistics(stats)),
                Err(e) => out.send(EngineEvent::Error(format!("reading the store: {e}"))),
            };
            if !sent {
                return false;
            }
        }
        if !self.poll_jobs(watcher, st, out).await {
            return false;
        }
        if let Some(follow) = &mut st.follow {
            let (id, after) = (follow.id.clone(), follow.after);
            let page = watcher
                .call(move |s| s.logs(&id, after, LOG_FOLLOW_BATCH))
                .await;
            match page {
                Ok(lines) if !lines.is_empty() => {
                    follow.after = lines.last().map_or(after, |(seq, _)| *seq);
                    let at_end = lines.len() < LOG_FOLLOW_BATCH;
                    if !at_end {
                        // A full batch: more is waiting; look again at the next tick even if
                        // nothing new is committed by then.
                        st.last_version = None;
                    }
                    return out.send(EngineEvent::LogPage {
                        id: follow.id.clone(),
                        kind: LogPageKind::Append,
                        lines: seq_lines(lines),
                        at_start: false,
                        at_end,
                    });
                }
                Ok(_) => {}
                Err(e) => return out.send(EngineEvent::Error(format!("reading the log: {e}"))),
            }
        }
        true
    }

    /// Sends the active jobs when they changed, and the end of every job this UI queued.
    async fn poll_jobs(&self, watcher: &Db, st: &mut Serving, out: &Outbox) -> bool {
        let active = match watcher.call(|s| s.active_jobs()).await {
            Ok(a) => a,
            Err(e) => return out.send(EngineEvent::Error(format!("reading the jobs: {e}"))),
        };
        if st.last_jobs.as_ref() != Some(&active) {
            st.last_jobs = Some(active.clone());
            if !out.send(EngineEvent::Jobs(active.clone())) {
                return false;
            }
        }
        let ended: Vec<(JobId, OpKind, String)> = st
            .watched
            .iter()
            .filter(|(id, _, _)| !active.iter().any(|j| j.id == *id))
            .cloned()
            .collect();
        for (id, op, target) in ended {
            st.watched.retain(|(w, _, _)| *w != id);
            let result = match watcher.call(move |s| s.job(id)).await {
                Ok(j) => {
                    let o = j.outcome.unwrap_or_default();
                    if j.state == JobState::Succeeded {
                        Ok(o.message)
                    } else {
                        Err(match o.next {
                            Some(next) => format!("{}\nnext: {next}", o.message),
                            None => o.message,
                        })
                    }
                }
                Err(e) => Err(e.to_string()),
            };
            if !out.send(EngineEvent::OpFinished {
                op,
                target,
                job: Some(id),
                result,
            }) {
                return false;
            }
        }
        true
    }

    async fn handle(
        &self,
        request: Request,
        st: &mut Serving,
        watcher: &Db,
        pipe: &mpsc::UnboundedSender<EngineEvent>,
        out: &Outbox,
    ) {
        match request {
            Request::RefreshDeployments | Request::Shutdown => {}
            // Checks are bounded by their timeouts and read only; the UI keeps the answer for
            // what is typed now and drops the others.
            Request::CheckRepo { repo, git_ref } => self.spawn_repo_check(repo, git_ref, out),
            Request::Review(input) => {
                st.next_review = Some(input);
                self.start_review(st, out);
            }
            Request::Deploy(input) => {
                let target = input
                    .name
                    .clone()
                    .filter(|n| !n.trim().is_empty())
                    .unwrap_or_else(|| input.repo.clone());
                let request = OpRequest::Deploy {
                    input,
                    options: pipeline::DeployOptions::default(),
                };
                self.spawn_submit(OpKind::Deploy, target, request, pipe);
            }
            Request::Retry(id) => self.submit_on(
                Op::Retry {
                    changes: Overrides::default(),
                },
                id,
                pipe,
            ),
            Request::Redeploy { id, git_ref } => {
                let op = Op::Redeploy {
                    git_ref,
                    changes: Overrides::default(),
                };
                self.submit_on(op, id, pipe)
            }
            Request::Rollback(id) => self.submit_on(Op::Rollback { to: None }, id, pipe),
            Request::Destroy(id) => self.submit_on(Op::Destroy { force: false }, id, pipe),
            Request::Power { id, action } => {
                let op = match action {
                    Power::Start => Op::Start,
                    Power::Stop => Op::Stop,
                    Power::Restart => Op::Restart,
                };
                self.submit_on(op, id, pipe);
            }
            Request::Forget(id) => self.submit_on(Op::Forget { force: false }, id, pipe),
            Request::Sync => self.spawn_submit(OpKind::Sync, String::new(), OpRequest::Sync, pipe),
            Request::Cancel(id) => {
                let (engine, out) = (self.clone(), out.clone());
                tokio::spawn(async move {
                    match ops::cancel(&engine, &id.0, "tui").await {
                        Ok(j) if j.state == JobState::Cancelled => out.send(EngineEvent::Notice(
                            format!("job {} ({}) was still queued: cancelled", j.id, j.kind()),
                        )),
                        Ok(j) => out.send(EngineEvent::Notice(format!(
                            "job {} ({}) is asked to stop; terraform saves its state",
                            j.id,
                            j.kind()
                        ))),
                        Err(e) => out.send(EngineEvent::Error(format!("cancel: {e}"))),
                    };
                });
            }
            Request::LoadResources => {
                let (engine, out) = (self.clone(), out.clone());
                tokio::spawn(async move {
                    let result = sync::resources(&engine)
                        .await
                        .map(cluster_snapshot)
                        .map_err(|e| e.to_string());
                    out.send(EngineEvent::Cluster(result));
                });
            }
            Request::RemoveOrphan(vmid) => {
                let (engine, out) = (self.clone(), out.clone());
                tokio::spawn(async move {
                    let mut said = Vec::new();
                    let mut say = |line: String| said.push(line);
                    let removed = super::identity::remove_orphan(&engine, vmid, &mut say).await;
                    out.send(match removed {
                        Ok(o) => EngineEvent::Notice(format!(
                            "removed the orphan {} {vmid} ({}) of deployment {}",
                            o.kind.label(),
                            o.name,
                            o.deployment
                        )),
                        Err(e) => EngineEvent::Error(format!("remove-orphan {vmid}: {e}")),
                    });
                    let result = sync::resources(&engine)
                        .await
                        .map(cluster_snapshot)
                        .map_err(|e| e.to_string());
                    out.send(EngineEvent::Cluster(result));
                });
            }
            Request::LoadStats => {
                let (db, out) = (watcher.clone(), out.clone());
                tokio::spawn(async move {
                    let offset = local_offset_secs();
                    match db
                        .call(move |s| s.statistics(now_ms(), STATS_DAYS, offset))
                        .await
                    {
                        Ok(stats) => out.send(EngineEvent::Statistics(stats)),
                        Err(e) => out.send(EngineEvent::Error(format!("statistics: {e}"))),
                    };
                });
            }
            Request::LoadDetails(id) => {
                let (db, out) = (watcher.clone(), out.clone());
                tokio::spawn(async move {
                    out.send(match reads::details(&db, id).await {
                        Ok(d) => EngineEvent::Details(Box::new(d)),
                        Err(e) => EngineEvent::Error(format!("details: {e}")),
                    });
                });
            }
            Request::LoadSnapshots(id) => {
                let (engine, out) = (self.clone(), out.clone());
                tokio::spawn(async move {
                    out.send(match super::snapshots::view(&engine, id).await {
                        Ok(v) => EngineEvent::Snapshots(Box::new(v)),
                        Err(e) => EngineEvent::Error(format!("snapshots: {e}")),
                    });
                });
            }
            Request::Restore { id, snapshot } => self.submit_on(Op::Restore { snapshot }, id, pipe),
            Request::AutoDeploy { id, on } => {
                let (engine, out) = (self.clone(), out.clone());
                tokio::spawn(async move {
                    out.send(match super::autodeploy::set(&engine, &id.0, on).await {
                        Ok((d, _)) => EngineEvent::Notice(format!(
                            "auto-deploy is {} for {}",
                            if on { "on" } else { "off" },
                            crate::domain::present::who(&d)
                        )),
                        Err(e) => EngineEvent::Error(format!("auto-deploy: {e}")),
                    });
                    if let Ok(v) = super::snapshots::view(&engine, id).await {
                        out.send(EngineEvent::Snapshots(Box::new(v)));
                    }
                });
            }
            Request::OpenLog(id) => {
                let key = id.clone();
                match watcher.call(move |s| s.logs_tail(&key, LOG_TAIL)).await {
                    Ok(lines) => {
                        let after = lines.last().map_or(0, |(seq, _)| *seq);
                        let at_start = lines.len() < LOG_TAIL;
                        out.send(EngineEvent::LogPage {
                            id: id.clone(),
                            kind: LogPageKind::Tail,
                            lines: seq_lines(lines),
                            at_start,
                            at_end: true,
                        });
                        st.follow = Some(Follow { id, after });
                    }
                    Err(e) => {
                        out.send(EngineEvent::Error(format!("reading the log: {e}")));
                    }
                }
            }
            Request::LoadLog { id, window } => {
                let event = match reads::log_window(watcher, id.clone(), window).await {
                    Ok(w) => EngineEvent::LogPage {
                        id,
                        kind: LogPageKind::Window(window),
                        lines: seq_lines(w.lines),
                        at_start: w.at_start,
                        at_end: w.at_end,
                    },
                    Err(e) => EngineEvent::Error(format!("reading the log: {e}")),
                };
                out.send(event);
            }
            Request::FindInLog {
                id,
                query,
                from,
                forward,
            } => {
                let (db, out) = (watcher.clone(), out.clone());
                tokio::spawn(async move {
                    let (key, q) = (id.clone(), query.clone());
                    match db.call(move |s| s.find_log(&key, &q, from, forward)).await {
                        Ok(seq) => out.send(EngineEvent::LogMatch {
                            id,
                            query,
                            forward,
                            seq,
                        }),
                        Err(e) => out.send(EngineEvent::Error(format!("searching the log: {e}"))),
                    };
                });
            }
            Request::FilterLog { id, query } => {
                let (db, out) = (watcher.clone(), out.clone());
                tokio::spawn(async move {
                    // A page per call: the store is free between pages for the other reads.
                    let mut progress = LogFilter::new();
                    let found = loop {
                        let (key, q) = (id.clone(), query.clone());
                        let step = db
                            .call(move |s| {
                                let mut f = progress;
                                let more = f.scan_page(s, &key, &q, LOG_FILTER_KEEP)?;
                                Ok((f, more))
                            })
                            .await;
                        match step {
                            Ok((f, true)) => progress = f,
                            Ok((f, false)) => break Ok(f),
                            Err(e) => break Err(e),
                        }
                    };
                    match found {
                        Ok(f) => out.send(EngineEvent::LogFiltered {
                            id,
                            query,
                            total: f.total,
                            lines: seq_lines(f.lines),
                            through: f.through,
                        }),
                        Err(e) => out.send(EngineEvent::Error(format!("filtering the log: {e}"))),
                    };
                });
            }
            Request::CloseLog => st.follow = None,
            Request::StartAppLog { id, lines } => {
                st.stop_app_log();
                let stop = Arc::new(AtomicBool::new(false));
                st.app_log = Some(AppLogJob { stop: stop.clone() });
                self.spawn_app_log(id, lines, stop, out);
            }
            Request::StopAppLog => st.stop_app_log(),
            Request::PrepareShell(id) => {
                let (engine, out) = (self.clone(), out.clone());
                tokio::spawn(async move {
                    match super::shell::prepare(&engine, &id).await {
                        Ok(cmd) => out.send(EngineEvent::ShellReady(cmd)),
                        Err(e) => out.send(EngineEvent::Error(format!("shell: {e}"))),
                    };
                });
            }
        }
    }

    /// Queues an operation on a deployment (a task: submitting reads the store).
    fn submit_on(&self, op: Op, id: DeploymentId, pipe: &mpsc::UnboundedSender<EngineEvent>) {
        let kind = op.kind();
        let request = OpRequest::On {
            op: Box::new(op),
            target: id.0.clone(),
        };
        self.spawn_submit(kind, id.0, request, pipe);
    }

    /// Submits in a task (a deploy may detect its framework first); the answer is `OpQueued`,
    /// or `OpFinished` with the refusal. The job's end comes from the store (`poll`).
    fn spawn_submit(
        &self,
        op: OpKind,
        target: String,
        request: OpRequest,
        pipe: &mpsc::UnboundedSender<EngineEvent>,
    ) {
        let (engine, pipe) = (self.clone(), pipe.clone());
        tokio::spawn(async move {
            let event = match ops::submit(&engine, request, "tui").await {
                Ok(s) => EngineEvent::OpQueued {
                    op,
                    target,
                    job: Box::new(s.job),
                },
                Err(e) => EngineEvent::OpFinished {
                    op,
                    target,
                    job: None,
                    result: Err(e.to_string()),
                },
            };
            let _ = pipe.send(event);
        });
    }

    fn spawn_repo_check(&self, repo: String, git_ref: String, out: &Outbox) {
        let (engine, out) = (self.clone(), out.clone());
        tokio::spawn(async move {
            let url = match crate::domain::spec::normalize_repo(&repo) {
                Ok(url) => url,
                Err(e) => {
                    out.send(EngineEvent::RepoChecked {
                        repo,
                        git_ref,
                        result: Err(format!("repo: {e}")),
                    });
                    return;
                }
            };
            let checked = detect::check_ref(
                &url,
                git_ref.trim(),
                REPO_CHECK_TIMEOUT,
                &super::gitauth::Access::none(),
            )
            .await;
            let ok = checked.is_ok();
            out.send(EngineEvent::RepoChecked {
                repo: repo.clone(),
                git_ref: git_ref.clone(),
                result: checked,
            });
            if !ok {
                return;
            }
            let scratch = engine.paths.root.join("tmp");
            let wanted = Some(git_ref.trim()).filter(|r| !r.is_empty());
            let public = super::gitauth::Access::none();
            let result = detect::detect_repo(
                Catalog::builtin(),
                &url,
                wanted,
                "",
                &scratch,
                DETECT_TIMEOUT,
                &public,
            )
            .await
            .map(|d| Detected {
                framework: d.framework,
                reason: d.reason,
            })
            .map_err(|e| e.to_string());
            out.send(EngineEvent::Detected {
                repo,
                git_ref,
                result,
            });
        });
    }

    fn spawn_probe(&self, out: &Outbox) -> JoinHandle<()> {
        let (engine, out) = (self.clone(), out.clone());
        tokio::spawn(async move {
            let Ok(proxmox) = engine.config.proxmox() else {
                out.send(EngineEvent::Proxmox(ProxmoxState::Unconfigured));
                return;
            };
            let endpoint = proxmox.endpoint.to_string();
            let state = async {
                let client = Client::new(proxmox)?;
                let version = client.version().await?;
                let nodes = client.nodes().await?;
                Ok::<_, super::proxmox::ProxmoxError>(ProxmoxState::Online {
                    endpoint: endpoint.clone(),
                    version: version.version,
                    nodes_online: nodes.iter().filter(|n| n.online()).count(),
                    nodes: nodes.len(),
                })
            }
            .await
            .unwrap_or_else(|e| ProxmoxState::Offline {
                endpoint: endpoint.clone(),
                error: e.to_string(),
            });
            out.send(EngineEvent::Proxmox(state));
        })
    }

    fn spawn_app_log(&self, id: DeploymentId, lines: u32, stop: Arc<AtomicBool>, out: &Outbox) {
        let (engine, out) = (self.clone(), out.clone());
        tokio::spawn(async move {
            let (tx, mut rx) = mpsc::unbounded_channel::<super::process::Output>();
            let forward = {
                let (out, id) = (out.clone(), id.clone());
                tokio::spawn(async move {
                    while let Some(o) = rx.recv().await {
                        if !out.send(EngineEvent::AppLog {
                            id: id.clone(),
                            stream: o.stream,
                            lines: o.lines,
                        }) {
                            return;
                        }
                    }
                })
            };
            let result = applogs::app_logs(&engine, &id.0, lines, true, stop.clone(), tx).await;
            let _ = forward.await;
            let error = match result {
                Ok(()) => None,
                Err(_) if stop.load(Ordering::Relaxed) => None,
                Err(e) => Some(e.to_string()),
            };
            out.send(EngineEvent::AppLogEnded { id, error });
        });
    }
}

fn seq_lines(lines: Vec<(i64, crate::protocol::LogLine)>) -> Vec<SeqLine> {
    lines
        .into_iter()
        .map(|(seq, line)| SeqLine { seq, line })
        .collect()
}

fn cluster_snapshot(view: sync::ClusterView) -> ClusterSnapshot {
    ClusterSnapshot {
        nodes: view
            .nodes
            .into_iter()
            .map(|n| NodeInfo {
                online: n.online(),
                name: n.node,
                status: n.status,
                cpu: n.cpu,
                maxcpu: n.maxcpu,
                mem: n.mem,
                maxmem: n.maxmem,
                disk: n.disk,
                maxdisk: n.maxdisk,
                uptime: n.uptime,
            })
            .collect(),
        guests: view
            .guests
            .into_iter()
            .map(|g| GuestInfo {
                vmid: g.vmid,
                kind: g.kind.into(),
                node: g.node,
                name: g.name,
                status: g.status,
                cpu: g.cpu,
                maxcpu: g.maxcpu,
                mem: g.mem,
                maxmem: g.maxmem,
                disk: g.disk,
                maxdisk: g.maxdisk,
                uptime: g.uptime,
                template: g.template,
                managed: g.managed,
                orphan_of: g.orphan.map(|o| o.deployment),
                entry: g.deployment.map(|t| GuestEntry {
                    id: t.id,
                    name: t.name,
                    origin: t.origin,
                    status: t.status,
                }),
            })
            .collect(),
    }
}

/// Seconds east of UTC of the local time zone (for per-day statistics).
fn local_offset_secs() -> i32 {
    chrono::Local::now().offset().local_minus_utc()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::domain::{Deployment, Stage, Status};
    use crate::protocol::{LogLine, LogStream, LogWindow};
    use std::time::Instant;

    const WAIT: Duration = Duration::from_secs(20);

    struct Served {
        engine: Engine,
        requests: mpsc::UnboundedSender<Request>,
        events: std::sync::mpsc::Receiver<EngineEvent>,
        task: JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    impl Served {
        fn start() -> Served {
            let dir = tempfile::tempdir().unwrap();
            let config = Config::parse("", &Default::default()).unwrap();
            let engine = Engine::open(config, dir.path()).unwrap();
            let (requests, rx) = mpsc::unbounded_channel();
            let (tx, events) = std::sync::mpsc::channel();
            let serving = engine.clone();
            let task = tokio::spawn(async move { serving.serve(rx, tx).await });
            Served {
                engine,
                requests,
                events,
                task,
                _dir: dir,
            }
        }

        /// The first event `pick` accepts, within a bounded wait; others are skipped.
        async fn wait_for<T>(&self, what: &str, pick: impl Fn(&EngineEvent) -> Option<T>) -> T {
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline {
                match self.events.try_recv() {
                    Ok(e) => {
                        if let Some(t) = pick(&e) {
                            return t;
                        }
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            panic!("no {what} within {WAIT:?}");
        }

        fn send(&self, r: Request) {
            self.requests.send(r).unwrap();
        }
    }

    fn line(text: &str, stream: LogStream) -> LogLine {
        LogLine {
            at: now_ms(),
            stream,
            stage: Some(Stage::Provision),
            text: text.into(),
        }
    }

    async fn record(engine: &Engine, id: &str) -> DeploymentId {
        let d = Deployment {
            id: DeploymentId(id.into()),
            name: format!("app-{id}"),
            repo: "file:///nowhere.git".into(),
            framework: "flask".into(),
            created_at: now_ms(),
            updated_at: now_ms(),
            ..Deployment::default()
        };
        let key = d.id.clone();
        engine
            .db
            .call(move |s| {
                s.insert_deployment(&d)?;
                s.append_logs(
                    &d.id,
                    &[
                        line("--- stage provision ---", LogStream::Info),
                        line("pip install flask", LogStream::Stdout),
                    ],
                )
            })
            .await
            .unwrap();
        key
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn snapshots_logs_reads_and_an_operation_through_serve() {
        let s = Served::start();
        let settings = s
            .wait_for("settings", |e| match e {
                EngineEvent::Settings(x) => Some(x.clone()),
                _ => None,
            })
            .await;
        assert_eq!(settings.default_node, None, "no [proxmox] in the config");
        let state = s
            .wait_for("the proxmox state", |e| match e {
                EngineEvent::Proxmox(p) => Some(p.clone()),
                _ => None,
            })
            .await;
        assert_eq!(state, ProxmoxState::Unconfigured);

        // A deployment written by "another process" (another connection) shows up.
        let id = record(&s.engine, "aaa111").await;
        let list = s
            .wait_for("a snapshot with the deployment", |e| match e {
                EngineEvent::Deployments(l) if !l.is_empty() => Some(l.clone()),
                _ => None,
            })
            .await;
        assert_eq!(list[0].id, id);
        let stats = s
            .wait_for("statistics", |e| match e {
                EngineEvent::Statistics(st) if st.total == 1 => Some(st.clone()),
                _ => None,
            })
            .await;
        assert_eq!(stats.per_day.len(), STATS_DAYS as usize);

        // The log: its tail, then new lines as they are stored.
        s.send(Request::OpenLog(id.clone()));
        let tail = s
            .wait_for("the log's tail", |e| match e {
                EngineEvent::LogPage {
                    kind: LogPageKind::Tail,
                    lines,
                    at_start,
                    ..
                } => Some((lines.clone(), *at_start)),
                _ => None,
            })
            .await;
        assert_eq!(tail.0.len(), 2);
        assert!(tail.1, "the whole log fits");
        let key = id.clone();
        s.engine
            .db
            .call(move |st| {
                st.append_logs(
                    &key,
                    &[line("ERROR: no module named flask", LogStream::Stderr)],
                )
            })
            .await
            .unwrap();
        let appended = s
            .wait_for("the new line", |e| match e {
                EngineEvent::LogPage {
                    kind: LogPageKind::Append,
                    lines,
                    ..
                } => Some(lines.clone()),
                _ => None,
            })
            .await;
        assert_eq!(appended.len(), 1);
        assert_eq!(appended[0].line.stream, LogStream::Stderr);
        assert!(appended[0].seq > tail.0[1].seq);

        s.send(Request::FindInLog {
            id: id.clone(),
            query: "no MODULE".into(),
            from: 0,
            forward: true,
        });
        let found = s
            .wait_for("the search's answer", |e| match e {
                EngineEvent::LogMatch { seq, .. } => Some(*seq),
                _ => None,
            })
            .await;
        assert_eq!(found, Some(appended[0].seq));
        // The filter: every matching line of the whole log, counted.
        s.send(Request::FilterLog {
            id: id.clone(),
            query: "NO MODULE".into(),
        });
        let filtered = s
            .wait_for("the filter's answer", |e| match e {
                EngineEvent::LogFiltered {
                    total,
                    lines,
                    through,
                    ..
                } => Some((*total, lines.clone(), *through)),
                _ => None,
            })
            .await;
        assert_eq!(filtered.0, 1);
        assert_eq!(filtered.1, appended);
        assert_eq!(filtered.2, appended[0].seq, "scanned to the end");
        s.send(Request::LoadLog {
            id: id.clone(),
            window: LogWindow::Before(appended[0].seq),
        });
        let before = s
            .wait_for("the page before", |e| match e {
                EngineEvent::LogPage {
                    kind: LogPageKind::Window(_),
                    lines,
                    at_start,
                    ..
                } => Some((lines.len(), *at_start)),
                _ => None,
            })
            .await;
        assert_eq!(before, (2, true));

        s.send(Request::LoadDetails(id.clone()));
        let details = s
            .wait_for("details", |e| match e {
                EngineEvent::Details(d) => Some(d.clone()),
                _ => None,
            })
            .await;
        assert_eq!(details.deployment.id, id);
        assert_eq!(details.history.len(), 1);

        // Reviewing needs Proxmox for a new guest: the answer says so.
        s.send(Request::Review(Box::new(DeployInput {
            repo: "acme/shop".into(),
            framework: "flask".into(),
            ..DeployInput::default()
        })));
        let review = s
            .wait_for("the review", |e| match e {
                EngineEvent::Reviewed { result, .. } => Some(result.clone()),
                _ => None,
            })
            .await;
        assert!(review.unwrap_err().contains("proxmox is not configured"));
        // Removing an orphan asks Proxmox too: the error names the request.
        s.send(Request::RemoveOrphan(700));
        let removed = s
            .wait_for("the orphan's removal", |e| match e {
                EngineEvent::Error(text) if text.starts_with("remove-orphan 700") => {
                    Some(text.clone())
                }
                _ => None,
            })
            .await;
        assert!(removed.contains("proxmox"), "{removed}");
        // Bad input is named field by field.
        s.send(Request::Review(Box::new(DeployInput {
            repo: "acme/shop;x".into(),
            ..DeployInput::default()
        })));
        let review = s
            .wait_for("the review", |e| match e {
                EngineEvent::Reviewed { result, .. } => Some(result.clone()),
                _ => None,
            })
            .await;
        assert!(review.unwrap_err().starts_with("repo: "));

        // A real operation: destroying a PENDING deployment that never got a guest.
        // It becomes a job of the worker (in this process for the test).
        s.send(Request::Destroy(id.clone()));
        let queued = s
            .wait_for("the destroy queued", |e| match e {
                EngineEvent::OpQueued { op, job, .. } => Some((*op, job.clone())),
                _ => None,
            })
            .await;
        assert_eq!(queued.0, OpKind::Destroy);
        assert_eq!(queued.1.deployment.as_ref(), Some(&id));
        s.wait_for("DELETED in a snapshot", |e| match e {
            EngineEvent::Deployments(l) if l.iter().any(|d| d.status == Status::Deleted) => {
                Some(())
            }
            _ => None,
        })
        .await;
        let (op, job, result) = s
            .wait_for("the destroy's end", |e| match e {
                EngineEvent::OpFinished {
                    op, job, result, ..
                } => Some((*op, *job, result.clone())),
                _ => None,
            })
            .await;
        assert_eq!(op, OpKind::Destroy);
        assert_eq!(job, Some(queued.1.id));
        assert!(
            result.as_ref().is_ok_and(|t| t.contains("DELETED")),
            "{result:?}"
        );
        // A refused one comes back as an error, and serving goes on.
        s.send(Request::Retry(id.clone()));
        let refused = s
            .wait_for("the retry's end", |e| match e {
                EngineEvent::OpFinished {
                    op: OpKind::Retry,
                    result,
                    ..
                } => Some(result.clone()),
                _ => None,
            })
            .await;
        assert!(refused.is_err());

        s.send(Request::Shutdown);
        tokio::time::timeout(WAIT, s.task).await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_repository_check_answers_and_detects() {
        let s = Served::start();
        let work = tempfile::tempdir().unwrap();
        let repo = work.path().join("sample");
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(args)
                .current_dir(&repo)
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@example.com")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@example.com")
                .output()
                .expect("git runs");
            assert!(
                out.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        std::fs::create_dir_all(&repo).unwrap();
        git(&["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("requirements.txt"), "flask\ngunicorn\n").unwrap();
        std::fs::write(
            repo.join("app.py"),
            "from flask import Flask\napp = Flask(__name__)\n",
        )
        .unwrap();
        git(&["add", "."]);
        git(&["commit", "-q", "-m", "sample"]);
        let url = format!("file://{}", repo.display());

        s.send(Request::CheckRepo {
            repo: url.clone(),
            git_ref: "main".into(),
        });
        let checked = s
            .wait_for("the check", |e| match e {
                EngineEvent::RepoChecked { repo, result, .. } if *repo == url => {
                    Some(result.clone())
                }
                _ => None,
            })
            .await;
        assert!(
            checked.as_ref().is_ok_and(|t| t.contains("ref main found")),
            "{checked:?}"
        );
        let detected = s
            .wait_for("the detection", |e| match e {
                EngineEvent::Detected { result, .. } => Some(result.clone()),
                _ => None,
            })
            .await
            .unwrap();
        assert_eq!(detected.framework, "flask");
        assert!(
            detected.reason.contains("requirements.txt"),
            "{}",
            detected.reason
        );

        s.send(Request::CheckRepo {
            repo: url.clone(),
            git_ref: "nope".into(),
        });
        let missing = s
            .wait_for("the check of a missing ref", |e| match e {
                EngineEvent::RepoChecked {
                    git_ref, result, ..
                } if git_ref == "nope" => Some(result.clone()),
                _ => None,
            })
            .await;
        assert!(missing.unwrap_err().contains("no branch or tag"));
        s.send(Request::Shutdown);
        tokio::time::timeout(WAIT, s.task).await.unwrap().unwrap();
    }
}
