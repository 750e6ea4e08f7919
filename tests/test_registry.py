"""The registry: strict registration, suggestions, lazy and isolated plugins."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import segzoo
from segzoo.core.registry import (
    MODELS,
    PluginLoadError,
    Registry,
    RegistryConflictError,
    UnknownNameError,
    plugin_status,
    reload_plugins,
)


def test_register_twice_names_both_sources():
    reg = Registry("decoder", "segzoo.test.none")

    @reg.register("thing")
    def first():
        return 1

    def second():
        return 2

    with pytest.raises(RegistryConflictError) as err:
        reg.add("thing", second)
    message = str(err.value)
    assert "first" in message and "second" in message and "'thing'" in message
    assert reg.get("thing") is first  # nothing was overwritten


def test_unknown_model_suggests_close_matches():
    with pytest.raises(KeyError) as err:
        segzoo.create("unet_r43")
    assert isinstance(err.value, UnknownNameError)
    assert "unet_r34" in str(err.value)
    assert "list_models" in str(err.value)


def test_unknown_decoder_and_encoder():
    with pytest.raises(UnknownNameError, match="deeplabv3plus"):
        segzoo.create_model("deeplabv3plu", "test_resnet", num_classes=2)
    with pytest.raises(UnknownNameError, match="resnet18"):
        segzoo.create_model("unet", "resnet81", num_classes=2)


def test_list_models_pattern_sorted_and_pretrained_filter():
    names = segzoo.list_models("unet_*")
    assert names == sorted(names)
    assert {"unet_carvana", "unet_r18", "unet_r34", "unet_r50", "unet_mnv2"} <= set(names)
    assert all(n.startswith("unet_") for n in names)
    # the filter lists exactly the models with published weights: the checkpoints published elsewhere that named
    # models declare (milesial's, torchvision's, NVIDIA's) and the zoo's manifest
    from segzoo.core.registry import MODELS
    from segzoo.storage.manifest import read_manifest

    declared = {e.name for e in MODELS.registered() if e.metadata.get("weights")}
    assert {"unet_carvana", "deeplabv3_r50", "lraspp_mnv3", "segformer_b0", "segformer_b5"} <= declared
    published = declared | {e["model"] for e in read_manifest()}
    assert segzoo.list_models(pretrained=True) == sorted(published)
    assert "unet_r34" not in published


def test_list_decoders_and_encoders():
    assert {"unet", "fcn", "deeplabv3", "deeplabv3plus", "swin_unet"} <= set(segzoo.list_decoders())
    encoders = segzoo.list_encoders("resnet*")
    assert "resnet50" in encoders
    assert "plain" in segzoo.list_encoders()


def test_model_info_fields():
    info = segzoo.model_info("deeplabv3plus_r50")
    assert info["source"] == "segzoo"
    assert info["decoder"] == "deeplabv3plus" and info["encoder"] == "resnet50"
    assert info["config"]["encoder"]["output_stride"] == 16
    assert "DeepLabV3+" in info["description"]


def _run(code: str, env_extra: dict[str, str] | None = None, path: Path | None = None) -> str:
    import os

    env = dict(os.environ)
    env.update(env_extra or {})
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(path), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_import_is_lazy_and_listing_imports_no_plugin():
    out = _run(
        """
        import sys, segzoo
        print('timm' in sys.modules, 'albumentations' in sys.modules, 'huggingface_hub' in sys.modules)
        names = segzoo.list_models()
        print('fpn_r50' in names, any(m.startswith('segzoo_extra_decoders') for m in sys.modules))
        """
    )
    first, second = out.split("\n")[:2]
    assert first == "False False False"
    # the plugin's names are listed, its modules are not imported
    assert second == "True False"


def test_disable_plugins_env():
    out = _run("import segzoo; print('fpn_r50' in segzoo.list_models())", {"SEGZOO_DISABLE_PLUGINS": "1"})
    assert out.strip() == "False"


def _fake_distribution(root: Path, dist: str, entry_points: str, modules: dict[str, str]) -> Path:
    """A distribution importlib.metadata finds on sys.path: a dist-info folder plus its modules."""
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))
    return root


@pytest.fixture
def broken_plugin(tmp_path, monkeypatch):
    root = _fake_distribution(
        tmp_path,
        "broken-segzoo-plugin",
        """
        [segzoo.models]
        broken_model = broken_plugin_mod:broken_model
        [segzoo.decoders]
        unet = broken_plugin_mod:Shadow
        """,
        {"broken_plugin_mod": "raise RuntimeError('plugin exploded on import')\n"},
    )
    monkeypatch.syspath_prepend(str(root))
    reload_plugins()
    yield root
    monkeypatch.undo()
    reload_plugins()


def test_broken_plugin_is_isolated(broken_plugin):
    with pytest.warns(RuntimeWarning, match="registered twice"):
        names = segzoo.list_models()  # reading entry points imports nothing
        segzoo.list_decoders()
    assert "broken_model" in names
    # segzoo and other plugins still work
    model = segzoo.create("unet_carvana", encoder_params={"widths": (4, 8)}, decoder_channels=(4,))
    assert model is not None
    assert segzoo.create("fpn_r50", encoder="test_resnet") is not None
    # asking for the broken name names the distribution and the original exception
    with pytest.raises(PluginLoadError) as err:
        segzoo.create("broken_model")
    assert "broken-segzoo-plugin" in str(err.value) and "plugin exploded on import" in str(err.value)
    assert isinstance(err.value.__cause__, RuntimeError)
    # the core 'unet' is not shadowed by the plugin's conflicting entry
    assert segzoo.core.registry.DECODERS.get("unet").__module__ == "segzoo.decoders.unet"
    rows = {(r.kind, r.name): r for r in plugin_status(probe=True)}
    assert rows[("model", "broken_model")].state == "failed"
    assert "plugin exploded" in rows[("model", "broken_model")].error
    assert rows[("decoder", "unet")].state == "conflict"
    assert rows[("model", "fpn_r50")].state == "loaded"


def test_two_plugins_same_name_conflict(tmp_path, monkeypatch):
    for dist in ("plugin-a", "plugin-b"):
        _fake_distribution(
            tmp_path / dist,
            dist,
            f"[segzoo.models]\nsame_name = mod_{dist[-1]}:cfg\n",
            {f"mod_{dist[-1]}": "def cfg():\n    raise AssertionError('must not be called')\n"},
        )
        monkeypatch.syspath_prepend(str(tmp_path / dist))
    reload_plugins()
    try:
        with pytest.raises(RegistryConflictError) as err:
            MODELS.get("same_name")
        assert "plugin-a" in str(err.value) and "plugin-b" in str(err.value)
    finally:
        monkeypatch.undo()
        reload_plugins()


def test_cli_list_plugins_shows_failure(broken_plugin):
    import io
    from contextlib import redirect_stdout

    from segzoo.cli import main

    buf = io.StringIO()
    with pytest.warns(RuntimeWarning), redirect_stdout(buf):
        code = main(["list", "--plugins"])
    out = buf.getvalue()
    assert code == 1
    assert "broken_model" in out and "failed" in out and "plugin exploded" in out
    assert "fpn_r50" in out and "loaded" in out


@pytest.fixture
def hostile_plugins(tmp_path, monkeypatch):
    """Four plugin distributions, each broken in a different way, installed together."""
    specs = {
        "exiting-plugin": ("[segzoo.models]\nexiting_model = exiting_mod:cfg\n",
                           {"exiting_mod": "import sys\nsys.exit(3)\n"}),
        "malformed-plugin": ("[segzoo.models\nhalf = = broken\n[segzoo.decoders]\nno equals sign here\n"
                             "bad name! = mod:obj\nfine_decoder = fine_mod:Dec\n", {"fine_mod": "class Dec: pass\n"}),
        "timm-shadow-plugin": ("[segzoo.encoders]\nresnet18 = shadow_mod:Encoder\n",
                               {"shadow_mod": "class Encoder:\n    pass\n"}),
        "broken-model-plugin": ("[segzoo.models]\nbroken_model = broken_mod:cfg\n",
                                {"broken_mod": "raise RuntimeError('plugin exploded on import')\n"}),
    }
    for dist, (entry_points, modules) in specs.items():
        _fake_distribution(tmp_path / dist, dist, entry_points, modules)
        monkeypatch.syspath_prepend(str(tmp_path / dist))
    reload_plugins()
    yield
    monkeypatch.undo()
    reload_plugins()


def test_hostile_plugins_break_only_their_own_names(hostile_plugins):
    """sys.exit at import, a malformed entry_points.txt, a plugin encoder named like a timm model and a plugin that
    raises at import: core models still build (through torch.hub too), each problem is one row of the status."""
    import torch

    from conftest import REPO
    from segzoo.core.registry import DECODERS, ENCODERS

    with pytest.warns(RuntimeWarning) as caught:
        hub_model = torch.hub.load(str(REPO), "unet_r18", source="local", pretrained=False, num_classes=2)
        assert ENCODERS.entry("resnet18").source == "timm"  # timm's resnet18, not the plugin's
    assert hub_model.encoder.__class__.__name__ == "TimmEncoder"
    messages = " ".join(str(w.message) for w in caught)
    assert "line 1 '[segzoo.models' is malformed" in messages and "resnet18" in messages
    with pytest.raises(PluginLoadError, match="exiting-plugin.*SystemExit: 3"):
        segzoo.create("exiting_model")
    assert DECODERS.get("fine_decoder").__name__ == "Dec"  # the well-formed line of a malformed file still counts
    rows = {(r.distribution, r.name): r for r in plugin_status(probe=True)}
    assert rows[("exiting-plugin", "exiting_model")].state == "failed"
    assert rows[("timm-shadow-plugin", "resnet18")].state == "conflict"
    assert rows[("broken-model-plugin", "broken_model")].state == "failed"
    malformed = sorted(name for (dist, name), r in rows.items() if r.state == "malformed")
    assert malformed == ["line 1", "line 4", "line 5"]  # line 2 sits under the broken header: no group


def test_cli_list_plugins_reports_every_problem(hostile_plugins, capsys):
    from segzoo.cli import main

    with pytest.warns(RuntimeWarning):
        code = main(["list", "--plugins"])
    out = capsys.readouterr().out
    assert code == 1
    for expected in ("SystemExit: 3", "malformed-plugin", "timm-shadow-plugin", "plugin exploded", "fpn_r50"):
        assert expected in out, expected
