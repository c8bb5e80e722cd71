//! daprd's topic scoping (`pkg/scopes`): which app may publish or subscribe to which topic of a
//! pub/sub component, from its metadata `publishingScopes`, `subscriptionScopes`,
//! `allowedTopics` and `protectedTopics`.

use std::collections::{BTreeMap, HashMap, HashSet};

/// Parsed scoping metadata of one component.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicScopes {
    publishing: HashMap<String, HashSet<String>>,
    subscription: HashMap<String, HashSet<String>>,
    allowed: HashSet<String>,
    protected: HashSet<String>,
}

impl TopicScopes {
    /// Reads the four keys from component metadata; absent keys mean "no restriction".
    pub fn from_metadata(metadata: &BTreeMap<String, String>) -> Self {
        let get = |key: &str| {
            metadata
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_str())
        };
        Self {
            publishing: get("publishingScopes")
                .map(parse_app_scopes)
                .unwrap_or_default(),
            subscription: get("subscriptionScopes")
                .map(parse_app_scopes)
                .unwrap_or_default(),
            allowed: get("allowedTopics").map(parse_list).unwrap_or_default(),
            protected: get("protectedTopics").map(parse_list).unwrap_or_default(),
        }
    }

    pub fn can_publish(&self, app_id: &str, topic: &str) -> bool {
        self.allowed_for(&self.publishing, app_id, topic)
    }

    pub fn can_subscribe(&self, app_id: &str, topic: &str) -> bool {
        self.allowed_for(&self.subscription, app_id, topic)
    }

    /// daprd's rule: the topic must be in `allowedTopics` when that is set; then an app with a
    /// scope list may use only the topics listed for it, and an app without one may use every
    /// topic that is not protected.
    fn allowed_for(
        &self,
        scopes: &HashMap<String, HashSet<String>>,
        app_id: &str,
        topic: &str,
    ) -> bool {
        if !self.allowed.is_empty() && !self.allowed.contains(topic) {
            return false;
        }
        match scopes.get(app_id) {
            Some(topics) => topics.contains(topic),
            None => !self.protected.contains(topic),
        }
    }
}

/// `app1=t1,t2;app2=t3` (spaces ignored). An app listed with no topics may use none.
fn parse_app_scopes(value: &str) -> HashMap<String, HashSet<String>> {
    let mut out = HashMap::new();
    for entry in value.split(';') {
        let entry: String = entry.chars().filter(|c| !c.is_whitespace()).collect();
        let Some((app, topics)) = entry.split_once('=') else {
            if !entry.is_empty() {
                out.entry(entry).or_insert_with(HashSet::new);
            }
            continue;
        };
        let set: &mut HashSet<String> = out.entry(app.to_owned()).or_default();
        set.extend(
            topics
                .split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
        );
    }
    out
}

fn parse_list(value: &str) -> HashSet<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(pairs: &[(&str, &str)]) -> TopicScopes {
        TopicScopes::from_metadata(
            &pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn no_metadata_allows_everything() {
        let s = scopes(&[]);
        assert!(s.can_publish("a", "t") && s.can_subscribe("a", "t"));
    }

    #[test]
    fn app_scopes_limit_listed_apps_only() {
        let s = scopes(&[
            ("publishingScopes", "app1=t1, t2; app2="),
            ("subscriptionScopes", "app1=t1"),
        ]);
        assert!(s.can_publish("app1", "t2"));
        assert!(!s.can_publish("app1", "t3"));
        assert!(
            !s.can_publish("app2", "t1"),
            "an app listed with no topics may publish none"
        );
        assert!(s.can_publish("app3", "anything"));
        assert!(s.can_subscribe("app1", "t1") && !s.can_subscribe("app1", "t2"));
    }

    #[test]
    fn allowed_and_protected_topics() {
        let s = scopes(&[
            ("allowedTopics", "t1,t2,secret"),
            ("protectedTopics", "secret"),
            ("publishingScopes", "admin=secret"),
        ]);
        assert!(!s.can_publish("app", "t3"), "not in allowedTopics");
        assert!(s.can_publish("app", "t1"));
        assert!(
            !s.can_publish("app", "secret"),
            "protected topics need an explicit scope"
        );
        assert!(s.can_publish("admin", "secret"));
        assert!(
            !s.can_subscribe("admin", "secret"),
            "subscribing needs its own scope"
        );
    }
}
