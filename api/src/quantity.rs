//! Kubernetes resource quantities (`250m`, `1.5`, `512Mi`, `1e3`) to numbers and back.
//!
//! CPU is handled in cores and memory in bytes, as `f64`: recommendations are estimates, and
//! the formatters round to what a person would write (whole millicores, whole MiB), always up,
//! so a formatted request is never below the number it came from.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::{Error, Result};

const MIB: f64 = 1024.0 * 1024.0;

/// Parses a quantity into its value in base units (cores for CPU, bytes for memory).
pub fn parse(text: &str) -> Result<f64> {
    let err = |why| Error::Quantity(text.to_owned(), why);
    let s = text.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    // Whole numbers (`250m`, `512Mi`, `2`: nearly every quantity) without the float parser.
    let number = match number.parse::<u64>() {
        Ok(whole) if whole < 1 << 53 => whole as f64,
        _ => number.parse().map_err(|_| err("not a number"))?,
    };
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => MIB,
        "Gi" => MIB * 1024.0,
        "Ti" => MIB * MIB,
        "Pi" => MIB * MIB * 1024.0,
        "Ei" => MIB * MIB * MIB,
        exp if exp.starts_with(['e', 'E']) => {
            let power: i32 = exp[1..].parse().map_err(|_| err("bad exponent"))?;
            10f64.powi(power)
        }
        _ => return Err(err("unknown suffix")),
    };
    let value = number * multiplier;
    if !value.is_finite() || value < 0.0 {
        return Err(err("must be a finite, non-negative amount"));
    }
    Ok(value)
}

/// Parses a [`Quantity`]; see [`parse`].
pub fn parse_quantity(quantity: &Quantity) -> Result<f64> {
    parse(&quantity.0)
}

/// Formats cores as whole millicores (`250m`), or whole cores when exact (`2`), rounding up.
pub fn format_cpu(cores: f64) -> Quantity {
    let millis = (cores.max(0.0) * 1000.0 - 1e-6).ceil().max(0.0) as u64;
    if millis.is_multiple_of(1000) && millis > 0 {
        Quantity(with_suffix(millis / 1000, ""))
    } else {
        Quantity(with_suffix(millis, "m"))
    }
}

/// Formats bytes as whole MiB (`300Mi`), or GiB when exact (`2Gi`), rounding up.
pub fn format_memory(bytes: f64) -> Quantity {
    let mib = (bytes.max(0.0) / MIB - 1e-9).ceil().max(0.0) as u64;
    if mib.is_multiple_of(1024) && mib > 0 {
        Quantity(with_suffix(mib / 1024, "Gi"))
    } else {
        Quantity(with_suffix(mib, "Mi"))
    }
}

/// `number` followed by `suffix` (the webhook formats quantities on every admission: no
/// formatting machinery).
fn with_suffix(number: u64, suffix: &str) -> String {
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(number);
    let mut text = String::with_capacity(digits.len() + suffix.len());
    text.push_str(digits);
    text.push_str(suffix);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_kubernetes_forms() {
        let cases = [
            ("250m", 0.25),
            ("1", 1.0),
            ("1.5", 1.5),
            ("100n", 100e-9),
            ("512Mi", 512.0 * MIB),
            ("1Gi", 1024.0 * MIB),
            ("128974848", 128974848.0),
            ("129e6", 129e6),
            ("123M", 123e6),
            ("2k", 2000.0),
            ("+3", 3.0),
            // Past 2^53 whole numbers round as the float parser rounds them.
            ("18446744073709551617", 18446744073709551617.0),
        ];
        for (text, want) in cases {
            let got = parse(text).unwrap();
            assert!(
                (got - want).abs() <= want * 1e-12,
                "{text}: {got} != {want}"
            );
        }
    }

    #[test]
    fn rejects_nonsense() {
        for bad in ["", "abc", "1Zi", "-1", "1e", "m"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_round_up_to_readable_units() {
        assert_eq!(format_cpu(0.2501).0, "251m");
        assert_eq!(format_cpu(0.25).0, "250m");
        assert_eq!(format_cpu(2.0).0, "2");
        assert_eq!(format_memory(300.0 * MIB).0, "300Mi");
        assert_eq!(format_memory(300.0 * MIB + 1.0).0, "301Mi");
        assert_eq!(format_memory(2048.0 * MIB).0, "2Gi");
    }

    proptest! {
        #[test]
        fn formatted_values_never_undershoot(cores in 0.0f64..64.0, bytes in 0.0f64..1e12) {
            let c = parse_quantity(&format_cpu(cores)).unwrap();
            prop_assert!(c + 1e-9 >= cores && c - cores < 0.001 + 1e-9);
            let m = parse_quantity(&format_memory(bytes)).unwrap();
            prop_assert!(m + 1e-3 >= bytes && m - bytes < MIB + 1.0);
        }
    }
}
