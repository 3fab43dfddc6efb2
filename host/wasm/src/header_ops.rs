//! Header changes a filter declares in `init` (`filter-info.request-header-ops` and
//! `response-header-ops`): checked once at bind time, then applied by the host to every
//! request or response without entering the guest.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::bindings::nantian::filter::types;

/// One declared change, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp {
    /// Replace every value.
    Set(HeaderName, HeaderValue),
    /// Append a value.
    Add(HeaderName, HeaderValue),
    /// Remove every value.
    Remove(HeaderName),
}

impl HeaderOp {
    fn parse(op: types::HeaderOp) -> Result<Self, String> {
        let name = |name: &str| {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("invalid header name {name:?}"))
        };
        let value = |name: &str, value: &str| {
            HeaderValue::from_str(value)
                .map_err(|_| format!("invalid value for header {name:?}: {value:?}"))
        };
        Ok(match op {
            types::HeaderOp::Set((n, v)) => HeaderOp::Set(name(&n)?, value(&n, &v)?),
            types::HeaderOp::Add((n, v)) => HeaderOp::Add(name(&n)?, value(&n, &v)?),
            types::HeaderOp::Remove(n) => HeaderOp::Remove(name(&n)?),
        })
    }

    fn apply(&self, headers: &mut HeaderMap) {
        match self {
            HeaderOp::Set(name, value) => {
                headers.insert(name.clone(), value.clone());
            }
            HeaderOp::Add(name, value) => {
                headers.append(name.clone(), value.clone());
            }
            HeaderOp::Remove(name) => {
                headers.remove(name);
            }
        }
    }
}

/// The changes of one binding, for requests and for responses, in declaration order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeclaredHeaderOps {
    pub request: Box<[HeaderOp]>,
    pub response: Box<[HeaderOp]>,
}

impl DeclaredHeaderOps {
    /// Parses what `init` declared. An invalid name or value rejects the configuration,
    /// like an `err` from `init` would: the filter meant to make that change.
    pub(crate) fn parse(
        request: Vec<types::HeaderOp>,
        response: Vec<types::HeaderOp>,
    ) -> Result<Self, String> {
        let parse = |ops: Vec<types::HeaderOp>, direction: &str| {
            ops.into_iter()
                .map(HeaderOp::parse)
                .collect::<Result<Box<[_]>, _>>()
                .map_err(|e| format!("declared {direction} header op: {e}"))
        };
        Ok(DeclaredHeaderOps {
            request: parse(request, "request")?,
            response: parse(response, "response")?,
        })
    }

    pub(crate) fn apply_request(&self, headers: &mut HeaderMap) {
        self.request.iter().for_each(|op| op.apply(headers));
    }

    pub(crate) fn apply_response(&self, headers: &mut HeaderMap) {
        self.response.iter().for_each(|op| op.apply(headers));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, value: &str) -> types::HeaderOp {
        types::HeaderOp::Set((name.into(), value.into()))
    }

    #[test]
    fn ops_apply_in_order_case_insensitively() {
        let ops = DeclaredHeaderOps::parse(
            vec![
                set("X-A", "1"),
                types::HeaderOp::Add(("x-a".into(), "2".into())),
                types::HeaderOp::Remove("X-GONE".into()),
            ],
            Vec::new(),
        )
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.append("x-a", HeaderValue::from_static("old"));
        headers.append("x-gone", HeaderValue::from_static("1"));
        ops.apply_request(&mut headers);
        let values: Vec<_> = headers.get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
        assert!(!headers.contains_key("x-gone"));
    }

    #[test]
    fn invalid_names_and_values_are_refused_with_the_direction() {
        let error = DeclaredHeaderOps::parse(Vec::new(), vec![set("a b", "1")]).unwrap_err();
        assert_eq!(
            error,
            r#"declared response header op: invalid header name "a b""#
        );
        let error = DeclaredHeaderOps::parse(vec![set("x", "a\r\nb")], Vec::new()).unwrap_err();
        assert!(
            error.starts_with("declared request header op: invalid value"),
            "{error}"
        );
    }
}
