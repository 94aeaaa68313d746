//! What can go wrong, said in the domain's words. The HTTP adapter maps each variant to a
//! status and a message in one place.

/// Errors of a repository adapter.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached (connection refused, pool timed out, database restarting).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug, corrupt data, a constraint violated.
    #[error("store error: {0}")]
    Other(String),
    /// A customer or token that must be unique already exists.
    #[error("already exists: {0}")]
    Conflict(String),
}

/// Errors of the use cases.
#[derive(Debug, thiserror::Error)]
pub enum OtsError {
    /// Unknown, already received, burned or expired: one answer for all, so existence is
    /// not leaked.
    #[error("Unknown secret")]
    NotFound,
    #[error("You did not provide anything to share")]
    NothingToShare,
    #[error("Secret is too long: the maximum for your plan is {max} bytes")]
    TooLarge { max: usize },
    #[error("Invalid ttl: expected an integer number of seconds")]
    InvalidTtl,
    #[error("Invalid recipient: expected one email address")]
    InvalidRecipient,
    #[error("Invalid limit: expected an integer from 1 to {max}")]
    InvalidLimit { max: u32 },
    #[error("Not authorized")]
    Unauthorized,
    #[error("An account is required to send emails")]
    AccountRequired,
    /// `tries_left == 0` means this try burned the secret.
    #[error("Wrong passphrase")]
    WrongPassphrase { tries_left: u32 },
    #[error("Service unavailable: the store cannot be reached")]
    Unavailable,
    /// Opaque to clients; the cause goes to the logs.
    #[error("internal error: {0}")]
    Internal(String),
    /// A duplicate (customer, token).
    #[error("{0}")]
    Conflict(String),
    /// An invalid admin input, said in full.
    #[error("{0}")]
    Invalid(String),
    #[error("Unknown customer")]
    UnknownCustomer,
    /// No master secret given opens the store's check value: starting would write rows no
    /// one can read and fail every reveal.
    #[error(
        "the master secret does not open this store: give the secret it was sealed with \
         (OTS_SECRET), or the new one with the old one in OTS_SECRET_PREVIOUS"
    )]
    WrongMasterSecret,
}

impl From<StoreError> for OtsError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(cause) => {
                tracing::warn!(%cause, "store unavailable");
                OtsError::Unavailable
            }
            StoreError::Conflict(what) => OtsError::Conflict(what),
            StoreError::Other(cause) => OtsError::Internal(cause),
        }
    }
}
