"""The OpenAI-compatible judge against a real HTTP server on 127.0.0.1 (tests/chat_server.py)."""

from __future__ import annotations

import pytest
from chat_server import ChatServer

from vittle_cli.errors import UsageError
from vittle_cli.eval.judge.backends import JudgeError, JudgeOptions, OpenAIJudge, make_judge
from vittle_cli.eval.judge.prompt import SYSTEM_PROMPT

KEY = "sk-test-SECRET-0123456789"


def _judge(server, monkeypatch, **kw) -> OpenAIJudge:
    monkeypatch.setenv("VITTLE_TEST_JUDGE_KEY", KEY)
    opts = dict(url=server.url, key_env="VITTLE_TEST_JUDGE_KEY", timeout=5.0, max_retries=2, concurrency=2)
    opts.update(kw)
    return OpenAIJudge("judge-model", JudgeOptions(**opts))


def _ask(judge, prompts):
    got = {}
    judge.complete(prompts, lambda i, reply: got.__setitem__(i, reply))
    return [got[i] for i in range(len(prompts))]


def test_request_shape_temperature_zero_and_key_only_in_the_header(monkeypatch):
    with ChatServer() as server:
        judge = _judge(server, monkeypatch)
        assert _ask(judge, ["first", "second"]) == [server.default] * 2
    body = server.requests[0]
    assert body["model"] == "judge-model" and body["temperature"] == 0.0 and body["max_tokens"] == 1024
    assert body["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert {r["messages"][1]["content"] for r in server.requests} == {"first", "second"}
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"
    assert KEY not in judge.id and judge.id == f"openai:judge-model@{server.url}"


def test_retries_after_429_and_500(monkeypatch):
    with ChatServer(script=[429, 500, "7 5\nok"]) as server:
        assert _ask(_judge(server, monkeypatch, concurrency=1), ["p"]) == ["7 5\nok"]
    assert len(server.requests) == 3


def test_a_slow_reply_times_out_and_is_retried(monkeypatch):
    with ChatServer(script=[("sleep", 1.5, "late"), "6 6\nin time"]) as server:
        assert _ask(_judge(server, monkeypatch, timeout=0.5, concurrency=1), ["p"]) == ["6 6\nin time"]
    assert len(server.requests) == 2


def test_a_judge_that_never_answers_is_one_error_without_the_key(monkeypatch):
    with ChatServer(script=[500, 500, 500], default="8 8") as server:
        judge = _judge(server, monkeypatch, max_retries=2, concurrency=1)
        with pytest.raises(JudgeError) as info:
            _ask(judge, ["p"])
    msg = str(info.value)
    assert "gave no answer after 2 retries" in msg and "InternalServerError" in msg
    assert KEY not in msg and "\n" not in msg


def test_openai_default_url_needs_a_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(UsageError, match="set the environment variable OPENAI_API_KEY"):
        make_judge("gpt-4o")
    assert make_judge("hf:some/model").id == "hf:some/model"
    with pytest.raises(UsageError, match="--judge-url"):
        make_judge("azure:gpt-4o")


def test_azure_deployment_through_the_same_client(monkeypatch):
    monkeypatch.setenv("VITTLE_TEST_JUDGE_KEY", KEY)
    with ChatServer(default="9 8\nok") as server:
        base = server.url.removesuffix("/v1")
        opts = JudgeOptions(
            url=base, key_env="VITTLE_TEST_JUDGE_KEY", max_retries=0, api_version="2024-10-21"
        )
        judge = make_judge("azure:gpt-4o-deploy", opts)
        assert _ask(judge, ["p"]) == ["9 8\nok"]
    assert server.paths[0].startswith(
        "/openai/deployments/gpt-4o-deploy/chat/completions?api-version=2024-10-21"
    )
    assert server.headers[0]["api-key"] == KEY and judge.id == f"azure:gpt-4o-deploy@{base}"
