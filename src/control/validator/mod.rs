//! Who may ask for which identity, as Sentry's validators decide it. Every request passes the
//! common checks, then the validator it names (or the configured default when it names none).

mod join_token;
mod jwks;
mod kubernetes;

use crate::control::spiffe::{valid_trust_domain, SpiffeId, DEFAULT_TRUST_DOMAIN};

pub use join_token::JoinTokenValidator;
pub use jwks::{JwksError, JwksValidator};
pub use kubernetes::{
    authorize_pod, KubernetesValidator, PodFacts, ReviewedAccount, SENTRY_AUDIENCE,
};

/// Longest app id Sentry accepts.
pub const MAX_APP_ID_LEN: usize = 64;

/// The validators of `SignCertificateRequest.token_validator`, minus `UNKNOWN` (which means
/// "the CA's default").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidatorKind {
    Insecure,
    Kubernetes,
    /// daprd sends this with a token from `DAPR_SENTRY_TOKEN_FILE`: a JWT checked against a JWK
    /// set (`--jwks-source`) or, without one, a join token (`--token-file`).
    Jwks,
}

impl ValidatorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Insecure => "INSECURE",
            Self::Kubernetes => "KUBERNETES",
            Self::Jwks => "JWKS",
        }
    }
}

/// The fields of a sign request a validator looks at.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub app_id: &'a str,
    pub namespace: &'a str,
    pub trust_domain: &'a str,
    pub token: &'a str,
    pub has_csr: bool,
    /// `None` for `UNKNOWN`.
    pub validator: Option<ValidatorKind>,
}

/// Why a request was refused. All are gRPC `PERMISSION_DENIED` except [`Self::NotEnabled`],
/// which is `INVALID_ARGUMENT` like Sentry's unknown-validator answer.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    #[error("app ID is required")]
    MissingAppId,
    #[error("app ID {0:?} must not contain dots")]
    AppIdHasDots(String),
    #[error("app ID must be at most {MAX_APP_ID_LEN} characters, got {0}")]
    AppIdTooLong(usize),
    #[error("namespace is required")]
    MissingNamespace,
    #[error("CSR is required")]
    MissingCsr,
    #[error("invalid trust domain {0:?}")]
    TrustDomain(String),
    #[error("validator {0} is not enabled")]
    NotEnabled(&'static str),
    #[error("token is not valid")]
    InvalidToken,
    #[error("the credential does not grant identity {requested}")]
    NotGranted { requested: String },
    #[error("reading the join token file: {0}")]
    TokenFile(std::io::Error),
    #[error("kubernetes: {0}")]
    Kubernetes(String),
    #[error("JWKS: {0}")]
    Jwks(String),
}

impl ValidationError {
    /// Label for the failures-by-reason metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingAppId
            | Self::AppIdHasDots(_)
            | Self::AppIdTooLong(_)
            | Self::MissingNamespace
            | Self::MissingCsr
            | Self::TrustDomain(_) => "invalid_request",
            Self::NotEnabled(_) => "validator_not_enabled",
            Self::InvalidToken => "invalid_token",
            Self::NotGranted { .. } => "not_granted",
            Self::TokenFile(_) | Self::Kubernetes(_) | Self::Jwks(_) => "validator_error",
        }
    }

    /// Sentry answers an unusable validator choice with `INVALID_ARGUMENT`.
    pub fn is_invalid_argument(&self) -> bool {
        matches!(self, Self::NotEnabled(_))
    }
}

/// Sentry's common checks (`validator/internal/common.go`).
pub fn common_checks(claim: &Claim<'_>) -> Result<(), ValidationError> {
    if claim.app_id.is_empty() {
        return Err(ValidationError::MissingAppId);
    }
    if claim.app_id.contains('.') {
        return Err(ValidationError::AppIdHasDots(claim.app_id.to_owned()));
    }
    if claim.app_id.len() > MAX_APP_ID_LEN {
        return Err(ValidationError::AppIdTooLong(claim.app_id.len()));
    }
    if claim.namespace.is_empty() {
        return Err(ValidationError::MissingNamespace);
    }
    if !claim.has_csr {
        return Err(ValidationError::MissingCsr);
    }
    Ok(())
}

/// The request's trust domain, or `public` when it names none.
fn requested_trust_domain(claim: &Claim<'_>) -> Result<String, ValidationError> {
    let td = if claim.trust_domain.is_empty() {
        DEFAULT_TRUST_DOMAIN
    } else {
        claim.trust_domain
    };
    if valid_trust_domain(td) {
        Ok(td.to_owned())
    } else {
        Err(ValidationError::TrustDomain(td.to_owned()))
    }
}

/// The enabled validators and the default for requests that name none.
#[derive(Debug)]
pub struct Validators {
    insecure: bool,
    join_token: Option<JoinTokenValidator>,
    jwks: Option<JwksValidator>,
    kubernetes: Option<KubernetesValidator>,
    default: ValidatorKind,
}

impl Validators {
    /// Only `INSECURE`: anyone gets the identity they ask for. Sentry's self-hosted default.
    pub fn insecure() -> Self {
        Self {
            insecure: true,
            join_token: None,
            jwks: None,
            kubernetes: None,
            default: ValidatorKind::Insecure,
        }
    }

    /// Only the join token (answers `JWKS` and `UNKNOWN` requests).
    pub fn join_token(validator: JoinTokenValidator) -> Self {
        Self {
            insecure: false,
            join_token: Some(validator),
            jwks: None,
            kubernetes: None,
            default: ValidatorKind::Jwks,
        }
    }

    /// `KUBERNETES` as the default, plus the join token for requests that name `JWKS`.
    pub fn kubernetes(validator: KubernetesValidator, join: Option<JoinTokenValidator>) -> Self {
        Self {
            insecure: false,
            join_token: join,
            jwks: None,
            kubernetes: Some(validator),
            default: ValidatorKind::Kubernetes,
        }
    }

    /// Only `JWKS` with JWTs (answers `JWKS` and `UNKNOWN` requests).
    pub fn jwks(validator: JwksValidator) -> Self {
        Self {
            insecure: false,
            join_token: None,
            jwks: Some(validator),
            kubernetes: None,
            default: ValidatorKind::Jwks,
        }
    }

    /// `JWKS` requests are answered with JWTs checked against `validator` (instead of join
    /// tokens, when both were given).
    pub fn with_jwks(mut self, validator: JwksValidator) -> Self {
        self.jwks = Some(validator);
        self
    }

    pub fn default_kind(&self) -> ValidatorKind {
        self.default
    }

    /// The identity this request may have, or why not.
    pub async fn validate(&self, claim: &Claim<'_>) -> Result<SpiffeId, ValidationError> {
        common_checks(claim)?;
        match claim.validator.unwrap_or(self.default) {
            ValidatorKind::Insecure if self.insecure => Ok(SpiffeId::new(
                requested_trust_domain(claim)?,
                claim.namespace,
                claim.app_id,
            )),
            ValidatorKind::Jwks => match (&self.jwks, &self.join_token) {
                (Some(v), _) => v.validate(claim, requested_trust_domain(claim)?).await,
                (None, Some(v)) => v.validate(claim, requested_trust_domain(claim)?).await,
                (None, None) => Err(ValidationError::NotEnabled(ValidatorKind::Jwks.as_str())),
            },
            ValidatorKind::Kubernetes => match &self.kubernetes {
                Some(v) => v.validate(claim).await,
                None => Err(ValidationError::NotEnabled(
                    ValidatorKind::Kubernetes.as_str(),
                )),
            },
            kind => Err(ValidationError::NotEnabled(kind.as_str())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim<'a>(app_id: &'a str, namespace: &'a str) -> Claim<'a> {
        Claim {
            app_id,
            namespace,
            trust_domain: "",
            token: "",
            has_csr: true,
            validator: None,
        }
    }

    #[tokio::test]
    async fn common_checks_follow_sentry() {
        let v = Validators::insecure();
        let long = "a".repeat(65);
        for (app, ns, want) in [
            ("", "default", "invalid_request"),
            ("a.b", "default", "invalid_request"),
            (long.as_str(), "default", "invalid_request"),
            ("app", "", "invalid_request"),
        ] {
            let err = v.validate(&claim(app, ns)).await.unwrap_err();
            assert_eq!(err.reason(), want, "{app:?}/{ns:?}: {err}");
        }
        let mut no_csr = claim("app", "default");
        no_csr.has_csr = false;
        assert!(matches!(
            v.validate(&no_csr).await,
            Err(ValidationError::MissingCsr)
        ));
        let ok = "a".repeat(64);
        let id = v.validate(&claim(&ok, "default")).await.unwrap();
        assert_eq!(id, SpiffeId::new("public", "default", ok.as_str()));
    }

    #[tokio::test]
    async fn insecure_takes_the_requested_trust_domain_and_refuses_other_validators() {
        let v = Validators::insecure();
        let mut c = claim("app", "prod");
        c.trust_domain = "example.org";
        assert_eq!(
            v.validate(&c).await.unwrap().to_string(),
            "spiffe://example.org/ns/prod/app"
        );
        c.trust_domain = "Bad Domain";
        assert!(matches!(
            v.validate(&c).await,
            Err(ValidationError::TrustDomain(_))
        ));
        c.trust_domain = "";
        c.validator = Some(ValidatorKind::Kubernetes);
        let err = v.validate(&c).await.unwrap_err();
        assert!(err.is_invalid_argument(), "{err}");
    }
}
