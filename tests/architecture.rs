//! The pipeline's one direction of dependency: a module uses the stages before it, never those
//! after it. Read from the source, so a backward import fails here before review.

use std::path::{Path, PathBuf};

/// Every top-level module of the library, in pipeline order; a module may use its own stage
/// and those listed before it. The leaves come first.
const STAGES: &[&[&str]] = &[
    &["model"],
    &[
        "tick",
        "names",
        "telemetry",
        "background",
        "nats_server",
        "alertmanager",
        "units",
    ],
    &["collect"],
    &["clocks"],
    &["aggregate"],
    &["analyze"],
    &["archive"],
    // OpenTelemetry export: fed by the collector, configured with the rest.
    &["otlp"],
    &["config"],
    &["collector"],
    &["api"],
    &["render"],
    // Alerts to their receivers.
    &["notify"],
    // A postmortem bundle is made of the routes' own answers, and served by one.
    &["http", "export"],
    &["service"],
    &["sim"],
];

fn stage_of(module: &str) -> Option<usize> {
    STAGES.iter().position(|s| s.contains(&module))
}

/// The top-level module a source file belongs to (`src/collect/join.rs` → `collect`) and how
/// deep below it the file is (0 for `src/collect.rs` or `src/collect/mod.rs`, 1 for
/// `src/collect/join.rs`): `depth + 1` `super::` lead back to the crate root.
fn module_of(path: &Path, src: &Path) -> (String, usize) {
    let parts: Vec<String> = path
        .strip_prefix(src)
        .unwrap()
        .components()
        .map(|c| {
            let part = c.as_os_str().to_string_lossy();
            part.trim_end_matches(".rs").to_string()
        })
        .collect();
    let depth = parts.len() - 1 - usize::from(parts.len() > 1 && parts[parts.len() - 1] == "mod");
    (parts[0].clone(), depth)
}

/// The first identifier of `s`.
fn ident(s: &str) -> String {
    s.trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// Every crate-level module a file names outside `//` comments: `crate::<module>`, each name
/// of `crate::{a, b::c}`, and `super::` chains that climb to the crate root (`depth + 1` long).
fn uses(text: &str, depth: usize) -> Vec<(usize, String)> {
    let to_root = "super::".repeat(depth + 1);
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for prefix in ["crate::", to_root.as_str()] {
            let mut rest = code;
            while let Some(at) = rest.find(prefix) {
                let before = &rest[..at];
                rest = &rest[at + prefix.len()..];
                // Only whole `super::` chains: `super::super::x` also contains `super::x`.
                if prefix != "crate::"
                    && (before.ends_with("super::") || rest.starts_with("super::"))
                {
                    continue;
                }
                let named: Vec<String> = match rest.strip_prefix('{') {
                    Some(group) => group
                        .split('}')
                        .next()
                        .unwrap_or("")
                        .split(',')
                        .map(ident)
                        .filter(|m| !m.is_empty())
                        .collect(),
                    None => vec![ident(rest)],
                };
                // Through `super::` only the stages count: inside an inline module (`mod
                // tests`) the same chain stops short of the root, at the file's own items.
                found.extend(
                    named
                        .into_iter()
                        .filter(|m| prefix == "crate::" || stage_of(m).is_some())
                        .map(|m| (n + 1, m)),
                );
            }
        }
    }
    found
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_uses_a_later_stage() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    files(&src, &mut paths);
    let mut backwards = Vec::new();
    let mut checked = 0;
    for path in paths {
        // A binary under src/bin/ is a crate of its own: its `crate::` is itself.
        if path.starts_with(src.join("bin")) {
            continue;
        }
        let (module, depth) = module_of(&path, &src);
        if module == "main" || module == "lib" {
            continue;
        }
        let own = stage_of(&module)
            .unwrap_or_else(|| panic!("{module} is in no stage: add it to STAGES"));
        for (line, used) in uses(&std::fs::read_to_string(&path).unwrap(), depth) {
            checked += 1;
            let stage = stage_of(&used).unwrap_or_else(|| {
                panic!("{}:{line} uses crate::{used}, in no stage", path.display())
            });
            if stage > own {
                backwards.push(format!("{}:{line}: {module} uses {used}", path.display()));
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} uses found: is the scan broken?"
    );
    assert!(
        backwards.is_empty(),
        "uses of a later stage:\n{}",
        backwards.join("\n")
    );
}

#[test]
fn the_scan_sees_every_form_of_a_use() {
    let names = |text: &str, depth: usize| -> Vec<String> {
        uses(text, depth).into_iter().map(|(_, m)| m).collect()
    };
    let text =
        "use crate::http::AppState; // crate::sim in a comment\nlet x = crate::model::Seen::now();";
    assert_eq!(names(text, 0), ["http", "model"]);
    assert_eq!(
        names("use crate::{model::Seen, tick};", 0),
        ["model", "tick"]
    );
    // From a file one below its module, two `super::` reach the root; one stays inside.
    let text = "use super::super::http::x;\nuse super::join;";
    assert_eq!(names(text, 1), ["http"]);
    assert_eq!(names("use super::http::x;", 0), ["http"]);
    assert!(names("use super::*;\nuse super::lock;", 0).is_empty());
    assert!(stage_of("http") > stage_of("collect"));
    let src = Path::new("/r/src");
    let of = |p: &str| module_of(Path::new(p), src);
    assert_eq!(
        of("/r/src/analyze/causes/gc_pause.rs"),
        ("analyze".into(), 2)
    );
    assert_eq!(of("/r/src/analyze/causes/mod.rs"), ("analyze".into(), 1));
    assert_eq!(of("/r/src/analyze/mod.rs"), ("analyze".into(), 0));
    assert_eq!(of("/r/src/api.rs"), ("api".into(), 0));
}
