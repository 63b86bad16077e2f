"""A resource node's containers: the config file in Infernet's shape, the containers made from
the flags, a stage's input read and its output (PROTOCOL 7.1)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resource_node.backends.deterministic import DeterministicBackend
from resource_node.containers import (
    DETERMINISTIC_IMAGE,
    ContainerConfig,
    NodeConfig,
    RateLimit,
    StageError,
    build_containers,
    default_containers,
    load_config,
    parse_container_flag,
    render_input,
)

ENTRY = {
    "id": "summarize",
    "image": "inferchain/deterministic:demo",
    "external": False,
    "description": "summaries",
    "backend": "deterministic",
    "backend_options": {"default_max_tokens": 8},
    "model": "demo",
    "allowed_ips": ["10.0.0.0/8"],
    "allowed_addresses": ["0x" + "ab" * 20],
    "rate_limit": {"num_requests": 5, "period": 10},
}


def test_a_config_entry_is_read_whole() -> None:
    config = ContainerConfig.parse(ENTRY, "c")
    assert config.id == "summarize"
    assert not config.external
    assert config.backend_options == (("default_max_tokens", "8"),)
    assert config.rate_limit == RateLimit(5, 10.0)
    assert config.info() == {
        "id": "summarize",
        "external": False,
        "image": "inferchain/deterministic:demo",
        "description": "summaries",
    }
    assert config.admits_ip("10.1.2.3")
    assert not config.admits_ip("127.0.0.1")
    assert config.admits_address("0x" + "AB" * 20)
    assert not config.admits_address("0x" + "cd" * 20)


def test_infernet_only_keys_are_accepted_and_ignored() -> None:
    config = ContainerConfig.parse(
        {"id": "x", "port": 3000, "env": {}, "generates_proofs": False}, "c"
    )
    assert config.image == DETERMINISTIC_IMAGE
    assert config.admits_ip("192.168.1.1")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"id": ""}, "c.id"),
        ({"id": "has space"}, "c.id"),
        ({"backend": "gpu"}, "c.backend"),
        ({"external": "yes"}, "c.external"),
        ({"allowed_ips": ["not-an-ip"]}, "c.allowed_ips"),
        ({"allowed_addresses": ["0x12"]}, "c.allowed_addresses"),
        ({"rate_limit": {"num_requests": 0}}, "c.rate_limit.num_requests"),
        ({"rate_limit": {"period": -1}}, "c.rate_limit.period"),
        ({"faults": ["explode"]}, "c.faults"),
        ({"colour": "red"}, "unknown key(s) colour"),
        ({"backend_options": {"a": True}}, "c.backend_options"),
    ],
)
def test_a_bad_entry_is_refused_naming_the_field(change: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        ContainerConfig.parse(ENTRY | change, "c")


def test_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "node.json"
    path.write_text(
        json.dumps(
            {
                "containers": [ENTRY, {"id": "chat"}],
                "server": {"rate_limit": {"num_requests": 100, "period": 60}},
                "max_running_jobs": 3,
            }
        )
    )
    config = load_config(path)
    assert [c.id for c in config.containers] == ["summarize", "chat"]
    assert config.rate_limit == RateLimit(100, 60.0)
    assert config.max_running_jobs == 3


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ({"containers": [{"id": "a"}, {"id": "a"}]}, "'a' given twice"),
        ({"containers": {}}, "containers"),
        ({"max_running_jobs": 0}, "max_running_jobs"),
        ({"server": {"rate_limit": "ten"}}, "server.rate_limit"),
        ({"chain": {}}, "unknown key"),
        ([], "expected a JSON object"),
    ],
)
def test_a_bad_config_file_is_refused(tmp_path: Path, document: Any, named: str) -> None:
    path = tmp_path / "node.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=named):
        load_config(path)


def test_an_unreadable_config_file_names_itself(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        load_config(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not JSON"):
        load_config(tmp_path / "bad.json")


def test_rate_limit_text() -> None:
    assert RateLimit.parse("10/1.5", "f") == RateLimit(10, 1.5)
    for bad in ("10", "x/1", "10/0", "10/abc"):
        with pytest.raises(ValueError, match="f"):
            RateLimit.parse(bad, "f")


def test_flags_give_one_external_container_per_model() -> None:
    containers = default_containers(("llama", "mistral"), "deterministic", {}, ("wrong",))
    assert [(c.id, c.model, c.external) for c in containers] == [
        ("llama", "llama", True),
        ("mistral", "mistral", True),
    ]
    assert containers[0].faults == ("wrong",)
    every = default_containers(("*",), "openai", {"base_url": "http://127.0.0.1:9"}, ())
    assert [(c.id, c.model, c.image) for c in every] == [("openai", None, "http://127.0.0.1:9")]


def test_a_container_flag_is_json() -> None:
    assert parse_container_flag('{"id": "x", "external": false}', 0).external is False
    with pytest.raises(ValueError, match="--container"):
        parse_container_flag("id=x", 0)


def test_containers_alike_share_the_node_backend() -> None:
    backend = DeterministicBackend()
    configs = default_containers(("a", "b"), "deterministic", {}, ())
    from resource_node.containers import backend_key

    built = build_containers(configs, {backend_key("deterministic", {}): backend})
    assert all(c.inner is backend for c in built.values())
    own = build_containers([ContainerConfig.parse(ENTRY, "c")])
    assert own["summarize"].inner is not backend
    with pytest.raises(ValueError, match="container bad"):
        build_containers(
            [ContainerConfig.parse({"id": "bad", "backend_options": {"speed": 1}}, "c")]
        )


def test_a_stage_reads_prompt_then_messages_then_the_object() -> None:
    assert render_input({"prompt": "hi", "seed": 3}).prompt == "hi"
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert render_input({"messages": messages}).prompt == "system: be brief\nuser: hi"
    stage = render_input({"b": 1, "a": [2], "seed": 9, "options": {"temperature": 0}})
    assert stage.prompt == '{"a":[2],"b":1}'
    assert stage.seed == 9
    assert stage.options == {"temperature": 0}


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ([], "data: expected an object"),
        ({"prompt": 1}, r"data\.prompt"),
        ({"messages": []}, r"data\.messages"),
        ({"messages": [{"role": "user"}]}, r"data\.messages\[0\]"),
        ({"seed": -1}, r"data\.seed"),
        ({"seed": True}, r"data\.seed"),
        ({"options": [1]}, r"data\.options"),
    ],
)
def test_a_bad_stage_input_names_the_field(data: Any, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        render_input(data)


async def test_a_stage_answers_output_model_seed_usage() -> None:
    container = build_containers([ContainerConfig.parse(ENTRY, "c")])["summarize"]
    out = await container.run({"prompt": "one two three"}, 7)
    assert set(out) == {"output", "model", "seed", "usage"}
    assert out["model"] == "demo" and out["seed"] == 7
    words = len(out["output"].split())
    assert 1 <= words <= 8
    assert out["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": words,
        "total_tokens": 3 + words,
    }
    again = await container.run({"prompt": "one two three"}, 7)
    assert again == out
    other = await container.run({"prompt": "one two three", "seed": 8}, 7)
    assert other["seed"] == 8 and other["output"] != out["output"]
    with pytest.raises(StageError, match="bad input"):
        await container.run({"prompt": 5}, 7)


async def test_a_faulty_container_answers_wrong() -> None:
    honest, wrong = build_containers(
        [
            ContainerConfig.parse({"id": "h"}, "c"),
            ContainerConfig.parse({"id": "w", "faults": ["wrong"]}, "c"),
        ]
    ).values()
    a = await honest.run({"prompt": "x"}, 1)
    b = await wrong.run({"prompt": "x"}, 1)
    assert b["output"] == a["output"] + " [wrong]"
    assert b["usage"] is None  # a fault wrapper does not count tokens


@given(st.text(max_size=200), st.integers(min_value=0, max_value=2**64 - 1))
async def test_streamed_chunks_join_to_the_output(prompt: str, seed: int) -> None:
    container = build_containers([ContainerConfig.parse({"id": "s"}, "c")])["s"]
    whole = await container.run({"prompt": prompt}, seed)
    chunks = [chunk async for chunk in container.stream({"prompt": prompt}, seed)]
    assert "".join(chunks) == whole["output"]
    assert len(chunks) == len(whole["output"].split())


def test_node_config_defaults() -> None:
    config = NodeConfig.parse({})
    assert config.containers == ()
    assert config.rate_limit == RateLimit(60, 60.0)


def test_the_readme_config_example_is_a_valid_config() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("`--config node.json` gives them") :]
    start = section.index("```text\n") + len("```text\n")
    example = section[start : section.index("\n```", start)]
    config = NodeConfig.parse(json.loads(example))
    assert [c.id for c in config.containers] == ["chat", "summarize"]
    assert not config.containers[1].external
    assert config.rate_limit == RateLimit(60, 60.0)
