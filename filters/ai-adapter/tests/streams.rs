//! Streamed responses through the built component: each provider's recorded stream
//! (`tests/fixtures/*_stream*`) to each client API, cut into chunks of several sizes,
//! read back the way the client SDKs read them.

mod common;

use common::*;

/// A streaming request from `client` to `provider`, answered with `stream` in chunks of
/// `size` bytes.
fn stream(client: Api, provider: Api, stream: &[u8], size: usize) -> Call {
    let request = post(
        client.path,
        &with_stream(&client.fixture("request.json"), true),
    );
    let content_type = provider.stream_content_type();
    call(
        &adapter(provider),
        request,
        Upstream::new(200, content_type, stream, size),
    )
}

fn stream_file(provider: Api, tools: bool) -> Vec<u8> {
    let extension = if provider == OLLAMA { "ndjson" } else { "sse" };
    let name = if tools { "stream_tools" } else { "stream" };
    provider.fixture(&format!("{name}.{extension}"))
}

#[test]
fn text_streams_for_every_client_and_provider() {
    for client in APIS {
        for provider in APIS {
            let source = stream_file(provider, false);
            let mut bodies = Vec::new();
            for size in [1, 7, 64, source.len()] {
                let what = format!("{} ← {} in chunks of {size}", client.name, provider.name);
                let call = stream(client, provider, &source, size);
                assert_eq!(call.response.status(), 200, "{what}");
                assert_eq!(
                    call.header("content-type"),
                    Some(client.stream_content_type()),
                    "{what}"
                );
                let streamed = client.read_stream(call.body());
                assert!(streamed.error.is_none(), "{what}: {:?}", streamed.error);
                if client == OPENAI {
                    // The fixture request did not ask for the usage chunk.
                    assert!(!streamed.usage_chunk, "{what}");
                    assert_eq!(streamed.message.text, TEXT, "{what}");
                } else {
                    assert_message(client, &TEXT_ANSWER, &streamed.message, &what);
                }
                // Ids generated for Ollama differ from request to request; the rest not.
                let mut message = streamed.message.clone();
                message.id.clear();
                bodies.push((streamed.events, message));
            }
            assert!(
                bodies.windows(2).all(|w| w[0] == w[1]),
                "{} ← {}: the stream depends on the chunking",
                client.name,
                provider.name
            );
        }
    }
}

#[test]
fn tool_call_streams_for_every_client_and_provider() {
    for client in APIS {
        for provider in APIS {
            let what = format!("{} ← {}", client.name, provider.name);
            let request = client.fixture("request.json");
            let mut request = json(&with_stream(&request, true));
            // Ask for the usage chunk, so OpenAI clients see the token counts too.
            if client == OPENAI {
                request["stream_options"] = serde_json::json!({"include_usage": true});
            }
            let request = post(client.path, &serde_json::to_vec(&request).unwrap());
            let call = call(
                &adapter(provider),
                request,
                Upstream::new(
                    200,
                    provider.stream_content_type(),
                    &stream_file(provider, true),
                    13,
                ),
            );
            let streamed = client.read_stream(call.body());
            assert!(streamed.error.is_none(), "{what}: {:?}", streamed.error);
            assert_message(
                client,
                &streamed_tools_answer(provider),
                &streamed.message,
                &what,
            );
        }
    }
}

#[test]
fn events_are_sent_on_as_they_arrive() {
    for client in APIS {
        for provider in APIS {
            let what = format!("{} ← {}", client.name, provider.name);
            let source = stream_file(provider, false);
            let call = stream(client, provider, &source, 64);
            let outputs: Vec<&[u8]> = call.outputs.iter().map(|b| b.as_ref()).collect();
            // Text reaches the client while the provider is still streaming: the first
            // words are out within the first two thirds of the provider's chunks.
            let first_words = (1..=outputs.len())
                .find(|&k| String::from_utf8_lossy(&outputs[..k].concat()).contains("capital"))
                .unwrap_or_else(|| panic!("{what}: no text"));
            assert!(
                first_words < outputs.len() * 2 / 3,
                "{what}: first words only in chunk {first_words} of {}",
                outputs.len()
            );
            let sending = outputs.iter().filter(|o| !o.is_empty()).count();
            assert!(sending > 3, "{what}: only {sending} chunks sent anything");
        }
    }
}

#[test]
fn openai_usage_chunk_only_when_the_client_asked() {
    let source = OPENAI.fixture("stream.sse");
    let asked = {
        let mut request = json(&with_stream(&OPENAI.fixture("request.json"), true));
        request["stream_options"] = serde_json::json!({"include_usage": true});
        serde_json::to_vec(&request).unwrap()
    };
    let not_asked = with_stream(&OPENAI.fixture("request.json"), true);
    for provider in APIS {
        for (request, expected) in [(&asked, true), (&not_asked, false)] {
            let call = call(
                &adapter(provider),
                post(OPENAI.path, request),
                Upstream::new(
                    200,
                    provider.stream_content_type(),
                    &stream_file(provider, false),
                    50,
                ),
            );
            let streamed = OPENAI.read_stream(call.body());
            assert_eq!(streamed.usage_chunk, expected, "{}", provider.name);
            assert_eq!(streamed.message.text, TEXT);
            if expected {
                assert_eq!(streamed.message.input_tokens, Some(19));
                assert_eq!(streamed.message.output_tokens, Some(14));
            }
        }
    }
    // OpenAI to OpenAI: the bytes pass, except the usage chunk the filter asked for.
    let call = stream(OPENAI, OPENAI, &source, 33);
    let expected: String = std::str::from_utf8(&source)
        .unwrap()
        .split_inclusive("\n\n")
        .filter(|event| !event.contains(r#""choices":[]"#))
        .collect();
    assert_eq!(std::str::from_utf8(call.body()).unwrap(), expected);
    let call = common::call(
        &adapter(OPENAI),
        post(OPENAI.path, &asked),
        Upstream::new(200, "text/event-stream", &source, 33),
    );
    assert_eq!(call.body(), &source[..]);
}

#[test]
fn same_api_streams_pass_byte_for_byte() {
    for api in [ANTHROPIC, OLLAMA] {
        let source = stream_file(api, true);
        let call = stream(api, api, &source, 10);
        assert_eq!(call.body(), &source[..], "{}", api.name);
        assert_eq!(call.header("content-type"), Some(api.stream_content_type()));
    }
}

#[test]
fn a_provider_error_mid_stream_reaches_every_client() {
    let source = fixture("anthropic_stream_error.sse");
    for client in APIS {
        let call = stream(client, ANTHROPIC, &source, 40);
        let streamed = client.read_stream(call.body());
        assert_eq!(streamed.message.text, "The capital", "{}", client.name);
        let error = streamed
            .error
            .unwrap_or_else(|| panic!("{}: no error", client.name));
        assert!(error.to_string().contains("Overloaded"), "{error}");
    }
}

#[test]
fn a_stream_cut_short_ends_with_an_error_event() {
    for provider in APIS {
        let source = stream_file(provider, false);
        let cut = &source[..source.len() / 2];
        for client in APIS.into_iter().filter(|c| *c != provider) {
            let call = stream(client, provider, cut, 100);
            let streamed = client.read_stream(call.body());
            let error = streamed
                .error
                .unwrap_or_else(|| panic!("{} ← {}", client.name, provider.name));
            assert!(error.to_string().contains("ended before"), "{error}");
            assert!(TEXT.starts_with(&streamed.message.text));
        }
    }
}

#[test]
fn a_garbled_event_ends_the_stream_with_an_error_event() {
    let mut source = OPENAI.fixture("stream.sse");
    let at = source.windows(4).position(|w| w == b"\n\nda").unwrap() + 2;
    source.splice(
        at..at,
        b"data: {\"choices\": [{\"delta\": \n\n".iter().copied(),
    );
    for client in [ANTHROPIC, OLLAMA] {
        let call = stream(client, OPENAI, &source, 25);
        let streamed = client.read_stream(call.body());
        let error = streamed.error.expect("an error event");
        assert!(error.to_string().contains("unreadable"), "{error}");
    }
}

#[test]
fn a_stream_for_a_whole_request_is_collected() {
    // A provider that streams although it was asked not to.
    for client in APIS {
        for provider in APIS.into_iter().filter(|p| *p != client) {
            let what = format!("{} ← {}", client.name, provider.name);
            let request = post(
                client.path,
                &with_stream(&client.fixture("request.json"), false),
            );
            let call = call(
                &adapter(provider),
                request,
                Upstream::new(
                    200,
                    provider.stream_content_type(),
                    &stream_file(provider, true),
                    30,
                ),
            );
            assert_eq!(
                call.header("content-type"),
                Some("application/json"),
                "{what}"
            );
            let message = client.read_response(call.body());
            assert_message(client, &streamed_tools_answer(provider), &message, &what);
        }
    }
}

#[test]
fn a_whole_response_for_a_stream_request_is_replayed_as_a_stream() {
    for client in APIS {
        for provider in APIS.into_iter().filter(|p| *p != client) {
            let what = format!("{} ← {}", client.name, provider.name);
            let request = post(
                client.path,
                &with_stream(&client.fixture("request.json"), true),
            );
            let call = call(
                &adapter(provider),
                request,
                Upstream::json(&provider.fixture("response.json")),
            );
            assert_eq!(
                call.header("content-type"),
                Some(client.stream_content_type()),
                "{what}"
            );
            let streamed = client.read_stream(call.body());
            assert_eq!(streamed.message.text, TEXT, "{what}");
            assert!(streamed.error.is_none(), "{what}");
        }
    }
}
