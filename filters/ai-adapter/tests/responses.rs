//! Whole responses and errors through the built component, for each client API and each
//! provider API (`tests/fixtures/*_response*.json`, `*_error_*.json`).

mod common;

use common::*;

/// A non-streaming request from `client` to `provider`, answered by `body`.
fn answer(client: Api, provider: Api, status: u16, body: &[u8]) -> Call {
    let request = post(client.path, &client.fixture("request.json"));
    call(
        &adapter(provider),
        request,
        Upstream::new(status, "application/json", body, 97),
    )
}

#[test]
fn text_responses_for_every_client_and_provider() {
    for client in APIS {
        for provider in APIS {
            let what = format!("{} ← {}", client.name, provider.name);
            let call = answer(client, provider, 200, &provider.fixture("response.json"));
            assert_eq!(call.response.status(), 200, "{what}");
            assert_eq!(
                call.header("content-type"),
                Some("application/json"),
                "{what}"
            );
            let message = client.read_response(call.body());
            assert_message(client, &TEXT_ANSWER, &message, &what);
            if client != provider {
                assert_eq!(call.header("content-length"), None, "{what}");
            }
        }
    }
}

#[test]
fn tool_call_responses_for_every_client_and_provider() {
    for client in APIS {
        for provider in APIS {
            let what = format!("{} ← {}", client.name, provider.name);
            let call = answer(
                client,
                provider,
                200,
                &provider.fixture("response_tools.json"),
            );
            let message = client.read_response(call.body());
            assert_message(client, &tools_answer(provider), &message, &what);
        }
    }
}

#[test]
fn ids_and_models_are_carried_over() {
    let call = answer(OPENAI, ANTHROPIC, 200, &ANTHROPIC.fixture("response.json"));
    let message = OPENAI.read_response(call.body());
    assert_eq!(message.id, "chatcmpl-01XFDUDYJgAACzvnptvVoYEL");
    assert_eq!(message.model, "claude-sonnet-4-5-20250929");
    let call = answer(
        ANTHROPIC,
        OPENAI,
        200,
        &OPENAI.fixture("response_tools.json"),
    );
    let message = ANTHROPIC.read_response(call.body());
    assert_eq!(message.id, "msg_C1a2b3c4d5e6f7g8h9i0");
    assert_eq!(
        message
            .tool_calls
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
        ["call_12345xyz", "call_67890abc"]
    );
    // Ollama gives no ids: generated ones.
    let call = answer(
        ANTHROPIC,
        OLLAMA,
        200,
        &OLLAMA.fixture("response_tools.json"),
    );
    let message = ANTHROPIC.read_response(call.body());
    assert!(message.id.starts_with("msg_") && message.id.len() > 10);
    assert!(message.tool_calls[0].id.starts_with("call_"));
    assert_ne!(message.tool_calls[0].id, message.tool_calls[1].id);
}

#[test]
fn errors_in_every_clients_shape() {
    let errors = [
        (
            OPENAI,
            429,
            "openai_error_429.json",
            "Rate limit reached for gpt-4o",
        ),
        (ANTHROPIC, 529, "anthropic_error_529.json", "Overloaded"),
        (
            ANTHROPIC,
            401,
            "anthropic_error_401.json",
            "invalid x-api-key",
        ),
        (
            OLLAMA,
            404,
            "ollama_error_404.json",
            "model \"llama9\" not found",
        ),
    ];
    for client in APIS {
        for (provider, status, file, text) in errors {
            let what = format!("{} ← {} {status}", client.name, provider.name);
            let provider_body = fixture(file);
            let call = answer(client, provider, status, &provider_body);
            if client == provider {
                assert_eq!(call.response.status(), status, "{what}");
                assert_eq!(call.body(), &provider_body[..], "{what}: untouched");
                continue;
            }
            let expected_status = if status == 529 && client != ANTHROPIC {
                503
            } else {
                status
            };
            assert_eq!(call.response.status(), expected_status, "{what}");
            assert_eq!(
                call.header("content-type"),
                Some("application/json"),
                "{what}"
            );
            let (kind, message) = client.read_error(call.body());
            assert!(message.starts_with(text), "{what}: {message}");
            let expected_kind = match (client.name, status) {
                ("openai", 429) => Some("rate_limit_error"),
                ("openai", 401) => Some("authentication_error"),
                ("openai", 404) => Some("invalid_request_error"),
                ("openai", 529) => Some("server_error"),
                ("anthropic", 429) => Some("rate_limit_error"),
                ("anthropic", 401) => Some("authentication_error"),
                ("anthropic", 404) => Some("not_found_error"),
                _ => None,
            };
            assert_eq!(kind.as_deref(), expected_kind, "{what}");
        }
    }
}

#[test]
fn errors_for_streaming_requests_are_plain_error_bodies() {
    let request = post(
        OPENAI.path,
        &with_stream(&OPENAI.fixture("request.json"), true),
    );
    let call = call(
        &adapter(ANTHROPIC),
        request,
        Upstream::new(
            529,
            "application/json",
            &fixture("anthropic_error_529.json"),
            1000,
        ),
    );
    assert_eq!(call.response.status(), 503);
    assert_eq!(call.header("content-type"), Some("application/json"));
    assert_eq!(clients::openai_error(call.body()).0, "server_error");
}

#[test]
fn non_json_errors_pass_as_they_are() {
    let html = b"<html><body><h1>502 Bad Gateway</h1></body></html>";
    let request = post(ANTHROPIC.path, &ANTHROPIC.fixture("request.json"));
    let call = call(
        &adapter(OPENAI),
        request,
        Upstream::new(502, "text/html", html, 1000),
    );
    assert_eq!(call.response.status(), 502);
    assert_eq!(call.header("content-type"), Some("text/html"));
    assert_eq!(call.body(), html);
}

#[test]
fn an_unreadable_response_becomes_a_502() {
    for client in [OPENAI, ANTHROPIC, OLLAMA] {
        let provider = if client == OPENAI { ANTHROPIC } else { OPENAI };
        let call = answer(
            client,
            provider,
            200,
            b"{\"content\": \"not what a provider sends\"",
        );
        assert!(call.replaced, "{}", client.name);
        assert_eq!(call.response.status(), 502);
        let (_, message) = client.read_error(call.body());
        assert!(message.contains("could not be read"), "{message}");
    }
}

#[test]
fn same_api_responses_pass_byte_for_byte() {
    for api in APIS {
        let body = api.fixture("response_tools.json");
        let call = answer(api, api, 200, &body);
        assert_eq!(call.body(), &body[..], "{}", api.name);
        assert_eq!(
            call.header("content-length"),
            Some(body.len().to_string().as_str())
        );
    }
}
