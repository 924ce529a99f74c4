//! Byte sizes on the command line: `1024`, `64KiB`, `1GiB`, `1.5MB`.

/// Parses a byte size: a number, optionally fractional, followed by an optional unit.
///
/// Binary units (`K`, `KiB`, `M`, `MiB`, `G`, `GiB`, `T`, `TiB`) count in powers of 1024;
/// decimal ones (`KB`, `MB`, `GB`, `TB`) in powers of 1000, as `dd` and the SI do. Units are
/// case-insensitive and may be separated from the number by a space; `_` groups digits.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: String = number.chars().filter(|c| *c != '_').collect();
    if number.is_empty() {
        return Err(format!(
            "{text:?} is not a size: expected a number such as 64MiB"
        ));
    }
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}; use B, KiB, MiB, GiB, TiB (or KB, MB, GB, TB)"
            ));
        }
    };
    let value = if number.contains('.') {
        let v: f64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a size: bad number {number:?}"))?;
        let bytes = v * multiplier as f64;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(format!("{text:?} is too large"));
        }
        bytes.round() as u64
    } else {
        number
            .parse::<u64>()
            .ok()
            .and_then(|v| v.checked_mul(multiplier))
            .ok_or_else(|| format!("{text:?} is too large or not a number"))?
    };
    Ok(value)
}

/// Formats a byte count with the largest binary unit that divides it exactly, so that
/// `parse_size(format_size(n)) == n`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{name}", bytes / unit);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1 gib"), Ok(1 << 30));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert_eq!(parse_size("1_000_000"), Ok(1_000_000));
        assert_eq!(parse_size("7B"), Ok(7));
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "",
            "MiB",
            "12 parsecs",
            "1..2k",
            "99999999999999999999",
            "20000000TiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn format_round_trips() {
        for n in [0, 1, 1000, 1024, 1536, 64 << 20, 3 << 30, 1 << 40] {
            assert_eq!(parse_size(&format_size(n)), Ok(n), "{n}");
        }
    }
}
