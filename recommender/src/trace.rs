//! Readers for the usage traces the replay and the quality benchmark use.
//!
//! - `csv`: `timestamp_s,cpu_cores,memory_bytes` (a header line is optional; an empty field is
//!   "no reading").
//! - `bitbrains`: the GWA-T-12 Bitbrains per-VM files (`;` + tab separated, gzipped or not).
//!   CPU cores = `CPU usage [MHZ]` / (`CPU capacity provisioned [MHZ]` / `CPU cores`); memory =
//!   `Memory usage [KB]` × 1024, where 0 means no reading. The provisioned columns are the
//!   manual sizing (request = limit = what was provisioned).
//! - `azure`: the Azure Public Dataset V1 wide CSV (`t_seconds`, one column per VM, CPU in
//!   percent of the VM's capacity). Cores = percent / 100 × `capacity_cores` (1 unless told);
//!   there is no memory reading and no manual sizing.
//!
//! Gzip is detected from the file's magic bytes. Bad input is an error naming the file, the line
//! and what was wrong; nothing is skipped silently.
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::{CurrentResources, Error, Result, Usage};

/// One sample of a trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TracePoint {
    /// What the workload used.
    pub usage: Usage,
    /// What a person provisioned at that time, when the trace says.
    pub manual: Option<CurrentResources>,
}

/// One series, in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// A name for tables (file name, or file name and column).
    pub name: String,
    /// The samples.
    pub points: Vec<TracePoint>,
}

/// The trace formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceFormat {
    /// `timestamp_s,cpu_cores,memory_bytes`.
    Csv,
    /// A Bitbrains GWA-T-12 VM file.
    Bitbrains,
    /// An Azure V1 wide CSV (one column chosen).
    Azure,
}

impl std::str::FromStr for TraceFormat {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "csv" => Ok(TraceFormat::Csv),
            "bitbrains" => Ok(TraceFormat::Bitbrains),
            "azure" => Ok(TraceFormat::Azure),
            other => Err(format!(
                "unknown format {other:?} (expected csv, bitbrains or azure)"
            )),
        }
    }
}

/// Opens a file, decompressing it when it is gzip.
pub fn open(path: &Path) -> Result<Box<dyn BufRead + Send>> {
    let err = |e: std::io::Error| trace_error(path, 0, &e.to_string());
    let mut file = BufReader::new(File::open(path).map_err(err)?);
    let magic = file.fill_buf().map_err(err)?;
    if magic.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::new(MultiGzDecoder::new(file))))
    } else {
        Ok(Box::new(file))
    }
}

/// Reads one series from `path` in `format`; `column` picks the Azure VM.
pub fn read(
    path: &Path,
    format: TraceFormat,
    column: Option<&str>,
    capacity_cores: f64,
) -> Result<Trace> {
    let reader = open(path)?;
    let name = file_name(path);
    match format {
        TraceFormat::Csv => parse_csv(reader, &name),
        TraceFormat::Bitbrains => parse_bitbrains(reader, &name),
        TraceFormat::Azure => {
            let Some(column) = column else {
                return Err(trace_error(
                    path,
                    0,
                    "--column NAME is required for azure traces",
                ));
            };
            let mut all = parse_azure(reader, &name, capacity_cores, Some(column))?;
            all.pop()
                .ok_or_else(|| trace_error(path, 1, &format!("no column {column:?}")))
        }
    }
}

/// Every VM column of an Azure wide CSV, one series each.
pub fn read_azure_all(path: &Path, capacity_cores: f64) -> Result<Vec<Trace>> {
    parse_azure(open(path)?, &file_name(path), capacity_cores, None)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn trace_error(path: impl AsRef<Path>, line: usize, reason: &str) -> Error {
    let path = path.as_ref().display().to_string();
    let reason = if line > 0 {
        format!("line {line}: {reason}")
    } else {
        reason.to_string()
    };
    Error::Trace { path, reason }
}

/// A field that must be a finite, non-negative number; empty is `None`.
fn number(field: &str, what: &str, source: &str, line: usize) -> Result<Option<f64>> {
    let field = field.trim();
    if field.is_empty() {
        return Ok(None);
    }
    match field.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
        _ => Err(trace_error(
            source,
            line,
            &format!("{what} is not a non-negative number: {field:?}"),
        )),
    }
}

fn required(field: &str, what: &str, source: &str, line: usize) -> Result<f64> {
    number(field, what, source, line)?
        .ok_or_else(|| trace_error(source, line, &format!("{what} is missing")))
}

/// Samples must come in time order: a replay is only causal if the trace is.
fn check_order(points: &[TracePoint], at: f64, source: &str, line: usize) -> Result<()> {
    match points.last() {
        Some(prev) if at < prev.usage.at => Err(trace_error(
            source,
            line,
            &format!("timestamp {at} goes back in time"),
        )),
        _ => Ok(()),
    }
}

/// Parses the generic CSV.
pub fn parse_csv(reader: impl BufRead, source: &str) -> Result<Trace> {
    let mut points = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| trace_error(source, n, &e.to_string()))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if n == 1
            && fields[0]
                .trim()
                .starts_with(|c: char| c.is_ascii_alphabetic())
        {
            continue; // header
        }
        if fields.len() != 3 {
            let reason = format!(
                "expected 3 fields (timestamp_s,cpu_cores,memory_bytes), got {}",
                fields.len()
            );
            return Err(trace_error(source, n, &reason));
        }
        let at = required(fields[0], "timestamp_s", source, n)?;
        check_order(&points, at, source, n)?;
        let usage = Usage {
            at,
            cpu_cores: number(fields[1], "cpu_cores", source, n)?,
            memory_bytes: number(fields[2], "memory_bytes", source, n)?,
        };
        points.push(TracePoint {
            usage,
            manual: None,
        });
    }
    Ok(Trace {
        name: source.to_string(),
        points,
    })
}

/// Parses a Bitbrains VM file.
pub fn parse_bitbrains(reader: impl BufRead, source: &str) -> Result<Trace> {
    let mut points = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| trace_error(source, n, &e.to_string()))?;
        if line.trim().is_empty() || (n == 1 && line.starts_with("Timestamp")) {
            continue;
        }
        let f: Vec<&str> = line.split(';').map(str::trim).collect();
        if f.len() < 7 {
            return Err(trace_error(
                source,
                n,
                &format!("expected at least 7 fields, got {}", f.len()),
            ));
        }
        let at = required(f[0], "timestamp", source, n)?;
        check_order(&points, at, source, n)?;
        let cores = required(f[1], "CPU cores", source, n)?;
        let capacity_mhz = required(f[2], "CPU capacity provisioned", source, n)?;
        let usage_mhz = required(f[3], "CPU usage [MHZ]", source, n)?;
        let memory_kb = required(f[5], "Memory capacity provisioned", source, n)?;
        let used_kb = required(f[6], "Memory usage", source, n)?;
        let mhz_per_core = if cores > 0.0 {
            capacity_mhz / cores
        } else {
            0.0
        };
        let cpu_cores = (mhz_per_core > 0.0).then(|| usage_mhz / mhz_per_core);
        let memory_bytes = (used_kb > 0.0).then_some(used_kb * 1024.0);
        // some rows provision nothing (0 cores or 0 KB): no manual sizing is known there
        let provisioned = cores > 0.0 && capacity_mhz > 0.0 && memory_kb > 0.0;
        let manual = provisioned.then_some(CurrentResources {
            cpu_request: Some(cores),
            cpu_limit: Some(cores),
            memory_request: Some(memory_kb * 1024.0),
            memory_limit: Some(memory_kb * 1024.0),
        });
        points.push(TracePoint {
            usage: Usage {
                at,
                cpu_cores,
                memory_bytes,
            },
            manual,
        });
    }
    Ok(Trace {
        name: source.to_string(),
        points,
    })
}

/// Parses an Azure wide CSV: one column (`only`), or all of them.
pub fn parse_azure(
    reader: impl BufRead,
    source: &str,
    capacity_cores: f64,
    only: Option<&str>,
) -> Result<Vec<Trace>> {
    let mut lines = reader.lines();
    let header = match lines.next() {
        Some(h) => h.map_err(|e| trace_error(source, 1, &e.to_string()))?,
        None => return Err(trace_error(source, 1, "empty file")),
    };
    let names: Vec<String> = header.split(',').map(|s| s.trim().to_string()).collect();
    let columns: Vec<usize> = match only {
        Some(c) => {
            let idx = names.iter().skip(1).position(|n| n == c).ok_or_else(|| {
                trace_error(
                    source,
                    1,
                    &format!("no column {c:?}; columns are {}", names[1..].join(", ")),
                )
            })?;
            vec![idx + 1]
        }
        None => (1..names.len()).collect(),
    };
    let mut traces: Vec<Trace> = columns
        .iter()
        .map(|c| Trace {
            name: format!("{source}:{}", names[*c]),
            points: Vec::new(),
        })
        .collect();
    for (i, line) in lines.enumerate() {
        let n = i + 2;
        let line = line.map_err(|e| trace_error(source, n, &e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != names.len() {
            let reason = format!("expected {} fields, got {}", names.len(), f.len());
            return Err(trace_error(source, n, &reason));
        }
        let at = required(f[0], "t_seconds", source, n)?;
        for (trace, c) in traces.iter_mut().zip(&columns) {
            check_order(&trace.points, at, source, n)?;
            let percent = number(f[*c], &names[*c], source, n)?;
            let usage = Usage {
                at,
                cpu_cores: percent.map(|p| p / 100.0 * capacity_cores),
                memory_bytes: None,
            };
            trace.points.push(TracePoint {
                usage,
                manual: None,
            });
        }
    }
    Ok(traces)
}

#[cfg(test)]
mod tests;
