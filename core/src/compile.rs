//! Checking a parsed workflow and compiling it to a [`Workflow`], every problem at once.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono_tz::Tz;
use clearflow_time::Span;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::definition::{
    self, AwaitDef, EndDef, JoinDef, JoinMode, StepDef, WorkflowDef, did_you_mean,
};
use crate::diag::{Diagnostic, Pos, Sink};
use crate::expr::{Expr, Template};
use crate::limits::Limits;
use crate::workflow::*;
use crate::yaml::{Node as YamlNode, Seg};

/// Names every expression may read besides step results.
pub const ROOT_NAMES: &[&str] = &["input", "vars", "instance", "now", "links"];

/// The default timezone of workflows and schedules.
pub const DEFAULT_TIMEZONE: Tz = chrono_tz::Asia::Shanghai;

/// Reads, checks and compiles one workflow file, with the default [`Limits`].
pub fn load(file: &str, src: &str) -> Result<Workflow, Vec<Diagnostic>> {
    load_with_limits(file, src, &Limits::default())
}

/// Reads, checks and compiles one workflow file; a `parallel` with more branches than
/// [`Limits::parallel_branches`] is an error at the step.
pub fn load_with_limits(
    file: &str,
    src: &str,
    limits: &Limits,
) -> Result<Workflow, Vec<Diagnostic>> {
    let (def, root) = definition::parse(file, src)?;
    let hash = hex(&Sha256::digest(src.as_bytes()));
    compile(file, src, &hash, &def, &root, limits)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One step before compilation, with where it sits.
struct Flat<'a> {
    def: &'a StepDef,
    id: String,
    named: bool,
    path: Vec<Seg>,
    /// The sequence (step list) the step belongs to.
    scope: usize,
    /// Where control goes when the step finishes normally.
    fallthrough: Next,
}

struct Compiler<'a> {
    root: &'a YamlNode,
    sink: Sink,
    flat: Vec<Flat<'a>>,
    ids: HashMap<String, NodeId>,
    /// The parallel node owning each scope (None for the top level).
    scope_owner: Vec<Option<NodeId>>,
    /// Result-producing step ids and what their result's keys are, when known.
    results: HashMap<String, Option<BTreeSet<String>>>,
    input_keys: Option<BTreeSet<String>>,
    vars: BTreeSet<String>,
    links: BTreeSet<String>,
    has_calendar: bool,
    /// [`Limits::parallel_branches`].
    max_branches: u32,
}

fn compile(
    file: &str,
    src: &str,
    hash: &str,
    def: &WorkflowDef,
    root: &YamlNode,
    limits: &Limits,
) -> Result<Workflow, Vec<Diagnostic>> {
    let mut c = Compiler {
        max_branches: limits.parallel_branches,
        root,
        sink: Sink::new(file),
        flat: Vec::new(),
        ids: HashMap::new(),
        scope_owner: Vec::new(),
        results: HashMap::new(),
        input_keys: None,
        vars: BTreeSet::new(),
        links: BTreeSet::new(),
        has_calendar: def.calendar.is_some(),
    };
    let at = |path: &[Seg]| root.locate_value(path);
    let key = |k: &str| vec![Seg::Key(k.into())];

    if !valid_workflow_id(&def.id) {
        c.sink
            .error(at(&key("id")), format!("invalid workflow id `{}`", def.id))
            .hint("use lowercase letters, digits and `-`, starting with a letter");
    }
    let timezone = match &def.timezone {
        None => DEFAULT_TIMEZONE,
        Some(tz) => tz.parse::<Tz>().unwrap_or_else(|_| {
            c.sink
                .error(at(&key("timezone")), format!("unknown timezone `{tz}`"))
                .hint("use an IANA name such as `Asia/Shanghai`");
            DEFAULT_TIMEZONE
        }),
    };
    let input_schema = def.input.as_ref().and_then(|s| c.schema(s, &key("input")));
    c.input_keys = def.input.as_ref().and_then(schema_keys);
    if def.steps.is_empty() {
        c.sink
            .error(at(&key("steps")), "a workflow needs at least one step");
    }

    // Pass 1: flatten the step tree, give every step an id, find duplicates.
    c.scope_owner.push(None);
    c.flatten(&def.steps, &key("steps"), 0, None, Next::End);
    for (alias_idx, s) in def.on_start.iter().enumerate() {
        if !c.links.insert(s.alias.clone()) {
            c.sink.error(
                at(&[
                    Seg::Key("on_start".into()),
                    Seg::Index(alias_idx),
                    Seg::Key("as".into()),
                ]),
                format!("duplicate link name `{}`", s.alias),
            );
        }
    }
    c.collect_names();

    // Pass 2: compile every step.
    let mut nodes = Vec::with_capacity(c.flat.len());
    for idx in 0..c.flat.len() {
        nodes.push(c.node(idx as NodeId));
    }

    let on_start = def
        .on_start
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let path = vec![Seg::Key("on_start".into()), Seg::Index(i)];
            ConcurrentStart {
                pos: c.at(&path),
                workflow: s.start.clone(),
                alias: s.alias.clone(),
                input: s
                    .input
                    .as_ref()
                    .map(|v| c.template(v, &[path.clone(), key("input")].concat())),
            }
        })
        .collect();
    let schedules = c.schedules(def, timezone);
    let identity_read = c.identity_read(def);

    let wf = Workflow {
        id: def.id.clone(),
        id_pos: at(&key("id")),
        hash: hash.to_owned(),
        file: file.to_owned(),
        source: src.to_owned(),
        title: def.title.clone(),
        calendar: def.calendar.clone(),
        timezone,
        input_schema,
        roles: def.roles.clone(),
        on_start,
        schedules,
        identity_read,
        ids: c.ids.clone(),
        nodes,
    };
    c.check_graph(&wf);
    if c.sink.has_errors() {
        Err(c.sink.finish())
    } else {
        Ok(wf)
    }
}

fn valid_workflow_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn valid_step_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The property names of an object schema, when it declares them.
fn schema_keys(schema: &Value) -> Option<BTreeSet<String>> {
    let props = schema.get("properties")?.as_object()?;
    if schema
        .get("additionalProperties")
        .is_some_and(|a| a != &Value::Bool(false))
    {
        return None;
    }
    Some(props.keys().cloned().collect())
}

/// The kind fields of a step that are present.
fn kinds(s: &StepDef) -> Vec<&'static str> {
    let mut k = Vec::new();
    if s.plugin.is_some() {
        k.push("plugin");
    }
    if s.task.is_some() {
        k.push("task");
    }
    if s.notify.is_some() {
        k.push("notify");
    }
    if s.switch.is_some() {
        k.push("switch");
    }
    if s.parallel.is_some() {
        k.push("parallel");
    }
    if s.wait.is_some() {
        k.push("wait");
    }
    if s.set.is_some() {
        k.push("set");
    }
    if s.end.is_some() {
        k.push("end");
    }
    if s.start.is_some() {
        k.push("start");
    }
    if s.await_.is_some() {
        k.push("await");
    }
    if s.goto.is_some() {
        k.push("goto");
    }
    k
}

impl<'a> Compiler<'a> {
    fn at(&self, path: &[Seg]) -> Pos {
        self.root.locate_value(path)
    }

    fn error(&mut self, path: &[Seg], msg: impl Into<String>) -> &mut Diagnostic {
        let pos = self.at(path);
        self.sink.error(pos, msg)
    }

    fn flatten(
        &mut self,
        steps: &'a [StepDef],
        base: &[Seg],
        scope: usize,
        owner: Option<NodeId>,
        end: Next,
    ) {
        let first = self.flat.len() as NodeId;
        let count = steps.len() as NodeId;
        for (i, s) in steps.iter().enumerate() {
            let idx = self.flat.len() as NodeId;
            let mut path = base.to_vec();
            path.push(Seg::Index(i));
            let (id, named) = match &s.id {
                Some(id) => (id.clone(), true),
                None => (format!("_{}", idx), false),
            };
            if named {
                if !valid_step_id(&id) {
                    self.error(&[path.clone(), vec![Seg::Key("id".into())]].concat(), format!("invalid step id `{id}`"))
                        .hint("use lowercase letters, digits and `_`, starting with a letter, so expressions can read its result");
                } else if self.ids.contains_key(&id) || ROOT_NAMES.contains(&id.as_str()) {
                    self.error(
                        &[path.clone(), vec![Seg::Key("id".into())]].concat(),
                        format!("duplicate step id `{id}`"),
                    )
                    .hint(if ROOT_NAMES.contains(&id.as_str()) {
                        "this name is reserved for expressions; pick another"
                    } else {
                        "step ids must be unique in the whole workflow, branches included"
                    });
                }
                self.ids.entry(id.clone()).or_insert(idx);
            }
            let _ = (first, count);
            self.flat.push(Flat {
                def: s,
                id,
                named,
                path,
                scope,
                fallthrough: end,
            });
            let kinds = kinds(s);
            if kinds.len() != 1 {
                let path = self.flat[idx as usize].path.clone();
                let msg = if kinds.is_empty() {
                    "step does nothing: it needs one of plugin, task, notify, switch, parallel, wait, set, end, start, await, goto".to_owned()
                } else {
                    format!(
                        "step has several kinds ({}); a step does exactly one thing",
                        kinds.join(", ")
                    )
                };
                self.error(&path, msg).hint("split it into several steps");
            }
            if let Some(p) = &s.parallel {
                for (b, branch) in p.branches.iter().enumerate() {
                    let scope_id = self.scope_owner.len();
                    self.scope_owner.push(Some(idx));
                    let mut bpath = self.flat[idx as usize].path.clone();
                    bpath.extend([
                        Seg::Key("parallel".into()),
                        Seg::Key("branches".into()),
                        Seg::Index(b),
                        Seg::Key("steps".into()),
                    ]);
                    self.flatten(
                        &branch.steps,
                        &bpath,
                        scope_id,
                        Some(idx),
                        Next::BranchEnd(idx),
                    );
                }
            }
        }
        let _ = owner;
        // Link each step to the following one of the same sequence.
        let members: Vec<usize> = (first as usize..self.flat.len())
            .filter(|&i| self.flat[i].scope == scope)
            .collect();
        for w in members.windows(2) {
            self.flat[w[0]].fallthrough = Next::Node(w[1] as NodeId);
        }
    }

    /// Records which names expressions may read: step results, variables, links.
    fn collect_names(&mut self) {
        for f in &self.flat {
            if let Some(vars) = &f.def.set {
                self.vars.extend(vars.keys().cloned());
            }
            if let Some(start) = &f.def.start {
                if let Some(alias) = &start.alias {
                    self.links.insert(alias.clone());
                } else if f.named {
                    self.links.insert(f.id.clone());
                }
            }
            if !f.named {
                continue;
            }
            let keys = if let Some(task) = &f.def.task {
                task.form.as_ref().and_then(schema_keys)
            } else if f.def.plugin.is_some() {
                f.def.output.as_ref().and_then(schema_keys)
            } else if let Some(vars) = &f.def.set {
                // The engine binds what a `set` step set, a switch's choice and a
                // notification's receipt under the step id, like any other result.
                Some(vars.keys().cloned().collect())
            } else if f.def.switch.is_some() {
                Some(["case", "goto"].map(String::from).into())
            } else if f.def.notify.is_some() {
                Some(["queued", "recipients"].map(String::from).into())
            } else if f.def.wait.is_some() || f.def.await_.is_some() || f.def.start.is_some() {
                None
            } else {
                continue;
            };
            self.results.insert(f.id.clone(), keys);
        }
    }

    fn schema(&mut self, schema: &Value, path: &[Seg]) -> Option<Schema> {
        match jsonschema::validator_for(schema) {
            Ok(v) => Some(Schema {
                json: schema.clone(),
                validator: Arc::new(v),
            }),
            Err(e) => {
                self.error(path, format!("invalid JSON Schema: {e}"));
                None
            }
        }
    }

    fn span(&mut self, text: &str, path: &[Seg]) -> Option<Span> {
        match text.parse::<Span>() {
            Ok(span) => {
                if span.unit() == clearflow_time::Unit::WorkingDays && !self.has_calendar {
                    self.error(
                        path,
                        format!("`{text}` counts working days but the workflow has no `calendar`"),
                    )
                    .hint("add `calendar: cn-mainland` at the top of the file");
                }
                Some(span)
            }
            Err(e) => {
                self.error(path, format!("bad duration `{text}`: {e}"))
                    .hint("write a number and a unit: s, m (minutes), h, d, wd (working days), w, mo (months), y");
                None
            }
        }
    }

    /// The `identity_read:` rule: never, or an approval step (a task) with the expression
    /// that must be true, or (absent) the permission alone.
    fn identity_read(&mut self, def: &WorkflowDef) -> IdentityRead {
        let Some(r) = &def.identity_read else {
            return IdentityRead::WithPermission;
        };
        let path = |k: &str| vec![Seg::Key("identity_read".into()), Seg::Key(k.into())];
        if !r.allowed {
            if r.approval.is_some() || r.granted.is_some() {
                self.error(
                    &path("allowed"),
                    "`identity_read` with `allowed: false` takes no `approval` or `granted`",
                )
                .hint("remove `approval` and `granted`, or `allowed: false`");
            }
            return IdentityRead::Never;
        }
        match (&r.approval, &r.granted) {
            (None, None) => IdentityRead::WithPermission,
            (Some(step), Some(granted)) => {
                let is_task = self
                    .ids
                    .get(step)
                    .is_some_and(|&n| self.flat[n as usize].def.task.is_some());
                if !is_task {
                    let known = self.ids.keys().map(String::as_str);
                    let hint = hint_from(step, known);
                    let d = self.error(
                        &path("approval"),
                        format!(
                            "`identity_read.approval`: `{step}` is not a task step of this workflow"
                        ),
                    );
                    if let Some(h) = hint {
                        d.hint(h);
                    }
                }
                match self.expr(granted, &path("granted")) {
                    Some(granted) => IdentityRead::Approved {
                        approval: step.clone(),
                        granted,
                    },
                    None => IdentityRead::Never,
                }
            }
            (Some(_), None) => {
                self.error(
                    &path("approval"),
                    "`identity_read.approval` needs `granted`",
                )
                .hint("say what must be true for a read, e.g. `granted: identity_request.granted`");
                IdentityRead::Never
            }
            (None, Some(_)) => {
                self.error(&path("granted"), "`identity_read.granted` needs `approval`")
                    .hint("name the task step that decides, e.g. `approval: identity_request`");
                IdentityRead::Never
            }
        }
    }

    /// Compiles an expression at `path` and checks the names it reads.
    fn expr(&mut self, src: &str, path: &[Seg]) -> Option<Expr> {
        match Expr::compile(src) {
            Ok(e) => {
                self.check_refs(&e, path);
                Some(e)
            }
            Err(err) => {
                let pos = self.root.locate_in(path, err.offset);
                self.sink.error(pos, err.message);
                None
            }
        }
    }

    fn template(&mut self, v: &Value, path: &[Seg]) -> Template {
        match Template::compile(v) {
            Ok(t) => {
                for (at, e) in t.exprs_at() {
                    self.check_refs(e, &[path.to_vec(), at].concat());
                }
                t
            }
            Err(errors) => {
                for err in errors {
                    let full = [path.to_vec(), err.path].concat();
                    let pos = self.root.locate_in(&full, err.error.offset);
                    self.sink.error(pos, err.error.message);
                }
                Template::Literal(Value::Null)
            }
        }
    }

    fn check_refs(&mut self, e: &Expr, path: &[Seg]) {
        for r in e.references() {
            let mut parts = r.split('.');
            let head = parts.next().unwrap_or_default();
            let second = parts.next();
            let problem = match head {
                "input" => match (&self.input_keys, second) {
                    (Some(keys), Some(k)) if !keys.contains(k) => Some((
                        format!("`{r}`: the input schema has no property `{k}`"),
                        hint_from(k, keys.iter().map(String::as_str)),
                    )),
                    _ => None,
                },
                "vars" => match second {
                    Some(k) if !self.vars.contains(k) => Some((
                        format!("`{r}`: no step sets the variable `{k}`"),
                        hint_from(k, self.vars.iter().map(String::as_str)),
                    )),
                    _ => None,
                },
                "links" => match second {
                    Some(k) if !self.links.contains(k) => Some((
                        format!("`{r}`: no link named `{k}`"),
                        hint_from(k, self.links.iter().map(String::as_str)),
                    )),
                    _ => None,
                },
                "instance" | "now" => None,
                step => match self.results.get(step) {
                    Some(Some(keys)) => match second {
                        Some(k) if !keys.contains(k) => Some((
                            format!("`{r}`: the result of step `{step}` has no field `{k}`"),
                            hint_from(k, keys.iter().map(String::as_str)),
                        )),
                        _ => None,
                    },
                    Some(None) => None,
                    None => {
                        let mut names: Vec<&str> = ROOT_NAMES.to_vec();
                        names.extend(self.results.keys().map(String::as_str));
                        let msg = if self.ids.contains_key(step) {
                            format!("`{r}`: step `{step}` has no result to read")
                        } else {
                            format!("`{r}`: unknown name `{step}`")
                        };
                        Some((
                            msg,
                            did_you_mean(step, &names)
                                .map(|s| format!("did you mean `{s}`?"))
                                .or(Some("expressions can read input, vars, instance, now, links and the results of named steps".into())),
                        ))
                    }
                },
            };
            if let Some((msg, hint)) = problem {
                let d = self.error(path, msg);
                if let Some(h) = hint {
                    d.hint(h);
                }
            }
        }
    }

    /// Resolves a jump target, which must be a step of the same sequence.
    fn target(&mut self, from: usize, target: &str, path: &[Seg]) -> Option<NodeId> {
        let Some(&to) = self.ids.get(target) else {
            let names: Vec<&str> = self.ids.keys().map(String::as_str).collect();
            let hint = did_you_mean(target, &names).map(|s| format!("did you mean `{s}`?"));
            let d = self.error(path, format!("jump to unknown step `{target}`"));
            if let Some(h) = hint {
                d.hint(h);
            }
            return None;
        };
        if self.flat[to as usize].scope != self.flat[from].scope {
            self.error(path, format!("jump to `{target}`, which is in another sequence"))
                .hint("a jump may only target a step of the same list of steps (a branch cannot jump out of its parallel step)");
            return None;
        }
        Some(to)
    }

    fn node(&mut self, idx: NodeId) -> Node {
        let f = &self.flat[idx as usize];
        let (def, path, id, named) = (f.def, f.path.clone(), f.id.clone(), f.named);
        let sub = |k: &str| [path.clone(), vec![Seg::Key(k.into())]].concat();
        let condition = def
            .condition
            .as_ref()
            .and_then(|c| self.expr(c, &sub("if")));
        let mut next = self.flat[idx as usize].fallthrough;
        if let Some(n) = &def.next
            && let Some(to) = self.target(idx as usize, n, &sub("next"))
        {
            next = Next::Node(to);
        }
        let kind = self.kind(idx, def, &path);
        Node {
            id,
            named,
            title: def.title.clone(),
            pos: self.at(&path),
            condition,
            next,
            kind,
        }
    }

    fn kind(&mut self, idx: NodeId, def: &StepDef, path: &[Seg]) -> NodeKind {
        let sub = |k: &[&str]| {
            let mut p = path.to_vec();
            p.extend(k.iter().map(|s| Seg::Key((*s).into())));
            p
        };
        let from = idx as usize;
        if let Some(plugin) = &def.plugin {
            let input = match &def.with {
                Some(v) => self.template(v, &sub(&["with"])),
                None => Template::Literal(Value::Object(Default::default())),
            };
            let output_schema = def
                .output
                .as_ref()
                .and_then(|s| self.schema(s, &sub(&["output"])));
            let mut retry = RetryPolicy::default();
            if let Some(r) = &def.retry {
                if let Some(a) = r.attempts {
                    if a == 0 {
                        self.error(
                            &sub(&["retry", "attempts"]),
                            "`attempts` counts the first try too and must be at least 1",
                        );
                    }
                    retry.attempts = a.max(1);
                }
                if let Some(b) = r.backoff {
                    retry.backoff = b;
                }
                for (field, slot) in [("initial", &r.initial), ("max", &r.max)] {
                    if let Some(text) = slot
                        && let Some(span) = self.span(text, &sub(&["retry", field]))
                    {
                        match span.exact() {
                            Some(d) if d > chrono::TimeDelta::zero() => {
                                let d = d.to_std().unwrap_or_default();
                                if field == "initial" {
                                    retry.initial = d;
                                } else {
                                    retry.max = d;
                                }
                            }
                            _ => {
                                self.error(
                                    &sub(&["retry", field]),
                                    format!(
                                        "`{text}` must be a positive exact duration (s, m or h)"
                                    ),
                                );
                            }
                        }
                    }
                }
                if let Some(j) = r.jitter {
                    if !(0.0..=1.0).contains(&j) {
                        self.error(
                            &sub(&["retry", "jitter"]),
                            format!("jitter {j} is outside 0.0 to 1.0"),
                        );
                    }
                    retry.jitter = j.clamp(0.0, 1.0);
                }
            }
            let timeout = def.timeout.as_ref().and_then(|t| {
                let span = self.span(t, &sub(&["timeout"]))?;
                if span.exact().is_none() {
                    self.error(
                        &sub(&["timeout"]),
                        format!("plugin timeout `{t}` must be exact (s, m or h)"),
                    );
                }
                Some(span)
            });
            return NodeKind::Plugin(PluginStep {
                plugin: plugin.clone(),
                input,
                output_schema,
                retry,
                timeout,
            });
        }
        for (field, present) in [
            ("with", def.with.is_some()),
            ("output", def.output.is_some()),
            ("retry", def.retry.is_some()),
            ("timeout", def.timeout.is_some()),
        ] {
            if present {
                self.error(
                    &sub(&[field]),
                    format!("`{field}` only applies to plugin steps"),
                );
            }
        }
        if let Some(t) = &def.task {
            return NodeKind::Task(self.task(from, t, &sub(&["task"])));
        }
        if let Some(n) = &def.notify {
            return NodeKind::Notify(self.notify(n, &sub(&["notify"])));
        }
        if let Some(cases) = &def.switch {
            let mut out = Vec::new();
            let mut seen_default = false;
            for (i, case) in cases.iter().enumerate() {
                let mut cpath = sub(&["switch"]);
                cpath.push(Seg::Index(i));
                if seen_default {
                    self.error(&cpath, "case after the default case can never be chosen")
                        .hint("the case without `when` must come last");
                }
                let when = match &case.when {
                    Some(w) => {
                        self.expr(w, &[cpath.clone(), vec![Seg::Key("when".into())]].concat())
                    }
                    None => {
                        seen_default = true;
                        None
                    }
                };
                if let Some(to) = self.target(
                    from,
                    &case.goto,
                    &[cpath, vec![Seg::Key("goto".into())]].concat(),
                ) {
                    out.push((when, to));
                }
            }
            if cases.is_empty() {
                self.error(&sub(&["switch"]), "`switch` needs at least one case");
            }
            return NodeKind::Switch(out);
        }
        if let Some(p) = &def.parallel {
            let n = p.branches.len() as u32;
            let join = match p.join {
                JoinDef::Mode(JoinMode::All) => Join::All,
                JoinDef::Mode(JoinMode::Any) => Join::Count(1),
                JoinDef::Count { n: k } => {
                    if k == 0 || k > n {
                        self.error(
                            &sub(&["parallel", "join"]),
                            format!("join waits for {k} of {n} branches and can never complete"),
                        )
                        .hint(format!("use a number from 1 to {n}"));
                    }
                    Join::Count(k.clamp(1, n.max(1)))
                }
            };
            if p.branches.is_empty() {
                self.error(
                    &sub(&["parallel", "branches"]),
                    "`parallel` needs at least one branch",
                );
            }
            if p.branches.len() > self.max_branches as usize {
                let max = self.max_branches;
                self.error(
                    &sub(&["parallel", "branches"]),
                    format!(
                        "`parallel` has {} branches, more than the limit of {max}",
                        p.branches.len()
                    ),
                )
                .hint(format!(
                    "split the work, or raise `{}`",
                    crate::limits::Limit::ParallelBranches.key()
                ));
            }
            let branches = p
                .branches
                .iter()
                .map(|b| {
                    if b.steps.is_empty() {
                        Next::BranchEnd(idx)
                    } else {
                        // The branch's first step is the first flattened node after this
                        // one that belongs to the branch's scope.
                        let first = &b.steps[0] as *const StepDef;
                        let pos = self
                            .flat
                            .iter()
                            .position(|f| std::ptr::eq(f.def, first))
                            .expect("branch steps were flattened");
                        Next::Node(pos as NodeId)
                    }
                })
                .collect();
            return NodeKind::Parallel { branches, join };
        }
        if let Some(w) = &def.wait {
            return NodeKind::Wait(self.wait(from, w, &sub(&["wait"])));
        }
        if let Some(vars) = &def.set {
            let mut out = Vec::new();
            for (k, v) in vars {
                let p = sub(&["set", k]);
                if !valid_step_id(k) {
                    self.error(&p, format!("invalid variable name `{k}`"))
                        .hint("use lowercase letters, digits and `_`");
                }
                let t = self.template(v, &p);
                out.push((k.clone(), t));
            }
            return NodeKind::Set(out);
        }
        if let Some(end) = &def.end {
            let (outcome, output) = match end {
                EndDef::Outcome(o) => (o.clone(), None),
                EndDef::Full { outcome, output } => (
                    outcome.clone(),
                    output
                        .as_ref()
                        .map(|v| self.template(v, &sub(&["end", "output"]))),
                ),
            };
            if outcome.trim().is_empty() {
                self.error(&sub(&["end"]), "an end needs a non-empty outcome");
            }
            let computed = outcome.contains("${").then(|| {
                let path = match end {
                    EndDef::Outcome(_) => sub(&["end"]),
                    EndDef::Full { .. } => sub(&["end", "outcome"]),
                };
                self.template(&Value::String(outcome.clone()), &path)
            });
            return NodeKind::End {
                outcome,
                computed,
                output,
            };
        }
        if let Some(s) = &def.start {
            let input = s
                .input
                .as_ref()
                .map(|v| self.template(v, &sub(&["start", "input"])));
            let alias = s
                .alias
                .clone()
                .unwrap_or_else(|| self.flat[from].id.clone());
            return NodeKind::Start {
                workflow: s.workflow.clone(),
                input,
                wait: s.wait,
                alias,
                detached: s.on_parent_cancel == crate::definition::model::OnParentCancel::Abandon,
            };
        }
        if let Some(a) = &def.await_ {
            let (link, timeout, on_timeout) = match a {
                AwaitDef::Link(l) => (l.clone(), None, None),
                AwaitDef::Full {
                    link,
                    timeout,
                    on_timeout,
                } => (link.clone(), timeout.clone(), on_timeout.clone()),
            };
            if !self.links.contains(&link) {
                let names: Vec<&str> = self.links.iter().map(String::as_str).collect();
                let hint = did_you_mean(&link, &names).map(|s| format!("did you mean `{s}`?")).unwrap_or_else(|| {
                    "links are declared by `on_start: [{start: WORKFLOW, as: NAME}]` or a start step's `as`".into()
                });
                self.error(&sub(&["await"]), format!("await of unknown link `{link}`"))
                    .hint(hint);
            }
            let timeout = timeout.and_then(|t| self.span(&t, &sub(&["await", "timeout"])));
            let on_timeout =
                on_timeout.and_then(|t| self.target(from, &t, &sub(&["await", "on_timeout"])));
            return NodeKind::Await {
                link,
                timeout,
                on_timeout,
            };
        }
        if let Some(g) = &def.goto
            && let Some(to) = self.target(from, g, &sub(&["goto"]))
        {
            return NodeKind::Goto(to);
        }
        NodeKind::Set(Vec::new())
    }

    fn task(&mut self, from: usize, t: &crate::definition::TaskDef, path: &[Seg]) -> TaskStep {
        let sub = |k: &str| [path.to_vec(), vec![Seg::Key(k.into())]].concat();
        match (&t.role, &t.assignee) {
            (None, None) => {
                self.error(path, "a task needs a `role` or an `assignee`");
            }
            (Some(role), _) if !self.role_known(role) => {
                let hint = self.role_hint(role);
                self.error(&sub("role"), format!("unknown role `{role}`"))
                    .hint(hint);
            }
            _ => {}
        }
        let assignee = t
            .assignee
            .as_ref()
            .and_then(|a| self.expr(a, &sub("assignee")));
        let title = t
            .title
            .as_ref()
            .map(|s| self.template(&Value::String(s.clone()), &sub("title")));
        let form = t.form.as_ref().and_then(|f| {
            if f.get("type").and_then(Value::as_str) != Some("object") {
                self.error(
                    &sub("form"),
                    "a task form must be an object schema (`type: object` with `properties`)",
                );
            }
            self.schema(f, &sub("form"))
        });
        let due = t.due.as_ref().and_then(|d| self.span(d, &sub("due")));
        let follow_up = t
            .follow_up
            .as_ref()
            .and_then(|d| self.span(d, &sub("follow_up")));
        let remind = t
            .remind
            .iter()
            .enumerate()
            .filter_map(|(i, r)| self.span(r, &[sub("remind"), vec![Seg::Index(i)]].concat()))
            .collect::<Vec<_>>();
        if !t.remind.is_empty() && t.due.is_none() {
            self.error(
                &sub("remind"),
                "reminders are relative to the due date, but the task has no `due`",
            );
        }
        let remind_every = t
            .remind_every
            .as_ref()
            .and_then(|d| self.span(d, &sub("remind_every")));
        let escalate = t.escalate.as_ref().map(|e| {
            let ep = sub("escalate");
            let esub = |k: &str| [ep.clone(), vec![Seg::Key(k.into())]].concat();
            if t.due.is_none() {
                self.error(
                    &ep,
                    "escalation is counted from the due date, but the task has no `due`",
                );
            }
            for role in [&e.notify, &e.reassign].into_iter().flatten() {
                if !self.role_known(role) {
                    let hint = self.role_hint(role);
                    self.error(&ep, format!("unknown role `{role}`")).hint(hint);
                }
            }
            if e.notify.is_none() && e.reassign.is_none() && e.goto.is_none() {
                self.error(&ep, "an escalation needs `notify`, `reassign` or `goto`");
            }
            Escalation {
                after: self
                    .span(&e.after, &esub("after"))
                    .unwrap_or(Span::new(0, clearflow_time::Unit::Days)),
                notify: e.notify.clone(),
                reassign: e.reassign.clone(),
                goto: e
                    .goto
                    .as_ref()
                    .and_then(|g| self.target(from, g, &esub("goto"))),
            }
        });
        for (i, other) in t.distinct_from.iter().enumerate() {
            let p = [sub("distinct_from"), vec![Seg::Index(i)]].concat();
            match self.ids.get(other) {
                Some(&n) if self.flat[n as usize].def.task.is_some() => {}
                Some(_) => {
                    self.error(&p, format!("`{other}` is not a task step; separation of duties compares task actors"));
                }
                None => {
                    self.error(&p, format!("unknown step `{other}`"));
                }
            }
        }
        let on_reject = t
            .on_reject
            .as_ref()
            .and_then(|g| self.target(from, g, &sub("on_reject")));
        TaskStep {
            role: t.role.clone(),
            assignee,
            title,
            form,
            due,
            follow_up,
            remind,
            remind_every,
            escalate,
            priority: t.priority.unwrap_or(0),
            distinct_from: t.distinct_from.clone(),
            distinct_from_initiator: t.distinct_from_initiator,
            on_reject,
            notify_assigned: t.notify_assigned.unwrap_or(true),
        }
    }

    fn role_known(&self, role: &str) -> bool {
        self.root
            .get("roles")
            .map(|r| {
                r.items()
                    .iter()
                    .any(|n| matches!(&n.kind, crate::yaml::Kind::Str(s) if s == role))
            })
            .unwrap_or(false)
    }

    fn role_hint(&self, role: &str) -> String {
        let roles: Vec<String> = self.root.get("roles").map_or(Vec::new(), |r| {
            r.items()
                .iter()
                .filter_map(|n| match &n.kind {
                    crate::yaml::Kind::Str(s) => Some(s.clone()),
                    _ => None,
                })
                .collect()
        });
        let names: Vec<&str> = roles.iter().map(String::as_str).collect();
        match did_you_mean(role, &names) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("declare it in `roles:` (now: {})", roles.join(", ")),
        }
    }

    fn notify(&mut self, n: &crate::definition::NotifyDef, path: &[Seg]) -> NotifyStep {
        let sub = |k: &str| [path.to_vec(), vec![Seg::Key(k.into())]].concat();
        if n.template.trim().is_empty() {
            self.error(&sub("template"), "empty template name");
        }
        let mut lists: Vec<Vec<Recipient>> = Vec::new();
        // `reporter` is the whistleblower, resolved by the daemon from the sealed
        // identity: alone in `to`, so the address is never shown to anyone else.
        let raw = [n.to.as_slice(), n.cc.as_slice(), n.bcc.as_slice()];
        if raw
            .iter()
            .flat_map(|l| l.iter())
            .any(|r| r.trim() == "reporter")
            && (raw[0].len() != 1 || !raw[1].is_empty() || !raw[2].is_empty())
        {
            self.error(&sub("to"), "`reporter` must be the only recipient of its notification")
                .hint("the reporter's address is confidential; send other recipients their own notification");
        }
        for field in ["to", "cc", "bcc"] {
            let list = match field {
                "to" => &n.to,
                "cc" => &n.cc,
                _ => &n.bcc,
            };
            let mut out = Vec::new();
            for (i, r) in list.as_slice().iter().enumerate() {
                let mut p = sub(field);
                if matches!(list, crate::definition::Recipients::Many(_)) {
                    p.push(Seg::Index(i));
                }
                if let Some(role) = r.strip_prefix("role:") {
                    let role = role.trim();
                    if !self.role_known(role) {
                        let hint = self.role_hint(role);
                        self.error(&p, format!("unknown role `{role}`")).hint(hint);
                    }
                    out.push(Recipient::Role(role.to_owned()));
                } else {
                    out.push(Recipient::Expr(
                        self.template(&Value::String(r.clone()), &p),
                    ));
                }
            }
            lists.push(out);
        }
        if lists[0].is_empty() && lists[1].is_empty() && lists[2].is_empty() {
            self.error(
                path,
                "a notification needs at least one recipient in `to`, `cc` or `bcc`",
            );
        }
        let bcc = lists.pop().unwrap_or_default();
        let cc = lists.pop().unwrap_or_default();
        let to = lists.pop().unwrap_or_default();
        NotifyStep {
            template: n.template.clone(),
            to,
            cc,
            bcc,
            locale: n
                .locale
                .as_ref()
                .map(|l| self.template(&Value::String(l.clone()), &sub("locale"))),
            data: n.data.as_ref().map(|d| self.template(d, &sub("data"))),
            lists: self.lists(n, path),
        }
    }

    /// The store lists of a notification. Their expressions read the listed workflow's
    /// names, so they are only parsed here; [`crate::Catalog`] checks the names.
    fn lists(&mut self, n: &crate::definition::NotifyDef, path: &[Seg]) -> Vec<ListQuery> {
        const STATUSES: [&str; 4] = ["running", "completed", "failed", "cancelled"];
        let mut out = Vec::new();
        for (name, l) in &n.lists {
            let at = [
                path.to_vec(),
                vec![Seg::Key("lists".into()), Seg::Key(name.clone())],
            ]
            .concat();
            let sub = |k: &str| [at.clone(), vec![Seg::Key(k.into())]].concat();
            let plain = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !plain {
                let pos = self.root.locate(&at);
                self.sink
                    .error(pos, format!("list name `{name}` is not a plain name"))
                    .hint("use letters, digits and `_`, e.g. `cases`");
            }
            if let Some(crate::expr::Template::Object(entries)) = n
                .data
                .as_ref()
                .and_then(|d| Template::compile(d).ok())
                .as_ref()
                && entries.iter().any(|(k, _)| k == name)
            {
                self.error(&at, format!("`{name}` is both a list and a `data:` value"));
            }
            let statuses: Vec<String> = match l.status.as_deref().unwrap_or("running") {
                "any" => STATUSES.iter().map(|s| (*s).to_owned()).collect(),
                "ended" => STATUSES[1..].iter().map(|s| (*s).to_owned()).collect(),
                s if STATUSES.contains(&s) => vec![s.to_owned()],
                other => {
                    self.error(&sub("status"), format!("unknown status `{other}`"))
                        .hint("one of running, completed, failed, cancelled, ended, any");
                    Vec::new()
                }
            };
            let parse = |c: &mut Self, src: &str, p: &[Seg]| match Expr::compile(src) {
                Ok(e) => Some((e, c.at(p))),
                Err(err) => {
                    let pos = c.root.locate_in(p, err.offset);
                    c.sink.error(pos, err.message);
                    None
                }
            };
            let filter = l
                .filter
                .as_ref()
                .and_then(|f| parse(self, f, &sub("where")));
            let mut fields = Vec::new();
            for (k, src) in &l.fields {
                let p = [sub("fields"), vec![Seg::Key(k.clone())]].concat();
                if let Some((e, pos)) = parse(self, src, &p) {
                    fields.push((k.clone(), e, pos));
                }
            }
            let limit = l.limit.unwrap_or(200);
            if limit == 0 || limit > 1000 {
                self.error(&sub("limit"), "a list's limit is between 1 and 1000");
            }
            let tasks = l.tasks.as_ref().map(|t| crate::workflow::TaskList {
                role: t.role.clone(),
                workflow: t.workflow.clone(),
                overdue: t.overdue,
            });
            let workflow = match (&l.instances, &tasks) {
                (Some(w), None) => w.clone(),
                (None, Some(t)) => {
                    for (key, given) in [
                        ("status", l.status.is_some()),
                        ("where", l.filter.is_some()),
                        ("fields", !l.fields.is_empty()),
                    ] {
                        if given {
                            self.error(&sub(key), format!("a task list takes no `{key}`"))
                                .hint("`status`, `where` and `fields` are for `instances:` lists; a task list has fixed fields");
                        }
                    }
                    t.workflow.clone().unwrap_or_default()
                }
                _ => {
                    self.error(&at, format!("list `{name}` needs exactly one of `instances` or `tasks`"))
                        .hint("`instances: WORKFLOW` lists instances, `tasks: { role: R, overdue: true }` open tasks");
                    String::new()
                }
            };
            let source = if l.tasks.is_some() {
                "tasks"
            } else {
                "instances"
            };
            out.push(ListQuery {
                name: name.clone(),
                workflow,
                tasks,
                pos: self.at(&sub(source)),
                statuses,
                filter,
                fields,
                limit: limit.clamp(1, 1000),
            });
        }
        out
    }

    fn wait(&mut self, from: usize, w: &crate::definition::WaitDef, path: &[Seg]) -> WaitStep {
        let sub = |k: &str| [path.to_vec(), vec![Seg::Key(k.into())]].concat();
        let given = [w.duration.is_some(), w.until.is_some(), w.event.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if given != 1 {
            self.error(
                path,
                "a wait needs exactly one of `for`, `until` or `event`",
            );
        }
        if w.event.is_none() {
            for (k, present) in [
                ("key", w.key.is_some()),
                ("timeout", w.timeout.is_some()),
                ("on_timeout", w.on_timeout.is_some()),
            ] {
                if present {
                    self.error(
                        &sub(k),
                        format!("`{k}` only applies to a wait for an `event`"),
                    );
                }
            }
        }
        if let Some(d) = &w.duration {
            return WaitStep::For(
                self.span(d, &sub("for"))
                    .unwrap_or(Span::new(0, clearflow_time::Unit::Seconds)),
            );
        }
        if let Some(u) = &w.until
            && let Some(e) = self.expr(u, &sub("until"))
        {
            return WaitStep::Until(e);
        }
        let name = w.event.clone().unwrap_or_default();
        if w.event.is_some() && name.trim().is_empty() {
            self.error(&sub("event"), "empty event name");
        }
        WaitStep::Event {
            name,
            key: w.key.as_ref().and_then(|k| self.expr(k, &sub("key"))),
            timeout: w
                .timeout
                .as_ref()
                .and_then(|t| self.span(t, &sub("timeout"))),
            on_timeout: w
                .on_timeout
                .as_ref()
                .and_then(|t| self.target(from, t, &sub("on_timeout"))),
        }
    }

    fn schedules(&mut self, def: &WorkflowDef, timezone: Tz) -> Vec<ScheduleSpec> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for (i, s) in def.schedules.iter().enumerate() {
            let path = vec![Seg::Key("schedules".into()), Seg::Index(i)];
            let sub = |k: &str| [path.clone(), vec![Seg::Key(k.into())]].concat();
            let id = s.id.clone().unwrap_or_else(|| {
                if i == 0 {
                    "default".into()
                } else {
                    format!("schedule-{}", i + 1)
                }
            });
            if !seen.insert(id.clone()) {
                self.error(&sub("id"), format!("duplicate schedule id `{id}`"));
            }
            if (s.working_days_only || s.nth_working_day_of_month.is_some())
                && def.calendar.is_none()
            {
                self.error(
                    &path,
                    "working-day schedules need the workflow's `calendar`",
                );
            }
            let catch_up = match s.catch_up {
                crate::definition::CatchUpDef::None => clearflow_time::CatchUp::None,
                crate::definition::CatchUpDef::Latest => clearflow_time::CatchUp::Latest,
                crate::definition::CatchUpDef::All => clearflow_time::CatchUp::All {
                    max: s.catch_up_max.unwrap_or(10),
                },
            };
            let spec = clearflow_time::ScheduleSpec {
                cron: s.cron.clone(),
                timezone: Some(
                    s.timezone
                        .clone()
                        .unwrap_or_else(|| timezone.name().to_owned()),
                ),
                catch_up,
                jitter: s.jitter.clone(),
                grace: None,
                working_days_only: s.working_days_only,
                nth_working_day_of_month: s.nth_working_day_of_month,
            };
            match clearflow_time::Schedule::parse(&spec) {
                Ok(schedule) => out.push(ScheduleSpec {
                    id,
                    schedule,
                    overlap: s.overlap,
                    catch_up: s.catch_up,
                    input: s.input.clone().unwrap_or(Value::Object(Default::default())),
                }),
                Err(e) => {
                    self.error(&path, format!("bad schedule: {e}"))
                        .hint("the cron syntax has seconds first: `sec min hour day month weekday`, e.g. `0 0 9 * * Mon`");
                }
            }
        }
        out
    }

    /// Reachability and joins: every step can run, every join can complete.
    fn check_graph(&mut self, wf: &Workflow) {
        let n = wf.nodes.len();
        if n == 0 {
            return;
        }
        let mut seen = vec![false; n];
        let mut stack = vec![0 as NodeId];
        while let Some(id) = stack.pop() {
            if std::mem::replace(&mut seen[id as usize], true) {
                continue;
            }
            stack.extend(successors(wf, id));
        }
        for (i, node) in wf.nodes.iter().enumerate() {
            if !seen[i] {
                let path = self.flat[i].path.clone();
                self.error(&path, format!("step `{}` can never run", node.id))
                    .hint("no step leads here: the previous step jumps or ends, and nothing jumps to it");
            }
        }
        for (i, node) in wf.nodes.iter().enumerate() {
            let NodeKind::Parallel { branches, join } = &node.kind else {
                continue;
            };
            let reaching = branches
                .iter()
                .filter(|b| reaches_branch_end(wf, **b, i as NodeId))
                .count() as u32;
            let needed = match join {
                Join::All => branches.len() as u32,
                Join::Count(k) => *k,
            };
            if reaching < needed && !branches.is_empty() {
                let path = self.flat[i].path.clone();
                self.error(&path, format!(
                    "the join of `{}` can never complete: it waits for {needed} branches but only {reaching} can reach their end",
                    node.id
                ))
                .hint("a branch that always ends the workflow or loops forever never arrives at the join");
            }
        }
    }
}

fn hint_from<'a>(word: &str, names: impl Iterator<Item = &'a str>) -> Option<String> {
    let names: Vec<&str> = names.collect();
    did_you_mean(word, &names)
        .map(|s| format!("did you mean `{s}`?"))
        .or_else(|| {
            if names.is_empty() {
                None
            } else {
                Some(format!("known: {}", names.join(", ")))
            }
        })
}

/// Every node control can go to from `id`.
pub fn successors(wf: &Workflow, id: NodeId) -> Vec<NodeId> {
    let node = wf.node(id);
    let mut out = Vec::new();
    let push = |out: &mut Vec<NodeId>, n: Next| {
        if let Next::Node(x) = n {
            out.push(x);
        }
    };
    match &node.kind {
        NodeKind::End { .. } => {}
        NodeKind::Goto(to) => {
            out.push(*to);
            if node.condition.is_some() {
                push(&mut out, node.next);
            }
        }
        NodeKind::Switch(cases) => {
            out.extend(cases.iter().map(|(_, to)| *to));
            if !cases.iter().any(|(w, _)| w.is_none()) || node.condition.is_some() {
                push(&mut out, node.next);
            }
        }
        NodeKind::Parallel { branches, .. } => {
            for b in branches {
                push(&mut out, *b);
            }
            push(&mut out, node.next);
        }
        NodeKind::Wait(WaitStep::Event {
            on_timeout: Some(t),
            ..
        })
        | NodeKind::Await {
            on_timeout: Some(t),
            ..
        } => {
            out.push(*t);
            push(&mut out, node.next);
        }
        NodeKind::Task(t) => {
            out.extend(t.on_reject);
            out.extend(t.escalate.as_ref().and_then(|e| e.goto));
            push(&mut out, node.next);
        }
        _ => push(&mut out, node.next),
    }
    if node.condition.is_some() && matches!(node.kind, NodeKind::End { .. }) {
        push(&mut out, node.next);
    }
    out
}

/// Whether control starting at `start` can arrive at the join of parallel node `par`.
fn reaches_branch_end(wf: &Workflow, start: Next, par: NodeId) -> bool {
    let mut seen = HashSet::new();
    let mut stack = vec![start];
    while let Some(next) = stack.pop() {
        match next {
            Next::BranchEnd(p) if p == par => return true,
            Next::BranchEnd(_) | Next::End => {}
            Next::Node(id) => {
                if !seen.insert(id) {
                    continue;
                }
                let node = wf.node(id);
                if matches!(node.kind, NodeKind::End { .. }) && node.condition.is_none() {
                    continue;
                }
                for s in successors(wf, id) {
                    stack.push(Next::Node(s));
                }
                // The last step of a branch falls through to the branch's end.
                let falls_through = !matches!(node.kind, NodeKind::End { .. } | NodeKind::Goto(_))
                    || node.condition.is_some();
                let switch_total = matches!(&node.kind, NodeKind::Switch(c) if c.iter().any(|(w, _)| w.is_none()))
                    && node.condition.is_none();
                if falls_through && !switch_total && !matches!(node.next, Next::Node(_)) {
                    stack.push(node.next);
                }
            }
        }
    }
    false
}
