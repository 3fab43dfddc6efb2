//! Every API request a mock received, for `GET /_mock/requests`: a test asserts what the
//! gateway sent upstream (the path, the rewritten headers, the translated body).

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One received request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedRequest {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Lowercase header name → value; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body parsed as JSON; `null` when empty or not JSON.
    pub body: serde_json::Value,
}

impl LoggedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Reads the request parts and body into a log entry.
    pub fn new(parts: &http::request::Parts, body: &[u8]) -> Self {
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in &parts.headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers
                .entry(name.as_str().to_string())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        Self {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            headers,
            body: serde_json::from_slice(body).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// The log: appended by every API request, read and cleared through `/_mock/requests`.
#[derive(Debug, Default)]
pub struct RequestLog {
    entries: Mutex<Vec<LoggedRequest>>,
}

impl RequestLog {
    pub fn push(&self, entry: LoggedRequest) {
        self.lock().push(entry);
    }

    pub fn snapshot(&self) -> Vec<LoggedRequest> {
        self.lock().clone()
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<LoggedRequest>> {
        // A panic while holding the lock leaves a valid Vec behind.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries() {
        let (parts, ()) = http::Request::post("/v1/messages?beta=true")
            .header("X-Api-Key", "k")
            .header("accept", "a")
            .header("accept", "b")
            .body(())
            .unwrap()
            .into_parts();
        let entry = LoggedRequest::new(&parts, br#"{"model":"m"}"#);
        assert_eq!(entry.path, "/v1/messages");
        assert_eq!(entry.query.as_deref(), Some("beta=true"));
        assert_eq!(entry.header("x-api-key"), Some("k"));
        assert_eq!(entry.header("Accept"), Some("a, b"));
        assert_eq!(entry.body, serde_json::json!({"model": "m"}));
        assert_eq!(
            LoggedRequest::new(&parts, b"{nope").body,
            serde_json::Value::Null
        );

        let log = RequestLog::default();
        log.push(entry.clone());
        assert_eq!(log.snapshot(), vec![entry]);
        log.clear();
        assert!(log.snapshot().is_empty());
    }
}
