//! Request extractors: OneTimeSecret clients send parameters in the query string, a
//! urlencoded body, a multipart body or a JSON object, and authenticate with HTTP Basic that
//! is optional on most routes. poem-openapi has no extractor for "any of these bodies, or none",
//! so these implement `ApiExtractor` by hand and describe themselves to the spec.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use base64::Engine;
use futures_util::StreamExt;
use poem::http::{header, StatusCode};
use poem::web::Multipart;
use poem::{Body, FromRequest, Request, RequestBody};
use poem_openapi::registry::{
    MetaMediaType, MetaRequest, MetaSchemaRef, MetaSecurityScheme, Registry,
};
use poem_openapi::types::Type;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

use crate::ratelimit::RateKey;
use crate::RequestData;

use ots_domain::Credentials;

use crate::error::JsonError;

/// The most a request body may hold, set per app (`HttpConfig::body_limit`).
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// The parameters of one operation's body, as the spec shows them.
pub trait BodySchema: Type {
    /// Whether the spec says a body must be sent (the server also takes the parameters from
    /// the query string, so it is never required on the wire).
    const REQUIRED: bool;
}

/// An operation's parameters from the body, whatever its encoding, and from the query
/// string; `T` is the JSON body's schema, the one encoding the spec documents, so that
/// generated clients send exactly one. A body without parameters, or no body at all, is an
/// empty set.
pub struct BodyParams<T> {
    query: Fields,
    body: Fields,
    _schema: PhantomData<T>,
}

/// Parameters in the order they came, repeats included. A form has a handful, so looking
/// one up is a short scan: no table to allocate, no key to hash on every lookup, in a
/// share that looks up six.
#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Fields {
    /// The first value given for `name`.
    fn first(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The last value given for `name`.
    fn last(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl FromIterator<(String, String)> for Fields {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl<T> BodyParams<T> {
    /// The value of `name`: the body's, else the query string's.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.body_value(name).or_else(|| self.query_value(name))
    }

    /// The body's value of `name`; of repeated parameters, the last counts.
    pub fn body_value(&self, name: &str) -> Option<&str> {
        self.body.last(name)
    }

    /// The query string's value of `name`; of repeated parameters, the first counts, as
    /// with poem's own query parameters.
    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query.first(name)
    }
}

const FORM: &str = "application/x-www-form-urlencoded";
const MULTIPART: &str = "multipart/form-data";
const JSON: &str = "application/json";

impl<'a, T: BodySchema> ApiExtractor<'a> for BodyParams<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: Some(
                "A JSON object. For OneTimeSecret clients the server also takes the same \
                 parameters as an urlencoded or multipart body, or in the query string; a \
                 value in the body wins over the query string's.",
            ),
            content: vec![MetaMediaType {
                content_type: JSON,
                schema: T::schema_ref(),
            }],
            required: T::REQUIRED,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let (values, json_types) = parse_body(request, body).await?;
        // In a JSON body, a parameter of the schema has the schema's type (an unknown one is
        // ignored, whatever its type).
        if !json_types.is_empty() {
            let expected = property_types::<T>();
            for (name, found) in &json_types {
                let wanted = expected.iter().find(|(n, _)| n == name).map(|(_, ty)| *ty);
                if let Some(wanted) = wanted.filter(|wanted| wanted != found) {
                    let article = if wanted == "integer" { "an" } else { "a" };
                    return Err(JsonError::bad_request(format!(
                        "Invalid JSON body: `{name}` must be {article} {wanted}, not {found}"
                    ))
                    .into());
                }
            }
        }
        let query = form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        Ok(Self {
            query,
            body: values,
            _schema: PhantomData,
        })
    }
}

/// The properties of the object schema `T` and their JSON types (`string`, `integer`).
fn property_types<T: Type>() -> Vec<(&'static str, &'static str)> {
    let mut registry = Registry::new();
    T::register(&mut registry);
    let Some(schema) = registry.schemas.get(&*T::name()) else {
        return Vec::new();
    };
    schema
        .properties
        .iter()
        .filter_map(|(name, property)| match property {
            MetaSchemaRef::Inline(inline) => Some((*name, inline.ty)),
            MetaSchemaRef::Reference(_) => None,
        })
        .collect()
}

/// Parameters and their text; for a JSON body, also each value's JSON type (`string`,
/// `integer`, `number`, `boolean`, `array`, `object`), non-strings kept as their JSON text.
type Parsed = (Fields, Vec<(String, &'static str)>);

async fn parse_body(request: &Request, body: &mut RequestBody) -> Result<Parsed, JsonError> {
    let limit = request
        .data::<Arc<RequestData>>()
        .map_or(1 << 20, |d| d.body_limit.0);
    let too_large = || {
        JsonError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body too large: the limit is {limit} bytes"),
        )
    };
    if request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|len| len > limit as u64)
    {
        return Err(too_large());
    }
    let bytes = match body.take() {
        Ok(b) => read_limited(b, limit).await.map_err(|e| match e {
            poem::error::ReadBodyError::PayloadTooLarge => too_large(),
            other => JsonError::bad_request(format!("Could not read the request body: {other}")),
        })?,
        Err(_) => return Ok(Parsed::default()),
    };
    if bytes.is_empty() {
        return Ok(Parsed::default());
    }
    let content_type = request.content_type().unwrap_or_default();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        // The last of repeated parameters counts. Any bytes decode: what is not UTF-8
        // becomes U+FFFD, and a value is then checked as the parameter it is.
        FORM => Ok((
            form_urlencoded::parse(&bytes)
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect(),
            Vec::new(),
        )),
        // Boxed: multer's parser held inline made every share's and reveal's future ~3.4 KiB
        // larger (6.0 KiB against 2.6), and poem moves that future whole into each boxed
        // layer above it, for a body that is rarely multipart.
        MULTIPART => Ok((Box::pin(parse_multipart(request, bytes)).await?, Vec::new())),
        JSON => parse_json(&bytes),
        _ => Err(JsonError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Unsupported content type {content_type:?}: send {FORM}, {MULTIPART} or {JSON}"
            ),
        )),
    }
}

/// The body, refused past `limit` bytes. Not poem's `into_bytes_limit`: that reads through
/// a 4 KiB array held across its awaits, so the array is zeroed on every request and every
/// future above it is over 4 KiB, and each of poem's boxed endpoint layers moves it again.
/// Chunks are appended as they come.
async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, poem::error::ReadBodyError> {
    let mut chunks = std::pin::pin!(body.into_bytes_stream());
    let mut data = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(poem::error::ReadBodyError::Io)?;
        if data.len() + chunk.len() > limit {
            return Err(poem::error::ReadBodyError::PayloadTooLarge);
        }
        data.extend_from_slice(&chunk);
    }
    Ok(data)
}

async fn parse_multipart(request: &Request, bytes: Vec<u8>) -> Result<Fields, JsonError> {
    let invalid = |e: poem::Error| JsonError::bad_request(format!("Invalid multipart body: {e}"));
    let mut body = RequestBody::new(Body::from(bytes));
    let mut multipart = <Multipart as FromRequest>::from_request(request, &mut body)
        .await
        .map_err(invalid)?;
    let mut values = Vec::new();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| invalid(e.into()))?
    {
        let Some(name) = field.name().map(str::to_owned) else {
            continue;
        };
        let text = field.text().await.map_err(|e| invalid(e.into()))?;
        values.push((name, text));
    }
    Ok(Fields(values))
}

fn parse_json(bytes: &[u8]) -> Result<Parsed, JsonError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| JsonError::bad_request(format!("Invalid JSON body: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(JsonError::bad_request(
            "Invalid JSON body: expected an object",
        ));
    };
    let (mut values, mut types) = (Vec::new(), Vec::new());
    for (name, value) in map {
        let (text, ty) = match value {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => (s, "string"),
            serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => (n.to_string(), "integer"),
            serde_json::Value::Number(n) => (n.to_string(), "number"),
            serde_json::Value::Bool(b) => (b.to_string(), "boolean"),
            serde_json::Value::Array(a) => (serde_json::Value::Array(a).to_string(), "array"),
            serde_json::Value::Object(o) => (serde_json::Value::Object(o).to_string(), "object"),
        };
        types.push((name.clone(), ty));
        values.push((name, text));
    }
    Ok((Fields(values), types))
}

/// HTTP Basic credentials as sent: `(custid, apitoken)`.
/// Basic credentials as presented, parsed at the edge: domain credentials, or a custid that
/// cannot be one (a failed login all the same, counted against the client's address).
#[derive(Debug)]
pub enum Login {
    Credentials(Credentials),
    Unparseable,
}

pub const BASIC_AUTH: &str = "basicAuth";

fn register_basic(registry: &mut Registry) {
    registry.create_security_scheme(
        BASIC_AUTH,
        MetaSecurityScheme {
            ty: "http",
            description: Some("`custid:apitoken`"),
            name: None,
            key_in: None,
            scheme: Some("basic"),
            bearer_format: None,
            flows: None,
            openid_connect_url: None,
        },
    );
}

/// `None` without an Authorization header; an error for one that is not valid Basic
/// (present but wrong credentials are never treated as anonymous).
fn credentials(request: &Request) -> Result<Option<Login>, JsonError> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let parsed = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
        })
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            let (user, token) = pair.split_once(':')?;
            Some(Credentials::parse(user, token).map_or(Login::Unparseable, Login::Credentials))
        });
    parsed.map(Some).ok_or_else(JsonError::unauthorized)
}

macro_rules! auth_extractor {
    ($(#[$doc:meta])* $name:ident($inner:ty), fallback = $fallback:expr, $convert:expr) => {
        $(#[$doc])*
        pub struct $name(pub $inner);

        impl<'a> ApiExtractor<'a> for $name {
            const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
            type ParamType = ();
            type ParamRawType = ();

            fn register(registry: &mut Registry) {
                register_basic(registry);
            }

            fn security_schemes() -> Vec<&'static str> {
                vec![BASIC_AUTH]
            }

            fn has_security_fallback() -> bool {
                $fallback
            }

            async fn from_request(
                request: &'a Request,
                _body: &mut RequestBody,
                _: ExtractParamOptions<Self::ParamType>,
            ) -> poem::Result<Self> {
                let convert: fn(Option<Login>) -> Result<$inner, JsonError> = $convert;
                Ok(Self(convert(credentials(request)?)?))
            }
        }
    };
}

auth_extractor!(
    /// Credentials when given; anonymous otherwise.
    OptionalAuth(Option<Login>),
    fallback = true,
    Ok
);

auth_extractor!(
    /// Credentials that must be given.
    RequiredAuth(Login),
    fallback = false,
    |c| c.ok_or_else(JsonError::unauthorized)
);

/// Which header carries the client address behind a trusted proxy (set per app).
#[derive(Clone, Debug)]
pub struct TrustedProxyHeader(pub Option<String>);

/// The client's address, for rate limits: the peer address, or, behind a trusted proxy, the
/// last address that proxy appended to its header (the only one it vouches for).
pub struct ClientAddr(pub RateKey);

impl<'a> FromRequest<'a> for ClientAddr {
    async fn from_request(request: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let from_header = request
            .data::<Arc<RequestData>>()
            .and_then(|d| d.proxy.0.as_deref())
            .and_then(|name| request.headers().get(name))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| match v.parse() {
                Ok(ip) => RateKey::Address(ip),
                Err(_) => RateKey::OtherAddress(v.to_owned()),
            });
        let addr = from_header.unwrap_or_else(|| match request.remote_addr().as_socket_addr() {
            Some(sock) => RateKey::Address(sock.ip()),
            None => RateKey::OtherAddress(request.remote_addr().to_string()),
        });
        Ok(Self(addr))
    }
}

/// The parameters of a body in any accepted encoding, within the body limit: for the pages'
/// forms (the API's routes use [`BodyParams`], which also describes itself to the spec).
pub struct FormFields(pub HashMap<String, String>);

impl<'a> FromRequest<'a> for FormFields {
    async fn from_request(request: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        // Of repeated parameters, the last counts, as in the API's bodies.
        Ok(Self(
            parse_body(request, body).await?.0 .0.into_iter().collect(),
        ))
    }
}
