//! Sample apps for the framework tests, each made by its framework's own tooling where it has
//! one (`django-admin startproject`, `create-vite`, `create-next-app`) or a minimal app of its
//! kind (Flask, FastAPI, Express, a PHP page), committed into a bare repo of a `GitServer`.
//! Every sample answers `GET /` with a text unique to it (`Sample::body`), so a test knows it
//! reached this very app; `Sample::change` commits a new body for redeploy tests.
//!
//! Also the checks for the tools that make the samples (node with npx, Django in the test
//! venv), with the suite's skip rule: a missing tool skips the test here and fails it under
//! `CI=true`.

use super::git::GitServer;
use super::net::random_hex;
use super::parts::{in_ci, test_python};
use super::process::run_with_timeout;
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A tool that makes samples on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// node, npm and npx (samples are made with npx and npm).
    Node,
    /// Django in the test venv (`django-admin startproject` makes the sample).
    Django,
}

impl Tool {
    fn check(self) -> Result<(), String> {
        let on_path = |t: &str| {
            Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        };
        match self {
            Tool::Node => {
                for t in ["node", "npm", "npx"] {
                    if !on_path(t) {
                        return Err(format!("{t} is missing: apt-get install nodejs npm"));
                    }
                }
                Ok(())
            }
            Tool::Django => {
                let python = test_python()?;
                let ok = Command::new(&python)
                    .args(["-c", "import django"])
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false);
                if ok {
                    Ok(())
                } else {
                    Err(format!(
                        "{} cannot import django: pip install django into the test venv",
                        python.display()
                    ))
                }
            }
        }
    }
}

/// The skip rule of `parts::skip_without`, for these tools.
pub fn skip_without_tools(test: &str, tools: &[Tool]) -> bool {
    let missing: Vec<String> = tools.iter().filter_map(|t| t.check().err()).collect();
    if missing.is_empty() {
        return false;
    }
    let why = missing.join("; ");
    if in_ci() {
        panic!("{test}: a real part is missing under CI=true: {why}. Run scripts/test.");
    }
    eprintln!("SKIPPED {test}: {why} (scripts/test installs what is missing)");
    true
}

/// A sample app in a bare repo of a `GitServer`.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The repo's name (`NAME.git` under the server's base).
    pub name: String,
    pub git_url: String,
    /// What `GET /` answers (part of the page, for the static sites: their title).
    pub body: String,
    pub commit: String,
    /// Which file holds the body, and how it looks with another text: for `change`.
    file: String,
    template: String,
}

impl Sample {
    /// Commits a new unique body (a second version of the app); returns the new body and the
    /// new commit.
    pub fn change(&self, git: &GitServer) -> Result<(String, String)> {
        let body = format!("{} v2 {}", self.name, random_hex(8));
        let text = self.template.replace("@BODY@", &body);
        let commit = git.push_change(&self.name, &[(&self.file, text)], "second version")?;
        Ok((body, commit))
    }
}

fn unique(kind: &str) -> String {
    format!("hello from the {kind} sample {}", random_hex(10))
}

fn finish(
    git: &GitServer,
    name: &str,
    dir: &Path,
    body: String,
    file: &str,
    template: String,
) -> Result<Sample> {
    std::fs::write(dir.join(file), template.replace("@BODY@", &body))?;
    git.add_repo_from(name, dir)?;
    Ok(Sample {
        name: name.to_string(),
        git_url: git.git_url(name),
        commit: git.head(name)?,
        body,
        file: file.to_string(),
        template,
    })
}

/// Runs a generator (npx, django-admin) with a deadline, failing with its output.
fn generate(cmd: &mut Command, what: &str) -> Result<()> {
    cmd.env("npm_config_yes", "true")
        .env("npm_config_update_notifier", "false")
        .env("npm_config_fund", "false")
        .env("NEXT_TELEMETRY_DISABLED", "1");
    let done = run_with_timeout(cmd, Duration::from_secs(300))
        .with_context(|| format!("{what} did not finish"))?;
    if !done.success() {
        bail!("{what} failed\n{}", done.describe());
    }
    Ok(())
}

/// Flask: `GET /` answers the body; `GET /env/NAME` answers that environment variable as the
/// app sees it; at start the app prints SECRET_TOKEN to its log (which proxdeck must mask).
pub fn flask(git: &GitServer, name: &str, work: &Path) -> Result<Sample> {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("requirements.txt"), "flask\n")?;
    let template = "import os\nimport sys\n\nfrom flask import Flask\n\n\
        print(\"starting; token is\", os.environ.get(\"SECRET_TOKEN\", \"-\"), flush=True)\n\
        print(\"a line on stderr\", file=sys.stderr, flush=True)\n\n\
        app = Flask(__name__)\n\n\n@app.route(\"/\")\ndef index():\n    return \"@BODY@\"\n\n\n\
        @app.route(\"/env/<name>\")\ndef env(name):\n    return os.environ.get(name, \"(unset)\")\n"
        .to_string();
    finish(git, name, &dir, unique("flask"), "app.py", template)
}

/// FastAPI: `main.py` with the `app` object, as FastAPI's own tutorial lays it out.
pub fn fastapi(git: &GitServer, name: &str, work: &Path) -> Result<Sample> {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("requirements.txt"), "fastapi\n")?;
    let template =
        "from fastapi import FastAPI\nfrom fastapi.responses import PlainTextResponse\n\n\
        app = FastAPI()\n\n\n@app.get(\"/\", response_class=PlainTextResponse)\ndef index():\n    \
        return \"@BODY@\"\n"
            .to_string();
    finish(git, name, &dir, unique("fastapi"), "main.py", template)
}

/// Django: `django-admin startproject mysite`, plus one view at `/` in the project's urls.
/// Its settings keep `ALLOWED_HOSTS = []`: the recipe must add the guest's address.
pub fn django(git: &GitServer, name: &str, work: &Path) -> Result<Sample> {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir)?;
    let python = test_python().map_err(anyhow::Error::msg)?;
    generate(
        Command::new(&python)
            .args(["-m", "django", "startproject", "mysite"])
            .arg(&dir),
        "django-admin startproject",
    )?;
    std::fs::write(dir.join("requirements.txt"), "django\n")?;
    std::fs::write(dir.join(".gitignore"), "db.sqlite3\n__pycache__/\n")?;
    let template = "from django.contrib import admin\nfrom django.http import HttpResponse\n\
        from django.urls import path\n\n\ndef index(request):\n    return HttpResponse(\"@BODY@\")\n\n\n\
        urlpatterns = [\n    path(\"\", index),\n    path(\"admin/\", admin.site.urls),\n]\n"
        .to_string();
    finish(
        git,
        name,
        &dir,
        unique("django"),
        "mysite/urls.py",
        template,
    )
}

/// Express: a package made with `npm init -y`, Express added, one `server.js`.
pub fn express(git: &GitServer, name: &str, work: &Path) -> Result<Sample> {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir)?;
    generate(
        Command::new("npm").args(["init", "-y"]).current_dir(&dir),
        "npm init",
    )?;
    let pkg = std::fs::read_to_string(dir.join("package.json"))?;
    let mut pkg: serde_json::Value = serde_json::from_str(&pkg)?;
    pkg["dependencies"] = serde_json::json!({"express": "^4.21.0"});
    pkg["scripts"] = serde_json::json!({"start": "node server.js"});
    std::fs::write(
        dir.join("package.json"),
        serde_json::to_string_pretty(&pkg)?,
    )?;
    std::fs::write(dir.join(".gitignore"), "node_modules/\n")?;
    let template = "const express = require(\"express\");\nconst app = express();\n\
        app.get(\"/\", (req, res) => res.type(\"text\").send(\"@BODY@\"));\n\
        const port = Number(process.env.PORT || 3000);\n\
        app.listen(port, \"0.0.0.0\", () => console.log(`listening on ${port}`));\n"
        .to_string();
    finish(git, name, &dir, unique("express"), "server.js", template)
}

/// React or Vue: `create-vite --template react|vue`; the body is the page's title.
pub fn vite(git: &GitServer, name: &str, template_name: &str, work: &Path) -> Result<Sample> {
    generate(
        Command::new("npx")
            .args([
                "--yes",
                "create-vite@latest",
                name,
                "--template",
                template_name,
            ])
            .arg("--no-interactive")
            .current_dir(work),
        "create-vite",
    )?;
    let dir = work.join(name);
    let index = std::fs::read_to_string(dir.join("index.html"))?;
    let start = index.find("<title>").context("index.html has no <title>")?;
    let end = index
        .find("</title>")
        .context("index.html has no </title>")?;
    let template = format!("{}<title>@BODY@{}", &index[..start], &index[end..]);
    finish(
        git,
        name,
        &dir,
        unique(template_name),
        "index.html",
        template,
    )
}

/// Next.js: `create-next-app` (App Router, TypeScript), its Google-font layout replaced by a
/// plain one (fonts cannot be fetched offline at build time) and a page with the body.
pub fn nextjs(git: &GitServer, name: &str, work: &Path) -> Result<Sample> {
    generate(
        Command::new("npx")
            .args(["--yes", "create-next-app@latest", name])
            .args([
                "--yes",
                "--use-npm",
                "--ts",
                "--app",
                "--no-tailwind",
                "--no-eslint",
            ])
            .args(["--skip-install", "--disable-git"])
            .current_dir(work),
        "create-next-app",
    )?;
    let dir = work.join(name);
    std::fs::write(
        dir.join("app/layout.tsx"),
        "export const metadata = { title: \"proxdeck sample\" };\n\n\
         export default function RootLayout({ children }: { children: React.ReactNode }) {\n  \
         return (\n    <html lang=\"en\">\n      <body>{children}</body>\n    </html>\n  );\n}\n",
    )?;
    let template =
        "export default function Home() {\n  return <main>@BODY@</main>;\n}\n".to_string();
    finish(git, name, &dir, unique("nextjs"), "app/page.tsx", template)
}

/// LAMP: one PHP page that answers the body and whether the app's MariaDB database answers
/// with the credentials the recipe put in the environment.
pub fn php(git: &GitServer, name: &str, work: &Path) -> Result<Sample> {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir)?;
    let template = "<?php\nheader('Content-Type: text/plain');\necho \"@BODY@\\n\";\n\
        $db = new mysqli(null, getenv('DB_USER'), getenv('DB_PASSWORD'), getenv('DB_NAME'));\n\
        $row = $db->query('SELECT DATABASE() AS d, 6 * 7 AS answer')->fetch_assoc();\n\
        echo 'database ' . $row['d'] . ' says ' . $row['answer'] . \"\\n\";\n"
        .to_string();
    finish(git, name, &dir, unique("php"), "index.php", template)
}

/// MERN: one package with Express, React and Mongoose (what detection calls MERN). It never
/// gets as far as running here (MongoDB's packages are out of reach), so it stays small.
pub fn mern(git: &GitServer, name: &str, work: &Path) -> Result<Sample> {
    full_stack(git, name, work, "mern", "react")
}

/// MEAN: Express, Angular and Mongoose in one package.
pub fn mean(git: &GitServer, name: &str, work: &Path) -> Result<Sample> {
    full_stack(git, name, work, "mean", "@angular/core")
}

fn full_stack(
    git: &GitServer,
    name: &str,
    work: &Path,
    kind: &str,
    client: &str,
) -> Result<Sample> {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir)?;
    let pkg = serde_json::json!({
        "name": name,
        "version": "1.0.0",
        "private": true,
        "scripts": {"start": "node server.js"},
        "dependencies": {"express": "^5.1.0", "mongoose": "^8.0.0", client: "*"},
    });
    std::fs::write(
        dir.join("package.json"),
        serde_json::to_string_pretty(&pkg)?,
    )?;
    let template =
        "const express = require(\"express\");\nconst mongoose = require(\"mongoose\");\n\
        const app = express();\napp.get(\"/\", (req, res) => res.send(\"@BODY@\"));\n\
        mongoose.connect(process.env.MONGODB_URI).then(() => app.listen(process.env.PORT));\n"
            .to_string();
    finish(git, name, &dir, unique(kind), "server.js", template)
}

/// Laravel, as `composer create-project laravel/laravel` lays it out where it matters to
/// detection and to the recipe (artisan, composer.json, public/index.php). Its dependencies
/// come from Packagist, which is out of reach here: the deploy stops at `composer install`.
pub fn laravel(git: &GitServer, name: &str, work: &Path) -> Result<Sample> {
    let dir = work.join(name);
    std::fs::create_dir_all(dir.join("public"))?;
    let composer = serde_json::json!({
        "name": "laravel/laravel",
        "type": "project",
        "require": {"php": "^8.2", "laravel/framework": "^12.0"},
        "autoload": {"psr-4": {"App\\": "app/"}},
    });
    std::fs::write(
        dir.join("composer.json"),
        serde_json::to_string_pretty(&composer)?,
    )?;
    std::fs::write(
        dir.join("artisan"),
        "#!/usr/bin/env php\n<?php\nrequire __DIR__.'/vendor/autoload.php';\n",
    )?;
    std::fs::write(
        dir.join(".env.example"),
        "APP_NAME=Laravel\nAPP_KEY=\nDB_CONNECTION=sqlite\n",
    )?;
    let template =
        "<?php\nrequire __DIR__.'/../vendor/autoload.php';\necho \"@BODY@\";\n".to_string();
    finish(
        git,
        name,
        &dir,
        unique("laravel"),
        "public/index.php",
        template,
    )
}
