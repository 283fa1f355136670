//! The pipeline's one direction of dependency: a module uses the stages before it, never those
//! after it. Read from the source, so a backward import fails here before review.

use std::path::Path;

/// Every top-level module of the library, in pipeline order; a module may use its own stage
/// and those listed before it. The leaves come first.
const STAGES: &[&[&str]] = &[
    &["model"],
    &["tick", "names", "telemetry", "background", "nats_server"],
    &["config"],
    &["collect"],
    &["aggregate"],
    &["collector"],
    &["analyze"],
    &["api"],
    &["render"],
    &["http"],
    &["service"],
    &["sim"],
];

fn stage_of(module: &str) -> Option<usize> {
    STAGES.iter().position(|s| s.contains(&module))
}

/// The top-level module a source file belongs to: `src/collect/join.rs` → `collect`.
fn module_of(path: &Path, src: &Path) -> String {
    let relative = path.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_string()
}

/// Every `crate::<module>` a file names outside comments.
fn uses(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.push((n + 1, name));
            rest = after;
        }
    }
    found
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
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
        let module = module_of(&path, &src);
        if module == "main" || module == "lib" {
            continue;
        }
        let own = stage_of(&module)
            .unwrap_or_else(|| panic!("{module} is in no stage: add it to STAGES"));
        for (line, used) in uses(&std::fs::read_to_string(&path).unwrap()) {
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
fn the_scan_sees_a_backward_use() {
    let text =
        "use crate::http::AppState; // crate::sim in a comment\nlet x = crate::model::Seen::now();";
    let found: Vec<String> = uses(text).into_iter().map(|(_, m)| m).collect();
    assert_eq!(found, ["http", "model"]);
    assert!(stage_of("http") > stage_of("collect"));
}
