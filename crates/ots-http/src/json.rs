//! JSON answers written straight from their fields.
//!
//! poem-openapi's `Json` turns an answer into a `serde_json::Value` tree (`ToJSON`) and then
//! serializes the tree: a map, a string and an allocation per field, then all of it freed,
//! on every share and reveal. This `Json` declares the same schema and content type to the
//! spec, and writes the answer's serde form directly. Every answer type derives both, and a
//! test checks that the two give the same document for each of them.

use poem::{IntoResponse, Response};
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use poem_openapi::ApiResponse;
use serde::Serialize;

/// A 200 answer with a JSON body: `T`'s schema in the spec, `T`'s serde form on the wire.
#[derive(Debug)]
pub struct Json<T>(pub T);

const CONTENT_TYPE: &str = "application/json; charset=utf-8";

impl<T: Type> Payload for Json<T> {
    const CONTENT_TYPE: &'static str = CONTENT_TYPE;

    fn check_content_type(content_type: &str) -> bool {
        <poem_openapi::payload::Json<T> as Payload>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Serialize + Send> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        // Room for a metadata answer, the largest common one, so it is written in place.
        let mut body = Vec::with_capacity(384);
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => Response::builder().content_type(CONTENT_TYPE).body(body),
            // Only a map with non-string keys fails, and no answer has one.
            Err(_) => crate::error::json_error(
                poem::http::StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
            ),
        }
    }
}

impl<T: Type + Serialize + Send> ApiResponse for Json<T> {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: <Self as Payload>::CONTENT_TYPE,
                    schema: <Self as Payload>::schema_ref(),
                }],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

#[cfg(test)]
mod tests {
    use poem_openapi::types::{Example, ToJSON};

    use crate::api::{AuthCheck, MetadataObject, Secret, State, StatusBody};
    use crate::schema::Nullable;

    /// What the wire carries is what the spec's types say, field for field.
    fn same<T: ToJSON + serde::Serialize>(answer: &T) {
        let direct = serde_json::to_value(answer).expect("serializes");
        assert_eq!(Some(direct), answer.to_json());
    }

    #[test]
    fn every_answer_writes_what_poem_openapi_would() {
        let shared = MetadataObject::example();
        same(&shared);
        same(&MetadataObject {
            secret_key: Nullable(None),
            secret_ttl: Nullable(None),
            state: State::Received,
            received: Some(1_798_761_700),
            recipient: vec![],
            passphrase_required: false,
            ..shared.clone()
        });
        same(&MetadataObject {
            state: State::Burned,
            burned: Some(1_798_761_800),
            value: Some("a generated \"value\" ✓".into()),
            ..shared
        });
        same(&Secret::example());
        same(&StatusBody {
            status: "nominal".into(),
        });
        same(&AuthCheck {
            custid: "alice".into(),
        });
    }
}
