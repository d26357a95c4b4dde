//! The workflow diagram as SVG, drawn on the server: a layered layout of the step graph.

use std::collections::BTreeSet;
use std::fmt::Write;

use clearflow_core::Workflow;
use clearflow_core::workflow::{Next, NodeKind, WaitStep};

const W: u32 = 180;
const H: u32 = 44;
const GAP_X: u32 = 30;
const GAP_Y: u32 = 36;

/// Draws `wf`: steps as boxes in layers (a step below every step that leads to it,
/// branches side by side), edges as arrows (jumps back dashed), and the steps in
/// `waiting` (step ids) highlighted. The result is an `<svg>` element for inline use in HTML, with
/// every text escaped; it references nothing outside itself.
pub fn svg(wf: &Workflow, waiting: &BTreeSet<String>) -> String {
    let n = wf.nodes.len();
    let edges = edges(wf);
    let mut depth = vec![0u32; n];
    for &(from, to) in &edges {
        // Forward edges only: nodes are in file order, so this is a topological pass.
        if to > from {
            depth[to] = depth[to].max(depth[from] + 1);
        }
    }
    let layers = depth.iter().copied().max().map_or(0, |d| d + 1);
    let mut col = vec![0u32; n];
    let mut width_of = vec![0u32; layers as usize];
    for i in 0..n {
        let d = depth[i] as usize;
        col[i] = width_of[d];
        width_of[d] += 1;
    }
    let cols = width_of.iter().copied().max().unwrap_or(1).max(1);
    let pos = |i: usize| {
        let offset = (cols - width_of[depth[i] as usize]) * (W + GAP_X) / 2;
        (
            GAP_X + offset + col[i] * (W + GAP_X),
            GAP_Y / 2 + depth[i] * (H + GAP_Y),
        )
    };
    let total_w = GAP_X + cols * (W + GAP_X);
    let total_h = GAP_Y + layers * (H + GAP_Y);
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"diagram\" viewBox=\"0 0 {total_w} {total_h}\" width=\"{total_w}\" height=\"{total_h}\" role=\"img\" aria-label=\"{}\">",
        escape(wf.title.as_deref().unwrap_or(&wf.id))
    );
    out.push_str("<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M0,0L10,5L0,10z\" fill=\"#57606a\"/></marker></defs>");
    for &(from, to) in &edges {
        let (x1, y1) = pos(from);
        let (x2, y2) = pos(to);
        let dash = if to <= from {
            " stroke-dasharray=\"4 3\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#57606a\"{dash} marker-end=\"url(#arrow)\"/>",
            x1 + W / 2,
            y1 + H,
            x2 + W / 2,
            y2
        );
    }
    for (i, node) in wf.nodes.iter().enumerate() {
        let (x, y) = pos(i);
        let hi = waiting.contains(&node.id);
        let (fill, stroke, sw) = if hi {
            ("#fff4c2", "#b35c00", 3)
        } else {
            ("#ffffff", "#57606a", 1)
        };
        let rx = if matches!(node.kind, NodeKind::End { .. }) {
            22
        } else {
            4
        };
        let label = node.title.as_deref().unwrap_or(&node.id);
        let _ = write!(
            out,
            "<g class=\"step{}\" data-step=\"{}\"><title>{}</title><rect x=\"{x}\" y=\"{y}\" width=\"{W}\" height=\"{H}\" rx=\"{rx}\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"{sw}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\" fill=\"#57606a\">{}</text></g>",
            if hi { " waiting" } else { "" },
            escape(&node.id),
            escape(label),
            x + W / 2,
            y + 19,
            escape(&truncate(label, 14)),
            x + W / 2,
            y + 35,
            escape(kind_label(&node.kind)),
        );
    }
    out.push_str("</svg>");
    out
}

fn kind_label(kind: &NodeKind) -> &'static str {
    match kind {
        NodeKind::Wait(WaitStep::Event { .. }) => "event",
        other => other.name(),
    }
}

/// Every edge between nodes, as (from, to) indices.
fn edges(wf: &Workflow) -> Vec<(usize, usize)> {
    let resolve = |next: Next| -> Option<usize> {
        match next {
            Next::Node(n) => Some(n as usize),
            // A branch's end arrives at its parallel node's continuation.
            Next::BranchEnd(p) => match wf.node(p).next {
                Next::Node(n) => Some(n as usize),
                _ => None,
            },
            Next::End => None,
        }
    };
    let mut out = BTreeSet::new();
    for (i, node) in wf.nodes.iter().enumerate() {
        let mut targets = Vec::new();
        match &node.kind {
            NodeKind::End { .. } => {}
            NodeKind::Goto(to) => targets.push(Next::Node(*to)),
            NodeKind::Switch(cases) => {
                targets.extend(cases.iter().map(|(_, to)| Next::Node(*to)));
                if !cases.iter().any(|(w, _)| w.is_none()) {
                    targets.push(node.next);
                }
            }
            NodeKind::Parallel { branches, .. } => targets.extend(branches.iter().copied()),
            NodeKind::Task(t) => {
                targets.extend(t.on_reject.map(Next::Node));
                targets.extend(t.escalate.as_ref().and_then(|e| e.goto).map(Next::Node));
                targets.push(node.next);
            }
            NodeKind::Wait(WaitStep::Event { on_timeout, .. })
            | NodeKind::Await { on_timeout, .. } => {
                targets.extend(on_timeout.map(Next::Node));
                targets.push(node.next);
            }
            _ => targets.push(node.next),
        }
        if node.condition.is_some() {
            targets.push(node.next);
        }
        for t in targets.into_iter().filter_map(resolve) {
            if t != i {
                out.insert((i, t));
            }
        }
    }
    out.into_iter().collect()
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n - 1).chain(['…']).collect()
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str) -> Workflow {
        let path = format!("{}/../workflows/{name}", env!("CARGO_MANIFEST_DIR"));
        let src = std::fs::read_to_string(&path).unwrap();
        clearflow_core::load(name, &src).unwrap_or_else(|d| panic!("{d:?}"))
    }

    #[test]
    fn draws_every_step_and_highlights_the_waiting_ones() {
        let wf = load("clarification.yaml");
        let waiting: BTreeSet<String> = [wf.nodes[1].id.clone()].into();
        let svg = svg(&wf, &waiting);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), wf.nodes.len());
        assert_eq!(svg.matches("class=\"step waiting\"").count(), 1);
        assert!(svg.contains(&format!("data-step=\"{}\"", wf.nodes[1].id)));
        assert!(svg.matches("<line").count() >= wf.nodes.len() - 1);
        assert!(!svg.contains("<script"));
        // The only URL is the SVG namespace, which is not fetched.
        assert!(!svg.contains("http"), "inline in HTML: no namespace URL");
    }

    #[test]
    fn text_is_escaped() {
        let src = "id: x\ntitle: \"<b>&'\"\nsteps:\n  - id: a\n    title: \"<script>\"\n    set: { v: 1 }\n";
        let wf = clearflow_core::load("x.yaml", src).unwrap_or_else(|d| panic!("{d:?}"));
        let svg = svg(&wf, &BTreeSet::new());
        assert!(svg.contains("&lt;script&gt;") && !svg.contains("<script"));
        assert!(svg.contains("aria-label=\"&lt;b&gt;&amp;&#39;\""));
    }

    #[test]
    fn every_shipped_workflow_draws() {
        for e in std::fs::read_dir(format!("{}/../workflows", env!("CARGO_MANIFEST_DIR"))).unwrap()
        {
            let name = e.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".yaml") {
                let wf = load(&name);
                assert_eq!(
                    svg(&wf, &BTreeSet::new()).matches("<rect").count(),
                    wf.nodes.len(),
                    "{name}"
                );
            }
        }
    }
}
