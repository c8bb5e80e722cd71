//! The one table of component types Outrigger can build. A type is listed here only once it has an
//! implementation, so a typo or an unsupported component fails at load time, not at first use.

/// A component type the sidecar knows how to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComponentType {
    /// `spec.type`, lower case, e.g. `state.in-memory`.
    pub type_name: &'static str,
    /// Accepted `spec.version` values, canonical form (`v1`, `v2`, ...).
    pub versions: &'static [&'static str],
    /// The building block: the part of `type_name` before the first dot.
    pub category: &'static str,
}

/// Every supported component type. Later building blocks add rows here.
pub const SUPPORTED: &[ComponentType] = &[
    ComponentType {
        type_name: "state.in-memory",
        versions: &["v1"],
        category: "state",
    },
    ComponentType {
        type_name: "state.redis",
        versions: &["v1"],
        category: "state",
    },
    ComponentType {
        // daprd's v1 table layout; its v2 layout is not implemented.
        type_name: "state.postgresql",
        versions: &["v1"],
        category: "state",
    },
    ComponentType {
        type_name: "pubsub.in-memory",
        versions: &["v1"],
        category: "pubsub",
    },
    ComponentType {
        type_name: "pubsub.redis",
        versions: &["v1"],
        category: "pubsub",
    },
    ComponentType {
        type_name: "pubsub.jetstream",
        versions: &["v1"],
        category: "pubsub",
    },
];

/// Finds a supported type, ignoring ASCII case as daprd's registries do.
pub fn find(type_name: &str) -> Option<&'static ComponentType> {
    SUPPORTED
        .iter()
        .find(|t| t.type_name.eq_ignore_ascii_case(type_name))
}

impl ComponentType {
    /// The canonical spelling of `version` if this type accepts it. daprd treats an empty
    /// version, `v0` and `v1` as the same "initial" version (components-contrib
    /// `IsInitialVersion`), so all three map to `v1` here.
    pub fn accept_version(&self, version: &str) -> Option<&'static str> {
        let lower = version.to_ascii_lowercase();
        let wanted = match lower.as_str() {
            "" | "v0" | "v1" => "v1",
            other => other,
        };
        self.versions.iter().copied().find(|v| *v == wanted)
    }
}

/// `type/version` pairs of every supported type, for error messages.
pub fn supported_list() -> String {
    let mut out = Vec::new();
    for t in SUPPORTED {
        for v in t.versions {
            out.push(format!("{}/{}", t.type_name, v));
        }
    }
    out.join(", ")
}
