"""The method registry is the single source of truth: every registered method, and one registered here
from outside the package, reaches the config (its options and their allowed values), ``avcl compare``, the
command-line help and the generic tests (the DDP equivalence workers and the few-step training checks)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import pytest
import torch
from ddp.worker_methods import METHOD_NAMES, global_batch, method_names, run_method, video_only

from avcl import cli
from avcl.config import MODALITIES, Config, ConfigError, choice, config_from_dict, field_choices, load_config
from avcl.experiments import compare_rows, table4_rows
from avcl.losses import info_nce_cross_modal
from avcl.methods import REGISTRY, MethodEntry, build_method, register
from avcl.methods.base import Method


@dataclass
class DummyOptions:
    dummy_weight: float = 1.0
    dummy_mode: str = choice("plain", ("plain", "scaled"))


class Dummy(Method):
    """The smallest method: cross-modal InfoNCE on the encoders' features, times ``method.dummy_weight``."""

    name = "dummy"
    options = DummyOptions

    def forward(self, batch):
        v, a = self.video_encoder(batch["video"]), self.audio_encoder(batch["audio"])
        m = self.cfg.method
        scale = m.dummy_weight * (2.0 if m.dummy_mode == "scaled" else 1.0)
        return {"loss": scale * info_nce_cross_modal(v.float(), a.float(), temperature=m.temperature)}


@pytest.fixture
def dummy():
    entry = register(MethodEntry("dummy", f"{__name__}:Dummy", "Dummy"))
    try:
        yield entry
    finally:
        del REGISTRY["dummy"]


def _help(*command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        cli.main([*command, "--help"])
    return capsys.readouterr().out.replace("\n", " ")


def _section_keys(cls: type) -> tuple[str, list[str]]:
    section = cls.options_section
    return section, [f"{section}.{f.name}" for f in dataclasses.fields(cls.options)]


def test_the_generic_lists_are_the_registry():
    assert set(METHOD_NAMES) == set(method_names()) == {n for n, e in REGISTRY.items() if not e.load().supervised}
    assert METHOD_NAMES and "supervised" in REGISTRY and "supervised" not in METHOD_NAMES
    rows = compare_rows()
    for name, entry in REGISTRY.items():
        cls = entry.load()
        assert cls.name == name
        cfg = load_config(None, [f"method.name={name}", "model.width=0.125"])
        assert type(build_method(cfg, num_classes=3)) is cls
        # every method has a row of avcl compare that trains it
        if cls.supervised:
            assert {rows[r.key][0].supervised for r in entry.compare_rows()} == set(MODALITIES)
        else:
            assert any(f"method.name={name}" in rows[r.key][0].overrides for r in entry.compare_rows())


def test_video_only_methods_have_no_audio_encoder():
    for name in METHOD_NAMES:
        assert (name in video_only()) == (not REGISTRY[name].load().uses_audio)


def test_every_option_and_its_allowed_values_are_config_keys():
    cfg = Config()
    declared = {}
    for entry in REGISTRY.values():
        cls = entry.load()
        if cls.options is None:
            continue
        section, keys = _section_keys(cls)
        for f, key in zip(dataclasses.fields(cls.options), keys):
            node = getattr(cfg, section)
            assert getattr(node, f.name) == (f.default if f.default is not dataclasses.MISSING else f.default_factory())
            declared[key] = f.metadata.get("choices")
    allowed = dict(field_choices(cfg))
    for key, values in declared.items():
        assert allowed.get(key) == values, key
        for value in values or ():
            load_config(None, [f"{key}={value}"])
        if values:
            with pytest.raises(ConfigError, match=re.escape(", ".join(map(str, values)))):
                load_config(None, [f"{key}=not-a-choice"])
    assert {"method.gate", "method.cgra_layer", "method.iic_intra", "tcgl.inter_edges"} <= set(declared)


def test_the_command_line_offers_the_values_the_config_accepts(capsys):
    allowed = dict(field_choices(Config()))
    for command in (("linear",), ("finetune",), ("embed",)):
        assert "{" + ",".join(allowed["eval.modality"]) + "}" in _help(*command, capsys=capsys)
    assert ", ".join(REGISTRY) in _help("pretrain", capsys=capsys)
    compare = _help("compare", capsys=capsys)
    for key in compare_rows():
        assert key in compare


def test_a_method_registered_from_outside_reaches_every_generic_path(dummy, capsys):
    # the config: its options join the method section, with their allowed values and typo hints
    cfg = load_config(None, ["method.name=dummy", "method.dummy_mode=scaled", "method.dummy_weight=0.5"])
    assert (cfg.method.dummy_mode, cfg.method.dummy_weight) == ("scaled", 0.5)
    assert cfg.method.gate == "sigmoid"  # the other methods' options stay
    with pytest.raises(ConfigError, match="choose one of plain, scaled"):
        load_config(None, ["method.dummy_mode=loud"])
    with pytest.raises(ConfigError, match="did you mean method.dummy_mode"):
        load_config(None, ["method.dumy_mode=plain"])
    assert type(build_method(cfg)) is Dummy
    # the DDP equivalence workers and the few-step checks train it
    assert "dummy" in method_names() and "dummy" not in video_only()
    result = run_method("dummy", 4, slice(None))
    assert len(result["steps"]) == 3 and all(torch.isfinite(s["loss"]) for s in result["steps"])
    assert any(k.startswith("audio_encoder.") for k in result["steps"][0]["grads"])
    # avcl compare: selectable by name (not in `all`, the paper's table), in the help
    (row,) = table4_rows("dummy")
    assert row.name == "Dummy" and row.overrides == ("method.name=dummy",)
    assert row not in table4_rows("all")
    assert "dummy" in _help("compare", capsys=capsys) and "dummy" in _help("pretrain", capsys=capsys)
    cfg.model.width = 0.125
    method, batch = build_method(cfg).eval(), global_batch(2, 0)
    with torch.no_grad():
        assert method.embed(batch["video"], batch["audio"]).shape == (2, method.embed_dim("both")) == (2, 128)


def test_the_registry_refuses_clashing_names_and_options(dummy):
    with pytest.raises(ValueError, match="already registered"):
        register(MethodEntry("dummy", f"{__name__}:Dummy"))

    class Clashing(Dummy):
        name = "clashing"

        @dataclass
        class options:  # noqa: N801 - a dataclass in the place of a method's options
            gate: str = "sigmoid"  # AVCL's

    globals()["Clashing"] = Clashing
    register(MethodEntry("clashing", f"{__name__}:Clashing"))
    try:
        with pytest.raises(TypeError, match="method.gate is already declared by method avcl"):
            Config()
    finally:
        del REGISTRY["clashing"], globals()["Clashing"]
    Config()  # the registry as it was composes again


def test_a_saved_config_gets_the_fallbacks_its_methods_declare_and_only_for_their_own_keys():
    class Older(Dummy):
        name = "older"
        saved_fallbacks = {"dummy_mode": "scaled"}

    class Wrong(Dummy):
        name = "wrong"
        saved_fallbacks = {"gate": "relu"}  # AVCL's key, not its own

    globals().update(Older=Older, Wrong=Wrong)
    register(MethodEntry("older", f"{__name__}:Older"))
    try:
        saved = Config().to_dict()
        del saved["method"]["dummy_mode"], saved["method"]["loss_on"]  # a config saved before both existed
        cfg = config_from_dict(saved)
        assert (cfg.method.dummy_mode, cfg.method.loss_on, cfg.method.cgra_reduce) == ("scaled", "fused", "mean")
        del REGISTRY["older"]
        register(MethodEntry("wrong", f"{__name__}:Wrong"))
        with pytest.raises(TypeError, match="method wrong: saved_fallbacks names keys it does not declare: gate"):
            Config()
    finally:
        REGISTRY.pop("older", None)
        REGISTRY.pop("wrong", None)
        del globals()["Older"], globals()["Wrong"]
    Config()
