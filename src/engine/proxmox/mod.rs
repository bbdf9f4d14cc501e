//! The Proxmox VE API client (reqwest over rustls) for everything Terraform does not do:
//! preflight checks, finding a guest's address, power actions, the cluster's resources, sync.
//!
//! Owns authentication (an API token, or a user and password: a ticket with its CSRF token
//! on writes, renewed before it expires and again after a 401), TLS trust (see [`tls`]), a
//! timeout on every call, bounded retries with backoff (connection errors for every call;
//! timeouts and 5xx only for calls that are safe to repeat), Proxmox's own error messages, and
//! waiting on tasks (a UPID polled to its end; a failed task's exit status and log tail become
//! the error). Typed endpoints live in [`api`].
//!
//! It must not log or return a secret: the token and the password stay in headers and forms
//! (headers marked sensitive), never in a message, a URL or argv.

pub mod api;
pub mod checks;
pub mod ip;
pub mod placement;
pub mod tls;

use crate::config::{ProxmoxConfig, Secret};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
pub use tls::TlsMode;

/// Tickets last two hours on Proxmox; log in again well before that.
const TICKET_RENEW_AFTER: Duration = Duration::from_secs(90 * 60);
/// Lines of a failed task's log kept in the error.
const TASK_LOG_TAIL: usize = 8;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxmoxError {
    #[error(
        "cannot reach Proxmox at {endpoint}: {cause}; check proxmox.endpoint and that this machine can reach it"
    )]
    Unreachable { endpoint: String, cause: String },
    #[error(
        "Proxmox at {endpoint} did not answer {what} within {secs} s (timeout{tries}); the node or the network is slow or down; proxmox.timeout_secs raises the limit"
    )]
    Timeout {
        endpoint: String,
        what: String,
        secs: u64,
        /// ", N attempts" when the call was retried.
        tries: String,
    },
    #[error("TLS: the certificate of {endpoint} is refused ({cause}); {hint}")]
    Tls {
        endpoint: String,
        cause: String,
        hint: String,
    },
    #[error("Proxmox refused the credentials ({message}); {hint}")]
    Auth { message: String, hint: String },
    /// Proxmox answered with an error: its own message (it often names the field).
    #[error("{what}: {message}{hint}")]
    Api {
        what: String,
        status: u16,
        message: String,
        /// Empty, or "; ..." with what to do (e.g. for a 403).
        hint: String,
    },
    #[error("{what} failed: {exit}{log}")]
    Task {
        what: String,
        upid: String,
        exit: String,
        /// Empty, or "\n  task log: ..." with the last lines of the task's log.
        log: String,
    },
    #[error(
        "{what} is still running after {secs} s ({upid}); proxmox.task_timeout_secs raises the limit"
    )]
    TaskTimeout {
        what: String,
        upid: String,
        secs: u64,
    },
    #[error("unexpected answer from Proxmox to {what}: {cause}")]
    Decode { what: String, cause: String },
    #[error("cannot set up the Proxmox client: {0}")]
    Setup(String),
}

impl ProxmoxError {
    /// The HTTP status Proxmox answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ProxmoxError::Api { status, .. } => Some(*status),
            ProxmoxError::Auth { .. } => Some(401),
            _ => None,
        }
    }

    /// Proxmox's own message for an API error.
    pub fn api_message(&self) -> Option<&str> {
        match self {
            ProxmoxError::Api { message, .. } => Some(message),
            _ => None,
        }
    }
}

pub type Result<T, E = ProxmoxError> = std::result::Result<T, E>;

/// Whether a call may be sent again after a failure that may have reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Reads: retried after timeouts, resets and 5xx.
    Safe,
    /// Writes (start, stop, create, ...): retried only when the connection was never made.
    Once,
}

enum Auth {
    /// `PVEAPIToken=USER@REALM!ID=SECRET`, marked sensitive.
    Token(HeaderValue),
    Login {
        username: String,
        password: Secret,
        session: tokio::sync::Mutex<Option<Session>>,
        renew_after: Duration,
    },
}

#[derive(Clone)]
struct Session {
    cookie: HeaderValue,
    csrf: HeaderValue,
    issued: Instant,
}

struct Inner {
    http: reqwest::Client,
    /// `https://host:port/api2/json/`
    base: url::Url,
    endpoint: String,
    auth: Auth,
    timeout: Duration,
    retries: u32,
    task_timeout: Duration,
    tls: tls::TlsSetup,
    /// Logins done (first one and renewals), for tests and `doctor`.
    logins: std::sync::atomic::AtomicU64,
}

/// Knobs that are not configuration (tests shorten them).
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Log in again once a ticket is this old (Proxmox tickets last 2 hours).
    pub ticket_renew_after: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            ticket_renew_after: TICKET_RENEW_AFTER,
        }
    }
}

/// A Proxmox API client: cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.inner.endpoint)
            .field("tls", &self.inner.tls.mode)
            .finish_non_exhaustive()
    }
}

/// One request: method, path segments under `/api2/json`, parameters.
pub struct Call<'a> {
    pub method: Method,
    pub path: Vec<String>,
    pub params: Vec<(&'a str, String)>,
    pub repeat: Repeat,
}

impl<'a> Call<'a> {
    pub fn get(path: &[&str]) -> Call<'a> {
        Call {
            method: Method::GET,
            path: path.iter().map(|s| s.to_string()).collect(),
            params: Vec::new(),
            repeat: Repeat::Safe,
        }
    }

    pub fn post(path: &[&str]) -> Call<'a> {
        Call {
            method: Method::POST,
            path: path.iter().map(|s| s.to_string()).collect(),
            params: Vec::new(),
            repeat: Repeat::Once,
        }
    }

    /// A DELETE: like other writes, not sent again once it may have reached the server.
    pub fn delete(path: &[&str]) -> Call<'a> {
        Call {
            method: Method::DELETE,
            path: path.iter().map(|s| s.to_string()).collect(),
            params: Vec::new(),
            repeat: Repeat::Once,
        }
    }

    pub fn param(mut self, key: &'a str, value: impl ToString) -> Call<'a> {
        self.params.push((key, value.to_string()));
        self
    }

    /// `GET /nodes/pve1/lxc`: how messages name the call.
    pub fn describe(&self) -> String {
        format!("{} /{}", self.method, self.path.join("/"))
    }
}

/// What went wrong on one attempt, and whether another may help.
enum Attempt {
    Retry(ProxmoxError),
    Fail(ProxmoxError),
}

impl Client {
    pub fn new(config: &ProxmoxConfig) -> Result<Client> {
        Client::with_options(config, ClientOptions::default())
    }

    pub fn with_options(config: &ProxmoxConfig, options: ClientOptions) -> Result<Client> {
        let builder = reqwest::Client::builder()
            .https_only(true)
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("proxdeck/", env!("CARGO_PKG_VERSION")));
        let (builder, tls) = tls::configure(builder, config).map_err(ProxmoxError::Setup)?;
        let http = builder
            .build()
            .map_err(|e| ProxmoxError::Setup(e.to_string()))?;
        let mut base = config.endpoint.clone();
        // Accept https://host:8006, https://host:8006/ and https://host:8006/api2/json.
        let path = base.path().trim_end_matches('/').to_string();
        let path = path.strip_suffix("/api2/json").unwrap_or(&path).to_string();
        base.set_path(&format!("{path}/api2/json/"));
        base.set_query(None);
        let auth = if config.has_token() {
            let mut value =
                HeaderValue::from_str(&format!("PVEAPIToken={}", config.api_token.expose()))
                    .map_err(|_| {
                        ProxmoxError::Setup(
                            "proxmox.api_token holds characters a header cannot carry".into(),
                        )
                    })?;
            value.set_sensitive(true);
            Auth::Token(value)
        } else {
            match (&config.username, &config.password) {
                (Some(u), Some(p)) => Auth::Login {
                    username: u.clone(),
                    password: p.clone(),
                    session: tokio::sync::Mutex::new(None),
                    renew_after: options.ticket_renew_after,
                },
                _ => {
                    return Err(ProxmoxError::Setup(
                        "no credentials: set proxmox.api_token, or proxmox.username and a password"
                            .into(),
                    ));
                }
            }
        };
        let endpoint = config.endpoint.as_str().trim_end_matches('/').to_string();
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                endpoint,
                auth,
                timeout: config.timeout,
                retries: config.retries,
                task_timeout: config.task_timeout,
                tls,
                logins: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    pub fn tls_mode(&self) -> &TlsMode {
        &self.inner.tls.mode
    }

    /// "API token USER@REALM!ID" or "user USER@REALM (ticket)": who proxdeck is on Proxmox.
    pub fn identity(&self) -> String {
        match &self.inner.auth {
            Auth::Token(v) => {
                let text = v.to_str().unwrap_or("");
                let id = text
                    .trim_start_matches("PVEAPIToken=")
                    .split('=')
                    .next()
                    .unwrap_or("");
                format!("API token {id}")
            }
            Auth::Login { username, .. } => format!("user {username} (ticket login)"),
        }
    }

    /// How many ticket logins this client made (the first one and every renewal).
    pub fn logins(&self) -> u64 {
        self.inner.logins.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn task_timeout(&self) -> Duration {
        self.inner.task_timeout
    }

    /// Sends a call and returns the `data` member of Proxmox's answer.
    pub async fn call(&self, call: &Call<'_>) -> Result<Value> {
        let what = call.describe();
        let mut attempt: u32 = 0;
        let mut relogged = false;
        loop {
            match self.attempt(call, &what, &mut relogged).await {
                Ok(v) => return Ok(v),
                Err(Attempt::Fail(e)) => return Err(e),
                Err(Attempt::Retry(e)) => {
                    if attempt >= self.inner.retries {
                        return Err(with_tries(e, attempt + 1));
                    }
                    tracing::debug!("{what}: attempt {} failed, retrying: {e}", attempt + 1);
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn attempt(
        &self,
        call: &Call<'_>,
        what: &str,
        relogged: &mut bool,
    ) -> Result<Value, Attempt> {
        let url = self.url(&call.path);
        let mut headers = HeaderMap::new();
        match &self.inner.auth {
            Auth::Token(v) => {
                headers.insert(reqwest::header::AUTHORIZATION, v.clone());
            }
            Auth::Login { .. } => {
                let session = self.session(false).await.map_err(Attempt::Fail)?;
                headers.insert(reqwest::header::COOKIE, session.cookie);
                if call.method != Method::GET && call.method != Method::HEAD {
                    headers.insert("CSRFPreventionToken", session.csrf);
                }
            }
        }
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), url)
            .headers(headers);
        request = if call.method == Method::GET || call.method == Method::DELETE {
            request.query(&call.params)
        } else {
            request.form(&call.params)
        };
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Err(self.transport_error(e, what, call.repeat)),
        };
        let status = response.status().as_u16();
        let text = match response.text().await {
            Ok(t) => t,
            Err(e) => return Err(self.transport_error(e, what, call.repeat)),
        };
        if (200..300).contains(&status) {
            let body: Value = serde_json::from_str(&text).map_err(|e| {
                Attempt::Fail(ProxmoxError::Decode {
                    what: what.to_string(),
                    cause: match html_summary(&text) {
                        Some(page) => format!(
                            "{page} came back instead of Proxmox's JSON: proxmox.endpoint may point at a proxy, a login page or another site instead of the API (https://HOST:8006/)"
                        ),
                        None => format!("not JSON ({e}): {}", snippet(&text)),
                    },
                })
            })?;
            return Ok(body.get("data").cloned().unwrap_or(Value::Null));
        }
        let message = error_message(status, &text);
        if status == 401 {
            if let Auth::Login { .. } = &self.inner.auth
                && !*relogged
            {
                // The ticket expired or was revoked: log in again and send the call again
                // (a 401 means it was not carried out, so this is safe for writes too).
                *relogged = true;
                self.session(true).await.map_err(Attempt::Fail)?;
                return Box::pin(self.attempt(call, what, relogged)).await;
            }
            return Err(Attempt::Fail(ProxmoxError::Auth {
                message,
                hint: self.auth_hint(),
            }));
        }
        let hint = match status {
            403 => format!(
                "; {} lacks this privilege: grant it on Proxmox (Datacenter > Permissions), e.g. the PVEVMAdmin role on /",
                self.identity()
            ),
            595 => "; the node is offline or unreachable from the cluster".to_string(),
            _ => String::new(),
        };
        let err = ProxmoxError::Api {
            what: what.to_string(),
            status,
            message,
            hint,
        };
        if call.repeat == Repeat::Safe && transient(status, err.api_message().unwrap_or("")) {
            Err(Attempt::Retry(err))
        } else {
            Err(Attempt::Fail(err))
        }
    }

    fn url(&self, segments: &[String]) -> url::Url {
        let mut url = self.inner.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(segments);
        }
        url
    }

    fn auth_hint(&self) -> String {
        match &self.inner.auth {
            Auth::Token(_) => "check proxmox.api_token (USER@REALM!TOKENID=SECRET): the token may be wrong, expired or deleted".to_string(),
            Auth::Login { username, .. } => format!(
                "check proxmox.username ({username}) and the password (PROXMOX_VE_PASSWORD or proxmox.password)"
            ),
        }
    }

    /// The current ticket, logging in when there is none, it is old, or `renew` asks.
    async fn session(&self, renew: bool) -> Result<Session> {
        let Auth::Login {
            username,
            password,
            session,
            renew_after,
        } = &self.inner.auth
        else {
            return Err(ProxmoxError::Setup("not a ticket login".into()));
        };
        let mut guard = session.lock().await;
        if let Some(s) = guard.as_ref()
            && !renew
            && s.issued.elapsed() < *renew_after
        {
            return Ok(s.clone());
        }
        let fresh = self.login(username, password).await?;
        *guard = Some(fresh.clone());
        Ok(fresh)
    }

    async fn login(&self, username: &str, password: &Secret) -> Result<Session> {
        let what = "POST /access/ticket".to_string();
        let params = [("username", username), ("password", password.expose())];
        let mut attempt = 0;
        loop {
            let sent = self
                .inner
                .http
                .post(self.url(&["access".into(), "ticket".into()]))
                .form(&params)
                .send()
                .await;
            let result = match sent {
                Err(e) => Err(self.transport_error(e, &what, Repeat::Safe)),
                Ok(response) => {
                    let status = response.status().as_u16();
                    match response.text().await {
                        Err(e) => Err(self.transport_error(e, &what, Repeat::Safe)),
                        Ok(text) if status == 401 || status == 403 => {
                            Err(Attempt::Fail(ProxmoxError::Auth {
                                message: error_message(status, &text),
                                hint: self.auth_hint(),
                            }))
                        }
                        Ok(text) if !(200..300).contains(&status) => {
                            let err = ProxmoxError::Api {
                                what: what.clone(),
                                status,
                                message: error_message(status, &text),
                                hint: String::new(),
                            };
                            if transient(status, "") {
                                Err(Attempt::Retry(err))
                            } else {
                                Err(Attempt::Fail(err))
                            }
                        }
                        Ok(text) => parse_ticket(&what, &text).map_err(Attempt::Fail),
                    }
                }
            };
            match result {
                Ok(s) => {
                    self.inner
                        .logins
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ok(s);
                }
                Err(Attempt::Fail(e)) => return Err(e),
                Err(Attempt::Retry(e)) => {
                    if attempt >= self.inner.retries {
                        return Err(with_tries(e, attempt + 1));
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Classifies a failure below HTTP: TLS (never retried), no connection (retried: the
    /// request was not sent), timeout or reset (retried only for calls safe to repeat).
    fn transport_error(&self, e: reqwest::Error, what: &str, repeat: Repeat) -> Attempt {
        let chain = error_chain(&e);
        let endpoint = self.inner.endpoint.clone();
        if chain.to_ascii_lowercase().contains("certificate") {
            let seen = self.inner.tls.seen.lock().ok().and_then(|s| s.clone());
            let cause = match (&self.inner.tls.mode, &seen) {
                (TlsMode::Pinned(pin), Some(seen)) if seen != pin => {
                    "its SHA-256 fingerprint is not the one pinned in proxmox.fingerprint"
                        .to_string()
                }
                _ => tls_cause(&chain),
            };
            return Attempt::Fail(ProxmoxError::Tls {
                endpoint,
                cause,
                hint: tls::hint(&self.inner.tls.mode, seen.as_deref()),
            });
        }
        if e.is_timeout() {
            let err = ProxmoxError::Timeout {
                endpoint,
                what: what.to_string(),
                secs: self.inner.timeout.as_secs().max(1),
                tries: String::new(),
            };
            return if repeat == Repeat::Safe || e.is_connect() {
                Attempt::Retry(err)
            } else {
                Attempt::Fail(err)
            };
        }
        let err = ProxmoxError::Unreachable {
            endpoint,
            cause: chain,
        };
        if e.is_connect() || repeat == Repeat::Safe {
            Attempt::Retry(err)
        } else {
            Attempt::Fail(err)
        }
    }

    /// Waits for a task to end: `Ok` when it ended OK (or with warnings), else its exit
    /// status and the tail of its log. `what` names it in messages ("start of CT 100").
    pub async fn wait_task(&self, upid: &str, what: &str) -> Result<String> {
        let node = upid_node(upid).ok_or_else(|| ProxmoxError::Decode {
            what: what.to_string(),
            cause: format!("{upid:?} is not a task id (UPID)"),
        })?;
        let deadline = Instant::now() + self.inner.task_timeout;
        let mut delay = Duration::from_millis(100);
        loop {
            let status = self
                .call(&Call::get(&["nodes", &node, "tasks", upid, "status"]))
                .await?;
            if status.get("status").and_then(Value::as_str) == Some("stopped") {
                let exit = status
                    .get("exitstatus")
                    .and_then(Value::as_str)
                    .unwrap_or("(no exit status)")
                    .to_string();
                if exit == "OK" || exit.starts_with("WARNINGS") {
                    return Ok(exit);
                }
                let log = self.task_log_tail(&node, upid, &exit).await;
                return Err(ProxmoxError::Task {
                    what: what.to_string(),
                    upid: upid.to_string(),
                    exit,
                    log: if log.is_empty() {
                        String::new()
                    } else {
                        format!("\n  task log: {}", log.join("\n  task log: "))
                    },
                });
            }
            if Instant::now() + delay > deadline {
                return Err(ProxmoxError::TaskTimeout {
                    what: what.to_string(),
                    upid: upid.to_string(),
                    secs: self.inner.task_timeout.as_secs(),
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// The last lines of a task's log, without the closing `TASK ERROR` line (its message is
    /// the exit status already). Empty when the log cannot be read.
    async fn task_log_tail(&self, node: &str, upid: &str, exit: &str) -> Vec<String> {
        let log = self
            .call(
                &Call::get(&["nodes", node, "tasks", upid, "log"])
                    .param("start", 0)
                    .param("limit", 5000),
            )
            .await;
        let Ok(Value::Array(lines)) = log else {
            return Vec::new();
        };
        let lines: Vec<String> = lines
            .iter()
            .filter_map(|l| l.get("t").and_then(Value::as_str))
            .map(|t| t.trim_end().to_string())
            .filter(|t| !t.is_empty() && !t.starts_with("TASK ERROR") && t != exit)
            .collect();
        let skip = lines.len().saturating_sub(TASK_LOG_TAIL);
        lines.into_iter().skip(skip).collect()
    }
}

/// The node in `UPID:node:pid:pstart:starttime:type:id:user:`.
pub fn upid_node(upid: &str) -> Option<String> {
    let mut parts = upid.split(':');
    if parts.next()? != "UPID" {
        return None;
    }
    let node = parts.next()?;
    (!node.is_empty()).then(|| node.to_string())
}

fn parse_ticket(what: &str, text: &str) -> Result<Session> {
    let body: Value = serde_json::from_str(text).map_err(|e| ProxmoxError::Decode {
        what: what.to_string(),
        cause: format!("not JSON ({e})"),
    })?;
    let data = body.get("data").cloned().unwrap_or(Value::Null);
    if data.get("NeedTFA").and_then(Value::as_u64) == Some(1) {
        return Err(ProxmoxError::Auth {
            message: "the account needs a second factor (TFA)".into(),
            hint: "use an API token (proxmox.api_token) for proxdeck instead".into(),
        });
    }
    let field = |k: &str| {
        data.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ProxmoxError::Decode {
                what: what.to_string(),
                cause: format!("no {k} in the login answer"),
            })
    };
    let ticket = field("ticket")?;
    let csrf = field("CSRFPreventionToken")?;
    let bad = |_| ProxmoxError::Decode {
        what: what.to_string(),
        cause: "the ticket holds characters a header cannot carry".into(),
    };
    let mut cookie = HeaderValue::from_str(&format!("PVEAuthCookie={ticket}")).map_err(bad)?;
    cookie.set_sensitive(true);
    let mut csrf = HeaderValue::from_str(&csrf).map_err(bad)?;
    csrf.set_sensitive(true);
    Ok(Session {
        cookie,
        csrf,
        issued: Instant::now(),
    })
}

/// Proxmox's message from an error answer: `message` (without its trailing newline) plus the
/// per-field `errors`, else the start of the body (a proxy's page), else the status.
pub fn error_message(status: u16, text: &str) -> String {
    if let Ok(body) = serde_json::from_str::<Value>(text) {
        let mut message = body
            .get("message")
            .and_then(Value::as_str)
            .map(|m| m.trim().to_string())
            .unwrap_or_default();
        if let Some(errors) = body.get("errors").and_then(Value::as_object) {
            let fields: Vec<String> = errors
                .iter()
                .map(|(k, v)| {
                    let v = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    format!("{k}: {}", v.trim())
                })
                .collect();
            if !fields.is_empty() {
                message = if message.is_empty() {
                    fields.join("; ")
                } else {
                    format!("{} {}", message.trim_end_matches('.'), fields.join("; "))
                };
            }
        }
        if !message.is_empty() {
            return format!("{message} (HTTP {status})");
        }
    }
    if let Some(page) = html_summary(text) {
        return format!(
            "HTTP {status}: {page} (a proxy or web server in front of Proxmox answered, not Proxmox's API)"
        );
    }
    let s = snippet(text);
    if s.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {s}")
    }
}

/// `an HTML page "502 Bad Gateway"`: a page's title (else its first heading) when `text` is an
/// HTML page, which a proxy in front of Proxmox sends instead of the API's JSON. Never the
/// page itself: its styles and scripts say nothing to the user.
fn html_summary(text: &str) -> Option<String> {
    let head = text.trim_start();
    let lower = head.to_ascii_lowercase();
    let is_html = lower.starts_with("<!doctype html")
        || lower.starts_with("<html")
        || (lower.starts_with("<?xml") && lower.contains("<html"))
        || lower.starts_with("<head")
        || lower.starts_with("<body")
        || (lower.starts_with('<') && lower.contains("</html>"));
    if !is_html {
        return None;
    }
    let inner = |tag: &str| -> Option<String> {
        let open = lower.find(&format!("<{tag}"))?;
        let start = open + lower[open..].find('>')? + 1;
        let end = start + lower[start..].find(&format!("</{tag}"))?;
        let words = snippet(&head[start..end]);
        (!words.is_empty()).then_some(words)
    };
    Some(match inner("title").or_else(|| inner("h1")) {
        Some(title) => format!("an HTML page {title:?}"),
        None => "an HTML page".to_string(),
    })
}

/// A short, single-line excerpt of a body, tags removed.
fn snippet(text: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(if c.is_control() { ' ' } else { c }),
            _ => {}
        }
    }
    let words: Vec<&str> = out.split_whitespace().collect();
    let mut s = words.join(" ");
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// Worth another try: gateway trouble and PVE's 500s that are not plainly permanent.
fn transient(status: u16, message: &str) -> bool {
    match status {
        502..=504 | 596 => true,
        500 => {
            let m = message.to_ascii_lowercase();
            const PERMANENT: &[&str] = &[
                "does not exist",
                "already",
                "not running",
                "is locked",
                "no such",
                "not implemented",
                "parameter verification failed",
                "hostname lookup",
                "permission",
                "unable to parse",
                "not a template",
                "guest agent is not running",
            ];
            !PERMANENT.iter().any(|p| m.contains(p))
        }
        _ => false,
    }
}

fn with_tries(e: ProxmoxError, tries: u32) -> ProxmoxError {
    match e {
        ProxmoxError::Timeout {
            endpoint,
            what,
            secs,
            ..
        } if tries > 1 => ProxmoxError::Timeout {
            endpoint,
            what,
            secs,
            tries: format!(", {tries} attempts"),
        },
        other => other,
    }
}

/// 250 ms, 500 ms, 1 s, 2 s, ... up to 4 s, each with up to 25 % random jitter.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(250) * 2u32.saturating_pow(attempt.min(4));
    let base = base.min(Duration::from_secs(4));
    let mut b = [0u8; 2];
    let jitter = if getrandom::getrandom(&mut b).is_ok() {
        u16::from_le_bytes(b) as u32 % 250
    } else {
        0
    };
    base + base * jitter / 1000
}

/// The error and its sources, joined: where rustls and io put the real reason.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// The certificate part of a TLS error chain, in words: rustls names its reasons with Rust
/// identifiers ("invalid peer certificate: UnknownIssuer"), which say little to a user.
fn tls_cause(chain: &str) -> String {
    let cause = chain
        .split(": ")
        .skip_while(|p| !p.to_ascii_lowercase().contains("certificate"))
        .collect::<Vec<_>>()
        .join(": ");
    const WORDS: &[(&str, &str)] = &[
        (
            "UnknownIssuer",
            "it is signed by an issuer this machine does not trust",
        ),
        ("NotValidForName", "it is not valid for this host name"),
        ("Expired", "it has expired"),
        ("NotValidYet", "it is not valid yet (check the clocks)"),
        ("Revoked", "it was revoked"),
        ("BadSignature", "its signature does not verify"),
        ("BadEncoding", "it cannot be read"),
        (
            "PinMismatch",
            "its SHA-256 fingerprint is not the pinned one",
        ),
    ];
    match WORDS.iter().find(|(token, _)| cause.contains(token)) {
        Some((_, words)) => (*words).to_string(),
        None => cause,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxmox_messages_lose_their_newline_and_keep_field_errors() {
        let m = error_message(
            400,
            r#"{"data":null,"message":"Parameter verification failed.\n","errors":{"storage":"storage 'x' does not exist\n"}}"#,
        );
        assert_eq!(
            m,
            "Parameter verification failed storage: storage 'x' does not exist (HTTP 400)"
        );
        assert_eq!(
            error_message(500, r#"{"data":null,"message":"CT is locked (backup)\n"}"#),
            "CT is locked (backup) (HTTP 500)"
        );
        assert_eq!(
            error_message(502, "<html><body><h1>Bad Gateway</h1></body></html>"),
            "HTTP 502: an HTML page \"Bad Gateway\" (a proxy or web server in front of Proxmox answered, not Proxmox's API)"
        );
        assert_eq!(error_message(503, ""), "HTTP 503");
    }

    #[test]
    fn html_pages_are_summarised_by_their_title() {
        let page = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
            <title>502 Bad Gateway</title>\n<style>body { font-family: sans-serif; color: #333 }\
            </style><script>var tracking = 1;</script></head><body><center><h1>502 Bad Gateway</h1>\
            </center><hr><center>nginx/1.22.1</center></body></html>";
        let m = error_message(502, page);
        assert!(
            m.starts_with("HTTP 502: an HTML page \"502 Bad Gateway\""),
            "{m}"
        );
        for raw in ["font-family", "tracking", "<", "nginx/1.22.1"] {
            assert!(!m.contains(raw), "{raw} in {m}");
        }
        // No title: the first heading; neither: just that it was a page.
        assert_eq!(
            html_summary("<html><body><h1>Access denied</h1></body></html>").as_deref(),
            Some("an HTML page \"Access denied\"")
        );
        assert_eq!(
            html_summary("<html><body><p>x</p></body></html>").as_deref(),
            Some("an HTML page")
        );
        assert_eq!(html_summary("{\"data\":null}"), None);
        assert_eq!(html_summary("plain text"), None);
    }

    #[test]
    fn only_transient_failures_are_retried() {
        assert!(transient(500, "boom"));
        assert!(transient(503, ""));
        assert!(!transient(
            500,
            "Configuration file 'nodes/pve1/lxc/1.conf' does not exist"
        ));
        assert!(!transient(500, "CT is locked (backup)"));
        assert!(!transient(400, "Parameter verification failed."));
        assert!(!transient(403, "Permission check failed"));
        assert!(!transient(595, "No route to host"));
    }

    #[test]
    fn upids_name_their_node() {
        assert_eq!(
            upid_node("UPID:pve2:000003E8:00001B58:65F0A1B2:vzstart:100:root@pam:").as_deref(),
            Some("pve2")
        );
        assert_eq!(upid_node("nope"), None);
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert!(backoff(0) >= Duration::from_millis(250));
        assert!(backoff(0) < Duration::from_millis(400));
        assert!(backoff(10) <= Duration::from_secs(5));
        assert!(backoff(2) > backoff(0));
    }

    #[test]
    fn snippets_are_short_and_single_line() {
        let long = "x".repeat(1000);
        assert!(snippet(&long).chars().count() <= 201);
        assert_eq!(snippet("a\nb\tc"), "a b c");
    }
}
