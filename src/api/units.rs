//! Times, durations and sizes as people read them on the pages.

/// `2026-11-22T10:00:01.234567Z` as `2026-11-22 10:00:01`: short enough for a table cell.
pub fn short_time(rfc3339: &str) -> String {
    let seconds = rfc3339.split('.').next().unwrap_or(rfc3339).trim_end_matches('Z');
    seconds.replacen('T', " ", 1)
}

/// A duration as people read it: `0.4 ms`, `85 ms`, `1.24 s`, `2 min 05 s`.
pub fn human_duration(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1_000.0 {
        format!("{ms:.0} ms")
    } else if ms < 60_000.0 {
        format!("{:.2} s", ms / 1_000.0)
    } else {
        let secs = (ms / 1_000.0).round() as u64;
        format!("{} min {:02} s", secs / 60, secs % 60)
    }
}

/// `1048576` as `1 MiB`: limits and sizes in the units people think in.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `100000` as `100,000`: counts people read at a glance.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_read_shortly() {
        assert_eq!(short_time("2026-11-22T10:00:01.234567Z"), "2026-11-22 10:00:01");
        assert_eq!(short_time("2026-11-22T10:00:01Z"), "2026-11-22 10:00:01");
        assert_eq!(human_duration(0.42), "0.4 ms");
        assert_eq!(human_duration(85.4), "85 ms");
        assert_eq!(human_duration(1_240.0), "1.24 s");
        assert_eq!(human_duration(125_000.0), "2 min 05 s");
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human_bytes(1_536), "1.5 KiB");
        assert_eq!(human_bytes(12), "12 bytes");
        assert_eq!(human_bytes(268_435_456), "256 MiB");
    }

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(100_000), "100,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }
}
