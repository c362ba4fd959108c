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

#[test]
fn top_level_modules_have_no_import_cycles() {
    let graph = module_graph();
    assert!(graph.contains_key("kernels") && graph.contains_key("model"));
    // Depth-first search for a back edge; report the cycle's path.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(i) = stack.iter().position(|s| s == m) {
            panic!("import cycle: {} → {m}", stack[i..].join(" → "));
        }
        stack.push(m.to_string());
        for d in graph.get(m).into_iter().flatten() {
            visit(d, graph, stack, done);
        }
        stack.pop();
        done.insert(m.to_string());
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done);
    }
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
