//! Types that describe themselves to the spec exactly as the server treats them: fields that
//! are always present but may be null, and parameters the spec constrains while the handler
//! reads the text, so that a bad one gets the API's own message.
//! Body fields may be `null`, which the server reads as absent: they are nullable.

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{
    ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type,
};
use serde_json::Value;

/// Always present in the JSON, `null` when there is no value: `nullable` in the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nullable<T>(pub Option<T>);

impl<T: Type> Type for Nullable<T> {
    const IS_REQUIRED: bool = true;
    type RawValueType = T::RawValueType;
    type RawElementValueType = T::RawElementValueType;

    fn name() -> Cow<'static, str> {
        format!("nullable_{}", T::name()).into()
    }

    fn schema_ref() -> MetaSchemaRef {
        match T::schema_ref() {
            MetaSchemaRef::Inline(schema) => MetaSchemaRef::Inline(Box::new(MetaSchema {
                nullable: true,
                ..*schema
            })),
            reference => reference,
        }
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        self.0.as_ref().and_then(Type::as_raw_value)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        match &self.0 {
            Some(value) => value.raw_element_iter(),
            None => Box::new(std::iter::empty()),
        }
    }
}

/// `null` or the value, as [`ToJSON`] writes it.
impl<T: serde::Serialize> serde::Serialize for Nullable<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<T: ToJSON> ToJSON for Nullable<T> {
    fn to_json(&self) -> Option<Value> {
        Some(
            self.0
                .as_ref()
                .and_then(ToJSON::to_json)
                .unwrap_or(Value::Null),
        )
    }
}

impl<T: ParseFromJSON> ParseFromJSON for Nullable<T> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            None | Some(Value::Null) => Ok(Self(None)),
            value => T::parse_from_json(value)
                .map(|v| Self(Some(v)))
                .map_err(ParseError::propagate),
        }
    }
}

macro_rules! text_param {
    ($(#[$doc:meta])* $name:ident, $schema:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub String);

        impl Type for $name {
            const IS_REQUIRED: bool = true;
            type RawValueType = Self;
            type RawElementValueType = Self;

            fn name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn schema_ref() -> MetaSchemaRef {
                MetaSchemaRef::Inline(Box::new($schema))
            }

            fn as_raw_value(&self) -> Option<&Self> {
                Some(self)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
                Box::new(std::iter::once(self))
            }
        }

        impl ParseFromParameter for $name {
            fn parse_from_parameter(value: &str) -> ParseResult<Self> {
                Ok(Self(value.to_owned()))
            }
        }

        impl ParseFromJSON for $name {
            fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
                String::parse_from_json(value)
                    .map(Self)
                    .map_err(ParseError::propagate)
            }
        }

        impl ToJSON for $name {
            fn to_json(&self) -> Option<Value> {
                Some(Value::String(self.0.clone()))
            }
        }
    };
}

text_param!(
    /// An email address (`recipient`), or blank for none (forms send blank fields). The
    /// pattern is the shape `ots_domain::Email::parse` accepts, in ASCII.
    EmailText,
    MetaSchema {
        max_length: Some(254),
        pattern: Some(EMAIL_OR_BLANK.to_owned()),
        ..MetaSchema::new("string")
    }
);

const EMAIL_OR_BLANK: &str = concat!(
    r#"^$|^[^\s@<>(),;:\\"\[\]\x00-\x1f\x7f-\x9f]{1,64}@"#,
    r"([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nullable_is_always_present_and_says_so() {
        assert_eq!(Nullable::<String>(None).to_json(), Some(Value::Null));
        assert_eq!(
            Nullable(Some("k".to_owned())).to_json(),
            Some(Value::from("k"))
        );
        let MetaSchemaRef::Inline(schema) = Nullable::<i64>::schema_ref() else {
            panic!("inline");
        };
        assert!(schema.nullable);
        assert_eq!(schema.ty, "integer");
    }

    /// The pattern says what `Email::parse` takes: what one accepts the other does.
    #[test]
    fn the_email_pattern_agrees_with_the_parser() {
        let pattern = regex::Regex::new(EMAIL_OR_BLANK).unwrap();
        for raw in [
            "jane.doe@example.com",
            "a+b@mail.example.org",
            "x@y-z.co",
            "0@0.com",
        ] {
            assert!(pattern.is_match(raw), "{raw}");
            assert!(ots_domain::Email::parse(raw).is_some(), "{raw}");
        }
        assert!(pattern.is_match(""));
        for raw in [
            "jane",
            "jane@example",
            "a b@c.com",
            "<a>@b.com",
            "a@-b.com",
            "a@b@c.com",
            "\u{87}x@b.com",
        ] {
            assert!(!pattern.is_match(raw), "{raw}");
            assert!(ots_domain::Email::parse(raw).is_none(), "{raw}");
        }
    }
}
