//! Kubernetes resource quantities (`4Mi`, `512Ki`, `1G`), the unit daprd's size flags take.

/// Parses a quantity into bytes: binary suffixes Ki..Ei, decimal k/K..E, or a plain number.
pub fn parse_quantity(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let multiplier: u64 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        _ => return Err(format!("{s:?} is not a quantity (e.g. 4Mi, 512Ki, 1G)")),
    };
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a quantity (e.g. 4Mi, 512Ki, 1G)"))?;
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(bytes.ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_quantity;

    #[test]
    fn binary_decimal_and_plain() {
        assert_eq!(parse_quantity("4Mi"), Ok(4 << 20));
        assert_eq!(parse_quantity("4Ki"), Ok(4096));
        assert_eq!(parse_quantity("1G"), Ok(1_000_000_000));
        assert_eq!(parse_quantity("1.5Ki"), Ok(1536));
        assert_eq!(parse_quantity("123"), Ok(123));
        assert!(parse_quantity("4MB").is_err());
        assert!(parse_quantity("lots").is_err());
    }
}
