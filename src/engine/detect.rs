//! Framework detection: which catalog entry a repository is, and why ("package.json has
//! \"next\""). Owns the matching rule (every `detect` rule of an entry must match: the file
//! exists, and contains the text case-insensitively when `contains` is set; the highest
//! `detect_priority` wins; a tie is refused rather than guessed) and the shallow fetch that
//! reads the files on the controller (`git fetch --depth 1` into a throwaway bare repo, then
//! `git cat-file`): no checkout, nothing of the repository executed.
//!
//! Also what Node.js an app needs ([`node_need`]): the lower bound of package.json's
//! `engines.node` when the app declares one, else the framework's minimum from the catalog.
//!
//! It must not decide anything else about a deployment: the caller records the framework.

use crate::domain::{Catalog, Framework};
use crate::engine::gitauth::Access;
use crate::engine::process::{self, ProcessSpec};
use crate::protocol::LogStream;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// A detected framework and the evidence.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Detection {
    pub framework: String,
    /// Why, in words: `package.json has "next"`.
    pub reason: String,
    /// The commit the files were read from, when fetched.
    pub commit: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum DetectError {
    #[error(
        "cannot read {repo} to detect the framework: {message}; check the URL and ref, or pass --framework"
    )]
    Fetch { repo: String, message: String },
    #[error(
        "no framework recognised in the repository (looked for {looked}); pass --framework (`proxdeck frameworks` lists them)"
    )]
    NoMatch { looked: String },
    #[error(
        "the repository looks like both {first} ({first_reason}) and {second} ({second_reason}); pass --framework to choose"
    )]
    Ambiguous {
        first: String,
        first_reason: String,
        second: String,
        second_reason: String,
    },
}

/// The files the catalog's rules look at (for the fetch to read only those).
pub fn rule_files(catalog: &Catalog) -> BTreeSet<String> {
    catalog
        .frameworks
        .iter()
        .flat_map(|f| f.detect.iter().map(|r| r.file.clone()))
        .collect()
}

/// Picks the framework for a repository whose files (path → text) are `files`. Only the
/// paths the rules name matter; a missing path is a file that does not exist.
pub fn detect(
    catalog: &Catalog,
    files: &HashMap<String, String>,
) -> Result<Detection, DetectError> {
    let mut hits: Vec<(&Framework, String)> = catalog
        .frameworks
        .iter()
        .filter_map(|f| f.matches(files).map(|why| (f, why)))
        .collect();
    hits.sort_by_key(|(f, _)| std::cmp::Reverse(f.detect_priority));
    let Some((best, reason)) = hits.first() else {
        let looked: Vec<String> = rule_files(catalog).into_iter().collect();
        return Err(DetectError::NoMatch {
            looked: looked.join(", "),
        });
    };
    if let Some((second, second_reason)) = hits.get(1)
        && second.detect_priority == best.detect_priority
    {
        return Err(DetectError::Ambiguous {
            first: best.id.clone(),
            first_reason: reason.clone(),
            second: second.id.clone(),
            second_reason: second_reason.clone(),
        });
    }
    Ok(Detection {
        framework: best.id.clone(),
        reason: reason.clone(),
        commit: None,
    })
}

/// Fetches `git_ref` (default: the remote's HEAD) of `repo` shallowly into a throwaway bare
/// repository under `scratch`, reads the files the rules name and detects the framework.
/// With `subdir` (the app's folder in a monorepo; empty: the root), the rules' paths are read
/// from that folder, which must exist at that commit.
pub async fn detect_repo(
    catalog: &Catalog,
    repo: &str,
    git_ref: Option<&str>,
    subdir: &str,
    scratch: &Path,
    timeout: Duration,
    access: &Access,
) -> Result<Detection, DetectError> {
    let dir = scratch.join(format!("detect-{}", unique_suffix()));
    let result = fetch_and_read(catalog, repo, git_ref, subdir, &dir, timeout, access).await;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    let (files, commit) = result.map_err(|message| DetectError::Fetch {
        repo: repo.to_string(),
        message,
    })?;
    let mut d = detect(catalog, &files)?;
    d.commit = Some(commit);
    Ok(d)
}

fn unique_suffix() -> String {
    let mut b = [0u8; 6];
    let _ = getrandom::getrandom(&mut b);
    format!(
        "{}-{}",
        std::process::id(),
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

async fn fetch_and_read(
    catalog: &Catalog,
    repo: &str,
    git_ref: Option<&str>,
    subdir: &str,
    dir: &Path,
    timeout: Duration,
    access: &Access,
) -> Result<(HashMap<String, String>, String), String> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let d = dir.display().to_string();
    git(&["init", "-q", "--bare", &d], None, timeout, access).await?;
    let want = git_ref.unwrap_or("HEAD");
    let shallow = git(
        &["fetch", "-q", "--depth=1", "--no-tags", "--", repo, want],
        Some(dir),
        timeout,
        access,
    )
    .await;
    let commit = match shallow {
        Ok(_) => git(
            &["rev-parse", "FETCH_HEAD^{commit}"],
            Some(dir),
            timeout,
            access,
        )
        .await?
        .trim()
        .to_string(),
        // A commit id is not always fetchable by itself (servers may refuse unadvertised
        // objects, and a short id is no ref at all): fetch the branches and tags, then look
        // it up.
        Err(_) if looks_like_commit(want) => {
            fetch_all(repo, dir, timeout, access).await?;
            resolve_in(dir, want, timeout, access).await?
        }
        Err(e) => return Err(e),
    };
    let listed = git(
        &["ls-tree", "-r", "--name-only", "-z", &commit],
        Some(dir),
        timeout,
        access,
    )
    .await?;
    let present: BTreeSet<&str> = listed.split('\0').filter(|p| !p.is_empty()).collect();
    let prefix = if subdir.is_empty() {
        String::new()
    } else {
        format!("{subdir}/")
    };
    if !prefix.is_empty() && !present.iter().any(|p| p.starts_with(&prefix)) {
        return Err(format!(
            "the repository has no folder {subdir} at commit {commit} (--subdir is relative to the repository's root)"
        ));
    }
    let mut files = HashMap::new();
    for path in rule_files(catalog) {
        let full = format!("{prefix}{path}");
        if !present.contains(full.as_str()) {
            continue;
        }
        let text = git(
            &["cat-file", "-p", &format!("{commit}:{full}")],
            Some(dir),
            timeout,
            access,
        )
        .await?;
        files.insert(path, text);
    }
    Ok((files, commit))
}

/// 7 to 40 hexadecimal digits: what may be a (short) commit id.
pub fn looks_like_commit(r: &str) -> bool {
    (7..=40).contains(&r.len()) && r.chars().all(|c| c.is_ascii_hexdigit())
}

/// Fetches every branch and tag (commits and trees only) into the bare repository `dir`.
async fn fetch_all(
    repo: &str,
    dir: &Path,
    timeout: Duration,
    access: &Access,
) -> Result<(), String> {
    git(
        &[
            "fetch",
            "-q",
            "--filter=blob:none",
            "--",
            repo,
            "+refs/heads/*:refs/remotes/origin/*",
            "+refs/tags/*:refs/tags/*",
        ],
        Some(dir),
        timeout,
        access,
    )
    .await
    .map(|_| ())
}

/// The full id of the commit `want` (a full or short id) names in the bare repository `dir`.
async fn resolve_in(
    dir: &Path,
    want: &str,
    timeout: Duration,
    access: &Access,
) -> Result<String, String> {
    let found = git(
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{want}^{{commit}}"),
        ],
        Some(dir),
        timeout,
        access,
    )
    .await;
    match found {
        Ok(c) if !c.trim().is_empty() => Ok(c.trim().to_string()),
        _ => {
            // Ambiguous, or absent: say which.
            let listed = git(
                &["rev-parse", "--disambiguate", want],
                Some(dir),
                timeout,
                access,
            )
            .await
            .unwrap_or_default();
            if listed.lines().filter(|l| !l.trim().is_empty()).count() > 1 {
                Err(format!(
                    "the short commit id {want} names more than one object in the repository: give more of its digits"
                ))
            } else {
                Err(format!(
                    "no commit {want} in the repository's branches and tags: check the id (git log), or push the commit"
                ))
            }
        }
    }
}

/// A ref given as a short commit id (7 to 39 hex digits) turned into the full id, so the
/// deployment records the commit itself. A branch or tag of that name stays as it is, and so
/// does anything else. Returns the ref to record.
pub async fn full_ref(
    repo: &str,
    git_ref: &str,
    scratch: &Path,
    timeout: Duration,
    access: &Access,
) -> Result<String, String> {
    if !looks_like_commit(git_ref) || git_ref.len() == 40 {
        return Ok(git_ref.to_string());
    }
    let named = git(&["ls-remote", "--", repo, git_ref], None, timeout, access)
        .await
        .map_err(|e| format!("the repository {repo} cannot be read: {e}"))?;
    if !named.trim().is_empty() {
        return Ok(git_ref.to_string());
    }
    let dir = scratch.join(format!("resolve-{}", unique_suffix()));
    let result = async {
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let d = dir.display().to_string();
        git(&["init", "-q", "--bare", &d], None, timeout, access).await?;
        fetch_all(repo, &dir, timeout, access).await?;
        resolve_in(&dir, git_ref, timeout, access).await
    }
    .await;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    result.map(|c| c.to_ascii_lowercase())
}

/// The oldest Node.js an app runs on, and why: what the provisioning script compares with
/// the guest's Node before it installs anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeNeed {
    /// `major.minor.patch`.
    pub min: String,
    /// Why, in words (said when the guest's Node is older).
    pub why: String,
}

/// What the framework needs by itself (the catalog's `node`), or `None` for a framework that
/// does not run on Node.
pub fn framework_node_need(fw: &Framework) -> Option<NodeNeed> {
    if fw.node.is_empty() {
        return None;
    }
    let mut parts: Vec<&str> = fw.node.split('.').collect();
    parts.resize(3, "0");
    Some(NodeNeed {
        min: parts.join("."),
        why: fw.node_why.clone(),
    })
}

/// What the app's `package.json` (its text) says about Node: the lowest version its
/// `engines.node` range allows. `Ok(None)` when it declares nothing.
pub fn engines_node_need(package_json: &str) -> Result<Option<NodeNeed>, String> {
    let parsed: serde_json::Value = serde_json::from_str(package_json)
        .map_err(|e| format!("package.json is not valid JSON: {e}"))?;
    let Some(range) = parsed.pointer("/engines/node") else {
        return Ok(None);
    };
    let text = range
        .as_str()
        .ok_or_else(|| format!("package.json's engines.node is not a string: {range}"))?;
    let parsed = nodejs_semver::Range::parse(text)
        .map_err(|e| format!("package.json's engines.node {text:?} is not a version range: {e}"))?;
    let min = parsed
        .min_version()
        .ok_or_else(|| format!("package.json's engines.node {text:?} allows no version"))?;
    Ok(Some(NodeNeed {
        min: format!("{}.{}.{}", min.major(), min.minor(), min.patch()),
        why: format!("package.json's engines.node is {text:?}"),
    }))
}

/// What Node.js the app at `repo` (`git_ref`: a branch, tag or commit; empty for the default
/// branch) needs: its `engines.node` when its package.json declares one, else the
/// framework's minimum. Reads package.json with a shallow fetch on the controller; when that
/// cannot be read, the framework's minimum stands and the second value says why.
pub async fn node_need(
    fw: &Framework,
    repo: &str,
    git_ref: &str,
    subdir: &str,
    scratch: &Path,
    timeout: Duration,
    access: &Access,
) -> (Option<NodeNeed>, Option<String>) {
    let framework = framework_node_need(fw);
    if framework.is_none() {
        return (None, None);
    }
    let dir = scratch.join(format!("node-{}", unique_suffix()));
    let git_ref = (!git_ref.is_empty()).then_some(git_ref);
    let read = fetch_and_read(
        Catalog::builtin(),
        repo,
        git_ref,
        subdir,
        &dir,
        timeout,
        access,
    )
    .await;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    let package = match read {
        Ok((files, _)) => files.get("package.json").cloned(),
        Err(e) => {
            return (
                framework,
                Some(format!("cannot read package.json's engines ({e})")),
            );
        }
    };
    match package.as_deref().map(engines_node_need) {
        Some(Ok(Some(need))) => (Some(need), None),
        Some(Err(e)) => (framework, Some(e)),
        Some(Ok(None)) | None => (framework, None),
    }
}

/// `git ls-remote REPO [REF]` from the controller: the repository answers and the ref exists
/// (a commit id cannot be listed and is taken on trust). Returns a line for the log.
pub async fn check_ref(
    repo: &str,
    git_ref: &str,
    timeout: Duration,
    access: &Access,
) -> Result<String, String> {
    let mut args = vec!["ls-remote", "--", repo];
    if !git_ref.is_empty() {
        args.push(git_ref);
    }
    let refs = git(&args, None, timeout, access)
        .await
        .map_err(|e| format!("the repository {repo} cannot be read: {e}"))?;
    if !git_ref.is_empty() && refs.trim().is_empty() && !looks_like_commit(git_ref) {
        return Err(format!(
            "the repository {repo} has no branch or tag {git_ref:?}"
        ));
    }
    Ok(if git_ref.is_empty() {
        format!("repository {repo} answers (default branch)")
    } else {
        format!("repository {repo} answers; ref {git_ref} found")
    })
}

/// The commit `git_ref` (a branch or tag; empty: the default branch) points at in the
/// repository, by `git ls-remote` (what auto-deploy polls). A full commit id is its own answer.
pub async fn remote_commit(
    repo: &str,
    git_ref: &str,
    timeout: Duration,
    access: &Access,
) -> Result<String, String> {
    let git_ref = git_ref.trim();
    if git_ref.len() == 40 && git_ref.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(git_ref.to_ascii_lowercase());
    }
    let want = if git_ref.is_empty() { "HEAD" } else { git_ref };
    let out = git(&["ls-remote", "--", repo, want], None, timeout, access)
        .await
        .map_err(|e| format!("the repository {repo} cannot be read: {e}"))?;
    parse_ls_remote(&out, want).ok_or_else(|| {
        format!("the repository {repo} has no branch or tag {want:?} (git ls-remote found none)")
    })
}

/// The commit for `want` in `git ls-remote` output: the branch, else the tag's commit (an
/// annotated tag's `^{}` line), else the tag (`HEAD`: the default branch).
pub fn parse_ls_remote(out: &str, want: &str) -> Option<String> {
    let lines: Vec<(&str, &str)> = out
        .lines()
        .filter_map(|l| {
            let (sha, name) = l.split_once(char::is_whitespace)?;
            let ok = sha.len() >= 40 && sha.chars().all(|c| c.is_ascii_hexdigit());
            ok.then_some((sha, name.trim()))
        })
        .collect();
    let pick = |name: String| {
        lines
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(s, _)| s.to_string())
    };
    if want == "HEAD" {
        return pick("HEAD".into()).or_else(|| lines.first().map(|(s, _)| s.to_string()));
    }
    let short = want
        .strip_prefix("refs/heads/")
        .or_else(|| want.strip_prefix("refs/tags/"))
        .unwrap_or(want);
    pick(format!("refs/heads/{short}"))
        .or_else(|| pick(format!("refs/tags/{short}^{{}}")))
        .or_else(|| pick(format!("refs/tags/{short}")))
        .or_else(|| pick(want.to_string()))
}

/// Runs git (no prompts, batch-mode SSH, the repository's credentials from `access` in its
/// environment, never in its arguments) and returns its stdout, or its stderr as the error.
async fn git(
    args: &[&str],
    cwd: Option<&Path>,
    timeout: Duration,
    access: &Access,
) -> Result<String, String> {
    let mut spec = ProcessSpec::new("git", args);
    spec.cwd = cwd.map(PathBuf::from);
    spec.env = vec![
        ("GIT_TERMINAL_PROMPT".into(), "0".into()),
        (
            "GIT_SSH_COMMAND".into(),
            "ssh -o BatchMode=yes -o ConnectTimeout=20".into(),
        ),
    ];
    spec.env.extend(access.env.iter().cloned());
    spec.timeout = timeout;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (_c, cancel) = watch::channel(false);
    let status = process::run(&spec, tx, cancel)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut err = Vec::new();
    while let Ok(o) = rx.try_recv() {
        match o.stream {
            LogStream::Stdout => out.extend(o.lines),
            _ => err.extend(o.lines),
        }
    }
    if status.success() {
        Ok(out.join("\n"))
    } else {
        let why: Vec<String> = err.into_iter().filter(|l| !l.trim().is_empty()).collect();
        Err(if why.is_empty() {
            format!("git {} failed ({status})", args[0])
        } else {
            why.join(" ")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ls_remote_output_gives_the_branch_or_the_tag_commit() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let c = "c".repeat(40);
        let out =
            format!("{a}\tHEAD\n{b}\trefs/heads/main\n{a}\trefs/tags/v1\n{c}\trefs/tags/v1^{{}}\n");
        assert_eq!(parse_ls_remote(&out, "main"), Some(b.clone()));
        assert_eq!(parse_ls_remote(&out, "v1"), Some(c));
        assert_eq!(parse_ls_remote(&out, "HEAD"), Some(a));
        assert_eq!(parse_ls_remote("", "main"), None);
        assert_eq!(parse_ls_remote("not a line", "main"), None);
    }

    fn files(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn the_reason_names_the_evidence() {
        let c = Catalog::builtin();
        let d = detect(
            c,
            &files(&[(
                "package.json",
                r#"{"dependencies": {"next": "15", "react": "19"}}"#,
            )]),
        )
        .unwrap();
        assert_eq!(d.framework, "nextjs");
        assert_eq!(d.reason, r#"package.json has "next""#);
        let d = detect(
            c,
            &files(&[("manage.py", ""), ("requirements.txt", "django")]),
        )
        .unwrap();
        assert_eq!(
            (d.framework.as_str(), d.reason.as_str()),
            ("django", "manage.py exists")
        );
        let d = detect(
            c,
            &files(&[
                ("artisan", ""),
                (
                    "composer.json",
                    r#"{"require":{"laravel/framework":"^11"}}"#,
                ),
                ("index.php", ""),
            ]),
        )
        .unwrap();
        assert_eq!(d.framework, "laravel");
        assert_eq!(
            d.reason,
            "artisan exists and composer.json has laravel/framework"
        );
    }

    #[test]
    fn nothing_recognised_says_what_was_looked_for() {
        let err = detect(Catalog::builtin(), &files(&[("README.md", "hi")])).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("package.json") && text.contains("manage.py"),
            "{text}"
        );
        assert!(text.contains("--framework"), "{text}");
    }

    #[test]
    fn a_tie_is_refused() {
        // Flask and FastAPI in one requirements file: priorities 10 and 15, FastAPI wins;
        // React and Vue together tie at 10.
        let c = Catalog::builtin();
        let d = detect(c, &files(&[("requirements.txt", "flask\nfastapi\n")])).unwrap();
        assert_eq!(d.framework, "fastapi");
        let err = detect(
            c,
            &files(&[(
                "package.json",
                r#"{"dependencies":{"react":"1","vue":"3"}}"#,
            )]),
        )
        .unwrap_err();
        assert!(matches!(err, DetectError::Ambiguous { .. }), "{err}");
    }

    #[test]
    fn node_needs_come_from_engines_else_the_framework() {
        let c = Catalog::builtin();
        let react = framework_node_need(c.get("react").unwrap()).unwrap();
        assert_eq!(react.min, "20.19.0");
        assert!(react.why.contains("Vite"), "{}", react.why);
        assert_eq!(framework_node_need(c.get("flask").unwrap()), None);
        let express = framework_node_need(c.get("express").unwrap()).unwrap();
        assert_eq!(express.min, "18.0.0");
        for (range, min) in [
            (">=18", "18.0.0"),
            ("^20.19.0 || >=22.12.0", "20.19.0"),
            (">= 20.9.0", "20.9.0"),
            ("18.x", "18.0.0"),
            ("~20.11.1", "20.11.1"),
            ("20 - 22", "20.0.0"),
            ("*", "0.0.0"),
        ] {
            let text = format!(r#"{{"name": "app", "engines": {{"node": "{range}"}}}}"#);
            let need = engines_node_need(&text).unwrap().unwrap();
            assert_eq!(need.min, min, "{range}");
            assert!(need.why.contains(range), "{}", need.why);
        }
        assert_eq!(engines_node_need(r#"{"name": "app"}"#).unwrap(), None);
        assert!(
            engines_node_need(r#"{"engines": {"node": "not a range!"}}"#)
                .unwrap_err()
                .contains("engines.node")
        );
        assert!(engines_node_need("{").unwrap_err().contains("JSON"));
    }

    #[test]
    fn rule_files_cover_the_catalog() {
        let f = rule_files(Catalog::builtin());
        for p in [
            "package.json",
            "manage.py",
            "requirements.txt",
            "artisan",
            "index.php",
        ] {
            assert!(f.contains(p), "{p}");
        }
    }
}
