//! The measurements behind `make bench`. Each binary measures one thing
//! against its floor in the same run and writes a JSON file under
//! `$CARGO_TARGET_DIR/bench/`; `report` turns them into docs/benchmarks.md.

pub mod engine;

use std::path::PathBuf;

/// Where the measurements go: the build's target dir, out of the sources.
pub fn results_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir).expect("bench results dir");
    dir
}

/// The value at quantile `q` (nearest rank) of `values`, sorted here.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}
