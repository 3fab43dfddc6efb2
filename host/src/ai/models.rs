//! `GET /v1/models` on an AIService route: the models its backends name, in the OpenAI
//! list format (the one clients of every API use to discover models), answered by the
//! gateway without a backend call.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response};
use serde_json::json;

use super::select::AiService;
use crate::filter_chain::full_body;
use crate::upstream::ProxyBody;

pub fn models_response(ai: &AiService) -> Response<ProxyBody> {
    // Sorted and once each: several backends often serve one model.
    let mut models: BTreeMap<&str, &str> = BTreeMap::new();
    for backend in ai.backends.iter() {
        for model in backend.models.iter() {
            models.entry(model).or_insert(backend.provider.as_str());
        }
    }
    let data: Vec<_> = models
        .into_iter()
        .map(|(id, owner)| json!({"id": id, "object": "model", "created": 0, "owned_by": owner}))
        .collect();
    let body = json!({"object": "list", "data": data}).to_string();
    let mut resp = Response::new(full_body(Bytes::from(body)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
