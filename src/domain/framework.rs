//! The framework catalog: data in `assets/frameworks.toml`, compiled into the binary and
//! parsed here into typed `Framework` entries. This module owns the catalog's shape and its
//! consistency checks; provisioning and detection read it, nothing writes it.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::OnceLock;

const BUILTIN: &str = include_str!("../../assets/frameworks.toml");

/// One rule that recognises a framework from a repository's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectRule {
    /// A path relative to the repository root, e.g. `package.json` or `manage.py`.
    pub file: String,
    /// When set, the file must contain this text (case-insensitive), e.g. `"next"`.
    #[serde(default)]
    pub contains: Option<String>,
    /// A JSON file's key, as a dotted path (`scripts.build`): the file must be JSON with a
    /// value there; with `contains`, that value (not the whole file) must contain the text.
    #[serde(default)]
    pub key: Option<String>,
    /// The rule must NOT match (e.g. a `start` script that runs a development server).
    #[serde(default)]
    pub not: bool,
}

impl DetectRule {
    /// Whether the rule's condition holds for `files` (path → text), before `not`.
    fn holds(&self, files: &HashMap<String, String>) -> bool {
        let Some(text) = files.get(&self.file) else {
            return false;
        };
        let subject = match &self.key {
            Some(key) => {
                let Ok(json) = serde_json::from_str::<serde_json::Value>(text) else {
                    return false;
                };
                let pointer = format!("/{}", key.replace('.', "/"));
                match json.pointer(&pointer) {
                    Some(serde_json::Value::String(v)) => v.clone(),
                    Some(v) => v.to_string(),
                    None => return false,
                }
            }
            None => text.clone(),
        };
        self.contains
            .as_ref()
            .is_none_or(|c| subject.to_lowercase().contains(&c.to_lowercase()))
    }

    /// The evidence in words: `package.json has "next"`, `package.json has scripts.build`.
    fn evidence(&self) -> String {
        match (&self.key, &self.contains) {
            (Some(k), Some(c)) => format!("{}'s {k} has {c}", self.file),
            (Some(k), None) => format!("{} has {k}", self.file),
            (None, Some(c)) => format!("{} has {c}", self.file),
            (None, None) => format!("{} exists", self.file),
        }
    }
}

/// One framework the catalog knows how to deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Framework {
    /// Stable id used on the command line and in the store (`flask`, `nextjs`, ...).
    pub id: String,
    /// Display name (`Flask`, `Next.js`, ...).
    pub name: String,
    /// `python`, `node`, `php` or `fullstack`.
    pub language: String,
    /// What the guest needs installed (e.g. `python3`, `nodejs`, `php-fpm nginx`).
    pub runtime: String,
    /// The port the app listens on unless the user picks another.
    pub default_port: u16,
    /// Shell command that installs the app's dependencies, run in the app folder.
    pub install: String,
    /// Shell command that builds the app (empty when there is nothing to build).
    #[serde(default)]
    pub build: String,
    /// Shell command that starts the app in the foreground; `$PORT` is the app port.
    pub start: String,
    /// HTTP path that answers when the app is up.
    #[serde(default = "default_health_path")]
    pub health_path: String,
    /// Any HTTP answer below 500 proves the app is up (the framework's apps answer no one
    /// path: FastAPI's 404 for a path the app does not route comes from the app's process).
    #[serde(default)]
    pub health_any_answer: bool,
    /// Debian packages the framework's apps need besides the runtime (build tools, headers).
    #[serde(default)]
    pub apt: Vec<String>,
    /// All rules must match for the framework to be detected (an empty list never matches).
    #[serde(default)]
    pub detect: Vec<DetectRule>,
    /// Higher wins when several frameworks match (MERN over Express, Next.js over React).
    #[serde(default)]
    pub detect_priority: i32,
    /// The provisioning recipe, `assets/provision/<recipe>.sh.hbs`: python, node, static,
    /// laravel or lamp.
    #[serde(default)]
    pub recipe: String,
    /// For recipes with a web server: the folder of the checkout it serves (`dist`, `public`;
    /// empty: the checkout itself, or the recipe's default).
    #[serde(default)]
    pub docroot: String,
    /// The runtime's Alpine (apk) packages, the counterpart of `runtime` on Alpine guests.
    #[serde(default)]
    pub alpine: String,
    /// Node frameworks: the oldest Node.js the framework's current release runs on
    /// (`major.minor`), checked against the guest's Node before anything is installed. An
    /// app whose package.json declares `engines.node` is taken at its word instead.
    #[serde(default)]
    pub node: String,
    /// Why the framework needs that Node.js, for the message when the guest's is too old.
    #[serde(default)]
    pub node_why: String,
}

fn default_health_path() -> String {
    "/".to_string()
}

impl Framework {
    /// Why this framework matches a repository whose files (path → text) are `files`, or
    /// `None` when one of its rules does not hold (an entry without rules never matches).
    /// The reason names the positive rules' evidence: `package.json has "next"`.
    pub fn matches(&self, files: &HashMap<String, String>) -> Option<String> {
        if self.detect.iter().all(|r| r.not) {
            return None;
        }
        let mut why = Vec::new();
        for rule in &self.detect {
            if rule.holds(files) == rule.not {
                return None;
            }
            if !rule.not {
                why.push(rule.evidence());
            }
        }
        Some(why.join(" and "))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    #[serde(rename = "framework")]
    pub frameworks: Vec<Framework>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("framework catalog is not valid TOML: {0}")]
    Parse(String),
    #[error("framework catalog: {0}")]
    Invalid(String),
}

impl Catalog {
    /// Parses and checks a catalog (ids unique and lowercase, ports non-zero, commands set).
    pub fn parse(text: &str) -> Result<Catalog, CatalogError> {
        let catalog: Catalog =
            toml::from_str(text).map_err(|e| CatalogError::Parse(e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for fw in &catalog.frameworks {
            if fw.id.is_empty()
                || !fw
                    .id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            {
                return Err(CatalogError::Invalid(format!(
                    "id {:?} must be lowercase letters and digits",
                    fw.id
                )));
            }
            if !seen.insert(fw.id.clone()) {
                return Err(CatalogError::Invalid(format!(
                    "id {:?} appears twice",
                    fw.id
                )));
            }
            if fw.default_port == 0 {
                return Err(CatalogError::Invalid(format!(
                    "{}: default_port is 0",
                    fw.id
                )));
            }
            if fw.install.trim().is_empty() || fw.start.trim().is_empty() {
                return Err(CatalogError::Invalid(format!(
                    "{}: install and start commands are required",
                    fw.id
                )));
            }
            if !fw.node.is_empty()
                && !fw
                    .node
                    .split('.')
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
            {
                return Err(CatalogError::Invalid(format!(
                    "{}: node {:?} must be a version like 20.19",
                    fw.id, fw.node
                )));
            }
            for pkg in &fw.apt {
                if let Err(e) = crate::domain::spec::validate_apt_package(pkg) {
                    return Err(CatalogError::Invalid(format!("{}: apt: {e}", fw.id)));
                }
            }
            if fw
                .detect
                .iter()
                .any(|r| r.key.as_deref().is_some_and(str::is_empty))
            {
                return Err(CatalogError::Invalid(format!(
                    "{}: a detect rule's key is empty",
                    fw.id
                )));
            }
            if !fw.health_path.starts_with('/') {
                return Err(CatalogError::Invalid(format!(
                    "{}: health_path must start with /",
                    fw.id
                )));
            }
        }
        Ok(catalog)
    }

    /// The catalog shipped in `assets/frameworks.toml`.
    pub fn builtin() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| {
            // The built-in catalog is checked by the test suite; failing here is a build defect.
            Catalog::parse(BUILTIN).expect("assets/frameworks.toml is valid")
        })
    }

    pub fn get(&self, id: &str) -> Option<&Framework> {
        let id = id.to_ascii_lowercase();
        self.frameworks.iter().find(|f| f.id == id)
    }

    pub fn ids(&self) -> Vec<&str> {
        self.frameworks.iter().map(|f| f.id.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWELVE: [&str; 12] = [
        "django", "flask", "fastapi", "laravel", "express", "node", "react", "vue", "nextjs",
        "mern", "mean", "lamp",
    ];

    fn invalid(text: &str) -> String {
        match Catalog::parse(text) {
            Ok(c) => panic!("accepted a bad catalog: {c:?}\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    /// One valid entry; the parse tests break it one way at a time.
    fn entry(id: &str, extra: &str) -> String {
        format!(
            "[[framework]]\nid = \"{id}\"\nname = \"X\"\nlanguage = \"python\"\n\
             runtime = \"python3\"\ndefault_port = 8000\ninstall = \"pip install x\"\n\
             start = \"x --port $PORT\"\n{extra}"
        )
    }

    #[test]
    fn builtin_catalog_has_exactly_the_twelve_frameworks() {
        let catalog = Catalog::parse(BUILTIN).unwrap_or_else(|e| panic!("{e}"));
        let mut ids = catalog.ids();
        ids.sort_unstable();
        let mut want = TWELVE.to_vec();
        want.sort_unstable();
        assert_eq!(ids, want);
        assert_eq!(Catalog::builtin(), &catalog);
    }

    #[test]
    fn every_builtin_entry_is_complete() {
        for fw in &Catalog::builtin().frameworks {
            let id = &fw.id;
            assert!(fw.default_port > 0, "{id}: port");
            assert!(!fw.name.trim().is_empty(), "{id}: name");
            assert!(!fw.runtime.trim().is_empty(), "{id}: runtime");
            assert!(!fw.install.trim().is_empty(), "{id}: install");
            assert!(!fw.start.trim().is_empty(), "{id}: start");
            assert!(fw.health_path.starts_with('/'), "{id}: health_path");
            assert!(!fw.detect.is_empty(), "{id}: no detection rule");
            assert!(
                ["python", "node", "php", "fullstack"].contains(&fw.language.as_str()),
                "{id}: language {:?}",
                fw.language
            );
            for cmd in [&fw.install, &fw.build, &fw.start] {
                assert!(!cmd.contains('\n'), "{id}: multi-line command {cmd:?}");
            }
            // An app server must be told its port; a web server (nginx, apache) gets it from
            // the site the recipe writes.
            let web_server = fw.start.starts_with("nginx") || fw.start.starts_with("apache2ctl");
            assert!(
                web_server || fw.start.contains("$PORT"),
                "{id}: start does not use $PORT: {}",
                fw.start
            );
        }
    }

    #[test]
    fn node_frameworks_name_their_minimum_node() {
        let c = Catalog::builtin();
        for fw in &c.frameworks {
            let uses_node = fw.runtime.split_whitespace().any(|p| p == "nodejs");
            assert_eq!(
                uses_node,
                !fw.node.is_empty(),
                "{}: node {:?}",
                fw.id,
                fw.node
            );
            assert_eq!(fw.node.is_empty(), fw.node_why.is_empty(), "{}", fw.id);
        }
        // Current Vite and Next.js releases need Node 20 (Debian 12's nodejs is 18).
        assert_eq!(c.get("react").unwrap().node, "20.19");
        assert_eq!(c.get("nextjs").unwrap().node, "20.9");
        assert!(invalid(&entry("x", "node = \"20.x\"\n")).contains("node"));
    }

    #[test]
    fn builtin_ports_and_lookups() {
        let c = Catalog::builtin();
        let port = |id: &str| c.get(id).unwrap().default_port;
        assert_eq!(port("django"), 8000);
        assert_eq!(port("flask"), 5000);
        assert_eq!(port("fastapi"), 8000);
        assert_eq!(port("express"), 3000);
        assert_eq!(port("nextjs"), 3000);
        for id in ["react", "vue", "laravel", "lamp"] {
            assert_eq!(port(id), 80, "{id}");
        }
        assert_eq!(c.get("NextJS").map(|f| f.name.as_str()), Some("Next.js"));
        assert!(c.get("rails").is_none());
    }

    #[test]
    fn builtin_commands_are_valid_shell() {
        for fw in &Catalog::builtin().frameworks {
            for cmd in [&fw.install, &fw.build, &fw.start] {
                let out = std::process::Command::new("bash")
                    .args(["-n", "-c", cmd])
                    .output()
                    .expect("bash");
                assert!(
                    out.status.success(),
                    "{}: not valid bash: {cmd}\n{}",
                    fw.id,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }

    /// The catalog's documented detection rule: every rule holds (a `not` rule must not),
    /// highest `detect_priority` wins. Returns the winner and whether it tied with another.
    fn detect<'a>(catalog: &'a Catalog, files: &[(&str, &str)]) -> Option<(&'a str, bool)> {
        let files: HashMap<String, String> = files
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect();
        let mut hits: Vec<&Framework> = catalog
            .frameworks
            .iter()
            .filter(|f| f.matches(&files).is_some())
            .collect();
        hits.sort_by_key(|f| std::cmp::Reverse(f.detect_priority));
        let best = hits.first()?;
        let tie = hits
            .get(1)
            .is_some_and(|f| f.detect_priority == best.detect_priority);
        Some((best.id.as_str(), tie))
    }

    #[test]
    fn builtin_detection_picks_the_right_framework() {
        let pkg =
            |deps: &str| format!("{{\n  \"name\": \"app\",\n  \"dependencies\": {{ {deps} }}\n}}");
        let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
            (
                "django",
                vec![
                    ("manage.py", "#!/usr/bin/env python".into()),
                    ("requirements.txt", "Django>=5\n".into()),
                ],
            ),
            (
                "flask",
                vec![
                    ("requirements.txt", "Flask==3.1\ngunicorn\n".into()),
                    ("app.py", "".into()),
                ],
            ),
            (
                "fastapi",
                vec![("requirements.txt", "fastapi[standard]\npydantic\n".into())],
            ),
            (
                "laravel",
                vec![
                    ("artisan", "#!/usr/bin/env php".into()),
                    (
                        "composer.json",
                        "{\"require\": {\"laravel/framework\": \"^11.0\"}}".into(),
                    ),
                    ("public/index.php", "<?php".into()),
                ],
            ),
            (
                "lamp",
                vec![
                    ("index.php", "<?php echo 'hi';".into()),
                    ("composer.json", "{}".into()),
                ],
            ),
            (
                "express",
                vec![("package.json", pkg("\"express\": \"^4.21.0\""))],
            ),
            (
                "react",
                vec![(
                    "package.json",
                    pkg("\"react\": \"^19.0.0\", \"react-dom\": \"^19.0.0\""),
                )],
            ),
            ("vue", vec![("package.json", pkg("\"vue\": \"^3.5.0\""))]),
            (
                "nextjs",
                vec![(
                    "package.json",
                    pkg("\"next\": \"15.0.0\", \"react\": \"^19.0.0\", \"react-dom\": \"^19.0.0\""),
                )],
            ),
            (
                "mern",
                vec![(
                    "package.json",
                    pkg("\"express\": \"^4\", \"mongoose\": \"^8\", \"react\": \"^19\""),
                )],
            ),
            (
                "mean",
                vec![(
                    "package.json",
                    pkg("\"@angular/core\": \"^19\", \"express\": \"^4\", \"mongoose\": \"^8\""),
                )],
            ),
            // Express with a React client but no MongoDB: the server wins.
            (
                "express",
                vec![(
                    "package.json",
                    pkg("\"express\": \"^4\", \"react\": \"^19\""),
                )],
            ),
            // A package that builds and starts itself (TypeScript compiled by `tsc`, an
            // Express server in dist/): built with its devDependencies, run by `npm start`.
            (
                "node",
                vec![(
                    "package.json",
                    r#"{"name": "api", "scripts": {"build": "tsc", "start": "node dist/server.js"},
                       "dependencies": {"express": "^4"}, "devDependencies": {"typescript": "^5"}}"#
                        .to_string(),
                )],
            ),
            // Create React App's scripts start a development server: still a static React site.
            (
                "react",
                vec![(
                    "package.json",
                    r#"{"scripts": {"build": "react-scripts build", "start": "react-scripts start"},
                       "dependencies": {"react": "^18", "react-scripts": "5"}}"#
                        .to_string(),
                )],
            ),
            // Next.js has build and start scripts too, and wins.
            (
                "nextjs",
                vec![(
                    "package.json",
                    r#"{"scripts": {"build": "next build", "start": "next start"},
                       "dependencies": {"next": "15", "react": "19"}}"#
                        .to_string(),
                )],
            ),
        ];
        let catalog = Catalog::builtin();
        for (want, files) in &cases {
            let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
            let got = detect(catalog, &files);
            assert_eq!(got, Some((*want, false)), "files {files:?}");
        }
        // Near misses do not match.
        let none = [
            (
                "package.json",
                pkg("\"next-auth\": \"^4\", \"nextra\": \"^3\""),
            ),
            ("requirements.txt", "requests\n".to_string()),
        ];
        let none: Vec<(&str, &str)> = none.iter().map(|(p, t)| (*p, t.as_str())).collect();
        assert_eq!(detect(catalog, &none), None);
        // A build script alone (a library), or only the words in another place, is no app.
        for text in [
            r#"{"scripts": {"build": "tsc"}}"#,
            r#"{"scripts": {"start": "node ."}, "description": "build"}"#,
            r#"{"scripts": "build start"}"#,
            "not json, but \"scripts\": {\"build\": 1, \"start\": 2}",
        ] {
            assert_eq!(detect(catalog, &[("package.json", text)]), None, "{text}");
        }
    }

    #[test]
    fn rules_with_keys_and_negation() {
        let fw: Framework = Catalog::parse(&entry(
            "app",
            r#"detect = [
                { file = "package.json", key = "scripts.build" },
                { file = "package.json", key = "scripts.start", contains = "vite", not = true },
            ]
"#,
        ))
        .unwrap()
        .frameworks
        .remove(0);
        let files = |text: &str| HashMap::from([("package.json".to_string(), text.to_string())]);
        assert_eq!(
            fw.matches(&files(r#"{"scripts": {"build": "x", "start": "node ."}}"#))
                .as_deref(),
            Some("package.json has scripts.build")
        );
        assert_eq!(
            fw.matches(&files(
                r#"{"scripts": {"build": "x", "start": "vite preview"}}"#
            )),
            None
        );
        assert_eq!(
            fw.matches(&files(r#"{"scripts": {"build": "x"}}"#))
                .as_deref(),
            Some("package.json has scripts.build")
        );
        assert_eq!(fw.matches(&HashMap::new()), None);
        // Only negative rules never match: they would claim every repository.
        let only_not: Framework =
            Catalog::parse(&entry("app", "detect = [{ file = \"x\", not = true }]\n"))
                .unwrap()
                .frameworks
                .remove(0);
        assert_eq!(only_not.matches(&HashMap::new()), None);
        let err = invalid(&entry("app", "apt = [\"Bad Name\"]\n"));
        assert!(err.contains("apt"), "{err}");
    }

    #[test]
    fn parse_accepts_a_minimal_entry_with_defaults() {
        let c = Catalog::parse(&entry("app2", "")).unwrap();
        let fw = &c.frameworks[0];
        assert_eq!(fw.health_path, "/");
        assert_eq!(fw.build, "");
        assert!(fw.detect.is_empty());
        assert_eq!(fw.detect_priority, 0);
    }

    #[test]
    fn parse_rejects_duplicate_ids() {
        let text = format!("{}\n{}", entry("flask", ""), entry("flask", ""));
        let err = invalid(&text);
        assert!(err.contains("\"flask\" appears twice"), "{err}");
    }

    #[test]
    fn parse_rejects_bad_ids() {
        for bad in ["Flask", "next-js", "", "my app", "vué"] {
            let err = invalid(&entry(bad, ""));
            assert!(err.contains(&format!("id {bad:?}")), "{bad}: {err}");
            assert!(err.contains("lowercase letters and digits"), "{bad}: {err}");
        }
    }

    #[test]
    fn parse_rejects_port_zero_and_bad_ports() {
        let err = invalid(&entry("app", "").replace("default_port = 8000", "default_port = 0"));
        assert!(err.contains("app: default_port is 0"), "{err}");
        let err = invalid(&entry("app", "").replace("default_port = 8000", "default_port = 70000"));
        assert!(err.contains("default_port"), "{err}");
    }

    #[test]
    fn parse_rejects_unknown_keys() {
        let err = invalid(&entry("app", "prot = 5000\n"));
        assert!(err.contains("prot"), "{err}");
        let err = invalid(&entry(
            "app",
            "detect = [{ file = \"a\", contain = \"b\" }]\n",
        ));
        assert!(err.contains("contain"), "{err}");
        let err = invalid(&format!("frameworks = []\n{}", entry("app", "")));
        assert!(err.contains("frameworks"), "{err}");
    }

    #[test]
    fn parse_rejects_missing_commands_and_bad_health_paths() {
        let err =
            invalid(&entry("app", "").replace("install = \"pip install x\"", "install = \"  \""));
        assert!(
            err.contains("app: install and start commands are required"),
            "{err}"
        );
        let err = invalid(&entry("app", "").replace("start = \"x --port $PORT\"\n", ""));
        assert!(err.contains("start"), "{err}");
        let err = invalid(&entry("app", "health_path = \"health\"\n"));
        assert!(err.contains("app: health_path must start with /"), "{err}");
    }

    #[test]
    fn parse_errors_say_the_toml_is_invalid() {
        let err = invalid("[[framework]\nid = ");
        assert!(
            err.starts_with("framework catalog is not valid TOML"),
            "{err}"
        );
    }
}
