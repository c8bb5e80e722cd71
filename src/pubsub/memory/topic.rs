//! Topic wildcards of the in-memory broker, MQTT style over `/`-separated levels: `+` matches
//! exactly one level, `#` (last) matches the rest, including nothing.

pub(super) fn matches(pattern: &str, topic: &str) -> bool {
    if pattern == topic {
        return true;
    }
    let mut levels = topic.split('/');
    for part in pattern.split('/') {
        match part {
            "#" => return true,
            "+" => {
                if levels.next().is_none() {
                    return false;
                }
            }
            literal => {
                if levels.next() != Some(literal) {
                    return false;
                }
            }
        }
    }
    levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcards_match_levels() {
        assert!(matches("orders", "orders"));
        assert!(!matches("orders", "orders/eu"));
        assert!(matches("orders/+", "orders/eu"));
        assert!(!matches("orders/+", "orders/eu/1"));
        assert!(matches("orders/#", "orders/eu/1"));
        assert!(matches("orders/#", "orders"));
        assert!(matches("+/eu", "orders/eu"));
        assert!(!matches("orders/+", "orders"));
    }
}
