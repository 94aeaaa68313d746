//! The creator's view of a metadata record at one instant: what the API shows.

use crate::clock::UnixTime;
use crate::model::{Metadata, MetadataKey, MetadataState, SecretKey};

/// The creator's view of a metadata record at one instant: what the API shows.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MetadataView {
    pub custid: String,
    pub metadata_key: String,
    pub secret_key: Option<String>,
    pub ttl: i64,
    pub metadata_ttl: i64,
    pub secret_ttl: Option<i64>,
    pub state: MetadataState,
    pub created: UnixTime,
    pub updated: UnixTime,
    pub received: Option<UnixTime>,
    pub burned: Option<UnixTime>,
    pub recipient: Vec<String>,
    pub passphrase_required: bool,
}

impl MetadataView {
    /// The view at `now` of the record `key` finds; `secret_key` is what its sealed secret
    /// key opened to, shown only while the secret may be revealed.
    pub fn of(
        metadata: &Metadata,
        key: &MetadataKey,
        secret_key: Option<&SecretKey>,
        now: UnixTime,
    ) -> Self {
        let state = metadata.state_at(now);
        let live = state == MetadataState::New;
        Self {
            // Copied as they are: `to_string` would run each through the formatter and grow
            // its string in steps, on every share.
            custid: metadata.custid.as_str().to_owned(),
            metadata_key: key.as_str().to_owned(),
            secret_key: secret_key.filter(|_| live).map(|k| k.as_str().to_owned()),
            ttl: metadata.ttl,
            metadata_ttl: (metadata.expires_at - now).max(0),
            secret_ttl: live.then(|| (metadata.secret_expires_at - now).max(0)),
            state,
            created: metadata.created,
            updated: metadata.updated,
            received: metadata.received,
            burned: metadata.burned,
            recipient: metadata.recipients.clone(),
            passphrase_required: metadata.passphrase_required,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CustId, MetadataId};

    #[test]
    fn the_view_counts_down_and_hides_a_gone_secret() {
        let key = MetadataKey::parse("qjpjroeit8wra0ojeyhcw5pjsgwtuq7").unwrap();
        let secret_key = SecretKey::parse("153l8vbwqx5taskp92pf05uvgjefvu9").unwrap();
        let md = Metadata {
            id: MetadataId::of(&key),
            custid: CustId::anonymous(),
            sealed_secret_key: Some(vec![1]),
            sealed_key: None,
            ttl: 100,
            state: MetadataState::New,
            created: 1000,
            updated: 1000,
            received: None,
            burned: None,
            recipients: vec!["ja***@ex***.com".into()],
            passphrase_required: false,
            secret_expires_at: 1100,
            expires_at: 1200,
        };
        let view = MetadataView::of(&md, &key, Some(&secret_key), 1050);
        assert_eq!(view.secret_key.as_deref(), Some(secret_key.as_str()));
        assert_eq!(view.state, MetadataState::New);
        assert_eq!(view.secret_ttl, Some(50));
        assert_eq!(view.metadata_ttl, 150);
        assert_eq!(view.recipient, vec!["ja***@ex***.com".to_string()]);
        let view = MetadataView::of(&md, &key, Some(&secret_key), 1100);
        assert_eq!(view.state, MetadataState::Expired);
        assert_eq!(view.secret_key, None);
        assert_eq!(view.secret_ttl, None);
    }
}
