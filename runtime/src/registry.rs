//! The deployed workflows and calendars: loading, reloading, and every version still in use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use clearflow_core::workflow::NodeKind;
use clearflow_core::{Catalog, Diagnostic, Workflow};
use clearflow_templates::Templates;
use clearflow_time::Calendars;

use crate::directory::{Directory, DirectoryError};
use clearflow_store::{Store, StoreError};

/// A problem found while loading a deployment: [`Registry::reload`] returns every one.
#[derive(Debug, thiserror::Error)]
pub enum ReloadProblem {
    /// A calendar file is invalid.
    #[error("calendar: {0}")]
    Calendar(clearflow_time::CalendarError),
    /// A template is invalid.
    #[error("template: {0}")]
    Template(clearflow_templates::TemplateError),
    /// The users file is invalid.
    #[error(transparent)]
    Directory(DirectoryError),
    /// A workflow file has an error or a warning.
    #[error("{0}")]
    Workflow(Diagnostic),
    /// A workflow whose file broke keeps running on its last good version.
    #[error("{file}: keeping the previous version of `{workflow}` active")]
    KeptPrevious {
        /// The broken file.
        file: String,
        /// The workflow kept.
        workflow: String,
    },
    /// A reload with errors is refused whole; the running deployment stays.
    #[error(
        "reload refused: {errors} error(s); the running deployment (workflows, calendars, templates and users) stays until they are fixed"
    )]
    Refused {
        /// How many errors.
        errors: usize,
    },
    /// A workflow version could not be recorded in the store.
    #[error("storing version of `{workflow}`: {error}")]
    StoreVersion {
        /// The workflow.
        workflow: String,
        /// Why.
        error: StoreError,
    },
}

impl ReloadProblem {
    /// Whether it is only a warning (a workflow diagnostic of severity warning, or the
    /// note that a previous version stays active).
    pub fn is_warning(&self) -> bool {
        match self {
            ReloadProblem::Workflow(d) => d.severity == clearflow_core::Severity::Warning,
            ReloadProblem::KeptPrevious { .. } => true,
            _ => false,
        }
    }
}

/// What the engine runs: the current deployment (one immutable snapshot, swapped whole),
/// and old workflow versions on demand.
pub struct Registry {
    deployment: RwLock<Arc<Deployment>>,
    versions: RwLock<HashMap<String, Arc<Workflow>>>,
    /// Clock time (ms) of the last reload: a schedule changed by it counts its fire times
    /// from then, however late the scheduler notices.
    loaded_at: AtomicI64,
}

/// One consistent deployment: workflows, calendars, templates and users as one reload
/// found them. An engine round reads one snapshot from start to commit.
#[derive(Default)]
pub struct Deployment {
    catalog: Arc<Catalog>,
    calendars: Arc<Calendars>,
    templates: Option<Templates>,
    directory: Arc<Directory>,
}

impl Deployment {
    /// The deployed workflows.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }
    /// The working-day calendars.
    pub fn calendars(&self) -> &Arc<Calendars> {
        &self.calendars
    }
    /// The email templates, when a templates folder exists.
    pub fn templates(&self) -> Option<&Templates> {
        self.templates.as_ref()
    }
    /// The users.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }
}

/// Why a workflow version cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// The store failed.
    #[error("reading workflow version {hash}: {source}")]
    Store {
        /// The definition hash.
        hash: String,
        /// What failed.
        source: clearflow_store::StoreError,
    },
    /// No such version was ever deployed here.
    #[error("workflow version {0} is not in the store")]
    Missing(String),
    /// The stored source no longer compiles (every diagnostic, joined).
    #[error("workflow version {hash} no longer compiles: {diagnostics}")]
    Invalid {
        /// The definition hash.
        hash: String,
        /// Every diagnostic, `file:line:column: message`, joined by `; `.
        diagnostics: String,
    },
}

/// Where the deployed files are.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Workflow files.
    pub workflows: PathBuf,
    /// Calendars.
    pub calendars: PathBuf,
    /// Email templates.
    pub templates: PathBuf,
    /// The users file.
    pub users: Option<PathBuf>,
    /// The bounds a workflow must keep to load (`[limits]`).
    pub limits: clearflow_core::Limits,
}

/// The result of reading a folder of workflow files.
pub struct Loaded {
    /// The valid workflows.
    pub workflows: Vec<Arc<Workflow>>,
    /// Every problem, in every file.
    pub diagnostics: Vec<Diagnostic>,
}

/// The workflow files in `dir` (`*.yaml`, `*.yml`; not recursive), sorted.
pub fn workflow_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads and compiles files (or every workflow file of folders), then checks them together
/// and, when `templates` are given, checks every notify step against them.
pub fn load_paths(
    paths: &[PathBuf],
    templates: Option<&Templates>,
    limits: &clearflow_core::Limits,
) -> Loaded {
    let mut files = Vec::new();
    let mut diagnostics = Vec::new();
    for p in paths {
        if p.is_dir() {
            match workflow_files(p) {
                Ok(f) => files.extend(f),
                Err(e) => diagnostics.push(io_diag(p, &e)),
            }
        } else {
            files.push(p.clone());
        }
    }
    let mut workflows = Vec::new();
    for f in files {
        let name = f.display().to_string();
        match std::fs::read_to_string(&f) {
            Ok(src) => match clearflow_core::compile::load_with_limits(&name, &src, limits) {
                Ok(wf) => workflows.push(Arc::new(wf)),
                Err(d) => diagnostics.extend(d),
            },
            Err(e) => diagnostics.push(io_diag(&f, &e)),
        }
    }
    if let Some(t) = templates {
        workflows.retain(|wf| {
            let problems = check_templates(wf, t);
            let ok = problems.is_empty();
            diagnostics.extend(problems);
            ok
        });
    }
    let (catalog, cross) = Catalog::build(workflows);
    diagnostics.extend(cross);
    Loaded {
        workflows: catalog.workflows.into_values().collect(),
        diagnostics,
    }
}

/// Every notify step's template must exist and read only what the step provides.
pub fn check_templates(wf: &Workflow, templates: &Templates) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for node in &wf.nodes {
        let NodeKind::Notify(n) = &node.kind else {
            continue;
        };
        let mut provided: std::collections::BTreeSet<String> = clearflow_templates::ALWAYS_PROVIDED
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        if let Some(clearflow_core::expr::Template::Object(entries)) = &n.data {
            provided.extend(entries.iter().map(|(k, _)| k.clone()));
        }
        provided.extend(n.lists.iter().map(|q| q.name.clone()));
        if let Err(problems) = templates.check(&n.template, &provided) {
            for p in problems {
                out.push(
                    Diagnostic::error(
                        &wf.file,
                        node.pos,
                        format!("step `{}`: template `{}`: {p}", node.id, n.template),
                    )
                    .with_hint("give the value in the step's `data:`, or change the template"),
                );
            }
        }
    }
    out
}

fn io_diag(p: &Path, e: &std::io::Error) -> Diagnostic {
    Diagnostic::error(
        &p.display().to_string(),
        clearflow_core::Pos { line: 1, col: 1 },
        format!("cannot read: {e}"),
    )
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry {
            deployment: RwLock::new(Arc::new(Deployment::default())),
            versions: RwLock::new(HashMap::new()),
            loaded_at: AtomicI64::new(i64::MAX),
        }
    }

    /// Loads the workflows, calendars, templates and users into a new deployment and
    /// swaps it in whole. The first load takes what is valid (a workflow whose file is
    /// invalid is left out); a later reload with any error is refused whole and the
    /// running deployment stays. Records every version in the store. Returns the problems
    /// found (the caller logs them).
    pub async fn reload(
        &self,
        src: &Sources,
        plugins: &[String],
        store: &Store,
        now: i64,
    ) -> Vec<ReloadProblem> {
        let previous = self.deployment();
        let first = self.loaded_at() == i64::MAX;
        let mut problems = Vec::new();
        let mut errors = 0usize;
        let mut calendars = previous.calendars.clone();
        if src.calendars.exists() {
            match clearflow_time::load_dir(&src.calendars) {
                Ok(c) => calendars = Arc::new(c),
                Err(e) => {
                    errors += e.len();
                    problems.extend(e.into_iter().map(ReloadProblem::Calendar));
                }
            }
        }
        let mut templates = previous.templates.clone();
        if src.templates.exists() {
            match clearflow_templates::load_dir(&src.templates) {
                Ok(t) => templates = Some(t),
                Err(e) => {
                    errors += e.len();
                    problems.extend(e.into_iter().map(ReloadProblem::Template));
                }
            }
        }
        let mut directory = previous.directory.clone();
        if let Some(users) = &src.users {
            match Directory::load(users) {
                Ok(d) => directory = Arc::new(d),
                Err(e) => {
                    errors += e.len();
                    problems.extend(e.into_iter().map(ReloadProblem::Directory));
                }
            }
        }
        let mut loaded = load_paths(
            std::slice::from_ref(&src.workflows),
            templates.as_ref(),
            &src.limits,
        );
        // A plugin step must name a declared plugin; otherwise the workflow is refused.
        loaded.workflows.retain(|wf| {
            let missing: Vec<Diagnostic> = wf
                .nodes
                .iter()
                .filter_map(|n| match &n.kind {
                    NodeKind::Plugin(p) if !plugins.contains(&p.plugin) => Some(
                        Diagnostic::error(
                            &wf.file,
                            n.pos,
                            format!(
                                "step `{}` calls plugin `{}`, which is not declared",
                                n.id, p.plugin
                            ),
                        )
                        .with_hint(format!(
                            "declare it in the configuration's [[plugins]] (declared: {})",
                            plugins.join(", ")
                        )),
                    ),
                    _ => None,
                })
                .collect();
            let ok = missing.is_empty();
            loaded.diagnostics.extend(missing);
            ok
        });
        errors += loaded
            .diagnostics
            .iter()
            .filter(|d| d.severity == clearflow_core::Severity::Error)
            .count();
        problems.extend(
            loaded
                .diagnostics
                .iter()
                .cloned()
                .map(ReloadProblem::Workflow),
        );
        let previous_catalog = previous.catalog.clone();
        let mut fresh: HashMap<String, Arc<Workflow>> = loaded
            .workflows
            .into_iter()
            .map(|w| (w.id.clone(), w))
            .collect();
        // A workflow whose file broke keeps running on its last good version.
        for (id, wf) in &previous_catalog.workflows {
            let file_broken = loaded
                .diagnostics
                .iter()
                .any(|d| d.file == wf.file && d.severity == clearflow_core::Severity::Error);
            if !fresh.contains_key(id) && file_broken {
                fresh.insert(id.clone(), wf.clone());
                problems.push(ReloadProblem::KeptPrevious {
                    file: wf.file.clone(),
                    workflow: id.clone(),
                });
            }
        }
        if errors > 0 && !first {
            problems.push(ReloadProblem::Refused { errors });
            return problems;
        }
        let (catalog, _) = Catalog::build(fresh.into_values().collect());
        for wf in catalog.workflows.values() {
            if let Err(e) = store
                .save_definition(&wf.hash, &wf.id, &wf.file, &wf.source, now)
                .await
            {
                problems.push(ReloadProblem::StoreVersion {
                    workflow: wf.id.clone(),
                    error: e,
                });
            }
            self.versions
                .write()
                .expect("lock")
                .insert(wf.hash.clone(), wf.clone());
        }
        *self.deployment.write().expect("lock") = Arc::new(Deployment {
            catalog: Arc::new(catalog),
            calendars,
            templates,
            directory,
        });
        self.loaded_at.store(now, Ordering::Release);
        problems
    }

    /// Clock time (ms) of the last reload (`i64::MAX` before the first).
    pub fn loaded_at(&self) -> i64 {
        self.loaded_at.load(Ordering::Acquire)
    }

    /// The current deployment, one consistent snapshot.
    pub fn deployment(&self) -> Arc<Deployment> {
        self.deployment.read().expect("lock").clone()
    }

    /// The current catalog.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.deployment().catalog.clone()
    }

    /// The calendars.
    pub fn calendars(&self) -> Arc<Calendars> {
        self.deployment().calendars.clone()
    }

    /// The email templates, when a templates folder exists.
    pub fn templates(&self) -> Option<Templates> {
        self.deployment().templates.clone()
    }

    /// The users.
    pub fn directory(&self) -> Arc<Directory> {
        self.deployment().directory.clone()
    }

    /// The version `hash`, compiling it from the store when it is not in memory
    /// (an instance started before a redeploy and a restart).
    pub async fn version(&self, hash: &str, store: &Store) -> Result<Arc<Workflow>, VersionError> {
        if let Some(wf) = self.versions.read().expect("lock").get(hash) {
            return Ok(wf.clone());
        }
        let Some((file, source)) =
            store
                .definition(hash)
                .await
                .map_err(|source| VersionError::Store {
                    hash: hash.to_owned(),
                    source,
                })?
        else {
            return Err(VersionError::Missing(hash.to_owned()));
        };
        let wf = clearflow_core::load(&file, &source).map_err(|d| VersionError::Invalid {
            hash: hash.to_owned(),
            diagnostics: d
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        })?;
        let wf = Arc::new(wf);
        self.versions
            .write()
            .expect("lock")
            .insert(hash.to_owned(), wf.clone());
        Ok(wf)
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}
