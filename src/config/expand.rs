//! String substitutions daprd applies: `{uuid}`-style templates in component metadata
//! (`pkg/runtime/meta`) and `$VAR` expansion of standalone Configuration files (`os.ExpandEnv`).

use super::TemplateContext;

/// Expands daprd's metadata templates, in daprd's order. `{namespace}` becomes
/// `<namespace>.<appID>`, not the bare namespace: daprd does that so values such as a consumer
/// group stay unique per app. An empty namespace counts as `default`, daprd's fallback.
pub(super) fn apply_templates(value: &str, ctx: &TemplateContext) -> Result<String, String> {
    let mut out = value.to_owned();
    while out.contains("{uuid}") {
        out = out.replacen("{uuid}", &uuid::Uuid::new_v4().to_string(), 1);
    }
    if out.contains("{podName}") {
        if ctx.pod_name.is_empty() {
            return Err(
                "the value uses {podName} but the pod name is not set (set the POD_NAME \
                 environment variable)"
                    .to_owned(),
            );
        }
        out = out.replace("{podName}", &ctx.pod_name);
    }
    if out.contains("{namespace}") {
        let namespace = if ctx.namespace.is_empty() {
            "default"
        } else {
            &ctx.namespace
        };
        out = out.replace("{namespace}", &format!("{namespace}.{}", ctx.app_id));
    }
    Ok(out.replace("{appID}", &ctx.app_id))
}

/// Go's `os.ExpandEnv`, byte for byte in behaviour: `$VAR` and `${VAR}` become the variable's
/// value (empty when unset), `$` not followed by a name stays, and malformed `${` / `${}` are
/// dropped. Matching Go matters because existing Configuration files were written against it.
pub(super) fn expand_env(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied_to = 0;
    let mut j = 0;
    while j < bytes.len() {
        if bytes[j] == b'$' && j + 1 < bytes.len() {
            out.push_str(&text[copied_to..j]);
            let (name, width) = shell_name(&text[j + 1..]);
            match name {
                Some(name) => out.push_str(&lookup(name)),
                // Valid syntax but no name: keep the dollar sign.
                None if width == 0 => out.push('$'),
                // Bad syntax: the consumed characters are dropped, as Go does.
                None => {}
            }
            j += width;
            copied_to = j + 1;
        }
        j += 1;
    }
    out.push_str(&text[copied_to.min(text.len())..]);
    out
}

/// The variable name after a `$` and how many bytes it spans (Go's `getShellName`).
fn shell_name(s: &str) -> (Option<&str>, usize) {
    let b = s.as_bytes();
    if b[0] == b'{' {
        if b.len() > 2 && is_special(b[1]) && b[2] == b'}' {
            return (Some(&s[1..2]), 3);
        }
        return match s[1..].find('}') {
            Some(0) => (None, 2),
            Some(end) => (Some(&s[1..=end]), end + 2),
            None => (None, 1),
        };
    }
    if is_special(b[0]) {
        return (Some(&s[..1]), 1);
    }
    let len = b
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count();
    if len == 0 {
        (None, 0)
    } else {
        (Some(&s[..len]), len)
    }
}

fn is_special(c: u8) -> bool {
    matches!(
        c,
        b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9'
    )
}

fn lookup(name: &str) -> String {
    // Names the OS cannot hold cannot be set, so they expand to nothing, like an unset variable.
    if name.contains(['=', '\0']) {
        return String::new();
    }
    std::env::var_os(name)
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default()
}
