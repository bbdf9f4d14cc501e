//! Apps as people write them (issue 12), deployed with `--host` onto the sshd test host (this
//! machine plays the host: no systemd, so the app runs under proxdeck's own supervisor), from
//! a git daemon, with their dependencies from npm and PyPI:
//! - a Node package with `build` and `start` scripts (a devDependency used by the build),
//!   detected as `node`, built, then run with NODE_ENV=production; a redeploy with a new
//!   health path kept in the deployment; `stop`/`start`/`restart` acting on the app's
//!   service (what answers changes with each);
//! - a monorepo with a FastAPI app (its docs and `/` turned off) and a static front end in
//!   subfolders (`--subdir`), the FastAPI app reported RUNNING, the front end's requests in
//!   `logs --app`;
//! - a `django-admin startproject` app whose admin CSS is served (WhiteNoise).

use crate::frameworks::{Bench, DEPLOY, QUICK, json_of};
use crate::support::net::{free_port_any, http_get, wait_http_ok};
use crate::support::parts::{Part, skip_without};
use crate::support::samples::{self, Tool, skip_without_tools};
use serde_json::Value;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// `deploy --host` of the repository `url` as `name` on `port`, plus `extra`; must succeed.
fn deploy(b: &Bench, url: &str, name: &str, port: u16, extra: &[&str]) -> Value {
    let port = port.to_string();
    let host = b.host();
    let mut args = vec![
        "deploy", "--repo", url, "--host", &host, "--name", name, "--port", &port, "--json",
    ];
    args.extend_from_slice(extra);
    let done = b.run(&args, DEPLOY);
    b.expect_ok(&done, name, "deploy");
    let d = json_of(&done);
    assert_eq!(d["status"], "RUNNING", "{d}");
    d
}

/// GET `path` from `addr:port` (HTTP/1.0, one request): the status, the headers (lowercase
/// names) and the body.
fn get(addr: std::net::Ipv4Addr, port: u16, path: &str) -> (u16, Vec<(String, String)>, String) {
    let mut s = std::net::TcpStream::connect((addr, port))
        .unwrap_or_else(|e| panic!("connect {addr}:{port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}:{port}\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line from {path}: {head}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

/// GET `url` until it answers 200 with `want` in the body (the service may still be starting).
fn wait_body(url: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(a) = http_get(url, Duration::from_secs(5))
            && a.status == 200
            && a.body.contains(want)
        {
            return a.body;
        }
        assert!(
            Instant::now() < deadline,
            "GET {url} never answered 200 with {want:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Nothing answers `url` (within 10 s: a stop may take a moment).
fn wait_refused(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(url, Duration::from_secs(2)).is_ok() {
        assert!(Instant::now() < deadline, "{url} still answers");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn show(b: &Bench, name: &str) -> Value {
    let done = b.run(&["show", name, "--json"], QUICK);
    b.expect_ok(&done, name, "show");
    json_of(&done)
}

/// A Node package that builds itself and starts its own server: `npm run build` runs
/// build.js, which needs the devDependency `ms` and writes dist/server.js; `npm start` runs
/// it. The server answers its body, the NODE_ENV the build saw and the one it runs with, and
/// its pid (which a restart changes).
fn node_package(body: &str) -> Vec<(&'static str, String)> {
    let package = serde_json::json!({
        "name": "buildstart",
        "version": "1.0.0",
        "private": true,
        "scripts": {"build": "node build.js", "start": "node dist/server.js"},
        "devDependencies": {"ms": "^2.1.3"}
    });
    let build = r#"const fs = require("fs");
const ms = require("ms");
fs.mkdirSync("dist", { recursive: true });
const built = { body: process.argv[2] || "@BODY@", buildEnv: process.env.NODE_ENV || "unset", grace: ms("2s") };
fs.writeFileSync("dist/server.js", `const http = require("http");
const built = ${JSON.stringify(built)};
http.createServer((req, res) => {
  if (req.url === "/healthz") { res.writeHead(204); return res.end(); }
  res.writeHead(200, { "content-type": "text/plain" });
  res.end(built.body + " build:" + built.buildEnv + " run:" + process.env.NODE_ENV + " grace:" + built.grace + " pid:" + process.pid + "\\n");
}).listen(Number(process.env.PORT), "0.0.0.0", () => console.log("listening on " + process.env.PORT));
`);
console.log("built dist/server.js");
"#
    .replace("@BODY@", body);
    vec![
        (
            "package.json",
            serde_json::to_string_pretty(&package).unwrap(),
        ),
        ("build.js", build),
        (".gitignore", "node_modules/\ndist/\n".to_string()),
    ]
}

fn pid_of(body: &str) -> String {
    body.split_whitespace()
        .find_map(|w| w.strip_prefix("pid:"))
        .unwrap_or_else(|| panic!("no pid in {body:?}"))
        .to_string()
}

/// A Node build+start app: detected, built with its devDependencies, started in production;
/// a redeploy with a new health path keeps it; `stop`, `start` and `restart` act on its
/// service on the host.
#[test]
fn a_node_app_with_build_and_start_scripts_builds_runs_and_is_powered_on_its_host() {
    if skip_without(
        "a_node_app_with_build_and_start_scripts_builds_runs_and_is_powered_on_its_host",
        &[Part::Sshd, Part::Git],
    ) || skip_without_tools(
        "a_node_app_with_build_and_start_scripts_builds_runs_and_is_powered_on_its_host",
        &[Tool::Node],
    ) {
        return;
    }
    let b = Bench::new("proxdeck-node-", None, 60);
    let body = format!("build-start app {}", crate::support::net::random_hex(8));
    b.git.add_repo("buildstart", &node_package(&body)).unwrap();
    let url = b.git.git_url("buildstart");
    let port = free_port_any().unwrap();
    let _installed = b.installed("buildstart");
    // A build command that fails: FAILED at provision; `retry --build` brings the fix, which
    // the deployment keeps.
    let host = b.host();
    let port_text = port.to_string();
    let done = b.run(
        &[
            "deploy",
            "--repo",
            &url,
            "--host",
            &host,
            "--name",
            "buildstart",
            "--port",
            &port_text,
            "--build",
            "false",
        ],
        DEPLOY,
    );
    assert!(!done.success(), "{}", done.describe());
    assert!(
        done.stderr.contains("stage provision failed"),
        "{}",
        done.describe()
    );
    let done = b.run(
        &["retry", "buildstart", "--build", "npm run build", "--json"],
        DEPLOY,
    );
    b.expect_ok(&done, "buildstart", "retry");
    let d = json_of(&done);
    assert_eq!(d["status"], "RUNNING", "{d}");
    assert_eq!(d["framework"], "node", "{d}");
    assert_eq!(d["overrides"]["build"], "npm run build", "{d}");
    // Bad changes are refused before anything is queued, naming the field.
    let done = b.run(&["retry", "buildstart", "--health-path", "healthz"], QUICK);
    assert!(
        !done.success() && done.stderr.contains("health-path"),
        "{}",
        done.describe()
    );
    let app = b.url(port);
    let answer = wait_body(&app, &body);
    // Built without NODE_ENV (so the devDependency was there), run in production; `ms`
    // computed the grace at build time.
    assert!(
        answer.contains("build:unset run:production grace:2000"),
        "{answer}"
    );
    let log = b.run(&["logs", "buildstart"], QUICK).stdout;
    assert!(
        log.contains("framework node detected: package.json has scripts.build and package.json has scripts.start"),
        "{log}"
    );
    assert!(log.contains("built dist/server.js"), "{log}");
    assert!(!log.contains('\u{1b}'), "an escape code was stored:\n{log}");

    // A redeploy with a new health path: checked there, and kept in the deployment.
    let done = b.run(
        &[
            "redeploy",
            "buildstart",
            "--health-path",
            "/healthz",
            "--json",
        ],
        DEPLOY,
    );
    b.expect_ok(&done, "buildstart", "redeploy");
    let log = b.run(&["logs", "buildstart"], QUICK).stdout;
    assert!(log.contains("/healthz answered HTTP 204"), "{log}");
    assert_eq!(
        show(&b, "buildstart")["overrides"]["health_path"],
        "/healthz"
    );
    let before = pid_of(&wait_body(&app, &body));

    // stop: the app's service only (the host, sshd, lives on); STOPPED, nothing answers.
    let done = b.run(&["stop", "buildstart", "--json"], QUICK);
    b.expect_ok(&done, "buildstart", "stop");
    assert_eq!(json_of(&done)["status"], "STOPPED", "{}", done.describe());
    wait_refused(&app);
    b.sshd().check_alive().expect("the host lives on");
    // start: RUNNING once the health check passed, and it answers again.
    let done = b.run(&["start", "buildstart", "--json"], DEPLOY);
    b.expect_ok(&done, "buildstart", "start");
    assert_eq!(json_of(&done)["status"], "RUNNING", "{}", done.describe());
    let started = pid_of(&wait_body(&app, &body));
    assert_ne!(started, before, "start did not start a new process");
    // restart: another process answers.
    let done = b.run(&["restart", "buildstart", "--json"], DEPLOY);
    b.expect_ok(&done, "buildstart", "restart");
    assert_eq!(json_of(&done)["status"], "RUNNING", "{}", done.describe());
    let restarted = pid_of(&wait_body(&app, &body));
    assert_ne!(restarted, started, "restart did not replace the process");
    // show prints the host's fields, not a container's.
    let text = b.run(&["show", "buildstart"], QUICK).stdout;
    assert!(text.contains("service proxdeck-buildstart"), "{text}");
    assert!(!text.contains("vmid") && !text.contains("cores"), "{text}");
    crate::frameworks::destroy_and_check(&b, "buildstart", port);
}

/// One repository, two apps in subfolders: a FastAPI app without docs or a `/` route (the
/// health check's default must still find it up), and a static front end whose requests
/// show in `logs --app`.
#[test]
fn a_monorepo_serves_a_fastapi_app_without_docs_and_a_static_site_from_subfolders() {
    if skip_without(
        "a_monorepo_serves_a_fastapi_app_without_docs_and_a_static_site_from_subfolders",
        &[Part::Sshd, Part::Git, Part::GuestPython],
    ) || skip_without_tools(
        "a_monorepo_serves_a_fastapi_app_without_docs_and_a_static_site_from_subfolders",
        &[Tool::Node],
    ) {
        return;
    }
    let b = Bench::new("proxdeck-mono-", None, 60);
    let api_body = format!("monorepo api {}", crate::support::net::random_hex(8));
    let web_body = format!("monorepo web {}", crate::support::net::random_hex(8));
    let api = format!(
        "from fastapi import FastAPI\nfrom fastapi.responses import PlainTextResponse\n\n\
         app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)\n\n\n\
         @app.get(\"/hello\", response_class=PlainTextResponse)\ndef hello():\n    return \"{api_body}\"\n"
    );
    // A static front end: package.json names React (the static recipe's framework); its
    // build writes dist/ with plain Node, nothing to download.
    let web_package = serde_json::json!({
        "name": "web", "private": true,
        "scripts": {"build": "node build.js"},
        "dependencies": {"react": "^19.0.0"}
    });
    let web_build = format!(
        "const fs = require(\"fs\");\nfs.mkdirSync(\"dist\", {{ recursive: true }});\n\
         fs.writeFileSync(\"dist/index.html\", \"<!doctype html><title>{web_body}</title><p>{web_body}</p>\\n\");\n"
    );
    b.git
        .add_repo(
            "mono",
            &[
                ("README.md", "two apps\n".to_string()),
                ("services/api/requirements.txt", "fastapi\n".to_string()),
                ("services/api/main.py", api),
                (
                    "frontend/web/package.json",
                    serde_json::to_string_pretty(&web_package).unwrap(),
                ),
                ("frontend/web/build.js", web_build),
                (
                    "frontend/web/.gitignore",
                    "node_modules/\ndist/\n".to_string(),
                ),
            ],
        )
        .unwrap();
    let url = b.git.git_url("mono");

    // A folder the repository does not have is refused before anything is recorded.
    let host = b.host();
    let done = b.run(
        &[
            "deploy",
            "--repo",
            &url,
            "--host",
            &host,
            "--name",
            "nope",
            "--subdir",
            "services/none",
        ],
        QUICK,
    );
    assert!(!done.success(), "{}", done.describe());
    assert!(
        done.stderr.contains("no folder services/none"),
        "{}",
        done.describe()
    );
    let done = b.run(
        &[
            "deploy", "--repo", &url, "--host", &host, "--subdir", "../x",
        ],
        QUICK,
    );
    assert!(
        !done.success() && done.stderr.contains("subdir"),
        "{}",
        done.describe()
    );

    let api_port = free_port_any().unwrap();
    let _api = b.installed("monoapi");
    let d = deploy(&b, &url, "monoapi", api_port, &["--subdir", "services/api"]);
    assert_eq!(d["framework"], "fastapi", "{d}");
    assert_eq!(d["overrides"]["subdir"], "services/api", "{d}");
    // Up, though `/` and the docs answer 404.
    let (status, _, _) = get(b.addr, api_port, "/docs");
    assert_eq!(status, 404);
    wait_body(&format!("{}hello", b.url(api_port)), &api_body);

    let web_port = free_port_any().unwrap();
    let _web = b.installed("monoweb");
    let d = deploy(
        &b,
        &url,
        "monoweb",
        web_port,
        &["--subdir", "frontend/web/"],
    );
    assert_eq!(d["framework"], "react", "{d}");
    wait_body(&b.url(web_port), &web_body);
    let marker = format!("/visited-{}", crate::support::net::random_hex(6));
    // An unknown path is answered with index.html (the single-page app's router).
    let (status, _, page) = get(b.addr, web_port, &marker);
    assert_eq!(status, 200, "{page}");
    // The request is in the app's own log.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let logs = b.run(&["logs", "--app", "monoweb"], QUICK);
        b.expect_ok(&logs, "monoweb", "logs --app");
        if logs.stdout.contains(&format!("GET {marker} HTTP/1.0")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the request is not in the app's log:\n{}",
            logs.stdout
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    crate::frameworks::destroy_and_check(&b, "monoweb", web_port);
    crate::frameworks::destroy_and_check(&b, "monoapi", api_port);
}

/// `django-admin startproject` deployed as is: the admin's stylesheet is served (collected by
/// collectstatic, served by WhiteNoise from the app's own process).
#[test]
fn a_django_project_serves_its_admin_css() {
    if skip_without(
        "a_django_project_serves_its_admin_css",
        &[Part::Sshd, Part::Git, Part::GuestPython],
    ) || skip_without_tools("a_django_project_serves_its_admin_css", &[Tool::Django])
    {
        return;
    }
    let b = Bench::new("proxdeck-djs-", None, 60);
    let work = b.root.join("samples");
    std::fs::create_dir_all(&work).unwrap();
    let sample = samples::django(&b.git, "djstatic", &work).unwrap();
    let port = free_port_any().unwrap();
    let _installed = b.installed("djstatic");
    let d = deploy(&b, &sample.git_url, "djstatic", port, &[]);
    assert_eq!(d["framework"], "django", "{d}");
    wait_http_ok(&b.url(port), Duration::from_secs(60)).unwrap();
    let (status, headers, css) = get(b.addr, port, "/static/admin/css/base.css");
    assert_eq!(status, 200, "{headers:?}\n{css}");
    let kind = headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    assert!(kind.starts_with("text/css"), "content-type {kind:?}");
    assert!(css.contains("body"), "{css}");
    crate::frameworks::destroy_and_check(&b, "djstatic", port);
}
