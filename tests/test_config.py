"""Scenario schema and loading: YAML reading, strict types, fleet expansion, profile overrides, `--set`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from simulator.config.profiles import DeviceProfile, load_profile_dir
from simulator.config.scenario import apply_overrides, load_scenario, parse_scenario
from simulator.config.schema import Scenario
from simulator.config.yamlio import load_yaml_text
from simulator.errors import InputError
from tests.scenarios import DROP, VALIDATE_BASE, write_scenario

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "device_profiles"
README = ROOT / "scenarios" / "README.md"

# Small and fast: synthetic data, ResNet-18 at width 8 on 16x16 inputs, one rpi4 client.


def _scenario(tmp_path: Path, **changes: Any) -> Path:
    return write_scenario(tmp_path, VALIDATE_BASE, **changes)


def _profile_file(name: str, sub: str = "devices") -> dict:
    """A shipped profile read with plain PyYAML: an independent path to the same numbers."""
    return yaml.safe_load((PROFILES / sub / f"{name}.yaml").read_text())


def _problem(exc: pytest.ExceptionInfo[InputError]) -> tuple[str | None, str]:
    return exc.value.key, exc.value.problem


# --- YAML reading ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2.0e9", 2.0e9),
        ("2e9", 2.0e9),
        ("1e-3", 0.001),
        ("4.0e+9", 4.0e9),
        (".5", 0.5),
        ("-1.5E3", -1500.0),
        ("1_000.5", 1000.5),
        ("12", 12),
        ("0x10", 16),
    ],
)
def test_numbers_follow_yaml_1_2(text: str, value: float) -> None:
    got = load_yaml_text(f"x: {text}")["x"]
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("text", ["1.2.3", "e9", "1e", "'2e9'", "v1.0"])
def test_non_numbers_stay_strings(text: str) -> None:
    assert isinstance(load_yaml_text(f"x: {text}")["x"], str)


def test_profile_file_with_unsigned_exponents(tmp_path: Path) -> None:
    (tmp_path / "board.yaml").write_text(
        "source: test\nflops_per_s: 2.0e9\nmemory_bytes: 4.0e9\ncompute_w: 5\nidle_w: 1.5\n"
    )
    board = load_profile_dir(tmp_path, DeviceProfile)["board"]
    assert board.flops_per_s == 2_000_000_000.0
    assert board.memory_bytes == 4_000_000_000 and isinstance(board.memory_bytes, int)


def test_fractional_byte_count_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "board.yaml").write_text("source: t\nflops_per_s: 1e9\nmemory_bytes: 4.5\ncompute_w: 5\nidle_w: 1\n")
    with pytest.raises(InputError) as exc:
        load_profile_dir(tmp_path, DeviceProfile)
    assert exc.value.file == str(tmp_path / "board.yaml")
    assert exc.value.key == "memory_bytes" and "whole number" in exc.value.problem and "4.5" in exc.value.problem


def test_duplicate_key_names_the_key_path_and_both_lines() -> None:
    with pytest.raises(InputError) as exc:
        load_yaml_text("a: 1\ntraining:\n  rounds: 3\n  batch_size: 8\n  rounds: 5\n")
    assert exc.value.key == "training.rounds"
    assert "duplicate key 'rounds'" in exc.value.problem
    assert "line 5" in exc.value.problem and "line 3" in exc.value.problem


def test_duplicate_key_inside_a_list_item() -> None:
    with pytest.raises(InputError) as exc:
        load_yaml_text("clients:\n  - {cut: 1}\n  - {cut: 2, cut: 3}\n")
    assert exc.value.key == "clients[1].cut"


def test_merge_keys_may_override_without_being_duplicates() -> None:
    data = load_yaml_text("base: &b {cut: 1, count: 2}\nc: {<<: *b, cut: 3}\n")
    assert data["c"] == {"cut": 3, "count": 2}


# --- schema: strict types, one message per problem ---------------------------------------------


def _parse_error(data: dict) -> tuple[str | None, str]:
    with pytest.raises(InputError) as exc:
        parse_scenario({"name": "t", "clients": [{"device": "rpi4", "link": "ble", "cut": 1}], **data}, "s.yaml")
    assert exc.value.file == "s.yaml"
    return _problem(exc)


@pytest.mark.parametrize(
    ("data", "key", "phrase"),
    [
        ({"training": {"rounds": "10"}}, "training.rounds", "expected an integer, got '10'"),
        ({"training": {"rounds": 10.0}}, "training.rounds", "expected an integer, got 10.0"),
        ({"seed": True}, "seed", "expected an integer, got true"),
        ({"dataset": {"download": 1}}, "dataset.download", "expected true or false, got 1"),
        ({"training": 5}, "training", "expected a mapping of keys, got 5"),
        ({"eval": {"thresholds": [0.1, 1.5]}}, "eval.thresholds[1]", "less than or equal to 1"),
        ({"strategy": {"name": "averging"}}, "strategy.name", "did you mean 'averaging'"),
        ({"training": {"local_steps": 3, "local_epochs": 1.0}}, "training", "not both"),
        ({"clients": []}, "clients", "at least 1 item"),
    ],
)
def test_bad_values_are_located(data: dict, key: str, phrase: str) -> None:
    got_key, problem = _parse_error(data)
    assert got_key == key and phrase in problem


def test_int_is_a_valid_float() -> None:
    sc = parse_scenario(
        {"name": "t", "clients": [{"device": "rpi4", "link": "ble", "cut": 1}], "training": {"local_epochs": 2}},
        "s.yaml",
    )
    assert sc.training.local_epochs == 2.0 and sc.training.local_steps is None


def test_local_steps_default_when_neither_is_given() -> None:
    sc = parse_scenario({"name": "t", "clients": [{"device": "rpi4", "link": "ble", "cut": 1}]}, "s.yaml")
    assert sc.training.local_steps == 10


@pytest.mark.parametrize("bad", [5, [1, 2], None, ""])
def test_profile_reference_of_the_wrong_kind_gets_one_message(bad: object) -> None:
    key, problem = _parse_error({"clients": [{"device": bad, "link": "ble", "cut": 1}]})
    assert key == "clients[0].device"
    assert problem.startswith("expected a profile name or a mapping")
    assert "valid string" not in problem and "dict" not in problem  # no per-union-member messages


def test_misspelt_key_reported_rather_than_the_missing_one() -> None:
    key, problem = _parse_error({"clients": [{"device": "rpi4", "link": "ble", "cutt": 1}]})
    assert key == "clients[0].cutt" and "did you mean 'cut'" in problem


def test_config_is_frozen() -> None:
    sc = parse_scenario({"name": "t", "clients": [{"device": "rpi4", "link": "ble", "cut": 1}]}, "s.yaml")
    with pytest.raises(Exception):
        sc.training.rounds = 5  # type: ignore[misc]


# --- fleet expansion and profiles --------------------------------------------------------------


def test_count_expands_into_distinct_clients(tmp_path: Path) -> None:
    rs = load_scenario(
        _scenario(
            tmp_path,
            clients=[
                {"device": "rpi4", "link": "wifi4", "cut": 2, "count": 3},
                {"device": "jetson_nano", "link": "wifi6", "cut": 4, "name": "cam"},
                {"device": "rpi4", "link": "ble", "cut": 1, "count": 2, "name": "tag"},
            ],
        )
    )
    # the documented rule: <entry name or device name>-<index in the fleet>; a single named client keeps its name
    assert [c.name for c in rs.clients] == ["rpi4-0", "rpi4-1", "rpi4-2", "cam", "tag-4", "tag-5"]
    assert [c.index for c in rs.clients] == list(range(6))
    assert [c.cut for c in rs.clients] == [2, 2, 2, 4, 1, 1]
    assert [c.link.name for c in rs.clients] == ["wifi4"] * 3 + ["wifi6"] + ["ble"] * 2


def test_clashing_client_names_are_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        load_scenario(
            _scenario(
                tmp_path,
                clients=[
                    {"device": "rpi4", "link": "wifi4", "cut": 2, "name": "a"},
                    {"device": "rpi4", "link": "wifi4", "cut": 2, "name": "a"},
                ],
            )
        )
    assert _problem(exc) == ("clients[1].name", "two clients are named 'a'")


def test_override_keeps_the_other_fields_of_the_base(tmp_path: Path) -> None:
    rs = load_scenario(
        _scenario(
            tmp_path,
            clients=[
                {"device": {"base": "rpi4", "flops_per_s": 2.0e9}, "link": {"base": "ble", "latency_s": 0.5}, "cut": 1}
            ],
        )
    )
    device, link = rs.clients[0].device, rs.clients[0].link
    rpi4, ble = _profile_file("rpi4"), _profile_file("ble", "links")
    assert device.flops_per_s == 2.0e9 and link.latency_s == 0.5
    for field in ("memory_bytes", "compute_w", "idle_w", "kind", "description"):
        assert getattr(device, field) == rpi4[field]
    for field in ("uplink_bps", "downlink_bps", "jitter_s", "loss_rate", "tx_w", "rx_w"):
        assert getattr(link, field) == ble[field]
    # the note goes after the text, not on a line of its own
    assert device.source.endswith(". (overridden in the scenario: flops_per_s)")
    assert device.source.startswith(rpi4["source"].strip())


def test_inline_profile_without_base(tmp_path: Path) -> None:
    rs = load_scenario(
        _scenario(
            tmp_path,
            clients=[
                {
                    "device": {"flops_per_s": 1e9, "memory_bytes": 1.0e9, "compute_w": 2, "idle_w": 0.5},
                    "link": "wifi4",
                    "cut": 1,
                }
            ],
        )
    )
    assert rs.clients[0].device.memory_bytes == 10**9 and rs.clients[0].device.name == "custom"


def test_shared_medium_must_be_declared(tmp_path: Path) -> None:
    ok = load_scenario(
        _scenario(
            tmp_path,
            network={"media": {"ap": {"capacity_bps": 4.0e7}}},
            clients=[{"device": "rpi4", "link": "wifi4", "cut": 2, "count": 2, "medium": "ap"}],
        )
    )
    assert [c.medium for c in ok.clients] == ["ap", "ap"]
    assert ok.scenario.network.media["ap"].capacity_bps == 4.0e7
    with pytest.raises(InputError) as exc:
        load_scenario(_scenario(tmp_path, clients__0__medium="ap"))
    assert exc.value.key == "clients[0].medium" and "unknown medium 'ap'" in exc.value.problem


RPI4 = {"device": "rpi4", "link": "wifi4", "cut": 2}


@pytest.mark.parametrize(
    ("dataset", "clients", "key", "phrase"),
    [
        # 2 samples cannot feed 3 clients
        (
            {"name": "synthetic", "max_train": 2},
            [{**RPI4, "count": 3}],
            "clients",
            "3 clients but only 2 training samples",
        ),
        # 2 clients x 6 shards = 12 shards of a 10-sample split
        (
            {
                "name": "synthetic",
                "synthetic": {"train_size": 10},
                "partition": {"kind": "shards", "shards_per_client": 6},
            },
            [{**RPI4, "count": 2}],
            "dataset.partition.shards_per_client",
            "12 shards but only 10 training samples",
        ),
        (
            {"name": "synthetic", "partition": {"kind": "shards"}},
            [RPI4, {**RPI4, "data_weight": 2}],
            "clients[1].data_weight",
            "unequal data weights need",
        ),
    ],
)
def test_partition_must_be_able_to_feed_every_client(
    tmp_path: Path, dataset: dict[str, Any], clients: list[dict[str, Any]], key: str, phrase: str
) -> None:
    path = _scenario(tmp_path, dataset=dataset, training=DROP, clients=clients)
    with pytest.raises(InputError) as exc:
        load_scenario(path, check=False)  # a schema-level check: no cost table, no dataset files
    assert exc.value.key == key and phrase in exc.value.problem


def test_memory_hint_names_a_cut_that_does_fit(tmp_path: Path) -> None:
    # 700 000 B (684 KiB): enough for a shallow cut at width 8, batch 16, not for cut 8 (3.4 MiB)
    device = {"base": "rpi4", "memory_bytes": 700000}
    with pytest.raises(InputError) as exc:
        load_scenario(_scenario(tmp_path, clients__0__device=device, clients__0__cut=8))
    assert exc.value.key == "clients[0].cut"
    hinted = int(exc.value.problem.rsplit("the deepest cut that fits is ", 1)[1])
    load_scenario(_scenario(tmp_path, clients__0__device=device, clients__0__cut=hinted))
    if hinted < 8:
        with pytest.raises(InputError):
            load_scenario(_scenario(tmp_path, clients__0__device=device, clients__0__cut=hinted + 1))


def test_resolved_form_reloads_to_the_same_fleet(tmp_path: Path) -> None:
    rs = load_scenario(
        _scenario(
            tmp_path,
            clients=[
                {"device": {"base": "rpi4", "flops_per_s": 2.0e9}, "link": "wifi4", "cut": 2, "count": 2},
                {"device": "jetson_nano", "link": "ble", "cut": 3, "data_weight": 2.5},
            ],
        )
    )
    again = tmp_path / "resolved.yaml"
    again.write_text(yaml.safe_dump(rs.to_dict(), sort_keys=False))
    rs2 = load_scenario(again)
    assert rs2.clients == rs.clients and rs2.server == rs.server
    assert rs2.scenario.model_dump(exclude={"clients", "server"}) == rs.scenario.model_dump(
        exclude={"clients", "server"}
    )


# --- --set -------------------------------------------------------------------------------------


def test_set_overrides_a_scalar_and_a_field_of_a_named_profile(tmp_path: Path) -> None:
    rs = load_scenario(_scenario(tmp_path), ["training.rounds=3", "clients.0.device.flops_per_s=2.0e9"])
    assert rs.scenario.training.rounds == 3
    device = rs.clients[0].device
    assert device.flops_per_s == 2.0e9
    assert device.memory_bytes == _profile_file("rpi4")["memory_bytes"]  # the rest is still rpi4


def test_set_replaces_a_profile_and_adds_a_section() -> None:
    data = {"name": "t", "clients": [{"device": "rpi4", "link": "ble", "cut": 1}]}
    apply_overrides(data, ["clients.0.device=jetson_nano", "network.media={ap: {capacity_bps: 1e7}}"], "s.yaml")
    assert data["clients"][0]["device"] == "jetson_nano"
    assert data["network"] == {"media": {"ap": {"capacity_bps": 1e7}}}
    assert isinstance(parse_scenario(data, "s.yaml"), Scenario)


@pytest.mark.parametrize(
    ("item", "key", "phrase"),
    [
        ("training.rounds", None, "expected KEY.PATH=VALUE"),
        ("clients.4.cut=2", "clients[4]", "clients has 1 item, so there is no item 4"),
        ("clients.first.cut=2", "clients.first", "no item first"),
        ("name.x=1", "name.x", "name is 't', not a mapping"),
        ("training..rounds=1", None, "empty key"),
        ("training.rounds=[1,", "training.rounds", "cannot parse the value"),
    ],
)
def test_bad_set_is_located(item: str, key: str | None, phrase: str) -> None:
    with pytest.raises(InputError) as exc:
        apply_overrides({"name": "t", "clients": [{"cut": 1}]}, [item], "s.yaml")
    assert exc.value.file == "s.yaml" and exc.value.key == key
    assert phrase in exc.value.problem and item in exc.value.problem


# --- the documentation ------------------------------------------------------------------------


def _models(cls: type[BaseModel], seen: set[type[BaseModel]]) -> set[type[BaseModel]]:
    """Every model reachable from cls through its fields (lists and dicts of models included)."""
    seen.add(cls)
    for field in cls.model_fields.values():
        stack = [field.annotation]
        while stack:
            ann = stack.pop()
            if isinstance(ann, type) and issubclass(ann, BaseModel) and ann not in seen:
                _models(ann, seen)
            stack.extend(getattr(ann, "__args__", ()))
    return seen


def test_readme_documents_every_key() -> None:
    text = README.read_text()
    models = _models(Scenario, set())
    assert len(models) >= 14  # Scenario and its 13 sections
    missing = [f"{m.__name__}.{name}" for m in models for name in m.model_fields if f"| `{name}` |" not in text]
    assert not missing


def test_readme_minimal_example_validates(tmp_path: Path) -> None:
    text = README.read_text()
    example = text.split("A minimal scenario", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "tiny.yaml"
    path.write_text(example)
    rs = load_scenario(path)
    assert [c.name for c in rs.clients] == ["rpi4-0", "rpi4-1", "rpi4-2", "jetson_nano-3"]
    assert rs.clients[3].device.flops_per_s == 40.0e9
