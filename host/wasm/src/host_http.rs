//! `nantian:filter/http`: the request and response resources. Every method works directly
//! on the `http` parts the current call moved into the store, so a filter pays only for
//! the headers it touches. Only one request and one response are live per call, so the
//! handles carry no state (their rep is always 0).
//!
//! Reads of names that are not valid header names find nothing. Mutations with an invalid
//! name, value, path, authority or status trap with a message saying what was invalid:
//! silently dropping a header a filter meant to set (say, a security header) is worse
//! than failing the call, which the binding's fail policy then handles.

use std::str::FromStr;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use wasmtime::component::Resource;

use crate::attributes::Attributes;
use crate::bindings::nantian::filter::http::{Host, HostRequest, HostResponse, Request, Response};
use crate::error::GuestMisuse;
use crate::state::StoreState;

type Result<T> = wasmtime::Result<T>;

fn misuse(message: String) -> wasmtime::Error {
    wasmtime::Error::new(GuestMisuse(message))
}

fn value_string(value: &HeaderValue) -> String {
    match value.to_str() {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
    }
}

fn header(map: &HeaderMap, name: &str) -> Option<String> {
    map.get(name).map(value_string)
}

fn header_all(map: &HeaderMap, name: &str) -> Vec<String> {
    map.get_all(name).iter().map(value_string).collect()
}

fn headers(map: &HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(name, value)| (name.as_str().to_owned(), value_string(value)))
        .collect()
}

fn parse_name(name: &str) -> Result<HeaderName> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| misuse(format!("invalid header name {name:?}")))
}

fn parse_pair(name: &str, value: &str) -> Result<(HeaderName, HeaderValue)> {
    let value_ok = HeaderValue::from_str(value)
        .map_err(|_| misuse(format!("invalid value for header {name:?}: {value:?}")));
    Ok((parse_name(name)?, value_ok?))
}

fn set_header(map: &mut HeaderMap, name: &str, value: &str) -> Result<()> {
    let (name, value) = parse_pair(name, value)?;
    map.insert(name, value);
    Ok(())
}

fn add_header(map: &mut HeaderMap, name: &str, value: &str) -> Result<()> {
    let (name, value) = parse_pair(name, value)?;
    map.append(name, value);
    Ok(())
}

fn remove_header(map: &mut HeaderMap, name: &str) -> Result<()> {
    let name = parse_name(name)?;
    map.remove(name);
    Ok(())
}

impl Host for StoreState {}

impl HostRequest for StoreState {
    fn method(&mut self, _: Resource<Request>) -> Result<String> {
        Ok(self.request.method.as_str().to_owned())
    }

    fn path(&mut self, _: Resource<Request>) -> Result<String> {
        let uri = &self.request.uri;
        Ok(uri
            .path_and_query()
            .map_or_else(|| uri.path(), PathAndQuery::as_str)
            .to_owned())
    }

    fn set_path(&mut self, _: Resource<Request>, path: String) -> Result<()> {
        let invalid = || misuse(format!("invalid path {path:?}"));
        if !path.starts_with('/') {
            return Err(invalid());
        }
        let path_and_query = PathAndQuery::from_str(&path).map_err(|_| invalid())?;
        let mut parts = self.request.uri.clone().into_parts();
        parts.path_and_query = Some(path_and_query);
        self.request.uri = Uri::from_parts(parts).map_err(|_| invalid())?;
        Ok(())
    }

    fn authority(&mut self, _: Resource<Request>) -> Result<String> {
        if let Some(authority) = self.request.uri.authority() {
            return Ok(authority.as_str().to_owned());
        }
        Ok(header(&self.request.headers, "host").unwrap_or_default())
    }

    /// HTTP/2 requests carry the authority in the URI, HTTP/1 requests in `Host`: update
    /// whichever the request has (the `Host` header when it has neither).
    fn set_authority(&mut self, _: Resource<Request>, authority: String) -> Result<()> {
        let parsed = Authority::from_str(&authority)
            .map_err(|_| misuse(format!("invalid authority {authority:?}")))?;
        let has_uri_authority = self.request.uri.authority().is_some();
        if has_uri_authority {
            let mut parts = self.request.uri.clone().into_parts();
            parts.authority = Some(parsed);
            self.request.uri = Uri::from_parts(parts)
                .map_err(|_| misuse(format!("invalid authority {authority:?}")))?;
        }
        if !has_uri_authority || self.request.headers.contains_key(http::header::HOST) {
            set_header(&mut self.request.headers, "host", &authority)?;
        }
        Ok(())
    }

    /// The URI's scheme if it has one, else a [`Scheme`] the host put in the request's
    /// extensions (the listener's), else `http`.
    fn scheme(&mut self, _: Resource<Request>) -> Result<String> {
        let scheme = self
            .request
            .uri
            .scheme()
            .or_else(|| self.request.extensions.get::<Scheme>());
        Ok(scheme.map_or("http", Scheme::as_str).to_owned())
    }

    fn header(&mut self, _: Resource<Request>, name: String) -> Result<Option<String>> {
        Ok(header(&self.request.headers, &name))
    }

    fn header_all(&mut self, _: Resource<Request>, name: String) -> Result<Vec<String>> {
        Ok(header_all(&self.request.headers, &name))
    }

    fn headers(&mut self, _: Resource<Request>) -> Result<Vec<(String, String)>> {
        Ok(headers(&self.request.headers))
    }

    fn set_header(&mut self, _: Resource<Request>, name: String, value: String) -> Result<()> {
        set_header(&mut self.request.headers, &name, &value)
    }

    fn add_header(&mut self, _: Resource<Request>, name: String, value: String) -> Result<()> {
        add_header(&mut self.request.headers, &name, &value)
    }

    fn remove_header(&mut self, _: Resource<Request>, name: String) -> Result<()> {
        remove_header(&mut self.request.headers, &name)
    }

    fn attribute(&mut self, _: Resource<Request>, name: String) -> Result<Option<String>> {
        let attributes = self.request.extensions.get::<Attributes>();
        Ok(attributes.and_then(|a| a.get(&name)).map(str::to_owned))
    }

    fn set_attribute(&mut self, _: Resource<Request>, name: String, value: String) -> Result<()> {
        let attributes = self
            .request
            .extensions
            .get_or_insert_default::<Attributes>();
        attributes.set(&name, &value).map_err(misuse)
    }

    fn drop(&mut self, _: Resource<Request>) -> Result<()> {
        Ok(())
    }
}

impl HostResponse for StoreState {
    fn status(&mut self, _: Resource<Response>) -> Result<u16> {
        Ok(self.response.status.as_u16())
    }

    fn set_status(&mut self, _: Resource<Response>, status: u16) -> Result<()> {
        self.response.status = http::StatusCode::from_u16(status)
            .map_err(|_| misuse(format!("invalid status {status}")))?;
        Ok(())
    }

    fn header(&mut self, _: Resource<Response>, name: String) -> Result<Option<String>> {
        Ok(header(&self.response.headers, &name))
    }

    fn header_all(&mut self, _: Resource<Response>, name: String) -> Result<Vec<String>> {
        Ok(header_all(&self.response.headers, &name))
    }

    fn headers(&mut self, _: Resource<Response>) -> Result<Vec<(String, String)>> {
        Ok(headers(&self.response.headers))
    }

    fn set_header(&mut self, _: Resource<Response>, name: String, value: String) -> Result<()> {
        set_header(&mut self.response.headers, &name, &value)
    }

    fn add_header(&mut self, _: Resource<Response>, name: String, value: String) -> Result<()> {
        add_header(&mut self.response.headers, &name, &value)
    }

    fn remove_header(&mut self, _: Resource<Response>, name: String) -> Result<()> {
        remove_header(&mut self.response.headers, &name)
    }

    fn drop(&mut self, _: Resource<Response>) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_helpers_are_case_insensitive_and_keep_values() {
        let mut map = HeaderMap::new();
        set_header(&mut map, "X-A", "1").unwrap();
        add_header(&mut map, "x-a", "2").unwrap();
        assert_eq!(header(&map, "X-a").as_deref(), Some("1"));
        assert_eq!(header_all(&map, "X-A"), ["1", "2"]);
        set_header(&mut map, "x-A", "3").unwrap();
        assert_eq!(header_all(&map, "x-a"), ["3"]);
        remove_header(&mut map, "X-A").unwrap();
        assert!(map.is_empty());
    }

    #[test]
    fn invalid_names_and_values_are_errors_not_panics() {
        let mut map = HeaderMap::new();
        let err = set_header(&mut map, "bad name", "v").unwrap_err();
        assert!(
            err.downcast_ref::<GuestMisuse>()
                .unwrap()
                .0
                .contains("invalid header name")
        );
        assert!(add_header(&mut map, "x", "a\r\nb").is_err());
        assert!(remove_header(&mut map, "").is_err());
        assert_eq!(header(&map, "bad name"), None);
        assert!(map.is_empty());
    }
}
