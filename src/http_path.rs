//! Go's `path.Clean`, which daprd applies to API paths and to invoked methods: the same input must
//! reach the app as the same path, and `..` must never climb out of the app's root.

/// Lexically cleans a slash-separated path: collapses `//`, drops `.`, resolves `..` without
/// going above the root. Keeps a leading `/` if there was one; an empty result is `.` (as Go).
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// A cleaned method name as it is put after the app's root: no leading slash, `.` is empty.
pub fn clean_method(method: &str) -> String {
    let cleaned = clean(&format!("/{method}"));
    cleaned.trim_start_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_go_path_clean() {
        for (input, want) in [
            ("", "."),
            ("/", "/"),
            ("a//b", "a/b"),
            ("/a/./b/", "/a/b"),
            ("/a/../../b", "/b"),
            ("a/../..", ".."),
            ("/v1.0//invoke/x/method/y", "/v1.0/invoke/x/method/y"),
        ] {
            assert_eq!(clean(input), want, "{input:?}");
        }
    }

    #[test]
    fn methods_cannot_escape_the_root() {
        assert_eq!(clean_method("../../etc/passwd"), "etc/passwd");
        assert_eq!(clean_method("."), "");
        assert_eq!(clean_method("orders//7/"), "orders/7");
    }
}
