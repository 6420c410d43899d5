//! `src/lib.rs` is the map of the crate: every module is listed in its `# Layout`, top to
//! bottom, and every module imports only modules listed below it (so there are no import
//! circles and no arrows back up).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

/// The modules in the order of the `# Layout` list (a line may name several).
fn layout_order(lib: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in lib.lines().filter(|l| l.starts_with("//! - ")) {
        let head = line.split(':').next().unwrap_or("");
        for part in head.split("[`").skip(1) {
            let name = part.split('`').next().unwrap();
            if !name.contains("::") {
                out.push(name.to_owned());
            }
        }
    }
    out
}

/// The top-level module a source file belongs to (`None` for lib.rs and main.rs).
fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// Code of a file without comments and without its `#[cfg(test)] mod tests` block.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_module_is_on_the_map_and_imports_only_modules_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let order = layout_order(&lib);
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';').to_owned())
        .filter(|m| m != "testing")
        .collect();
    let listed: BTreeSet<String> = order.iter().cloned().collect();
    assert_eq!(
        declared, listed,
        "lib.rs's layout lists exactly its modules"
    );

    let mut all = Vec::new();
    files(&src, &mut all);
    let mut upward = Vec::new();
    for file in all {
        let rel = file.strip_prefix(&src).unwrap();
        let Some(me) = module_of(rel) else { continue };
        if me == "testing" || rel.file_name().is_some_and(|f| f == "tests.rs") {
            continue;
        }
        let my_pos = order.iter().position(|m| *m == me).unwrap();
        let text = code(&std::fs::read_to_string(&file).unwrap());
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let target: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if target == me {
                continue;
            }
            if let Some(pos) = order.iter().position(|m| *m == target) {
                if pos <= my_pos {
                    upward.push(format!("{} -> {target}", rel.display()));
                }
            }
        }
    }
    upward.sort();
    upward.dedup();
    assert!(
        upward.is_empty(),
        "imports that point up the map (or in a circle): {upward:#?}"
    );
}
