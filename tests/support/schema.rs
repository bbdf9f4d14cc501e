//! Checks a Terraform configuration (HCL text) against a provider schema fixture, the way
//! `terraform validate` would if the provider binary were here (it is not: no internet).
//!
//! The fixture (`bpg-proxmox-schema.json`) describes the provider block and every resource and
//! data source as `{ "attributes": {name: {type, required, optional, computed, ...}},
//! "blocks": {name: {nesting, min_items, max_items, config_mode?, block: {attributes, blocks}}} }`.
//!
//! What [`Checker::check`] reports, each problem naming where it is:
//! - top level: unknown block types, wrong label counts, stray attributes;
//! - `terraform.required_providers`: the provider's local name maps to the fixture's source,
//!   and the version constraint admits the fixture's provider version;
//! - `provider`, `resource`, `data` bodies: unknown resource types, unknown attributes and
//!   blocks, attributes written as blocks and the other way round, read-only (computed) and
//!   deprecated attributes, missing required attributes, too few/many block instances, literal
//!   values of the wrong type or outside `allowed_values`, `var.X` of a different declared type;
//! - every expression: references to undeclared variables, locals, resources and data sources,
//!   or to attributes the resource does not have; with [`Checker::with_functions`], unknown
//!   functions and wrong argument counts;
//! - `variable` and `output` blocks: unknown arguments, `output` without `value`.
//!
//! [`Config::check_tfvars`] then compares a `terraform.tfvars.json` with the declared variables.

use hcl::expr::{Expression, ObjectKey, Operation, TemplateExpr, TraversalOperator};
use hcl::template::{Directive, Element, Template};
use hcl::{Block, Body, Structure};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Where the bpg/proxmox fixture is looked for, first match wins (relative paths are relative
/// to the crate root). `PROXDECK_BPG_SCHEMA` overrides.
const BPG_FIXTURE_CANDIDATES: &[&str] = &[
    "tests/fixtures/bpg-proxmox-schema.json",
    "../shared/fixtures/bpg-proxmox-schema.json",
];

/// Built-in resource types that need no provider.
const BUILTIN_RESOURCES: &[&str] = &["terraform_data"];

/// Reference roots Terraform defines itself.
const BUILTIN_ROOTS: &[&str] = &["count", "each", "path", "self", "terraform"];

/// The problems found in one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<String>);

impl Problems {
    /// True when some problem mentions `needle` (for tests that expect a specific complaint).
    pub fn mentions(&self, needle: &str) -> bool {
        self.0.iter().any(|p| p.contains(needle))
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} problem(s):", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// A declared `variable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableDecl {
    /// The type constraint, normalised (`string`, `list(string)`, ...), if one is given.
    pub type_constraint: Option<String>,
    /// A `default` is given (even `default = null`): the variable need not be set.
    pub has_default: bool,
    /// `nullable = false` was not given.
    pub nullable: bool,
}

/// A declared `resource` or `data` block.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceDecl {
    pub kind: String,
    pub name: String,
    pub body: Body,
}

/// What a configuration declares; returned by a successful check.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub variables: BTreeMap<String, VariableDecl>,
    pub locals: BTreeSet<String>,
    pub resources: Vec<ResourceDecl>,
    pub data: Vec<ResourceDecl>,
    pub outputs: BTreeSet<String>,
    /// local provider name -> (source, version constraint)
    pub required_providers: BTreeMap<String, (Option<String>, Option<String>)>,
}

impl Config {
    pub fn resource(&self, kind: &str, name: &str) -> Option<&ResourceDecl> {
        self.resources
            .iter()
            .find(|r| r.kind == kind && r.name == name)
    }

    /// Compares a `terraform.tfvars.json` value with the declared variables: every key is a
    /// declared variable, every value fits the variable's type, every variable without a
    /// default is set.
    pub fn check_tfvars(&self, tfvars: &Value) -> Result<(), Problems> {
        let mut problems = Vec::new();
        let Some(obj) = tfvars.as_object() else {
            return Err(Problems(vec![
                "tfvars: the top level is not a JSON object".into(),
            ]));
        };
        for (key, value) in obj {
            match self.variables.get(key) {
                None => problems.push(format!(
                    "tfvars: `{key}` is set but no `variable \"{key}\"` is declared"
                )),
                Some(decl) => {
                    if value.is_null() {
                        if !decl.nullable {
                            problems.push(format!(
                                "tfvars: `{key}` is null but the variable is not nullable"
                            ));
                        }
                    } else if let Some(ty) = &decl.type_constraint
                        && !json_fits_type(value, ty)
                    {
                        problems.push(format!(
                            "tfvars: `{key}` = {value} does not fit the declared type `{ty}`"
                        ));
                    }
                }
            }
        }
        for (name, decl) in &self.variables {
            if !decl.has_default && !obj.contains_key(name) {
                problems.push(format!(
                    "tfvars: variable `{name}` has no default and is not set"
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Problems(problems))
        }
    }
}

/// A provider schema plus (optionally) Terraform's function signatures.
#[derive(Debug, Clone)]
pub struct Checker {
    schema: Value,
    /// `function_signatures` from `terraform metadata functions -json`.
    functions: Option<Map<String, Value>>,
}

impl Checker {
    /// A checker for a schema fixture's JSON text.
    pub fn from_json(text: &str) -> Result<Checker, String> {
        let schema: Value =
            serde_json::from_str(text).map_err(|e| format!("schema is not JSON: {e}"))?;
        for key in [
            "provider_source",
            "provider_version",
            "provider",
            "resources",
        ] {
            if schema.get(key).is_none() {
                return Err(format!("schema has no `{key}`"));
            }
        }
        Ok(Checker {
            schema,
            functions: None,
        })
    }

    pub fn load(path: &Path) -> Result<Checker, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Checker::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Where the bpg/proxmox fixture is, if anywhere.
    pub fn bpg_fixture_path() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("PROXDECK_BPG_SCHEMA") {
            return Some(PathBuf::from(p));
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        BPG_FIXTURE_CANDIDATES
            .iter()
            .map(|c| root.join(c))
            .find(|p| p.is_file())
    }

    /// The bpg/proxmox schema fixture. Panics when it cannot be found: a schema check that
    /// silently does nothing is worse than none.
    pub fn bpg() -> Checker {
        let path = Checker::bpg_fixture_path().unwrap_or_else(|| {
            panic!(
                "bpg/proxmox schema fixture not found (looked at {BPG_FIXTURE_CANDIDATES:?} \
                 under {}); set PROXDECK_BPG_SCHEMA to its path",
                env!("CARGO_MANIFEST_DIR")
            )
        });
        Checker::load(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Also check function names and argument counts, with the JSON printed by
    /// `terraform metadata functions -json`.
    pub fn with_functions(mut self, metadata_json: &str) -> Result<Checker, String> {
        let v: Value = serde_json::from_str(metadata_json)
            .map_err(|e| format!("function metadata is not JSON: {e}"))?;
        let sigs = v
            .get("function_signatures")
            .and_then(Value::as_object)
            .ok_or("function metadata has no `function_signatures`")?;
        self.functions = Some(sigs.clone());
        Ok(self)
    }

    /// Parses and checks `text`; returns what it declares, or every problem found.
    pub fn check(&self, text: &str) -> Result<Config, Problems> {
        let body = hcl::parse(text).map_err(|e| Problems(vec![format!("HCL syntax: {e}")]))?;
        let mut run = Run {
            checker: self,
            config: Config::default(),
            problems: Vec::new(),
        };
        run.declare(&body);
        run.check_top(&body);
        if run.problems.is_empty() {
            Ok(run.config)
        } else {
            Err(Problems(run.problems))
        }
    }

    /// [`Checker::check`], panicking with every problem and the text.
    pub fn assert_valid(&self, text: &str) -> Config {
        match self.check(text) {
            Ok(c) => c,
            Err(p) => panic!("{p}\n--- configuration ---\n{text}"),
        }
    }

    fn provider_source(&self) -> &str {
        self.schema["provider_source"].as_str().unwrap_or_default()
    }

    fn provider_version(&self) -> &str {
        self.schema["provider_version"].as_str().unwrap_or_default()
    }

    /// The schema of a resource or data source type, following `same_schema_as`.
    fn type_schema(&self, section: &str, kind: &str) -> Option<&Value> {
        let all = self.schema.get(section)?;
        let mut s = all.get(kind)?;
        for _ in 0..4 {
            match s.get("same_schema_as").and_then(Value::as_str) {
                Some(other) if s.get("attributes").is_none() => s = all.get(other)?,
                _ => break,
            }
        }
        Some(s)
    }

    /// The provider local name that resource types of this schema imply (`proxmox_...` ->
    /// `proxmox`).
    fn implied_local_name(kind: &str) -> &str {
        kind.split('_').next().unwrap_or(kind)
    }
}

/// Arguments Terraform itself accepts in a block, besides the schema's.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Meta {
    Resource,
    Data,
    Provider,
    Nested,
}

impl Meta {
    fn attributes(self) -> &'static [&'static str] {
        match self {
            Meta::Resource | Meta::Data => &["count", "for_each", "depends_on", "provider"],
            Meta::Provider => &["alias"],
            Meta::Nested => &[],
        }
    }

    fn blocks(self) -> &'static [&'static str] {
        match self {
            Meta::Resource => &["lifecycle", "provisioner", "connection"],
            Meta::Data => &["lifecycle"],
            Meta::Provider | Meta::Nested => &[],
        }
    }
}

struct Run<'a> {
    checker: &'a Checker,
    config: Config,
    problems: Vec<String>,
}

impl Run<'_> {
    fn problem(&mut self, p: String) {
        self.problems.push(p);
    }

    /// First pass: what is declared (so references can be checked in any order).
    fn declare(&mut self, body: &Body) {
        for block in body.blocks() {
            let labels: Vec<&str> = block.labels.iter().map(|l| l.as_str()).collect();
            match (block.identifier.as_str(), labels.as_slice()) {
                ("variable", [name]) => {
                    let mut decl = VariableDecl {
                        type_constraint: None,
                        has_default: false,
                        nullable: true,
                    };
                    for a in block.body.attributes() {
                        match a.key.as_str() {
                            "type" => decl.type_constraint = Some(type_to_string(&a.expr)),
                            "default" => decl.has_default = true,
                            "nullable" => decl.nullable = a.expr != Expression::Bool(false),
                            _ => {}
                        }
                    }
                    if self
                        .config
                        .variables
                        .insert(name.to_string(), decl)
                        .is_some()
                    {
                        self.problem(format!("variable \"{name}\" is declared twice"));
                    }
                }
                ("locals", []) => {
                    for a in block.body.attributes() {
                        if !self.config.locals.insert(a.key.to_string()) {
                            self.problem(format!("local.{} is declared twice", a.key.as_str()));
                        }
                    }
                }
                ("resource", [kind, name]) | ("data", [kind, name]) => {
                    let decl = ResourceDecl {
                        kind: kind.to_string(),
                        name: name.to_string(),
                        body: block.body.clone(),
                    };
                    let is_data = block.identifier.as_str() == "data";
                    let list = if is_data {
                        &mut self.config.data
                    } else {
                        &mut self.config.resources
                    };
                    if list.iter().any(|r| r.kind == *kind && r.name == *name) {
                        let what = block.identifier.as_str();
                        self.problem(format!("{what} \"{kind}\" \"{name}\" is declared twice"));
                    } else {
                        list.push(decl);
                    }
                }
                ("output", [name]) if !self.config.outputs.insert(name.to_string()) => {
                    self.problem(format!("output \"{name}\" is declared twice"));
                }
                ("terraform", []) => {
                    for rp in block
                        .body
                        .blocks()
                        .filter(|b| b.identifier.as_str() == "required_providers")
                    {
                        for a in rp.body.attributes() {
                            let (source, version) = match &a.expr {
                                Expression::Object(obj) => {
                                    let get = |k: &str| {
                                        obj.iter().find_map(|(key, v)| match (key, v) {
                                            (ObjectKey::Identifier(i), Expression::String(s))
                                                if i.as_str() == k =>
                                            {
                                                Some(s.clone())
                                            }
                                            _ => None,
                                        })
                                    };
                                    (get("source"), get("version"))
                                }
                                // Legacy form: `proxmox = "~> 0.111"`.
                                Expression::String(v) => (None, Some(v.clone())),
                                _ => (None, None),
                            };
                            self.config
                                .required_providers
                                .insert(a.key.to_string(), (source, version));
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Second pass: every top-level structure.
    fn check_top(&mut self, body: &Body) {
        for s in body.iter() {
            let block = match s {
                Structure::Attribute(a) => {
                    self.problem(format!(
                        "top level: attribute `{}` outside any block",
                        a.key.as_str()
                    ));
                    continue;
                }
                Structure::Block(b) => b,
            };
            let id = block.identifier.as_str();
            let labels: Vec<String> = block.labels.iter().map(|l| l.as_str().into()).collect();
            let want = match id {
                "terraform" | "locals" | "moved" | "import" | "removed" => 0,
                "provider" | "variable" | "output" | "module" | "check" => 1,
                "resource" | "data" => 2,
                _ => {
                    self.problem(format!("top level: unknown block type `{id}`"));
                    continue;
                }
            };
            if labels.len() != want {
                self.problem(format!(
                    "`{id}` block takes {want} label(s), has {}: {labels:?}",
                    labels.len()
                ));
                continue;
            }
            match id {
                "terraform" => self.check_terraform_block(block),
                "provider" => self.check_provider_block(&labels[0], block),
                "resource" => self.check_resource(Meta::Resource, &labels[0], &labels[1], block),
                "data" => self.check_resource(Meta::Data, &labels[0], &labels[1], block),
                "variable" => self.check_variable(&labels[0], block),
                "output" => self.check_output(&labels[0], block),
                "locals" => {
                    for a in block.body.attributes() {
                        let path = format!("local.{}", a.key.as_str());
                        self.walk_expr(&path, &a.expr, &BTreeSet::new());
                    }
                }
                _ => {}
            }
        }
    }

    fn check_terraform_block(&mut self, block: &Block) {
        let want_source = normalise_source(self.checker.provider_source());
        let version = self.checker.provider_version().to_string();
        for (local, (source, constraint)) in self.config.required_providers.clone() {
            let source = source.as_deref().map(normalise_source);
            if source.as_deref() == Some(want_source.as_str()) {
                match constraint {
                    None => self.problem(format!(
                        "terraform.required_providers.{local}: no version constraint"
                    )),
                    Some(c) => match version_admits(&c, &version) {
                        Ok(true) => {}
                        Ok(false) => self.problem(format!(
                            "terraform.required_providers.{local}: version `{c}` does not \
                             admit the schema's provider version {version}"
                        )),
                        Err(e) => self.problem(format!(
                            "terraform.required_providers.{local}: version `{c}`: {e}"
                        )),
                    },
                }
            }
        }
        for b in block.body.blocks() {
            let id = b.identifier.as_str();
            if !matches!(
                id,
                "required_providers" | "backend" | "cloud" | "provider_meta"
            ) {
                self.problem(format!("terraform: unknown block `{id}`"));
            }
        }
    }

    /// The problem with provider local name `local`, if it does not resolve to the schema's
    /// provider.
    fn provider_mismatch(&self, local: &str) -> Option<String> {
        let want = normalise_source(self.checker.provider_source());
        match self.config.required_providers.get(local) {
            None => Some(format!(
                "terraform.required_providers has no `{local}` entry, so Terraform would look \
                 for hashicorp/{local} instead of {want}"
            )),
            Some((Some(source), _)) if normalise_source(source) == want => None,
            Some((source, _)) => Some(format!(
                "terraform.required_providers.{local} has source {source:?}, not {want:?}"
            )),
        }
    }

    fn check_provider_block(&mut self, local: &str, block: &Block) {
        if let Some(p) = self.provider_mismatch(local) {
            self.problem(format!("provider \"{local}\": {p}"));
            return;
        }
        let schema = self.checker.schema["provider"].clone();
        let path = format!("provider \"{local}\"");
        self.check_body(
            &path,
            &block.body,
            &schema,
            Meta::Provider,
            &BTreeSet::new(),
        );
    }

    fn check_resource(&mut self, meta: Meta, kind: &str, name: &str, block: &Block) {
        let (section, word) = match meta {
            Meta::Data => ("data_sources", "data"),
            _ => ("resources", "resource"),
        };
        let path = format!("{word} \"{kind}\" \"{name}\"");
        if meta == Meta::Resource && BUILTIN_RESOURCES.contains(&kind) {
            // Built in; only its expressions are checked.
            for a in block.body.attributes() {
                self.walk_expr(&path, &a.expr, &BTreeSet::new());
            }
            return;
        }
        let Some(schema) = self.checker.type_schema(section, kind).cloned() else {
            let known: Vec<&String> = self
                .checker
                .schema
                .get(section)
                .and_then(Value::as_object)
                .map(|m| m.keys().collect())
                .unwrap_or_default();
            self.problem(format!(
                "{path}: unknown {word} type `{kind}` (the schema has {known:?})"
            ));
            return;
        };
        let local = Checker::implied_local_name(kind);
        let explicit_provider = block
            .body
            .attributes()
            .any(|a| a.key.as_str() == "provider");
        if !explicit_provider && let Some(p) = self.provider_mismatch(local) {
            self.problem(format!("{path}: {p}"));
        }
        if let Some(dep) = schema.get("deprecated").and_then(Value::as_str) {
            self.problem(format!("{path}: the type is deprecated: {dep}"));
        }
        self.check_body(&path, &block.body, &schema, meta, &BTreeSet::new());
    }

    fn check_variable(&mut self, name: &str, block: &Block) {
        let path = format!("variable \"{name}\"");
        let decl = self.config.variables.get(name).cloned();
        for a in block.body.attributes() {
            let key = a.key.as_str();
            match key {
                "type" => {
                    let ty = type_to_string(&a.expr);
                    if !type_is_known(&ty) {
                        self.problem(format!("{path}: `type = {ty}` is not a type constraint"));
                    }
                }
                "default" => {
                    if let (Some(ty), Some(lit)) = (
                        decl.as_ref().and_then(|d| d.type_constraint.clone()),
                        literal_type(&a.expr),
                    ) && !literal_fits(&lit, &ty)
                    {
                        self.problem(format!(
                            "{path}: the default ({lit}) does not fit `type = {ty}`"
                        ));
                    }
                }
                "description" | "sensitive" | "nullable" | "ephemeral" => {}
                other => self.problem(format!("{path}: unknown argument `{other}`")),
            }
        }
        for b in block.body.blocks() {
            if b.identifier.as_str() != "validation" {
                self.problem(format!("{path}: unknown block `{}`", b.identifier.as_str()));
            }
        }
    }

    fn check_output(&mut self, name: &str, block: &Block) {
        let path = format!("output \"{name}\"");
        let mut has_value = false;
        for a in block.body.attributes() {
            match a.key.as_str() {
                "value" => {
                    has_value = true;
                    self.walk_expr(&path, &a.expr, &BTreeSet::new());
                }
                "description" | "sensitive" | "ephemeral" => {}
                "depends_on" => self.walk_expr(&path, &a.expr, &BTreeSet::new()),
                other => self.problem(format!("{path}: unknown argument `{other}`")),
            }
        }
        if !has_value {
            self.problem(format!("{path}: missing required argument `value`"));
        }
        for b in block.body.blocks() {
            if b.identifier.as_str() != "precondition" {
                self.problem(format!("{path}: unknown block `{}`", b.identifier.as_str()));
            }
        }
    }

    /// Checks a body against a schema node (`{attributes, blocks}`).
    fn check_body(
        &mut self,
        path: &str,
        body: &Body,
        schema: &Value,
        meta: Meta,
        scope: &BTreeSet<String>,
    ) {
        let attrs = schema.get("attributes").and_then(Value::as_object);
        let blocks = schema.get("blocks").and_then(Value::as_object);
        let mut seen_attrs = BTreeSet::new();
        let mut block_counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut dynamic_blocks = BTreeSet::new();

        for a in body.attributes() {
            let key = a.key.as_str();
            if !seen_attrs.insert(key.to_string()) {
                self.problem(format!("{path}: attribute `{key}` is set twice"));
            }
            if meta.attributes().contains(&key) {
                if key != "provider" {
                    self.walk_expr(path, &a.expr, scope);
                }
                continue;
            }
            self.walk_expr(path, &a.expr, scope);
            if let Some(spec) = attrs.and_then(|m| m.get(key)) {
                self.check_attribute(path, key, &a.expr, spec);
            } else if let Some(spec) = blocks.and_then(|m| m.get(key)) {
                if spec.get("config_mode").and_then(Value::as_str) == Some("attr") {
                    // Attributes-as-blocks: `network_device = [...]` is allowed.
                    if let (Expression::Array(items), Some(max)) =
                        (&a.expr, spec.get("max_items").and_then(Value::as_u64))
                        && items.len() as u64 > max
                    {
                        self.problem(format!(
                            "{path}: `{key}` has {} items, at most {max} allowed",
                            items.len()
                        ));
                    }
                    *block_counts.entry(key.to_string()).or_default() += 1;
                } else {
                    self.problem(format!(
                        "{path}: `{key}` is a block; write `{key} {{ ... }}`, not `{key} = ...`"
                    ));
                }
            } else {
                self.problem(format!(
                    "{path}: unknown attribute `{key}`{}",
                    suggestion(key, attrs, blocks)
                ));
            }
        }

        for b in body.blocks() {
            let id = b.identifier.as_str();
            if meta.blocks().contains(&id) {
                continue;
            }
            let (name, inner, inner_scope) = if id == "dynamic" {
                let Some(label) = b.labels.first().map(|l| l.as_str().to_string()) else {
                    self.problem(format!("{path}: `dynamic` block without a label"));
                    continue;
                };
                let mut iterator = label.clone();
                for a in b.body.attributes() {
                    match a.key.as_str() {
                        "for_each" => self.walk_expr(path, &a.expr, scope),
                        "iterator" => {
                            if let Expression::Variable(v) = &a.expr {
                                iterator = v.as_str().to_string();
                            }
                        }
                        "labels" => {}
                        other => {
                            self.problem(format!("{path}: dynamic \"{label}\": unknown `{other}`"))
                        }
                    }
                }
                let Some(content) = b.body.blocks().find(|c| c.identifier.as_str() == "content")
                else {
                    self.problem(format!("{path}: dynamic \"{label}\" has no content block"));
                    continue;
                };
                dynamic_blocks.insert(label.clone());
                let mut s = scope.clone();
                s.insert(iterator);
                (label, &content.body, s)
            } else {
                if !b.labels.is_empty() {
                    self.problem(format!("{path}: block `{id}` takes no labels"));
                }
                (id.to_string(), &b.body, scope.clone())
            };
            let index = block_counts.get(&name).copied().unwrap_or(0);
            *block_counts.entry(name.clone()).or_default() += 1;
            let child_path = format!("{path}.{name}[{index}]");
            if let Some(spec) = blocks.and_then(|m| m.get(&name)) {
                if let Some(dep) = spec.get("deprecated").and_then(Value::as_str) {
                    self.problem(format!("{child_path}: the block is deprecated: {dep}"));
                }
                let child = spec.get("block").cloned().unwrap_or(Value::Null);
                self.check_body(&child_path, inner, &child, Meta::Nested, &inner_scope);
            } else if attrs.is_some_and(|m| m.contains_key(&name)) {
                self.problem(format!(
                    "{path}: `{name}` is an attribute; write `{name} = ...`, not a block"
                ));
            } else {
                self.problem(format!(
                    "{path}: unknown block `{name}`{}",
                    suggestion(&name, attrs, blocks)
                ));
            }
        }

        // Required attributes and block counts.
        for (key, spec) in attrs.into_iter().flatten() {
            if spec.get("required").and_then(Value::as_bool) == Some(true)
                && !seen_attrs.contains(key)
            {
                self.problem(format!("{path}: missing required attribute `{key}`"));
            }
        }
        for (key, spec) in blocks.into_iter().flatten() {
            if dynamic_blocks.contains(key) {
                continue;
            }
            let n = block_counts.get(key).copied().unwrap_or(0) as u64;
            let min = spec.get("min_items").and_then(Value::as_u64).unwrap_or(0);
            if n < min {
                self.problem(format!(
                    "{path}: block `{key}` appears {n} time(s), at least {min} required"
                ));
            }
            if let Some(max) = spec.get("max_items").and_then(Value::as_u64)
                && n > max
            {
                self.problem(format!(
                    "{path}: block `{key}` appears {n} times, at most {max} allowed"
                ));
            }
        }
    }

    fn check_attribute(&mut self, path: &str, key: &str, expr: &Expression, spec: &Value) {
        let flag = |k: &str| spec.get(k).and_then(Value::as_bool) == Some(true);
        if flag("computed") && !flag("optional") && !flag("required") {
            self.problem(format!(
                "{path}: `{key}` is read-only (computed by the provider) and cannot be set"
            ));
        }
        if let Some(dep) = spec.get("deprecated").and_then(Value::as_str) {
            self.problem(format!("{path}: `{key}` is deprecated: {dep}"));
        }
        let Some(ty) = spec.get("type").and_then(Value::as_str) else {
            return;
        };
        if let Some(lit) = literal_type(expr)
            && !literal_fits(&lit, ty)
        {
            self.problem(format!(
                "{path}: `{key}` is `{ty}`, but the value is a {lit} literal"
            ));
        }
        if let (Expression::String(s), Some(allowed)) =
            (expr, spec.get("allowed_values").and_then(Value::as_array))
            && !allowed.iter().any(|v| v.as_str() == Some(s))
        {
            self.problem(format!(
                "{path}: `{key}` = {s:?} is not one of {}",
                Value::Array(allowed.clone())
            ));
        }
        if let Some(var) = direct_var_ref(expr)
            && let Some(vty) = self
                .config
                .variables
                .get(&var)
                .and_then(|d| d.type_constraint.clone())
            && normalise_type(&vty) != normalise_type(ty)
            && vty != "any"
        {
            self.problem(format!(
                "{path}: `{key}` is `{ty}`, but var.{var} is declared as `{vty}`"
            ));
        }
    }

    /// Checks references and function calls inside an expression.
    fn walk_expr(&mut self, path: &str, expr: &Expression, scope: &BTreeSet<String>) {
        match expr {
            Expression::Null
            | Expression::Bool(_)
            | Expression::Number(_)
            | Expression::String(_) => {}
            Expression::Array(items) => {
                for e in items {
                    self.walk_expr(path, e, scope);
                }
            }
            Expression::Object(obj) => {
                for (k, v) in obj.iter() {
                    if let ObjectKey::Expression(k) = k {
                        // A bare name as key is a literal (`{ a = 1 }` parses this way too).
                        if !matches!(k, Expression::Variable(_)) {
                            self.walk_expr(path, k, scope);
                        }
                    }
                    self.walk_expr(path, v, scope);
                }
            }
            Expression::TemplateExpr(t) => self.walk_template_expr(path, t, scope),
            Expression::Variable(v) => {
                let name = v.as_str();
                if !scope.contains(name) && !BUILTIN_ROOTS.contains(&name) {
                    self.problem(format!("{path}: `{name}` is not a valid reference"));
                }
            }
            Expression::Traversal(t) => {
                self.check_traversal(path, &t.expr, &t.operators, scope);
                if !matches!(t.expr, Expression::Variable(_)) {
                    self.walk_expr(path, &t.expr, scope);
                }
                for op in &t.operators {
                    if let TraversalOperator::Index(e) = op {
                        self.walk_expr(path, e, scope);
                    }
                }
            }
            Expression::FuncCall(f) => {
                self.check_function(path, f);
                for a in &f.args {
                    self.walk_expr(path, a, scope);
                }
            }
            Expression::Parenthesis(e) => self.walk_expr(path, e, scope),
            Expression::Conditional(c) => {
                self.walk_expr(path, &c.cond_expr, scope);
                self.walk_expr(path, &c.true_expr, scope);
                self.walk_expr(path, &c.false_expr, scope);
            }
            Expression::Operation(op) => match op.as_ref() {
                Operation::Unary(u) => self.walk_expr(path, &u.expr, scope),
                Operation::Binary(b) => {
                    self.walk_expr(path, &b.lhs_expr, scope);
                    self.walk_expr(path, &b.rhs_expr, scope);
                }
            },
            Expression::ForExpr(f) => {
                self.walk_expr(path, &f.collection_expr, scope);
                let mut inner = scope.clone();
                inner.insert(f.value_var.as_str().to_string());
                if let Some(k) = &f.key_var {
                    inner.insert(k.as_str().to_string());
                }
                if let Some(k) = &f.key_expr {
                    self.walk_expr(path, k, &inner);
                }
                self.walk_expr(path, &f.value_expr, &inner);
                if let Some(c) = &f.cond_expr {
                    self.walk_expr(path, c, &inner);
                }
            }
            // Expression is non-exhaustive across hcl-rs versions.
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    fn walk_template_expr(&mut self, path: &str, t: &TemplateExpr, scope: &BTreeSet<String>) {
        match Template::from_expr(t) {
            Ok(tpl) => self.walk_template(path, &tpl, scope),
            Err(e) => self.problem(format!("{path}: bad string template: {e}")),
        }
    }

    fn walk_template(&mut self, path: &str, tpl: &Template, scope: &BTreeSet<String>) {
        for el in tpl.elements() {
            match el {
                Element::Literal(_) => {}
                Element::Interpolation(i) => self.walk_expr(path, &i.expr, scope),
                Element::Directive(d) => match d.as_ref() {
                    Directive::If(d) => {
                        self.walk_expr(path, &d.cond_expr, scope);
                        self.walk_template(path, &d.true_template, scope);
                        if let Some(f) = &d.false_template {
                            self.walk_template(path, f, scope);
                        }
                    }
                    Directive::For(d) => {
                        self.walk_expr(path, &d.collection_expr, scope);
                        let mut inner = scope.clone();
                        inner.insert(d.value_var.as_str().to_string());
                        if let Some(k) = &d.key_var {
                            inner.insert(k.as_str().to_string());
                        }
                        self.walk_template(path, &d.template, &inner);
                    }
                },
            }
        }
    }

    fn check_traversal(
        &mut self,
        path: &str,
        root: &Expression,
        ops: &[TraversalOperator],
        scope: &BTreeSet<String>,
    ) {
        let Expression::Variable(root) = root else {
            return;
        };
        let root = root.as_str();
        if scope.contains(root) || BUILTIN_ROOTS.contains(&root) {
            return;
        }
        let attr = |i: usize| match ops.get(i) {
            Some(TraversalOperator::GetAttr(a)) => Some(a.as_str().to_string()),
            _ => None,
        };
        match root {
            "var" => match attr(0) {
                Some(v) if self.config.variables.contains_key(&v) => {}
                Some(v) => self.problem(format!(
                    "{path}: var.{v} is used but no `variable \"{v}\"` is declared"
                )),
                None => self.problem(format!("{path}: `var` without a variable name")),
            },
            "local" => match attr(0) {
                Some(v) if self.config.locals.contains(&v) => {}
                Some(v) => self.problem(format!("{path}: local.{v} is used but not declared")),
                None => self.problem(format!("{path}: `local` without a name")),
            },
            "data" => {
                let (Some(kind), Some(name)) = (attr(0), attr(1)) else {
                    self.problem(format!("{path}: `data` reference without type and name"));
                    return;
                };
                if !self
                    .config
                    .data
                    .iter()
                    .any(|d| d.kind == kind && d.name == name)
                {
                    self.problem(format!(
                        "{path}: data.{kind}.{name} is used but not declared"
                    ));
                    return;
                }
                self.check_result_attr(path, "data_sources", &kind, &name, &ops[2..]);
            }
            kind => {
                let Some(name) = attr(0) else {
                    self.problem(format!("{path}: `{kind}` is not a valid reference"));
                    return;
                };
                if !self
                    .config
                    .resources
                    .iter()
                    .any(|r| r.kind == kind && r.name == name)
                {
                    self.problem(format!(
                        "{path}: {kind}.{name} is used but no such resource is declared"
                    ));
                    return;
                }
                if !BUILTIN_RESOURCES.contains(&kind) {
                    self.check_result_attr(path, "resources", kind, &name, &ops[1..]);
                }
            }
        }
    }

    /// `TYPE.NAME.<ops>`: the first attribute read must exist in the type's schema.
    fn check_result_attr(
        &mut self,
        path: &str,
        section: &str,
        kind: &str,
        name: &str,
        ops: &[TraversalOperator],
    ) {
        let Some(schema) = self.checker.type_schema(section, kind) else {
            return; // reported where the resource is declared
        };
        // Skip a `[count.index]` / `["key"]` on the resource itself.
        let first = ops.iter().find_map(|op| match op {
            TraversalOperator::GetAttr(a) => Some(a.as_str()),
            TraversalOperator::Index(_) | TraversalOperator::LegacyIndex(_) => None,
            _ => Some(""),
        });
        let Some(a) = first.filter(|a| !a.is_empty()) else {
            return;
        };
        let known = schema
            .get("attributes")
            .and_then(|m| m.get(a))
            .or_else(|| schema.get("blocks").and_then(|m| m.get(a)));
        if known.is_none() && a != "id" {
            self.problem(format!(
                "{path}: {kind}.{name}.{a}: `{kind}` has no attribute `{a}`"
            ));
        }
    }

    fn check_function(&mut self, path: &str, f: &hcl::expr::FuncCall) {
        let Some(sigs) = &self.checker.functions else {
            return;
        };
        let ns: Vec<&str> = f.name.namespace.iter().map(|i| i.as_str()).collect();
        if ns.first() == Some(&"provider") {
            return; // provider-defined functions are not in terraform's metadata
        }
        let name = f.name.name.as_str();
        let full = if ns.is_empty() {
            name.to_string()
        } else {
            format!("{}::{name}", ns.join("::"))
        };
        let Some(sig) = sigs.get(&full) else {
            self.problem(format!("{path}: unknown function `{full}()`"));
            return;
        };
        if f.expand_final {
            return;
        }
        let params = sig
            .get("parameters")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let variadic = sig.get("variadic_parameter").is_some();
        let n = f.args.len();
        if n < params || (!variadic && n > params) {
            let want = if variadic {
                format!("at least {params}")
            } else {
                params.to_string()
            };
            self.problem(format!(
                "{path}: `{full}()` takes {want} argument(s), {n} given"
            ));
        }
    }
}

/// `var.X` exactly, without further traversal.
fn direct_var_ref(expr: &Expression) -> Option<String> {
    let Expression::Traversal(t) = expr else {
        return None;
    };
    match (&t.expr, t.operators.as_slice()) {
        (Expression::Variable(v), [TraversalOperator::GetAttr(a)]) if v.as_str() == "var" => {
            Some(a.as_str().to_string())
        }
        _ => None,
    }
}

/// `string`, `list(string)`, `map(number)`, `object(...)` from a type expression.
fn type_to_string(expr: &Expression) -> String {
    match expr {
        Expression::Variable(v) => v.as_str().to_string(),
        Expression::FuncCall(f) => {
            let args: Vec<String> = f.args.iter().map(type_to_string).collect();
            format!("{}({})", f.name.name.as_str(), args.join(","))
        }
        Expression::Object(_) => "{...}".to_string(),
        other => format!("{other:?}"),
    }
}

fn type_is_known(ty: &str) -> bool {
    let ty = normalise_type(ty);
    if matches!(ty.as_str(), "string" | "number" | "bool" | "any") {
        return true;
    }
    for wrapper in ["list(", "set(", "map(", "optional("] {
        if let Some(inner) = ty.strip_prefix(wrapper).and_then(|r| r.strip_suffix(')')) {
            return type_is_known(inner);
        }
    }
    ty.starts_with("object(") || ty.starts_with("tuple(")
}

fn normalise_type(ty: &str) -> String {
    ty.chars().filter(|c| !c.is_whitespace()).collect()
}

fn normalise_source(source: &str) -> String {
    source
        .trim_start_matches("registry.terraform.io/")
        .to_ascii_lowercase()
}

/// The kind of a literal expression (`string`, `number`, `bool`, `list`, `object`), or None
/// when the value is not a literal (references, calls, null...).
fn literal_type(expr: &Expression) -> Option<String> {
    match expr {
        Expression::String(_) => Some("string".into()),
        Expression::TemplateExpr(_) => Some("string".into()),
        Expression::Number(_) => Some("number".into()),
        Expression::Bool(_) => Some("bool".into()),
        Expression::Array(_) => Some("list".into()),
        Expression::Object(_) => Some("object".into()),
        _ => None,
    }
}

fn literal_fits(lit: &str, ty: &str) -> bool {
    let ty = normalise_type(ty);
    match lit {
        _ if ty == "any" => true,
        "list" => ty.starts_with("list(") || ty.starts_with("set(") || ty.starts_with("tuple("),
        "object" => ty.starts_with("map(") || ty.starts_with("object("),
        prim => ty == prim,
    }
}

/// Does a JSON value (from tfvars) fit a Terraform type constraint?
fn json_fits_type(v: &Value, ty: &str) -> bool {
    let ty = normalise_type(ty);
    let inner = |prefix: &str| {
        ty.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(')'))
            .map(str::to_string)
    };
    match ty.as_str() {
        "any" => true,
        "string" => v.is_string(),
        "number" => v.is_number(),
        "bool" => v.is_boolean(),
        _ => {
            if let Some(t) = inner("list(").or_else(|| inner("set(")) {
                v.as_array()
                    .is_some_and(|a| a.iter().all(|e| json_fits_type(e, &t)))
            } else if let Some(t) = inner("map(") {
                v.as_object()
                    .is_some_and(|o| o.values().all(|e| json_fits_type(e, &t)))
            } else {
                // object(...) / tuple(...): not checked in depth.
                true
            }
        }
    }
}

fn suggestion(
    key: &str,
    attrs: Option<&Map<String, Value>>,
    blocks: Option<&Map<String, Value>>,
) -> String {
    let mut names: Vec<&String> = attrs.into_iter().flat_map(|m| m.keys()).collect();
    names.extend(blocks.into_iter().flat_map(|m| m.keys()));
    let close: Vec<&&String> = names
        .iter()
        .filter(|n| n.contains(key) || key.contains(n.as_str()) || edit_distance(n, key) <= 2)
        .collect();
    if close.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {close:?}?)")
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Does a Terraform version constraint (`~> 0.111`, `>= 1.2, < 2.0`) admit `version`?
pub fn version_admits(constraint: &str, version: &str) -> Result<bool, String> {
    let v = parse_version(version)?.0;
    for part in constraint.split(',') {
        let part = part.trim();
        let (op, rest) = ["~>", ">=", "<=", "!=", ">", "<", "="]
            .iter()
            .find_map(|op| part.strip_prefix(op).map(|r| (*op, r.trim())))
            .unwrap_or(("=", part));
        let (c, parts) = parse_version(rest)?;
        let ok = match op {
            "=" => v == c,
            "!=" => v != c,
            ">" => v > c,
            ">=" => v >= c,
            "<" => v < c,
            "<=" => v <= c,
            "~>" => {
                // The last given part may grow: ~> 0.111 means >= 0.111.0, < 1.0.0;
                // ~> 0.111.1 means >= 0.111.1, < 0.112.0.
                let mut upper = c;
                let bump = parts.saturating_sub(2).min(1);
                if parts == 1 {
                    // `~> 1` behaves like `>= 1.0.0` (any later version).
                    upper = [u64::MAX, 0, 0];
                } else {
                    upper[bump] += 1;
                    for x in upper.iter_mut().skip(bump + 1) {
                        *x = 0;
                    }
                }
                v >= c && v < upper
            }
            _ => unreachable!(),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn parse_version(s: &str) -> Result<([u64; 3], usize), String> {
    let s = s.trim().trim_start_matches('v');
    let core = s.split(['-', '+']).next().unwrap_or(s);
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty() || parts.len() > 3 {
        return Err(format!("`{s}` is not a version"));
    }
    let mut out = [0u64; 3];
    for (i, p) in parts.iter().enumerate() {
        out[i] = p.parse().map_err(|_| format!("`{s}` is not a version"))?;
    }
    Ok((out, parts.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid configuration for the real fixture; the tests below break it one way
    /// at a time.
    const GOOD: &str = r#"
terraform {
  required_providers {
    proxmox = {
      source  = "bpg/proxmox"
      version = "~> 0.111"
    }
  }
}

provider "proxmox" {}

variable "node" {
  type = string
}

resource "proxmox_virtual_environment_container" "ct" {
  node_name = var.node

  network_interface {
    name = "eth0"
  }

  operating_system {
    template_file_id = "local:vztmpl/debian.tar.zst"
    type             = "debian"
  }
}

output "ip" {
  value = try(proxmox_virtual_environment_container.ct.ipv4["eth0"], null)
}
"#;

    fn bad(replace: &str, with: &str) -> Problems {
        assert!(GOOD.contains(replace), "test bug: {replace:?} not in GOOD");
        let text = GOOD.replacen(replace, with, 1);
        match Checker::bpg().check(&text) {
            Ok(_) => panic!("the checker accepted a broken configuration:\n{text}"),
            Err(p) => p,
        }
    }

    #[test]
    fn accepts_a_valid_configuration() {
        let config = Checker::bpg().assert_valid(GOOD);
        assert!(config.variables.contains_key("node"));
        assert!(
            config
                .resource("proxmox_virtual_environment_container", "ct")
                .is_some()
        );
        assert!(config.outputs.contains("ip"));
    }

    #[test]
    fn rejects_an_unknown_attribute() {
        let p = bad(
            "node_name = var.node",
            "node_name = var.node\n  nodename = \"x\"",
        );
        assert!(p.mentions("unknown attribute `nodename`"), "{p}");
        assert!(p.mentions("proxmox_virtual_environment_container"), "{p}");
    }

    #[test]
    fn rejects_an_unknown_nested_attribute() {
        let p = bad("name = \"eth0\"", "name = \"eth0\"\n    vlan = 5");
        assert!(
            p.mentions("network_interface[0]: unknown attribute `vlan`"),
            "{p}"
        );
    }

    #[test]
    fn rejects_an_unknown_block() {
        let p = bad(
            "  network_interface {",
            "  timeouts {\n    create = \"5m\"\n  }\n\n  network_interface {",
        );
        assert!(p.mentions("unknown block `timeouts`"), "{p}");
    }

    #[test]
    fn rejects_a_missing_required_attribute() {
        let p = bad("    name = \"eth0\"\n", "");
        assert!(
            p.mentions("network_interface[0]: missing required attribute `name`"),
            "{p}"
        );
        let p = bad("  node_name = var.node\n", "");
        assert!(p.mentions("missing required attribute `node_name`"), "{p}");
    }

    #[test]
    fn rejects_blocks_and_attributes_swapped() {
        let p = bad(
            "  network_interface {",
            "  cpu = { cores = 2 }\n\n  network_interface {",
        );
        assert!(p.mentions("`cpu` is a block"), "{p}");
        let p = bad(
            "  network_interface {",
            "  tags {\n  }\n\n  network_interface {",
        );
        assert!(p.mentions("`tags` is an attribute"), "{p}");
    }

    #[test]
    fn rejects_read_only_attributes_and_too_many_blocks() {
        let p = bad("node_name = var.node", "node_name = var.node\n  ipv4 = {}");
        assert!(p.mentions("`ipv4` is read-only"), "{p}");
        let p = bad(
            "  network_interface {",
            "  cpu {\n  }\n\n  cpu {\n  }\n\n  network_interface {",
        );
        assert!(p.mentions("block `cpu` appears 2 times, at most 1"), "{p}");
    }

    #[test]
    fn rejects_wrong_literal_types_and_values() {
        let p = bad(
            "type             = \"debian\"",
            "type             = \"windows\"",
        );
        assert!(p.mentions("\"windows\" is not one of"), "{p}");
        let p = bad("name = \"eth0\"", "name = \"eth0\"\n    vlan_id = \"ten\"");
        assert!(
            p.mentions("`vlan_id` is `number`, but the value is a string"),
            "{p}"
        );
        let p = bad("type = string", "type = number");
        assert!(p.mentions("var.node is declared as `number`"), "{p}");
    }

    #[test]
    fn rejects_unknown_resource_types_and_references() {
        let p = bad(
            "resource \"proxmox_virtual_environment_container\" \"ct\"",
            "resource \"proxmox_lxc\" \"ct\"",
        );
        assert!(p.mentions("unknown resource type `proxmox_lxc`"), "{p}");
        let p = bad("node_name = var.node", "node_name = var.nod");
        assert!(
            p.mentions("var.nod is used but no `variable \"nod\"`"),
            "{p}"
        );
        let p = bad(".ct.ipv4[", ".ct.ip_v4[");
        assert!(p.mentions("has no attribute `ip_v4`"), "{p}");
        let p = bad("container.ct.ipv4", "container.other.ipv4");
        assert!(
            p.mentions("container.other is used but no such resource"),
            "{p}"
        );
    }

    #[test]
    fn rejects_a_provider_that_is_not_the_fixtures() {
        let p = bad("source  = \"bpg/proxmox\"", "source  = \"telmate/proxmox\"");
        assert!(p.mentions("not \"bpg/proxmox\""), "{p}");
        let p = bad("version = \"~> 0.111\"", "version = \"~> 0.70.0\"");
        assert!(p.mentions("does not admit"), "{p}");
        let p = bad(
            "provider \"proxmox\" {}",
            "provider \"proxmox\" {\n  insecur = true\n}",
        );
        assert!(
            p.mentions("provider \"proxmox\": unknown attribute `insecur`"),
            "{p}"
        );
    }

    #[test]
    fn rejects_unknown_functions_and_bad_arity_when_given_signatures() {
        let sigs = r#"{"format_version":"1.0","function_signatures":{
            "try":{"return_type":"dynamic","variadic_parameter":{"name":"e","type":"dynamic"}},
            "lower":{"return_type":"string","parameters":[{"name":"s","type":"string"}]}}}"#;
        let checker = Checker::bpg().with_functions(sigs).unwrap();
        checker.assert_valid(GOOD);
        let text = GOOD.replace("value = try(", "value = tryy(");
        let p = checker.check(&text).unwrap_err();
        assert!(p.mentions("unknown function `tryy()`"), "{p}");
        let text = GOOD.replace("node_name = var.node", "node_name = lower(var.node, 1)");
        let p = checker.check(&text).unwrap_err();
        assert!(p.mentions("`lower()` takes 1 argument(s), 2 given"), "{p}");
    }

    #[test]
    fn small_schema_min_items_config_mode_and_same_schema_as() {
        let schema = r#"{
          "provider_source": "example/x", "provider_version": "1.2.3",
          "provider": {"attributes": {}, "blocks": {}},
          "resources": {
            "x_thing": {"attributes": {"name": {"type": "string", "required": true}},
                        "blocks": {
                          "must": {"nesting": "list", "min_items": 1, "max_items": 1,
                                   "block": {"attributes": {}, "blocks": {}}},
                          "devs": {"nesting": "list", "min_items": 0, "max_items": 2,
                                   "config_mode": "attr",
                                   "block": {"attributes": {"b": {"type": "string"}}, "blocks": {}}}}},
            "x_alias": {"same_schema_as": "x_thing"}
          }
        }"#;
        let checker = Checker::from_json(schema).unwrap();
        let head = "terraform {\n  required_providers {\n    x = {\n      source  = \"example/x\"\n      version = \">= 1.0, < 2.0\"\n    }\n  }\n}\n";
        checker.assert_valid(&format!(
            "{head}resource \"x_alias\" \"a\" {{\n  name = \"n\"\n  must {{}}\n  devs = [{{ b = \"1\" }}]\n}}\n"
        ));
        let p = checker
            .check(&format!(
                "{head}resource \"x_thing\" \"a\" {{\n  name = \"n\"\n}}\n"
            ))
            .unwrap_err();
        assert!(
            p.mentions("block `must` appears 0 time(s), at least 1"),
            "{p}"
        );
        let p = checker
            .check(&format!(
                "{head}resource \"x_thing\" \"a\" {{\n  name = \"n\"\n  must {{}}\n  devs = [{{}}, {{}}, {{}}]\n}}\n"
            ))
            .unwrap_err();
        assert!(p.mentions("`devs` has 3 items, at most 2"), "{p}");
    }

    #[test]
    fn tfvars_must_match_declared_variables() {
        let config = Checker::bpg().assert_valid(
            &GOOD.replace(
                "variable \"node\" {\n  type = string\n}",
                "variable \"node\" {\n  type = string\n}\n\nvariable \"tags\" {\n  type    = list(string)\n  default = null\n}",
            ),
        );
        config
            .check_tfvars(&serde_json::json!({"node": "pve", "tags": ["a"]}))
            .unwrap();
        config
            .check_tfvars(&serde_json::json!({"node": "pve"}))
            .unwrap();
        let p = config
            .check_tfvars(&serde_json::json!({"tags": []}))
            .unwrap_err();
        assert!(p.mentions("`node` has no default and is not set"), "{p}");
        let p = config
            .check_tfvars(&serde_json::json!({"node": "pve", "extra": 1}))
            .unwrap_err();
        assert!(
            p.mentions("`extra` is set but no `variable \"extra\"`"),
            "{p}"
        );
        let p = config
            .check_tfvars(&serde_json::json!({"node": 7, "tags": [1]}))
            .unwrap_err();
        assert!(p.mentions("`node` = 7 does not fit"), "{p}");
        assert!(p.mentions("`tags` = [1] does not fit"), "{p}");
    }

    #[test]
    fn version_constraints() {
        assert!(version_admits("~> 0.111", "0.111.1").unwrap());
        assert!(version_admits("~> 0.111", "0.120.0").unwrap());
        assert!(!version_admits("~> 0.111", "1.0.0").unwrap());
        assert!(!version_admits("~> 0.111", "0.110.9").unwrap());
        assert!(version_admits("~> 0.111.0", "0.111.1").unwrap());
        assert!(!version_admits("~> 0.111.0", "0.112.0").unwrap());
        assert!(version_admits(">= 0.100, < 1.0", "0.111.1").unwrap());
        assert!(!version_admits("= 0.111.0", "0.111.1").unwrap());
        assert!(version_admits("nonsense", "0.1.0").is_err());
    }

    #[test]
    fn syntax_errors_are_problems() {
        let p = Checker::bpg().check("resource \"a\" {").unwrap_err();
        assert!(p.mentions("HCL syntax"), "{p}");
    }
}
