//! Every error leaves as `{"message": …}` with the status that says what happened. Domain
//! errors map to a status and a message in [`Answer::of`], for the API and the pages alike;
//! errors of the framework itself (bad parameters, unknown routes) are rewritten to the same
//! shape by [`json_errors`].

use std::marker::PhantomData;

use poem::http::{header, StatusCode};
use poem::{IntoResponse, Response};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaResponses, Registry};
use poem_openapi::{ApiResponse, Object};

use ots_domain::OtsError;

/// The body of every error.
#[derive(Object, Debug, Clone, PartialEq, Eq)]
#[oai(rename = "Error", example)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub message: String,
    /// The key asked for, echoed on `Unknown secret`.
    #[oai(skip_serializing_if_is_none)]
    pub secret_key: Option<String>,
    /// The metadata key asked for, echoed on `Unknown secret` from the private routes.
    #[oai(skip_serializing_if_is_none)]
    pub metadata_key: Option<String>,
    /// Passphrase tries left before the secret is burned (403 only).
    #[oai(skip_serializing_if_is_none)]
    pub tries_left: Option<u32>,
    /// `offline`, on the 503 of `getStatus`: the store cannot be reached.
    #[oai(skip_serializing_if_is_none)]
    pub status: Option<String>,
}

impl poem_openapi::types::Example for ErrorBody {
    fn example() -> Self {
        Self {
            secret_key: Some("2kmdjs7ahzxy1ca8ah4vjj8tjw3ds5r".to_owned()),
            ..Self::new("Unknown secret")
        }
    }
}

impl ErrorBody {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            secret_key: None,
            metadata_key: None,
            tries_left: None,
            status: None,
        }
    }
}

pub const WWW_AUTHENTICATE: &str = "Basic realm=\"ots\", charset=\"UTF-8\"";

#[derive(ApiResponse, Debug)]
pub enum ApiError {
    /// A parameter is missing or invalid.
    #[oai(status = 400)]
    BadRequest(Json<Box<ErrorBody>>),
    /// Credentials are missing where required, or wrong.
    #[oai(status = 401)]
    Unauthorized(
        Json<Box<ErrorBody>>,
        #[oai(header = "WWW-Authenticate")] String,
    ),
    /// Wrong (or missing) passphrase; the secret is still there unless `tries_left` is 0.
    #[oai(status = 403)]
    Forbidden(Json<Box<ErrorBody>>),
    /// Unknown, already received, burned or expired.
    #[oai(status = 404)]
    NotFound(Json<Box<ErrorBody>>),
    /// The request body is over the size limit.
    #[oai(status = 413)]
    PayloadTooLarge(Json<Box<ErrorBody>>),
    /// The body is in an encoding other than JSON, urlencoded or multipart.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<Box<ErrorBody>>),
    /// Rate limited: retry after the given number of seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<Box<ErrorBody>>, #[oai(header = "Retry-After")] u64),
    /// An unexpected failure; details are in the server's log.
    #[oai(status = 500)]
    Internal(Json<Box<ErrorBody>>),
    /// The store cannot be reached.
    #[oai(status = 503)]
    Unavailable(Json<Box<ErrorBody>>),
}

impl ApiError {
    /// The status this error answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Unauthorized(..) => 401,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::PayloadTooLarge(_) => 413,
            Self::UnsupportedMediaType(_) => 415,
            Self::TooManyRequests(..) => 429,
            Self::Internal(_) => 500,
            Self::Unavailable(_) => 503,
        }
    }

    pub fn unknown_secret(secret_key: &str) -> Self {
        Self::NotFound(Json(Box::new(ErrorBody {
            secret_key: Some(secret_key.to_owned()),
            ..ErrorBody::new("Unknown secret")
        })))
    }

    pub fn unknown_metadata(metadata_key: &str) -> Self {
        Self::NotFound(Json(Box::new(ErrorBody {
            metadata_key: Some(metadata_key.to_owned()),
            ..ErrorBody::new("Unknown secret")
        })))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(Json(Box::new(ErrorBody::new(message))))
    }

    pub fn too_many_requests(wait: std::time::Duration) -> Self {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Self::TooManyRequests(
            Json(Box::new(ErrorBody::new(format!(
                "Too many requests: retry in {seconds} seconds"
            )))),
            seconds.max(1),
        )
    }
}

/// How the service answers one domain error, for the API and the pages alike: the status,
/// the message people read, and the passphrase tries left (403 only). The only place where a
/// domain error becomes a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    pub message: String,
    pub tries_left: Option<u32>,
}

impl Answer {
    pub fn of(err: &OtsError) -> Self {
        let status = match err {
            OtsError::NotFound => StatusCode::NOT_FOUND,
            OtsError::NothingToShare
            | OtsError::TooLarge { .. }
            | OtsError::InvalidTtl
            | OtsError::InvalidRecipient
            | OtsError::InvalidLimit { .. }
            | OtsError::Conflict(_)
            | OtsError::Invalid(_)
            | OtsError::UnknownCustomer => StatusCode::BAD_REQUEST,
            OtsError::Unauthorized | OtsError::AccountRequired => StatusCode::UNAUTHORIZED,
            OtsError::WrongPassphrase { .. } => StatusCode::FORBIDDEN,
            OtsError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            OtsError::Internal(_) | OtsError::WrongMasterSecret => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let message = match err {
            OtsError::WrongPassphrase { tries_left: 0 } => {
                "Wrong passphrase: too many tries, the secret has been burned".to_owned()
            }
            OtsError::Internal(_) | OtsError::WrongMasterSecret => {
                // The cause goes to the log only; the client learns nothing about internals.
                tracing::error!(cause = %err, "internal error");
                "Internal error".to_owned()
            }
            other => other.to_string(),
        };
        let tries_left = match err {
            OtsError::WrongPassphrase { tries_left } => Some(*tries_left),
            _ => None,
        };
        Self {
            status,
            message,
            tries_left,
        }
    }
}

impl From<OtsError> for ApiError {
    fn from(err: OtsError) -> Self {
        let answer = Answer::of(&err);
        let body = Json(Box::new(ErrorBody {
            tries_left: answer.tries_left,
            ..ErrorBody::new(answer.message)
        }));
        match answer.status {
            StatusCode::NOT_FOUND => Self::NotFound(body),
            StatusCode::BAD_REQUEST => Self::BadRequest(body),
            StatusCode::UNAUTHORIZED => Self::Unauthorized(body, WWW_AUTHENTICATE.to_owned()),
            StatusCode::FORBIDDEN => Self::Forbidden(body),
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable(body),
            _ => Self::Internal(body),
        }
    }
}

/// The statuses one operation can fail with: the extractors' (bad body 400, 413, 415; bad
/// credentials 401), the rate limit's 429, the store's 503, 500, and the domain errors its
/// use case can raise.
pub trait Statuses: Send + Sync + 'static {
    const LIST: &'static [u16];
}

/// An [`ApiError`] as the failure of one operation, whose spec lists only the statuses in
/// `S`. An error outside `S` is a bug: it is logged and answered as a 500, which every
/// operation lists.
pub struct Failure<S>(ApiError, PhantomData<S>);

impl<S: Statuses> From<ApiError> for Failure<S> {
    fn from(err: ApiError) -> Self {
        let status = err.status();
        if S::LIST.contains(&status) {
            return Self(err, PhantomData);
        }
        tracing::error!(
            status,
            "an operation failed with a status its spec does not list"
        );
        Self(
            ApiError::Internal(Json(Box::new(ErrorBody::new("Internal error")))),
            PhantomData,
        )
    }
}

impl<S: Statuses> From<OtsError> for Failure<S> {
    fn from(err: OtsError) -> Self {
        ApiError::from(err).into()
    }
}

impl<S: Statuses> IntoResponse for Failure<S> {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl<S: Statuses> ApiResponse for Failure<S> {
    fn meta() -> MetaResponses {
        let mut meta = ApiError::meta();
        meta.responses
            .retain(|r| r.status.is_some_and(|status| S::LIST.contains(&status)));
        meta
    }

    fn register(registry: &mut Registry) {
        ApiError::register(registry);
    }
}

impl<S: Statuses> From<Failure<S>> for poem::Error {
    fn from(failure: Failure<S>) -> Self {
        failure.0.into()
    }
}

/// An error raised before a handler runs (by an extractor), already in the JSON shape.
#[derive(Debug, Clone)]
pub struct JsonError {
    pub status: StatusCode,
    pub message: String,
}

impl JsonError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Not authorized")
    }
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JsonError {}

impl poem::error::ResponseError for JsonError {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn as_response(&self) -> Response {
        json_error(self.status, &self.message)
    }
}

/// `{"message": …}` with `status`, and the Basic challenge on 401.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut response = Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(body);
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static(WWW_AUTHENTICATE),
        );
    }
    response
}

/// Rewrites any error that escaped the handlers (framework parse errors, unknown routes,
/// wrong methods) into the JSON shape; never a bare text body.
pub async fn json_errors(err: poem::Error) -> Response {
    if let Some(e) = err.downcast_ref::<JsonError>() {
        return json_error(e.status, &e.message);
    }
    if err.is_from_response() {
        // A handler's own `ApiError`: already JSON.
        return err.into_response();
    }
    let status = err.status();
    let message = match status {
        StatusCode::NOT_FOUND => "Not found".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed".to_owned(),
        StatusCode::PAYLOAD_TOO_LARGE => "Request body too large".to_owned(),
        s if s.is_server_error() => {
            tracing::error!(error = %err, "unhandled error");
            "Internal error".to_owned()
        }
        _ => err.to_string(),
    };
    let mut response = json_error(status, &message);
    if status.is_client_error() {
        // Keep framework headers such as Allow on 405.
        let original = err.into_response();
        if let Some(allow) = original.headers().get(header::ALLOW) {
            response.headers_mut().insert(header::ALLOW, allow.clone());
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    struct LookingUp;
    impl Statuses for LookingUp {
        const LIST: &'static [u16] = &[401, 404, 500];
    }

    #[test]
    fn a_failure_keeps_a_listed_status_and_lists_only_those() {
        let kept: Failure<LookingUp> = ApiError::unknown_secret("k").into();
        assert_eq!(kept.0.status(), 404);
        let listed: Vec<u16> = Failure::<LookingUp>::meta()
            .responses
            .iter()
            .filter_map(|r| r.status)
            .collect();
        assert_eq!(listed, [401, 404, 500]);
    }

    /// A status the operation does not list would break its generated clients: it is a
    /// bug, answered as the 500 every operation lists.
    #[test]
    fn an_unlisted_status_becomes_a_500() {
        let failure: Failure<LookingUp> = OtsError::WrongPassphrase { tries_left: 3 }.into();
        assert_eq!(failure.0.status(), 500);
        let response = failure.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
