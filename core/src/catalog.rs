//! A set of workflows checked together: references between files and concurrent-start cycles.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::diag::{Diagnostic, Severity};
use crate::workflow::{ListQuery, NodeKind, Workflow};

/// The workflows an administrator deployed, by id.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Workflows by id.
    pub workflows: BTreeMap<String, Arc<Workflow>>,
}

impl Catalog {
    /// Checks `workflows` together. Returns the catalog of the valid ones and every
    /// problem found across files (duplicate ids, unknown workflows, start cycles), and
    /// warnings for workflows that can start themselves again without a bound.
    pub fn build(workflows: Vec<Arc<Workflow>>) -> (Catalog, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        let mut by_id: BTreeMap<String, Arc<Workflow>> = BTreeMap::new();
        for wf in workflows {
            if let Some(first) = by_id.get(&wf.id) {
                diags.push(
                    Diagnostic::error(
                        &wf.file,
                        wf.id_pos,
                        format!("duplicate workflow id `{}`", wf.id),
                    )
                    .with_hint(format!("`{}` already defines it", first.file)),
                );
                continue;
            }
            by_id.insert(wf.id.clone(), wf);
        }
        for wf in by_id.values() {
            for s in &wf.on_start {
                if !by_id.contains_key(&s.workflow) {
                    diags.push(unknown(wf, s.pos, &s.workflow, &by_id));
                }
            }
            for node in &wf.nodes {
                if let NodeKind::Start { workflow, .. } = &node.kind
                    && !by_id.contains_key(workflow)
                {
                    diags.push(unknown(wf, node.pos, workflow, &by_id));
                }
                if let NodeKind::Notify(n) = &node.kind {
                    for q in &n.lists {
                        if q.tasks.is_some() {
                            // A task list names a workflow only to narrow it down.
                            if !q.workflow.is_empty() && !by_id.contains_key(&q.workflow) {
                                diags.push(unknown(wf, q.pos, &q.workflow, &by_id));
                            }
                            continue;
                        }
                        match by_id.get(&q.workflow) {
                            None => diags.push(unknown(wf, q.pos, &q.workflow, &by_id)),
                            Some(target) => diags.extend(list_names(wf, q, target)),
                        }
                    }
                }
            }
        }
        diags.extend(start_cycles(&by_id));
        // A workflow with a broken reference is kept out, and so is everything that
        // starts it concurrently, so no instance can be created half-linked.
        let bad: Vec<String> = diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .filter_map(|d| {
                by_id
                    .values()
                    .find(|w| w.file == d.file)
                    .map(|w| w.id.clone())
            })
            .collect();
        for id in bad {
            by_id.remove(&id);
        }
        // Then, until nothing changes, whatever starts a workflow that was kept out.
        loop {
            let broken: Vec<String> = by_id
                .values()
                .filter(|w| started(w).any(|s| !by_id.contains_key(s)))
                .map(|w| w.id.clone())
                .collect();
            if broken.is_empty() {
                break;
            }
            for id in broken {
                by_id.remove(&id);
            }
        }
        diags.extend(self_starts(&by_id));
        (Catalog { workflows: by_id }, diags)
    }

    /// The workflow with this id.
    pub fn get(&self, id: &str) -> Option<&Arc<Workflow>> {
        self.workflows.get(id)
    }
}

/// The names a notification list reads must exist in the listed workflow.
fn list_names(wf: &Workflow, q: &ListQuery, target: &Workflow) -> Vec<Diagnostic> {
    let exprs = q
        .filter
        .iter()
        .map(|(e, p)| (e, *p))
        .chain(q.fields.iter().map(|(_, e, p)| (e, *p)));
    let mut out = Vec::new();
    for (e, pos) in exprs {
        for r in e.references() {
            let head = r.split('.').next().unwrap_or_default();
            if crate::compile::ROOT_NAMES.contains(&head) || target.ids.contains_key(head) {
                continue;
            }
            let mut names: Vec<&str> = crate::compile::ROOT_NAMES.to_vec();
            names.extend(target.ids.keys().map(String::as_str));
            let d = Diagnostic::error(
                &wf.file,
                pos,
                format!(
                    "`{r}`: workflow `{}` has no step or name `{head}`",
                    target.id
                ),
            );
            out.push(match crate::definition::did_you_mean(head, &names) {
                Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                None => d.with_hint(
                    "a list reads the listed instance's input, vars, instance, links and step results",
                ),
            });
        }
    }
    out
}

/// Every workflow `wf` starts, concurrently or from a step.
fn started(wf: &Workflow) -> impl Iterator<Item = &str> {
    wf.on_start
        .iter()
        .map(|s| s.workflow.as_str())
        .chain(wf.nodes.iter().filter_map(|n| match &n.kind {
            NodeKind::Start { workflow, .. } => Some(workflow.as_str()),
            _ => None,
        }))
}

fn unknown(
    wf: &Workflow,
    pos: crate::Pos,
    target: &str,
    known: &BTreeMap<String, Arc<Workflow>>,
) -> Diagnostic {
    let names: Vec<&str> = known.keys().map(String::as_str).collect();
    let d = Diagnostic::error(&wf.file, pos, format!("unknown workflow `{target}`"));
    match crate::definition::did_you_mean(target, &names) {
        Some(s) => d.with_hint(format!("did you mean `{s}`?")),
        None => d.with_hint(format!("known workflows: {}", names.join(", "))),
    }
}

/// Cycles in the "starts concurrently" relation: A starting B starting A would never end.
fn start_cycles(by_id: &BTreeMap<String, Arc<Workflow>>) -> Vec<Diagnostic> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        id: &str,
        by_id: &BTreeMap<String, Arc<Workflow>>,
        marks: &mut HashMap<String, Mark>,
        path: &mut Vec<String>,
        out: &mut Vec<Diagnostic>,
    ) {
        match marks.get(id) {
            Some(Mark::Done) => return,
            Some(Mark::Open) => {
                let from = path.iter().position(|p| p == id).unwrap_or(0);
                let mut cycle = path[from..].to_vec();
                cycle.push(id.to_owned());
                if let Some(wf) = by_id.get(id) {
                    let pos = wf
                        .on_start
                        .first()
                        .map_or(crate::Pos { line: 1, col: 1 }, |s| s.pos);
                    out.push(
                        Diagnostic::error(
                            &wf.file,
                            pos,
                            format!("concurrent starts form a cycle: {}", cycle.join(" → ")),
                        )
                        .with_hint("a workflow may not, through `on_start`, start itself again"),
                    );
                }
                return;
            }
            None => {}
        }
        let Some(wf) = by_id.get(id) else { return };
        marks.insert(id.to_owned(), Mark::Open);
        path.push(id.to_owned());
        for s in &wf.on_start {
            visit(&s.workflow, by_id, marks, path, out);
        }
        path.pop();
        marks.insert(id.to_owned(), Mark::Done);
    }
    let mut marks = HashMap::new();
    let mut out = Vec::new();
    for id in by_id.keys() {
        visit(id, by_id, &mut marks, &mut Vec::new(), &mut out);
    }
    out
}

/// Warnings for `start` steps without an `if` that lead, directly or through other
/// workflows' starts, back to their own workflow: each instance would start another
/// until the start depth limit refuses one.
fn self_starts(by_id: &BTreeMap<String, Arc<Workflow>>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for wf in by_id.values() {
        for node in &wf.nodes {
            let NodeKind::Start { workflow, .. } = &node.kind else {
                continue;
            };
            if node.condition.is_some() {
                continue;
            }
            let Some(chain) = path_to(workflow, &wf.id, by_id) else {
                continue;
            };
            let chain: Vec<&str> = std::iter::once(wf.id.as_str())
                .chain(chain.iter().map(String::as_str))
                .collect();
            out.push(Diagnostic {
                file: wf.file.clone(),
                pos: node.pos,
                severity: Severity::Warning,
                message: format!(
                    "step `{}` can start its own workflow again without a bound: {}",
                    node.id,
                    chain.join(" → ")
                ),
                hint: Some(format!(
                    "give the step an `if:` that ends the chain; otherwise starts past `{}` are refused",
                    crate::limits::Limit::StartDepth.key()
                )),
            });
        }
    }
    out
}

/// The workflows from `from` to `to` along starts (both ends included), if `to` can be
/// reached: a breadth-first search, so the chain is a shortest one.
fn path_to<'a>(
    from: &'a str,
    to: &str,
    by_id: &'a BTreeMap<String, Arc<Workflow>>,
) -> Option<Vec<String>> {
    let mut came_from: HashMap<&str, &str> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([from]);
    came_from.insert(from, from);
    while let Some(id) = queue.pop_front() {
        if id == to {
            let mut chain = vec![id.to_owned()];
            let mut at = id;
            while at != from {
                at = came_from[at];
                chain.push(at.to_owned());
            }
            chain.reverse();
            return Some(chain);
        }
        let Some(wf) = by_id.get(id) else { continue };
        for next in started(wf) {
            if !came_from.contains_key(next) {
                came_from.insert(next, id);
                queue.push_back(next);
            }
        }
    }
    None
}
