use std::collections::BTreeMap;

/// The parts of a Dapr `Configuration` resource the sidecar acts on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Configuration {
    pub name: String,
    pub name_resolution: Option<NameResolutionSpec>,
}

/// `spec.nameResolution`.
#[derive(Debug, Clone, PartialEq)]
pub struct NameResolutionSpec {
    /// e.g. `sqlite`, `mdns`, `kubernetes`.
    pub component: String,
    pub version: String,
    /// `configuration`, flattened to strings as Dapr's metadata decoder sees it.
    pub configuration: BTreeMap<String, String>,
}
