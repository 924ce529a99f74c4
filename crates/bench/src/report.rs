//! The one JSON line a benchmark run prints, and where it goes.
//!
//! Every bench (`storage`, `kafka`, `mqtt`) describes a run as one flat, serializable struct
//! whose fields are never left out (`null` when they do not apply), so the lines of different
//! runs and benches can sit in one results file.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// Prints `report` as one JSON line to stdout and, when `jsonl` is given, appends it there.
pub fn emit(report: &impl Serialize, jsonl: Option<&Path>) -> Result<()> {
    let line = serde_json::to_string(report).context("encoding the report")?;
    println!("{line}");
    let Some(jsonl) = jsonl else { return Ok(()) };
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(jsonl)
        .with_context(|| format!("opening {}", jsonl.display()))?;
    // One write call per line, so concurrent runs appending to one file do not interleave.
    out.write_all(format!("{line}\n").as_bytes())
        .with_context(|| format!("appending to {}", jsonl.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Line {
        bench: &'static str,
        ratio: Option<f64>,
    }

    #[test]
    fn lines_append_one_per_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        emit(
            &Line {
                bench: "a",
                ratio: Some(0.5),
            },
            Some(&path),
        )
        .unwrap();
        emit(
            &Line {
                bench: "b",
                ratio: None,
            },
            Some(&path),
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"bench\":\"a\",\"ratio\":0.5}\n{\"bench\":\"b\",\"ratio\":null}\n"
        );
    }
}
