//! Mermaid flowcharts of workflows, for `clearflow graph`.

use std::fmt::Write;

use crate::workflow::{Join, Next, NodeKind, WaitStep, Workflow};

/// Draws `wf` as a Mermaid flowchart (top to bottom).
pub fn mermaid(wf: &Workflow) -> String {
    let mut out = String::from("flowchart TD\n");
    let title = wf.title.as_deref().unwrap_or(&wf.id);
    let _ = writeln!(out, "  start([\"{}\"])", escape(title));
    out.push_str("  finish([\"end\"])\n");
    for (i, node) in wf.nodes.iter().enumerate() {
        let label = match &node.kind {
            NodeKind::Plugin(p) => format!("{}<br/>plugin: {}", node.id, p.plugin),
            NodeKind::Task(t) => format!(
                "{}<br/>task: {}{}",
                node.id,
                t.role.as_deref().unwrap_or("assignee"),
                t.due.map(|d| format!(", due {d}")).unwrap_or_default()
            ),
            NodeKind::Notify(n) => format!("{}<br/>notify: {}", node.id, n.template),
            NodeKind::Wait(WaitStep::For(s)) => format!("{}<br/>wait {s}", node.id),
            NodeKind::Wait(WaitStep::Until(_)) => format!("{}<br/>wait until date", node.id),
            NodeKind::Wait(WaitStep::Event { name, .. }) => {
                format!("{}<br/>wait for event {name}", node.id)
            }
            NodeKind::Start { workflow, wait, .. } => {
                format!(
                    "{}<br/>start {workflow}{}",
                    node.id,
                    if *wait { " and await" } else { "" }
                )
            }
            NodeKind::Await { link, .. } => format!("{}<br/>await {link}", node.id),
            NodeKind::End { outcome, .. } => format!("end: {outcome}"),
            NodeKind::Parallel { join, .. } => match join {
                Join::All => format!("{}<br/>parallel, join all", node.id),
                Join::Count(n) => format!("{}<br/>parallel, join {n}", node.id),
            },
            other => format!("{}<br/>{}", node.id, other.name()),
        };
        let label = escape(&match &node.title {
            Some(t) => format!("{t}<br/>{label}"),
            None => label,
        });
        let shape = match &node.kind {
            NodeKind::Switch(_) => format!("n{i}{{\"{label}\"}}"),
            NodeKind::Parallel { .. } => format!("n{i}[[\"{label}\"]]"),
            NodeKind::End { .. } => format!("n{i}([\"{label}\"])"),
            NodeKind::Task(_) => format!("n{i}[/\"{label}\"/]"),
            _ => format!("n{i}[\"{label}\"]"),
        };
        let _ = writeln!(out, "  {shape}");
    }
    if !wf.nodes.is_empty() {
        out.push_str("  start --> n0\n");
    }
    for (i, node) in wf.nodes.iter().enumerate() {
        let edge = |out: &mut String, to: Next, label: Option<String>| {
            let target = match to {
                Next::Node(n) => format!("n{n}"),
                Next::BranchEnd(p) => format!("j{p}"),
                Next::End => "finish".into(),
            };
            let _ = match label {
                Some(l) => writeln!(out, "  n{i} -->|\"{}\"| {target}", escape(&l)),
                None => writeln!(out, "  n{i} --> {target}"),
            };
        };
        if node.condition.is_some() {
            edge(&mut out, node.next, Some("skipped".into()));
        }
        match &node.kind {
            NodeKind::End { .. } => {}
            NodeKind::Goto(to) => edge(&mut out, Next::Node(*to), None),
            NodeKind::Switch(cases) => {
                for (when, to) in cases {
                    let label = when
                        .as_ref()
                        .map_or("otherwise".to_owned(), |w| w.source().trim().to_owned());
                    edge(&mut out, Next::Node(*to), Some(label));
                }
                if !cases.iter().any(|(w, _)| w.is_none()) {
                    edge(&mut out, node.next, Some("no case".into()));
                }
            }
            NodeKind::Parallel { branches, .. } => {
                let _ = writeln!(out, "  j{i}{{{{\"join\"}}}}");
                for b in branches {
                    edge(&mut out, *b, None);
                }
                let to = match node.next {
                    Next::Node(n) => format!("n{n}"),
                    Next::BranchEnd(p) => format!("j{p}"),
                    Next::End => "finish".into(),
                };
                let _ = writeln!(out, "  j{i} --> {to}");
            }
            NodeKind::Task(t) => {
                if let Some(r) = t.on_reject {
                    edge(&mut out, Next::Node(r), Some("rejected".into()));
                }
                if let Some(g) = t.escalate.as_ref().and_then(|e| e.goto) {
                    edge(&mut out, Next::Node(g), Some("escalated".into()));
                }
                edge(&mut out, node.next, None);
            }
            NodeKind::Wait(WaitStep::Event {
                on_timeout: Some(t),
                ..
            })
            | NodeKind::Await {
                on_timeout: Some(t),
                ..
            } => {
                edge(&mut out, Next::Node(*t), Some("timeout".into()));
                edge(&mut out, node.next, None);
            }
            _ => edge(&mut out, node.next, None),
        }
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('"', "#quot;")
}
