//! Byte counts as text for people.

/// Bytes as "1.50 GiB (1610612736 bytes)".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} bytes")
    } else {
        format!("{v:.2} {} ({n} bytes)", UNITS[u])
    }
}

/// `n` and the noun in the number it takes: "1 file", "2 files".
pub fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Bytes as "1.5 GiB", for tables.
pub fn short_bytes(n: u64) -> String {
    let h = human_bytes(n);
    h.split(" (").next().unwrap_or(&h).to_string()
}
