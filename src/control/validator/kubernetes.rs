//! `KUBERNETES`: the request's token is a service-account token; the API server's TokenReview
//! says whose, and the pod it was issued for says which app id it may have (its `dapr.io/app-id`
//! annotation, else its name), as Sentry's Kubernetes validator decides.
//!
//! The trust domain is always `public`: Sentry reads it from the app's Configuration resource,
//! which this validator does not look up yet.

use std::collections::BTreeMap;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};

use super::{Claim, ValidationError};
use crate::control::spiffe::{SpiffeId, DEFAULT_TRUST_DOMAIN};

/// The audience daprd's projected token is minted for.
pub const SENTRY_AUDIENCE: &str = "dapr.io/sentry";
/// The pod annotation carrying the app id.
pub const APP_ID_ANNOTATION: &str = "dapr.io/app-id";
/// Where TokenReview reports the pod a projected token is bound to.
const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";

/// A service account the API server vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewedAccount {
    pub namespace: String,
    pub service_account: String,
    pub pod_name: String,
}

/// What the validator needs from the pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodFacts {
    pub name: String,
    pub namespace: String,
    pub service_account: String,
    pub annotations: BTreeMap<String, String>,
}

impl From<Pod> for PodFacts {
    fn from(pod: Pod) -> Self {
        Self {
            name: pod.metadata.name.unwrap_or_default(),
            namespace: pod.metadata.namespace.unwrap_or_default(),
            service_account: pod
                .spec
                .and_then(|s| s.service_account_name)
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".to_owned()),
            annotations: pod.metadata.annotations.unwrap_or_default(),
        }
    }
}

/// Reads `system:serviceaccount:<namespace>:<name>` and the bound pod out of a TokenReview.
pub fn reviewed_account(status: &TokenReviewStatus) -> Result<ReviewedAccount, ValidationError> {
    if status.authenticated != Some(true) {
        return Err(ValidationError::InvalidToken);
    }
    let user = status.user.as_ref().ok_or(ValidationError::InvalidToken)?;
    let username = user.username.as_deref().unwrap_or_default();
    let mut parts = username.split(':');
    let (Some("system"), Some("serviceaccount"), Some(namespace), Some(service_account), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(ValidationError::Kubernetes(format!(
            "token is not a service account token (user {username:?})"
        )));
    };
    let pod_name = user
        .extra
        .as_ref()
        .and_then(|extra| extra.get(POD_NAME_EXTRA))
        .and_then(|names| names.first())
        .cloned()
        .ok_or_else(|| {
            ValidationError::Kubernetes(
                "token is not bound to a pod (a legacy service account token?)".to_owned(),
            )
        })?;
    Ok(ReviewedAccount {
        namespace: namespace.to_owned(),
        service_account: service_account.to_owned(),
        pod_name,
    })
}

/// Sentry's rules: the requested namespace is the token's, the pod runs as the token's service
/// account, and the requested app id is the pod's.
pub fn authorize_pod(
    account: &ReviewedAccount,
    pod: &PodFacts,
    claim: &Claim<'_>,
) -> Result<SpiffeId, ValidationError> {
    let requested =
        || SpiffeId::new(DEFAULT_TRUST_DOMAIN, claim.namespace, claim.app_id).to_string();
    if claim.namespace != account.namespace
        || pod.namespace != account.namespace
        || pod.name != account.pod_name
        || pod.service_account != account.service_account
    {
        return Err(ValidationError::NotGranted {
            requested: requested(),
        });
    }
    let expected = pod
        .annotations
        .get(APP_ID_ANNOTATION)
        .filter(|id| !id.is_empty())
        .unwrap_or(&pod.name);
    if claim.app_id != expected {
        return Err(ValidationError::NotGranted {
            requested: requested(),
        });
    }
    Ok(SpiffeId::new(
        DEFAULT_TRUST_DOMAIN,
        claim.namespace,
        claim.app_id,
    ))
}

/// Talks to the API server with the credentials `kube` finds (in-cluster service account, or
/// the kubeconfig).
#[derive(Clone)]
pub struct KubernetesValidator {
    client: kube::Client,
    audiences: Vec<String>,
}

impl std::fmt::Debug for KubernetesValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesValidator")
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

impl KubernetesValidator {
    pub fn new(client: kube::Client, audiences: Vec<String>) -> Self {
        Self { client, audiences }
    }

    /// Uses the environment's cluster configuration.
    pub async fn from_environment(audiences: Vec<String>) -> Result<Self, kube::Error> {
        Ok(Self::new(kube::Client::try_default().await?, audiences))
    }

    async fn review(&self, token: &str) -> Result<TokenReviewStatus, ValidationError> {
        let reviews: Api<TokenReview> = Api::all(self.client.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: Some(self.audiences.clone()),
            },
            ..TokenReview::default()
        };
        let created = reviews
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| ValidationError::Kubernetes(format!("TokenReview: {e}")))?;
        created.status.ok_or(ValidationError::InvalidToken)
    }

    pub(super) async fn validate(&self, claim: &Claim<'_>) -> Result<SpiffeId, ValidationError> {
        if claim.token.is_empty() {
            return Err(ValidationError::InvalidToken);
        }
        let account = reviewed_account(&self.review(claim.token).await?)?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &account.namespace);
        let pod = pods
            .get(&account.pod_name)
            .await
            .map_err(|e| ValidationError::Kubernetes(format!("reading pod: {e}")))?;
        authorize_pod(&account, &PodFacts::from(pod), claim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::UserInfo;

    fn status(username: &str, pod: Option<&str>) -> TokenReviewStatus {
        TokenReviewStatus {
            authenticated: Some(true),
            user: Some(UserInfo {
                username: Some(username.to_owned()),
                extra: pod
                    .map(|p| BTreeMap::from([(POD_NAME_EXTRA.to_owned(), vec![p.to_owned()])])),
                ..UserInfo::default()
            }),
            ..TokenReviewStatus::default()
        }
    }

    fn claim<'a>(app_id: &'a str, namespace: &'a str) -> Claim<'a> {
        Claim {
            app_id,
            namespace,
            trust_domain: "",
            token: "t",
            has_csr: true,
            validator: None,
        }
    }

    fn pod(annotation: Option<&str>) -> PodFacts {
        PodFacts {
            name: "orders-5d9f".to_owned(),
            namespace: "shop".to_owned(),
            service_account: "orders-sa".to_owned(),
            annotations: annotation
                .map(|a| BTreeMap::from([(APP_ID_ANNOTATION.to_owned(), a.to_owned())]))
                .unwrap_or_default(),
        }
    }

    #[test]
    fn review_must_name_a_service_account_bound_to_a_pod() {
        let account = reviewed_account(&status(
            "system:serviceaccount:shop:orders-sa",
            Some("orders-5d9f"),
        ))
        .unwrap();
        assert_eq!(
            account,
            ReviewedAccount {
                namespace: "shop".into(),
                service_account: "orders-sa".into(),
                pod_name: "orders-5d9f".into()
            }
        );
        assert!(reviewed_account(&status("alice", Some("p"))).is_err());
        assert!(reviewed_account(&status("system:serviceaccount:shop:sa", None)).is_err());
        let mut unauthenticated = status("system:serviceaccount:shop:sa", Some("p"));
        unauthenticated.authenticated = Some(false);
        assert!(matches!(
            reviewed_account(&unauthenticated),
            Err(ValidationError::InvalidToken)
        ));
    }

    #[test]
    fn pod_annotation_decides_the_app_id() {
        let account = ReviewedAccount {
            namespace: "shop".into(),
            service_account: "orders-sa".into(),
            pod_name: "orders-5d9f".into(),
        };
        let id = authorize_pod(&account, &pod(Some("orders")), &claim("orders", "shop")).unwrap();
        assert_eq!(id.to_string(), "spiffe://public/ns/shop/orders");
        for (app, ns) in [("payments", "shop"), ("orders", "other")] {
            assert!(matches!(
                authorize_pod(&account, &pod(Some("orders")), &claim(app, ns)),
                Err(ValidationError::NotGranted { .. })
            ));
        }
        // Without the annotation the pod's name is the app id.
        assert!(authorize_pod(&account, &pod(None), &claim("orders-5d9f", "shop")).is_ok());
        assert!(authorize_pod(&account, &pod(None), &claim("orders", "shop")).is_err());
        // A token of another service account does not speak for this pod.
        let other = ReviewedAccount {
            service_account: "intruder".into(),
            ..account
        };
        assert!(authorize_pod(&other, &pod(Some("orders")), &claim("orders", "shop")).is_err());
    }
}
