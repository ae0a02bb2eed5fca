//! Nomad job files as people write them (`tests/nomad/*.nomad`), each read
//! as `edge job validate` reads it and compared with its snapshot in
//! `tests/snapshots/`: whether edge honours it, warns about a key or refuses
//! it, every diagnostic with its line, and for a job that is taken the JSON
//! edge stores. `INSTA_UPDATE=always` rewrites the snapshots after a change.

use edge_spec::{Files, ParseOptions, SpecError, parse_hcl};
use std::fmt::Write;
use std::path::Path;

/// What edge makes of one file, as a reviewer reads it.
fn outcome(path: &Path) -> String {
    let src = std::fs::read_to_string(path).expect("corpus file");
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("file name");
    let dir = path.parent().expect("corpus dir").to_path_buf();
    let mut opts = ParseOptions::new(name);
    opts.files = Files::new(move |file| {
        std::fs::read_to_string(dir.join(file)).map_err(|e| format!("{file}: {e}"))
    });
    let mut out = String::new();
    let list = |out: &mut String, title: &str, diags: &[edge_spec::Diagnostic]| {
        if !diags.is_empty() {
            let _ = writeln!(out, "{title}:");
            for d in diags {
                let _ = writeln!(out, "  {d}");
            }
        }
    };
    match parse_hcl(&src, &opts) {
        Ok(parsed) => {
            let verdict = if parsed.warnings.is_empty() {
                "honoured"
            } else {
                "honoured, with warnings"
            };
            let _ = writeln!(out, "outcome: {verdict}");
            list(&mut out, "warnings", &parsed.warnings);
            let json = serde_json::to_string_pretty(&parsed.job).expect("job as JSON");
            let _ = writeln!(out, "job:\n{json}");
        }
        Err(SpecError::Invalid { errors, warnings }) => {
            let _ = writeln!(out, "outcome: refused");
            list(&mut out, "errors", &errors);
            list(&mut out, "warnings", &warnings);
        }
        Err(other) => {
            let _ = writeln!(out, "outcome: refused\nerror: {other}");
        }
    }
    out
}

#[test]
fn nomad_job_files() {
    insta::glob!("nomad/*.nomad", |path| {
        insta::assert_snapshot!(outcome(path));
    });
}

/// The corpus is the promise: at least 30 files, and every block
/// and attribute of a job, group or task that edge refuses or warns about
/// (README's table) is in one of them.
#[test]
fn the_corpus_covers_the_nomad_table() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nomad");
    let files: Vec<String> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "nomad"))
        .map(|p| std::fs::read_to_string(p).expect("corpus file"))
        .collect();
    assert!(files.len() >= 30, "only {} corpus files", files.len());
    let all = files.join("\n");
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md");
    let (start, end) = ("<!-- nomad-table -->", "<!-- /nomad-table -->");
    let table =
        &readme[readme.find(start).expect("table start")..readme.find(end).expect("table end")];
    let missing: Vec<&str> = table
        .lines()
        .filter_map(|l| {
            let mut cells = l.strip_prefix("| `")?.split('`');
            let key = cells.next()?;
            let block = cells.nth(1)?;
            ["job", "group", "task"].contains(&block).then_some(key)
        })
        .filter(|key| !all.contains(&format!("{key} ")) && !all.contains(&format!("{key} {{")))
        .collect();
    assert!(missing.is_empty(), "no corpus file uses {missing:?}");
}
