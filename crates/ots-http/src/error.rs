//! Every error leaves as `{"message": …}` with the status that says what happened. Domain
//! errors map to a status and a message in [`Answer::of`], for the API and the pages alike;
//! errors of the framework itself (bad parameters, unknown routes) are rewritten to the same
//! shape by [`json_errors`].

use poem::http::{header, StatusCode};
use poem::Response;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

use ots_domain::OtsError;

/// The body of every error.
#[derive(Object, Debug, Clone, PartialEq, Eq)]
#[oai(rename = "Error")]
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
}

impl ErrorBody {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            secret_key: None,
            metadata_key: None,
            tries_left: None,
        }
    }
}

pub const WWW_AUTHENTICATE: &str = "Basic realm=\"ots\", charset=\"UTF-8\"";

#[derive(ApiResponse, Debug)]
pub enum ApiError {
    /// A parameter is missing or invalid.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Credentials are missing where required, or wrong.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// Wrong (or missing) passphrase; the secret is still there unless `tries_left` is 0.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// Unknown, already received, burned or expired.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The request body is over the size limit.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// Rate limited: retry after the given number of seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
    /// An unexpected failure; details are in the server's log.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The store cannot be reached.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

impl ApiError {
    pub fn unknown_secret(secret_key: &str) -> Self {
        Self::NotFound(Json(ErrorBody {
            secret_key: Some(secret_key.to_owned()),
            ..ErrorBody::new("Unknown secret")
        }))
    }

    pub fn unknown_metadata(metadata_key: &str) -> Self {
        Self::NotFound(Json(ErrorBody {
            metadata_key: Some(metadata_key.to_owned()),
            ..ErrorBody::new("Unknown secret")
        }))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(Json(ErrorBody::new(message)))
    }

    pub fn too_many_requests(wait: std::time::Duration) -> Self {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Self::TooManyRequests(
            Json(ErrorBody::new(format!(
                "Too many requests: retry in {seconds} seconds"
            ))),
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
        let body = Json(ErrorBody {
            tries_left: answer.tries_left,
            ..ErrorBody::new(answer.message)
        });
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
