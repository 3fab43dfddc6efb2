#!/usr/bin/env python3
"""One chat call through an official SDK (openai, anthropic or ollama), printed as JSON.

The Rust tests (`nantian_e2e::ai_mock::sdk`) run this with the venv `cargo xtask test`
prepares (`NANTIAN_PYTHON`), against the mock providers directly or through the gateway,
and assert on the one JSON object it prints on stdout:

    {
      "sdk": "openai" | "anthropic" | "ollama",
      "text": "...",                # the reply text (streams: the deltas concatenated)
      "finish_reason": "...",       # openai; anthropic: "stop_reason"; ollama: "done_reason"
      "usage": {...},               # the SDK's usage object, as a dict (ollama: the counts
                                    # and durations of the final response)
      "tool_calls": [{"id", "name", "arguments": {...}, "fragments": N}],
      "chunks": N,                  # stream chunks the SDK yielded (0 without --stream)
      "text_deltas": N,             # non-empty text deltas among them
      "model": "...", "id": "...",  # as the response says
      "headers": {...},             # response headers, lowercase (not for ollama)
      "released_after_chunks": N,   # with --first-chunk-then-release
      "error": {"status", "type", "code", "message", "class", "headers"}
                                    # only when the SDK raised an API or transport error
    }

Retries are off (max_retries=0), so an error status surfaces at once. The exit status is 0
whenever the JSON was printed (API errors included), 2 on bad arguments, 1 on a bug here.

`--batch` instead reads one JSON array of such arguments per stdin line and prints one JSON
object per line for each, in order: the SDKs take seconds to import, so a test making many
calls pays that once.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
import urllib.request

TOOL_NAME = "echo"
TOOL_DESCRIPTION = "Echoes the text it is given."
TOOL_SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string", "description": "The text to echo."}},
    "required": ["text"],
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sdk", required=True, choices=["openai", "anthropic", "ollama"])
    p.add_argument("--base-url", required=True, help="openai: ending in /v1; others: the origin")
    p.add_argument("--api-key", default="")
    p.add_argument("--model", required=True)
    p.add_argument("--prompt", required=True)
    p.add_argument("--system")
    p.add_argument("--stream", action="store_true")
    p.add_argument("--include-usage", action="store_true", help="openai stream_options")
    p.add_argument("--tools", action="store_true", help="offer the `echo` tool")
    p.add_argument(
        "--tool-result",
        help="continue a conversation: the model called `echo` with the prompt, this is its result",
    )
    p.add_argument("--image-b64", help="a base64 PNG sent with the prompt")
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--user", help="openai `user`, anthropic metadata.user_id")
    p.add_argument("--header", action="append", default=[], metavar="K=V")
    p.add_argument(
        "--first-chunk-then-release",
        metavar="URL",
        help="streams: after the first text delta, POST to URL, then read the rest",
    )
    p.add_argument("--timeout", type=float, default=30.0)
    args = p.parse_args(argv)
    headers = {}
    for h in args.header:
        key, sep, value = h.partition("=")
        if not sep:
            p.error(f"--header {h!r}: expected K=V")
        headers[key] = value
    args.headers = headers
    return args


class Releaser:
    """POSTs to the mock's /_mock/release once, after the first text delta arrived."""

    def __init__(self, url: str | None):
        self.url = url
        self.done = False

    def text_delta(self, out: dict) -> None:
        out["text_deltas"] += 1
        if not self.url or self.done:
            return
        self.done = True
        # No proxy: the mock is on loopback.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(self.url, data=b"", method="POST")
        with opener.open(request, timeout=10) as response:
            response.read()
        out["released_after_chunks"] = out["chunks"]


def lower_headers(headers) -> dict:
    return {str(k).lower(): str(v) for k, v in headers.items()}


def dump(model) -> dict | None:
    if model is None:
        return None
    if hasattr(model, "model_dump"):
        return model.model_dump(exclude_none=True)
    return dict(model)


def parse_arguments(raw):
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return dict(raw) if raw is not None else None


# ---------------------------------------------------------------------------------------
# OpenAI


def run_openai(args, out: dict, releaser: Releaser) -> None:
    import openai

    client = openai.OpenAI(
        base_url=args.base_url,
        api_key=args.api_key or "no-key",
        max_retries=0,
        timeout=args.timeout,
        default_headers=args.headers or None,
    )
    messages: list[dict] = []
    if args.system is not None:
        messages.append({"role": "system", "content": args.system})
    content: object = args.prompt
    if args.image_b64:
        content = [
            {"type": "text", "text": args.prompt},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + args.image_b64}},
        ]
    messages.append({"role": "user", "content": content})
    if args.tool_result is not None:
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_previous",
                        "type": "function",
                        "function": {"name": TOOL_NAME, "arguments": json.dumps({"text": args.prompt})},
                    }
                ],
            }
        )
        messages.append({"role": "tool", "tool_call_id": "call_previous", "content": args.tool_result})
    kwargs: dict = {"model": args.model, "messages": messages}
    if args.tools or args.tool_result is not None:
        kwargs["tools"] = [
            {
                "type": "function",
                "function": {"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "parameters": TOOL_SCHEMA},
            }
        ]
    if args.max_tokens is not None:
        kwargs["max_tokens"] = args.max_tokens
    if args.user:
        kwargs["user"] = args.user

    try:
        if args.stream:
            if args.include_usage:
                kwargs["stream_options"] = {"include_usage": True}
            stream = client.chat.completions.create(stream=True, **kwargs)
            out["headers"] = lower_headers(stream.response.headers)
            calls: dict[int, dict] = {}
            for chunk in stream:
                out["chunks"] += 1
                out["model"] = chunk.model
                out["id"] = chunk.id
                if chunk.usage is not None:
                    out["usage"] = dump(chunk.usage)
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta.content:
                        out["text"] += delta.content
                        releaser.text_delta(out)
                    for tc in delta.tool_calls or []:
                        call = calls.setdefault(
                            tc.index, {"id": None, "name": None, "arguments": "", "fragments": 0}
                        )
                        if tc.id:
                            call["id"] = tc.id
                        if tc.function is not None:
                            if tc.function.name:
                                call["name"] = tc.function.name
                            if tc.function.arguments:
                                call["arguments"] += tc.function.arguments
                                call["fragments"] += 1
                    if choice.finish_reason:
                        out["finish_reason"] = choice.finish_reason
            for _, call in sorted(calls.items()):
                call["arguments"] = parse_arguments(call["arguments"])
                out["tool_calls"].append(call)
        else:
            raw = client.chat.completions.with_raw_response.create(**kwargs)
            out["headers"] = lower_headers(raw.headers)
            completion = raw.parse()
            out["model"] = completion.model
            out["id"] = completion.id
            out["usage"] = dump(completion.usage)
            choice = completion.choices[0]
            out["finish_reason"] = choice.finish_reason
            out["text"] = choice.message.content or ""
            for tc in choice.message.tool_calls or []:
                out["tool_calls"].append(
                    {
                        "id": tc.id,
                        "name": tc.function.name,
                        "arguments": parse_arguments(tc.function.arguments),
                        "fragments": 1,
                    }
                )
    except openai.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        out["error"] = {
            "status": e.status_code,
            "type": body.get("type"),
            "code": body.get("code"),
            "message": body.get("message") or str(e),
            "class": type(e).__name__,
            "headers": lower_headers(e.response.headers),
        }


# ---------------------------------------------------------------------------------------
# Anthropic

ANTHROPIC_RAW_EVENTS = {
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
}


def run_anthropic(args, out: dict, releaser: Releaser) -> None:
    import anthropic

    client = anthropic.Anthropic(
        base_url=args.base_url,
        api_key=args.api_key or "no-key",
        max_retries=0,
        timeout=args.timeout,
        default_headers=args.headers or None,
    )
    content: object = args.prompt
    if args.image_b64:
        content = [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": args.image_b64}},
            {"type": "text", "text": args.prompt},
        ]
    messages: list[dict] = [{"role": "user", "content": content}]
    if args.tool_result is not None:
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_previous", "name": TOOL_NAME, "input": {"text": args.prompt}}
                ],
            }
        )
        messages.append(
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_previous", "content": args.tool_result}],
            }
        )
    kwargs: dict = {
        "model": args.model,
        "max_tokens": args.max_tokens if args.max_tokens is not None else 1024,
        "messages": messages,
    }
    if args.system is not None:
        kwargs["system"] = args.system
    if args.tools or args.tool_result is not None:
        kwargs["tools"] = [{"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "input_schema": TOOL_SCHEMA}]
    if args.user:
        kwargs["metadata"] = {"user_id": args.user}

    def fill(message, fragments: dict[int, int]) -> None:
        out["model"] = message.model
        out["id"] = message.id
        out["stop_reason"] = message.stop_reason
        out["usage"] = dump(message.usage)
        texts = []
        for i, block in enumerate(message.content):
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use":
                out["tool_calls"].append(
                    {
                        "id": block.id,
                        "name": block.name,
                        "arguments": parse_arguments(block.input),
                        "fragments": fragments.get(i, 1),
                    }
                )
        if not args.stream:
            out["text"] = "".join(texts)

    try:
        if args.stream:
            fragments: dict[int, int] = {}
            with client.messages.stream(**kwargs) as stream:
                out["headers"] = lower_headers(stream.response.headers)
                for event in stream:
                    if event.type in ANTHROPIC_RAW_EVENTS:
                        out["chunks"] += 1
                    if event.type != "content_block_delta":
                        continue
                    if event.delta.type == "text_delta" and event.delta.text:
                        out["text"] += event.delta.text
                        releaser.text_delta(out)
                    elif event.delta.type == "input_json_delta" and event.delta.partial_json:
                        fragments[event.index] = fragments.get(event.index, 0) + 1
                fill(stream.get_final_message(), fragments)
        else:
            raw = client.messages.with_raw_response.create(**kwargs)
            out["headers"] = lower_headers(raw.headers)
            fill(raw.parse(), {})
    except anthropic.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        out["error"] = {
            "status": e.status_code,
            "type": error.get("type"),
            "code": None,
            "message": error.get("message") or str(e),
            "class": type(e).__name__,
            "headers": lower_headers(e.response.headers),
        }


# ---------------------------------------------------------------------------------------
# Ollama


def run_ollama(args, out: dict, releaser: Releaser) -> None:
    import ollama

    headers = dict(args.headers)
    if args.api_key:
        headers["Authorization"] = f"Bearer {args.api_key}"
    client = ollama.Client(host=args.base_url, headers=headers, timeout=args.timeout)
    messages: list[dict] = []
    if args.system is not None:
        messages.append({"role": "system", "content": args.system})
    user: dict = {"role": "user", "content": args.prompt}
    if args.image_b64:
        user["images"] = [args.image_b64]
    messages.append(user)
    if args.tool_result is not None:
        messages.append(
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": TOOL_NAME, "arguments": {"text": args.prompt}}}],
            }
        )
        messages.append({"role": "tool", "content": args.tool_result, "tool_name": TOOL_NAME})
    kwargs: dict = {"model": args.model, "messages": messages}
    if args.tools or args.tool_result is not None:
        kwargs["tools"] = [
            {
                "type": "function",
                "function": {"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "parameters": TOOL_SCHEMA},
            }
        ]
    if args.max_tokens is not None:
        kwargs["options"] = {"num_predict": args.max_tokens}

    def final(part) -> None:
        out["done_reason"] = part.done_reason
        out["usage"] = {
            k: getattr(part, k)
            for k in (
                "prompt_eval_count",
                "eval_count",
                "total_duration",
                "load_duration",
                "prompt_eval_duration",
                "eval_duration",
            )
            if getattr(part, k) is not None
        }

    def calls(message) -> None:
        for tc in message.tool_calls or []:
            out["tool_calls"].append(
                {
                    "id": getattr(tc, "id", None),
                    "name": tc.function.name,
                    "arguments": parse_arguments(tc.function.arguments),
                    "fragments": 1,
                }
            )

    try:
        if args.stream:
            for part in client.chat(stream=True, **kwargs):
                out["chunks"] += 1
                out["model"] = part.model
                if part.message.content:
                    out["text"] += part.message.content
                    releaser.text_delta(out)
                calls(part.message)
                if part.done:
                    final(part)
        else:
            response = client.chat(stream=False, **kwargs)
            out["model"] = response.model
            out["text"] = response.message.content or ""
            calls(response.message)
            final(response)
    except ollama.ResponseError as e:
        out["error"] = {
            "status": e.status_code,
            "type": None,
            "code": None,
            "message": e.error,
            "class": type(e).__name__,
            "headers": {},
        }


# ---------------------------------------------------------------------------------------


def transport_error(e: BaseException) -> bool:
    """An SDK's connection or protocol error (not a bug of this script)."""
    module = type(e).__module__ or ""
    return isinstance(e, (ConnectionError, TimeoutError)) or module.split(".")[0] in (
        "openai",
        "anthropic",
        "ollama",
        "httpx",
        "httpx2",
        "httpcore",
        "httpcore2",
        "h11",
    )


def run_one(argv: list[str]) -> dict:
    """One call: the JSON object to print."""
    args = parse_args(argv)
    out: dict = {
        "sdk": args.sdk,
        "text": "",
        "usage": None,
        "tool_calls": [],
        "chunks": 0,
        "text_deltas": 0,
        "model": None,
    }
    runner = {"openai": run_openai, "anthropic": run_anthropic, "ollama": run_ollama}[args.sdk]
    try:
        runner(args, out, Releaser(args.first_chunk_then_release))
    except Exception as e:  # noqa: BLE001 - classified below
        if not transport_error(e):
            raise
        traceback.print_exc()
        out["error"] = {
            "status": getattr(e, "status_code", None),
            "type": "transport_error",
            "code": None,
            "message": str(e),
            "class": type(e).__name__,
            "headers": {},
        }
    return out


def emit(out: dict) -> None:
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    if argv != ["--batch"]:
        emit(run_one(argv))
        return 0
    for line in sys.stdin:
        if line.strip():
            emit(run_one(json.loads(line)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
