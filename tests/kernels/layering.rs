//! The library's layering, checked on its source: no import cycles between top-level modules,
//! and the reference oracle used by tests only (nothing under `src/` outside `src/reference/`
//! names it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The source without its `//` comments (doc links to other modules are not imports).
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a source names through `crate::` paths, including inside
/// `use crate::{a::…, b};` groups.
fn crate_deps(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + 7..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 || (depth == 1 && c == ',') {
                    out.insert(ident(&item));
                    item.clear();
                    if depth == 0 {
                        break;
                    }
                } else if depth >= 1 {
                    item.push(c);
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

fn src() -> PathBuf {
    crate::common::repo_root().join("src")
}

/// Top-level module → the top-level modules it uses.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src()).unwrap();
        let top = rel
            .iter()
            .next()
            .unwrap()
            .to_string_lossy()
            .replace(".rs", "");
        if top == "lib" || top == "bin" {
            continue;
        }
        let deps = crate_deps(&code(&f));
        let entry = graph.entry(top.clone()).or_default();
        entry.extend(deps.into_iter().filter(|d| *d != top));
    }
    graph
}

/// The first import cycle of `graph`, as a path that returns to its start.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<String> {
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<String> {
        if done.contains(m) {
            return None;
        }
        if let Some(i) = stack.iter().position(|s| s == m) {
            return Some(format!("{} → {m}", stack[i..].join(" → ")));
        }
        stack.push(m.to_string());
        for d in graph.get(m).into_iter().flatten() {
            if let Some(cycle) = visit(d, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|m| visit(m, graph, &mut Vec::new(), &mut done))
}

#[test]
fn top_level_modules_have_no_import_cycles() {
    let graph = module_graph();
    assert!(graph.contains_key("kernels") && graph.contains_key("model"));
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle: {cycle}");
    }
}

/// The trainer's modules → the trainer's modules each uses, through `crate::train::` paths
/// or (in files whose parent module is the trainer's) `super::` paths. Items the trainer
/// re-exports (`super::Trainer`) are not followed to their module.
fn train_graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = src().join("train");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let name = |f: &Path| -> String {
        let rel = f.strip_prefix(&root).unwrap();
        let first = rel.iter().next().unwrap().to_string_lossy();
        first.trim_end_matches(".rs").to_string()
    };
    let modules: BTreeSet<String> = files.iter().map(|f| name(f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let top = name(f);
        if top == "mod" {
            continue;
        }
        let depth = f.strip_prefix(&root).unwrap().iter().count();
        let super_is_train = depth == 1 || (depth == 2 && f.ends_with("mod.rs"));
        // Only the trainer's own paths remain `crate::` paths for `crate_deps`.
        let mut c = code(f).replace("crate::", "other::");
        c = c.replace("other::train::", "crate::");
        if super_is_train {
            c = c.replace("super::", "crate::");
        }
        let deps = crate_deps(&c);
        graph.entry(top.clone()).or_default().extend(
            deps.into_iter()
                .filter(|d| modules.contains(d) && *d != top),
        );
    }
    graph
}

#[test]
fn the_trainers_modules_have_no_import_cycles() {
    let graph = train_graph();
    assert!(graph["run"].contains("monitor"), "{graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle in the trainer: {cycle}");
    }
}

#[test]
fn a_cycle_is_found() {
    let graph: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"])]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into_iter().map(String::from).collect()))
            .collect();
    assert_eq!(find_cycle(&graph).as_deref(), Some("a → b → c → a"));
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    // The parser sees both forms of import, so a cycle written either way would be caught.
    let deps = crate_deps("use crate::{kernels::X, model};\nfn f() { crate::train::g(); }");
    assert_eq!(deps, ["kernels", "model", "train"].map(String::from).into());
}

#[test]
fn only_tests_use_the_reference_oracle() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let offenders: Vec<_> = files
        .iter()
        .filter(|f| !f.starts_with(src().join("reference")) && !f.ends_with("lib.rs"))
        .filter(|f| {
            let c = code(f);
            c.contains("reference::")
                || c.contains("crate::{reference")
                || c.contains("use imba::reference")
        })
        .map(|f| f.strip_prefix(src()).unwrap().display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "production code uses the test oracle `reference`: {offenders:?}; move what it needs \
         out of `reference` (host RNG: `rng`; constants: their kernel module)"
    );
}
