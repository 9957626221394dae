//! The shape rules of docs/principles.md, enforced: arrows point down
//! only (a module never imports one of a higher layer), a mode never
//! imports another mode, every module of lib.rs has a layer, and no .rs
//! file under src/ or xtask/src/ is longer than 600 lines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layers, top first. A module may import its own layer's modules
/// and lower layers' ones, except that modes never import each other.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "modes",
        &[
            "agent",
            "exporter",
            "push",
            "record",
            "hindsight",
            "top",
            "inspect",
            "mcp",
            "view",
        ],
    ),
    ("daemon", &["daemon"]),
    (
        "shared homes",
        &[
            "serve",
            "client",
            "snapshot",
            "spool",
            "parquet",
            "query",
            "analysis",
            "prometheus",
            "samplers",
        ],
    ),
    (
        "foundations",
        &[
            "runtime",
            "systemd",
            "bpf",
            "registry",
            "histogram",
            "config",
            "privileges",
        ],
    ),
];

/// Modules only compiled for tests, which may read anything.
const TEST_ONLY: &[&str] = &["catalog"];

const MAX_LINES: usize = 600;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, m)| m.contains(&module))
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = e.unwrap().path();
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a file's text names through `crate::`, with the
/// line of the first mention: `crate::x::…`, `crate::x`, and the first
/// segment of every item of a `use crate::{x, y::{z, w}, …}` group, over
/// as many lines as it takes. Comments are skipped.
fn crate_refs(text: &str) -> BTreeMap<String, usize> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeMap::new();
    let mut from = 0;
    while let Some(i) = code[from..].find("crate::") {
        let at = from + i;
        let rest = &code[at + "crate::".len()..];
        from = at + "crate::".len();
        let Some(group) = rest.strip_prefix('{') else {
            let name = ident(rest);
            if !name.is_empty() {
                out.entry(name).or_insert(line_of(at));
            }
            continue;
        };
        // The group's top-level items: split at commas outside nested braces.
        let (mut depth, mut item_start) = (0usize, 0usize);
        for (j, ch) in group.char_indices() {
            let end = match ch {
                '{' => {
                    depth += 1;
                    false
                }
                '}' if depth == 0 => true,
                '}' => {
                    depth -= 1;
                    false
                }
                ',' => depth == 0,
                _ => false,
            };
            if end {
                let name = ident(group[item_start..j].trim_start());
                if !name.is_empty() && name != "self" {
                    out.entry(name).or_insert(line_of(at));
                }
                item_start = j + 1;
                if ch == '}' {
                    break;
                }
            }
        }
    }
    out
}

/// Every broken rule of the file `path` (relative, e.g. `src/agent/mod.rs`)
/// that belongs to top-level module `module`, given its text.
fn violations(path: &str, module: &str, text: &str, macros: &[&str]) -> Vec<String> {
    let Some(own) = rank(module) else {
        return vec![format!(
            "{path}: module `{module}` has no layer in tests/structure.rs"
        )];
    };
    let mut out = Vec::new();
    for (name, line) in crate_refs(text) {
        if name == module || macros.contains(&name.as_str()) {
            continue;
        }
        let Some(theirs) = rank(&name) else {
            if TEST_ONLY.contains(&name.as_str()) {
                continue;
            }
            out.push(format!(
                "{path}:{line}: imports `crate::{name}`, which has no layer"
            ));
            continue;
        };
        if theirs < own {
            out.push(format!(
                "{path}:{line}: `{module}` ({}) imports `{name}` ({}), a higher layer",
                LAYERS[own].0, LAYERS[theirs].0
            ));
        } else if theirs == 0 && own == 0 {
            out.push(format!(
                "{path}:{line}: mode `{module}` imports mode `{name}`: move what they share to a shared home"
            ));
        }
    }
    out
}

/// `pub mod x;` / `mod x;` lines of lib.rs.
fn lib_modules() -> Vec<String> {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            l.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_string)
        })
        .collect()
}

/// `macro_rules!` names exported at the crate root (`crate::family!`).
fn exported_macros() -> Vec<String> {
    let mut files = Vec::new();
    rs_files(&root().join("src"), &mut files);
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut lines = text.lines().peekable();
        while let Some(l) = lines.next() {
            if l.trim() == "#[macro_export]" {
                if let Some(name) = lines
                    .peek()
                    .and_then(|n| n.trim().strip_prefix("macro_rules! "))
                {
                    out.push(name.trim_end_matches(" {").to_string());
                }
            }
        }
    }
    out
}

#[test]
fn every_module_has_a_layer() {
    let modules = lib_modules();
    let mut problems = Vec::new();
    for m in &modules {
        if rank(m).is_none() && !TEST_ONLY.contains(&m.as_str()) {
            problems.push(format!(
                "src/lib.rs: `mod {m}` is in no layer of tests/structure.rs"
            ));
        }
    }
    for (layer, names) in LAYERS {
        for n in *names {
            if !modules.iter().any(|m| m == n) {
                problems.push(format!(
                    "layer {layer}: `{n}` is not a module of src/lib.rs"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn arrows_point_down_and_modes_stay_apart() {
    let macros = exported_macros();
    let macros: Vec<&str> = macros.iter().map(String::as_str).collect();
    assert!(
        macros.contains(&"family"),
        "the family! macro was not found"
    );
    let mut files = Vec::new();
    rs_files(&root().join("src"), &mut files);
    let mut problems = Vec::new();
    let mut checked = 0;
    for f in &files {
        let rel = f
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let inside = rel.strip_prefix("src/").unwrap();
        let module = inside
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        if matches!(module.as_str(), "main" | "lib") || TEST_ONLY.contains(&module.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        problems.extend(violations(&rel, &module, &text, &macros));
        checked += 1;
    }
    assert!(checked > 50, "only {checked} files checked");
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// The checker itself catches what it must (a rule that cannot fail
/// proves nothing).
#[test]
fn the_checker_finds_upward_and_sideways_imports() {
    let m = ["family"];
    let up = "use crate::agent::collector::Collector;\n";
    assert_eq!(violations("src/bpf/x.rs", "bpf", up, &m).len(), 1);
    let sideways = "    let w = crate::record::write(x);\n";
    assert_eq!(
        violations("src/hindsight/mod.rs", "hindsight", sideways, &m).len(),
        1
    );
    let grouped = "use crate::{registry::Series, samplers::SAMPLERS};\n";
    let v = violations("src/serve/x.rs", "serve", grouped, &m);
    assert!(v.is_empty(), "{v:?}");
    let v = violations("src/config/x.rs", "config", grouped, &m);
    assert_eq!(v.len(), 1, "{v:?}");
    // Groups over several lines, nested ones: only the top-level items.
    let multi = "use crate::{\n    registry::{Family, Series},\n    agent::Agent,\n};\n";
    let v = violations("src/serve/x.rs", "serve", multi, &m);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].contains("src/serve/x.rs:1") && v[0].contains("`agent`"),
        "{v:?}"
    );
    let down = "use crate::spool::Spool; // crate::agent in a comment\ncrate::family! {}\n";
    assert!(violations("src/push/x.rs", "push", down, &m).is_empty());
    assert_eq!(violations("src/new/x.rs", "new", down, &m).len(), 1);
}

#[test]
fn no_file_is_longer_than_600_lines() {
    let mut files = Vec::new();
    rs_files(&root().join("src"), &mut files);
    rs_files(&root().join("xtask/src"), &mut files);
    assert!(files.len() > 50, "only {} files found", files.len());
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_LINES).then(|| {
                format!(
                    "{} has {n} lines (at most {MAX_LINES}): split it along its seams",
                    f.strip_prefix(root()).unwrap().display()
                )
            })
        })
        .collect();
    assert!(long.is_empty(), "\n{}", long.join("\n"));
}
