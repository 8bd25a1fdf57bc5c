//! How Snug's defaults were tuned (see docs/recommender.md): VPA and Snug configurations on
//! one half of the series (`SPLIT=tune`: even-numbered positions), then checked on the other
//! half (`SPLIT=check`) and on all (`SPLIT=all`). `GRID="key=value,key=value;..."` adds
//! configurations to compare with the defaults. Needs the traces (`SNUG_TRACES_DIR`, default: the shared traces
//! beside the workspace).
//!
//! ```text
//! SPLIT=tune GRID="cpu_m=0.05;mem_max=0.5" cargo run --release --example tune
//! ```
use std::path::Path;

use snug_recommender::quality::{REFRESH_S, load_datasets};
use snug_recommender::replay::replay_rows;
use snug_recommender::score::Score;
use snug_recommender::snug::{SnugConfig, SnugRecommender};
use snug_recommender::trace::Trace;
use snug_recommender::vpa::VpaRecommender;

fn run(
    traces: &[&Trace],
    make: &(dyn Fn() -> Box<dyn snug_recommender::Recommender> + Sync),
) -> Score {
    let parts: Vec<Score> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|t| {
                s.spawn(move || {
                    let mut acc = Score::default();
                    for tr in traces.iter().skip(t).step_by(2) {
                        let mut r = make();
                        acc.add(&Score::of(&replay_rows(tr, r.as_mut(), REFRESH_S)));
                    }
                    acc
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut a = Score::default();
    for p in &parts {
        a.add(p);
    }
    a
}

fn line(name: &str, s: &Score) {
    println!(
        "{name:40} cpu_slack {:.4} mem_slack {:.4} thr {:.4} starved {:.4} oom {} oom_series {}",
        s.cpu_slack().unwrap_or(f64::NAN),
        s.memory_slack().unwrap_or(f64::NAN),
        s.throttled_share().unwrap_or(f64::NAN),
        s.starved_share().unwrap_or(f64::NAN),
        s.oom_kills,
        s.series_with_oom
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let split = std::env::var("SPLIT").unwrap_or("tune".into());
    let dir =
        snug_recommender::quality::traces_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    let ds = load_datasets(&dir)?;
    let grid = configs()?;
    for d in &ds {
        let traces: Vec<&Trace> = d
            .traces
            .iter()
            .enumerate()
            .filter(|(i, _)| split == "all" || (i % 2 == 0) == (split == "tune"))
            .map(|(_, t)| t)
            .collect();
        println!("== {} ({} series, split {split})", d.name, traces.len());
        if std::env::var("PER_SERIES").is_ok() {
            for tr in &traces {
                let mut v = VpaRecommender::default();
                let a = Score::of(&replay_rows(tr, &mut v, REFRESH_S));
                let last = grid.last().map(|(_, c)| c.clone()).unwrap_or_default();
                let mut sn = SnugRecommender::new(last);
                let b = Score::of(&replay_rows(tr, &mut sn, REFRESH_S));
                println!(
                    "{:20} vpa oom {:4} memGB {:8.0} unusedGB {:8.0} | snug oom {:4} memGB {:8.0} unusedGB {:8.0}",
                    tr.name,
                    a.oom_kills,
                    a.memory_limited / 1e9,
                    a.memory_unused / 1e9,
                    b.oom_kills,
                    b.memory_limited / 1e9,
                    b.memory_unused / 1e9
                );
            }
            continue;
        }
        line(
            "vpa",
            &run(&traces, &|| Box::new(VpaRecommender::default())),
        );
        for (name, cfg) in &grid {
            let c = cfg.clone();
            line(
                name,
                &run(&traces, &move || Box::new(SnugRecommender::new(c.clone()))),
            );
        }
    }
    Ok(())
}

fn configs() -> Result<Vec<(String, SnugConfig)>, String> {
    let base = SnugConfig::default();
    let mut v = vec![("default".to_string(), base.clone())];
    let spec = std::env::var("GRID").unwrap_or_default();
    for item in spec.split(';').filter(|s| !s.is_empty()) {
        let mut c = base.clone();
        for kv in item.split(',') {
            let (k, val) = kv
                .split_once('=')
                .ok_or(format!("{kv}: expected key=value"))?;
            let x: f64 = val.parse().map_err(|e| format!("{kv}: {e}"))?;
            match k {
                "slot_s" => c.slot_s = x,
                "slot_p" => c.slot_percentile = x,
                "fall" => c.slot_fall = x,
                "rise" => c.slot_rise = x,
                "recent_hl" => c.recent_half_life_s = x,
                "recent_p" => c.recent_percentile = x,
                "cpu_m" => c.cpu_margin = x,
                "cpu_abs" => c.cpu_headroom_cores = x,
                "press" => c.cpu_pressure_step = x,
                "press_max" => c.cpu_pressure_max = x,
                "press_hl" => c.cpu_pressure_half_life_s = x,
                "mem_w" => c.memory_window_s = x,
                "mem_start" => c.memory_margin_start = x,
                "mem_pp" => c.memory_peak_percentile = x,
                "mem_hl" => c.memory_half_life_s = x,
                "mem_abs" => c.memory_headroom_bytes = x * 1048576.0,
                "mem_max" => c.memory_margin_max = x,
                "jump_h" => c.jump_history_hours = x,
                "jump_p" => c.jump_percentile = x,
                "jump_f" => c.jump_factor = x,
                "oom_floor" => c.oom_floor_s = x,
                "mem_m" => c.memory_margin = x,
                "oom_step" => c.oom_margin_step = x,
                "oom_hl" => c.oom_relax_half_life_s = x,
                _ => return Err(format!("unknown key {k}")),
            }
        }
        v.push((item.to_string(), c));
    }
    Ok(v)
}
