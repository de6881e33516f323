//! The shape of the code (issue 25; docs/architecture.md): no two source files of a crate
//! import each other, directly or in a circle, and no source file is longer than 900 lines
//! except data definitions.
//!
//! A file's imports are the modules its code names through `crate::` and `super::` paths
//! (in `use` items, groups included, and inline); a name re-exported at the crate's root
//! (`pub use transport::ssh`) stands for the module it names. Comments are not imports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Files that are data definitions: the manifest kinds' types, which grow with the kinds.
const DATA_DEFINITIONS: &[&str] = &["schemas/src/kinds.rs"];

/// The longest a source file may be.
const MAX_LINES: usize = 900;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every crate's `src` folder.
fn crates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(workspace())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("src"))
        .filter(|p| p.join("lib.rs").is_file() || p.join("main.rs").is_file())
        .collect();
    out.sort();
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `host/mod.rs` → `host`, `plan/steps.rs` → `plan::steps`, `lib.rs` → `` (the root).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap_or(file);
    let mut parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|l| l == "mod" || l == "lib" || l == "main")
    {
        parts.pop();
    }
    parts.join("::")
}

/// The code of a file without comments (doc links name modules without importing them).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path written after `crate::` or `super::` in `code`, groups expanded
/// (`crate::{a, b::c}` → `a`, `b::c`), with `super` resolved against `module`.
fn paths(code: &str, module: &str) -> Vec<String> {
    let mut out = Vec::new();
    for prefix in ["crate::", "super::"] {
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().last();
            rest = &rest[at + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let mut base = String::new();
            let mut tail = rest;
            if prefix == "super::" {
                base = parent(module);
                while let Some(more) = tail.strip_prefix("super::") {
                    base = parent(&base);
                    tail = more;
                }
            }
            for path in expand(tail) {
                out.push(join(&base, &path));
            }
        }
    }
    out
}

fn parent(module: &str) -> String {
    module
        .rsplit_once("::")
        .map_or_else(String::new, |(p, _)| p.to_owned())
}

fn join(base: &str, path: &str) -> String {
    if base.is_empty() {
        path.to_owned()
    } else {
        format!("{base}::{path}")
    }
}

/// The paths a `use` tree starting at `text` names: `a::b::C`, or the members of a group.
fn expand(text: &str) -> Vec<String> {
    let head: String = text
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    let head = head.trim_end_matches(':').to_owned();
    let after = &text[text
        .char_indices()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == ':'))
        .map_or(text.len(), |(i, _)| i)..];
    if !after.starts_with('{') {
        return vec![head];
    }
    // A group: split its top level by commas.
    let mut depth = 0;
    let mut items = Vec::new();
    let mut current = String::new();
    for c in after[1..].chars() {
        match c {
            '{' => {
                depth += 1;
                current.push(c);
            }
            '}' if depth == 0 => break,
            '}' => {
                depth -= 1;
                current.push(c);
            }
            ',' if depth == 0 => items.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    items.push(current);
    items
        .iter()
        .map(|item| item.trim())
        .filter(|item| !item.is_empty() && *item != "self")
        .flat_map(expand)
        .map(|path| join(&head, &path))
        .collect()
}

/// The module a path is in: its longest prefix that is a module of the crate, after the
/// root's re-exports.
fn target(path: &str, modules: &BTreeSet<String>, aliases: &BTreeMap<String, String>) -> String {
    let mut parts: Vec<&str> = path.split("::").collect();
    let mut resolved: Vec<String> = Vec::new();
    if let Some(first) = parts.first()
        && let Some(real) = aliases.get(*first)
    {
        resolved.extend(real.split("::").map(str::to_owned));
        parts.remove(0);
    }
    resolved.extend(parts.iter().map(|p| (*p).to_owned()));
    for n in (1..=resolved.len()).rev() {
        let candidate = resolved[..n].join("::");
        if modules.contains(&candidate) {
            return candidate;
        }
    }
    String::new()
}

/// The root's `pub use a::b;`, `pub use a::{b, c};` and `pub use a as b;` of modules.
fn aliases(root: &str, modules: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in code(root).lines() {
        let Some(rest) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let rest = rest.trim_end_matches(';');
        if let Some((path, name)) = rest.split_once(" as ") {
            if modules.contains(path.trim()) {
                out.insert(name.trim().to_owned(), path.trim().to_owned());
            }
            continue;
        }
        for path in expand(rest) {
            let name = path.rsplit("::").next().unwrap_or(&path).to_owned();
            if modules.contains(&path) && name != path {
                out.insert(name, path);
            }
        }
    }
    out
}

/// Each crate's file-to-file imports, by module.
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(src, f)).collect();
    let root = ["lib.rs", "main.rs"]
        .iter()
        .find_map(|f| std::fs::read_to_string(src.join(f)).ok())
        .unwrap_or_default();
    let aliases = aliases(&root, &modules);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(src, file);
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let edges = graph.entry(module.clone()).or_default();
        for path in paths(&code(&text), &module) {
            let to = target(&path, &modules, &aliases);
            // The root only declares and re-exports; a module using its own child (or the
            // root) is not a circle of files.
            if !to.is_empty() && to != module {
                edges.insert(to);
            }
        }
    }
    graph
}

/// The circles of a graph: its strongly connected parts of more than one module.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Reachability by search from each node: small graphs, plain and clear.
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(node) = stack.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|k| (k, reach(k))).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut placed = BTreeSet::new();
    for node in graph.keys() {
        if placed.contains(node) || !reachable[node].contains(node) {
            continue;
        }
        let part: Vec<String> = graph
            .keys()
            .filter(|other| reachable[node].contains(*other) && reachable[*other].contains(node))
            .cloned()
            .collect();
        placed.extend(part.iter().cloned());
        if part.len() > 1 {
            out.push(part);
        }
    }
    out
}

#[test]
fn no_two_files_import_each_other() {
    let mut found = Vec::new();
    for src in crates() {
        for circle in circles(&imports(&src)) {
            found.push(format!("{}: {}", src.display(), circle.join(" ↔ ")));
        }
    }
    assert!(
        found.is_empty(),
        "files that import each other:\n{}",
        found.join("\n")
    );
}

#[test]
fn no_source_file_is_over_900_lines() {
    let root = workspace();
    let mut long = Vec::new();
    for src in crates() {
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        for file in files {
            let relative = file
                .strip_prefix(&root)
                .unwrap_or(&file)
                .to_string_lossy()
                .replace("/../", "/");
            let lines = std::fs::read_to_string(&file)
                .unwrap_or_default()
                .lines()
                .count();
            if lines > MAX_LINES && !DATA_DEFINITIONS.iter().any(|d| relative.ends_with(d)) {
                long.push(format!("{relative}: {lines} lines"));
            }
        }
    }
    assert!(
        long.is_empty(),
        "source files over {MAX_LINES} lines:\n{}",
        long.join("\n")
    );
}

/// The checker sees what it is for: a circle through `super::`, through a group and through
/// a root re-export, and not one written in a comment.
#[test]
fn the_checker_finds_circles_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let src = dir.path();
    std::fs::create_dir_all(src.join("room")).unwrap_or_else(|e| panic!("{e}"));
    let write = |path: &str, text: &str| {
        std::fs::write(src.join(path), text).unwrap_or_else(|e| panic!("{e}"));
    };
    write(
        "lib.rs",
        "pub mod a;\npub mod b;\npub mod room;\npub use room::inner;\n",
    );
    write("a.rs", "use crate::{b::Thing, room};\n");
    write(
        "b.rs",
        "// crate::a is only mentioned here\npub fn f() { crate::inner::g() }\n",
    );
    write("room/mod.rs", "pub mod inner;\n");
    write("room/inner.rs", "use super::super::a;\n");
    let graph = imports(src);
    assert_eq!(
        circles(&graph),
        [vec![
            "a".to_owned(),
            "b".to_owned(),
            "room::inner".to_owned()
        ]]
    );
    write("room/inner.rs", "pub fn g() {}\n");
    assert!(circles(&imports(src)).is_empty(), "{:?}", imports(src));
}
