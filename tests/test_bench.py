"""A tiny configuration of the benchmark suite, so that it never rots."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from benchmarks import suite


def test_suite_smoke(tmp_path, monkeypatch):
    pytest.importorskip("segmentation_models_pytorch")
    import segzoo
    from benchmarks import pairs

    # tiny encoders keep this fast; the structure of the run is the real one
    monkeypatch.setitem(pairs.PAIRS, "unet_r34", pairs.Pair(
        "unet_r34", lambda: segzoo.create("unet_r34", encoder="test_resnet"),
        lambda: __import__("segmentation_models_pytorch").Unet("resnet18", encoder_weights=None, classes=1),
        "smp Unet('resnet18')"))
    code = suite.main(["--device", "cpu", "--pairs", "unet_r34", "--modes", "eager", "fast", "--size", "64", "64",
                       "--batch", "1", "--repeats", "1", "--iters", "1", "--output", str(tmp_path), "--tag", "smoke"])
    assert code == 0
    result = json.loads((tmp_path / "smoke.json").read_text())
    rows = result["rows"]
    assert {(r["side"], r["mode"]) for r in rows} == {
        ("segzoo", "eager"), ("peer", "eager"), ("segzoo", "fast"), ("segzoo", "train_fp32"), ("peer", "train_fp32")}
    assert all(r["images_per_s"] > 0 and r["flops"] > 0 and r["params"] > 0 for r in rows)
    assert result["versions"]["torch"] and result["settings"]["size"] == [64, 64]
    table = (tmp_path / "smoke.md").read_text()
    assert "| unet_r34 | eager |" in table and "ratio" in table
    assert (tmp_path / "smoke.png").stat().st_size > 1000


def test_timing_in_own_process_runs_the_loader_in_a_fresh_interpreter_with_this_thread_count():
    """The child loads only what its loader imports (onnxruntime, imported here, is absent there), runs the
    requested threads, and a loader that fails there is an error here carrying the child's message."""
    import sys

    pytest.importorskip("onnxruntime")
    import onnxruntime  # noqa: F401  (imported here, must not be there)

    from segzoo.core.timing import median_ms_in_own_process

    assert "onnxruntime" in sys.modules
    loader = "helpers.timing_probe:identity_if_alone"
    assert median_ms_in_own_process(loader, [1, "onnxruntime"], (1, 3, 8, 8), repeats=3, threads=1) > 0
    with pytest.raises(RuntimeError, match="child runs 1 threads, not 2"):
        median_ms_in_own_process(loader, [2, "onnxruntime"], (1, 3, 8, 8), repeats=3, threads=1)
    with pytest.raises(ValueError, match="expected 'module:attribute'"):
        median_ms_in_own_process("helpers.timing_probe.identity_if_alone", [], (1, 3, 8, 8), repeats=3)


def test_unknown_pair_and_mode():
    with pytest.raises(KeyError, match="nope"):
        suite.run(["nope"], ["eager"], "cpu", (32, 32), 1)
    with pytest.raises(ValueError, match="warp"):
        suite.run(["unet_r34"], ["warp"], "cpu", (32, 32), 1)


def test_deploy_benchmark_measures_every_format_and_writes_the_readme_table(tmp_path):
    """The deploy benchmark's real structure on a tiny model and synthetic shapes: every format timed and scored on
    val and on training images the calibration did not use, drops against each format's fp32 twin, and the README
    table rewritten from the results between its markers (the text around them kept)."""
    pytest.importorskip("onnxruntime")
    import importlib.util

    import torch

    from benchmarks import deploy
    from conftest import TINY_UNET
    from segzoo.core.config import ModelMeta
    from segzoo.data.synthetic import SHAPE_CLASSES, write_shapes_dataset
    from segzoo.training.recipe import Recipe

    root = write_shapes_dataset(tmp_path / "shapes", n_images=12, size=32, seed=3)
    recipe = Recipe.from_dict({"model": TINY_UNET, "data": {"root": str(root), "classes": SHAPE_CLASSES,
                                                            "val_fraction": 0.25}})
    model = recipe.model.build(len(SHAPE_CLASSES))
    model.meta = ModelMeta(class_names=list(SHAPE_CLASSES))
    openvino = all(importlib.util.find_spec(m) is not None for m in ("openvino", "nncf"))
    work = tmp_path / "work"
    work.mkdir()
    metric = deploy.headline_metric("Dice (disc)", SHAPE_CLASSES)
    assert metric == "dice:disc" and deploy.headline_metric("mIoU", SHAPE_CLASSES) == "miou"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "INT8 is not faster" on a model this small
        entry = deploy.measure_weight(model, recipe, "tiny.shapes", (32, 48), metric, repeats=1, n_calibration=3,
                                      n_holdout=4, work=work, openvino=openvino, passes=1)
    expected = {"eager fp32", "fast fp32", "fast bf16", "onnxruntime fp32", "onnxruntime int8"}
    expected |= {"openvino fp32", "openvino bf16", "openvino int8"} if openvino else set()
    rows = entry["formats"]
    assert set(rows) == expected and entry["holdout_images"] == 4
    assert all(len(r["latency_ms_passes"]) == 1 for r in rows.values())  # each timed once, in its own process
    assert all(r["latency_ms"] > 0 and r["val"]["images"] == 3 and len(r["val"]["iou"]) == 4 for r in rows.values())
    assert rows["eager fp32"]["val_drop_vs_fp32_twin"] == 0.0
    # fp32 runtimes agree with eager PyTorch on every pixel of a fresh model here; INT8 is judged against its twin
    assert abs(rows["onnxruntime fp32"]["val"]["metric"] - rows["eager fp32"]["val"]["metric"]) < 0.5
    twin = rows["onnxruntime fp32"]["val"]["metric"] - rows["onnxruntime int8"]["val"]["metric"]
    assert rows["onnxruntime int8"]["val_drop_vs_fp32_twin"] == round(twin, 2)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{deploy.README_START}\nold table\n{deploy.README_END}\noutro\n")
    result = {"cpu": {"model": "Test CPU", "cores": 2, "isa": ["avx2"]}, "deploy": [entry],
              "machine": {"threads": torch.get_num_threads(), "torch": torch.__version__}}
    deploy.write_readme_table([result], readme)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old table" not in text
    assert f"| tiny.shapes (32x48) | onnxruntime int8 | {rows['onnxruntime int8']['latency_ms']:.1f} |" in text
    assert "Test CPU (2 cores; avx2)" in text and "each format in its own fresh process, median of 1 pass." in text
    plain = tmp_path / "plain.md"
    plain.write_text("no markers here\n")
    with pytest.raises(ValueError, match="markers"):
        deploy.write_readme_table([result], plain)
    assert plain.read_text() == "no markers here\n"


def _deploy_result(model: str, isa: list[str], latencies: dict[str, dict[str, float]]) -> dict:
    """A results file of ``benchmarks.deploy`` with only what the summary reads: per weight, each format's
    latency (the fast fp32 path's included) and val drop."""
    entries = []
    for name, formats in latencies.items():
        fast = formats["fast fp32"]
        rows = {f: {"latency_ms": ms, "speedup_vs_fast_fp32": round(fast / ms, 2),
                    "val_drop_vs_fp32_twin": 0.1 if f.endswith("int8") else 0.0} for f, ms in formats.items()}
        entries.append({"weights": name, "formats": rows, "fastest": min(rows, key=lambda f: rows[f]["latency_ms"])})
    return {"cpu": {"model": model, "cores": 2, "isa": isa}, "deploy": entries}


def test_deploy_results_are_kept_per_cpu_and_summarised_side_by_side(tmp_path):
    """Each kind of CPU writes its own results file (so a run on one machine keeps another's figures), and the
    README's summary gives every weight a column group per CPU: INT8 speed-ups of both backends and the fastest
    format, with "not measured" where a CPU's run left a weight out."""
    from benchmarks import deploy

    xeon = {"model": "Intel(R) Xeon(R) Platinum 8480+", "isa": ["avx2", "avx512_vnni", "amx_int8"]}
    epyc = {"model": "AMD EPYC 9R14", "isa": ["avx2", "avx512f", "avx512_vnni"]}
    assert deploy.results_file(xeon, tmp_path) == tmp_path / "intel-xeon-platinum-8480_amx.json"
    assert deploy.results_file(epyc, tmp_path).name == "amd-epyc-9r14_avx512-vnni.json"
    assert deploy.results_file({"model": "AMD EPYC", "isa": ["avx2"]}).name == "amd-epyc_avx2.json"
    assert deploy.results_file({"model": "Generic", "isa": []}).name == "generic_no-avx2.json"

    with pytest.raises(FileNotFoundError, match="no deploy results"):
        deploy.load_results(tmp_path)
    both = {"fast fp32": 100.0, "onnxruntime int8": 50.0, "openvino int8": 40.0, "openvino bf16": 25.0}
    avx2 = _deploy_result("AMD EPYC", ["avx2"], {"a.camvid": both})
    amx = _deploy_result("Xeon", ["avx2", "amx_int8"], {"a.camvid": {**both, "openvino bf16": 80.0},
                                                        "b.aerial": {"fast fp32": 10.0, "onnxruntime int8": 5.0}})
    for result in (avx2, amx):
        path = deploy.results_file(result["cpu"], tmp_path)
        path.write_text(json.dumps(result))
    results = deploy.load_results(tmp_path)
    assert [r["cpu"]["model"] for r in results] == ["AMD EPYC", "Xeon"]  # by file name
    summary = deploy.render_summary(results).splitlines()
    assert "AMD EPYC (AVX2): INT8 speed-up, OV / ORT" in summary[0] and "Xeon (AMX)" in summary[0]
    assert summary[2] == ("| a.camvid | 2.50 / 2.00 | +0.10 / +0.10 | openvino bf16 4.00x "
                          "| 2.50 / 2.00 | +0.10 / +0.10 | openvino int8 2.50x |")
    # the AVX2 run never measured b.aerial; the Xeon's had no OpenVINO
    assert summary[3] == "| b.aerial | not measured |  |  | - / 2.00 | - / +0.10 | onnxruntime int8 2.00x |"

    # a later run of one weight on the Xeon replaces that weight's figures and keeps the rest (and the tiling)
    amx["tiling"] = {"weights": "b.aerial"}
    again = _deploy_result("Xeon", ["avx2", "amx_int8"], {"a.camvid": {"fast fp32": 90.0, "onnxruntime int8": 30.0},
                                                          "c.nuclei": {"fast fp32": 9.0, "onnxruntime int8": 3.0}})
    merged = deploy.merge_results(amx, again)
    assert [e["weights"] for e in merged["deploy"]] == ["a.camvid", "b.aerial", "c.nuclei"]
    assert merged["deploy"][0]["formats"]["fast fp32"]["latency_ms"] == 90.0
    assert merged["deploy"][1] == amx["deploy"][1] and merged["tiling"] == {"weights": "b.aerial"}


def test_int8_recipe_chooses_on_training_images_and_keeps_sensitive_layers(tmp_path, monkeypatch):
    """The INT8 recipe benchmark on a tiny model: each method measured, the choice made on held-out training
    images (val only reported), the sweep's most sensitive group kept in float when the target is not met."""
    pytest.importorskip("onnxruntime")
    from benchmarks import int8_recipe

    monkeypatch.chdir(tmp_path)  # onnxruntime's tools may leave files in the working directory
    recipe, model = _tiny_shapes(tmp_path, 12, 4)
    result = int8_recipe.choose_recipe(model, recipe, "tiny.shapes", (32, 32), "miou", n_calibration=2, n_check=2,
                                       n_holdout=3, depth=2, max_keep=1, target=-100.0, repeats=1,
                                       methods=("minmax", "percentile"))
    methods = result["methods"]
    assert set(methods) == {"minmax", "percentile"} and result["holdout_images"] == 3
    assert result["chosen_method"] == min(methods, key=lambda m: methods[m]["train_holdout_drop"])
    groups = [r["group"] for r in result["sensitivity"]["groups"]]
    from segzoo.deploy.sensitivity import layer_groups

    assert sorted(groups) == sorted(layer_groups(model, 2)) and len(groups) == 2
    positive = [r["group"] for r in result["sensitivity"]["groups"] if r["gain"] > 0]
    steps = result["keep_steps"]
    assert len(steps) == 1 + bool(positive)  # an unreachable target: the best group kept, no more than max_keep
    if positive:
        assert steps[1]["kept_float_modules"] == positive[:1]
    assert result["recipe"]["method"] == result["chosen_method"]
    for row in [*methods.values(), *steps]:
        assert row["val_drop"] == round(result["fp32"]["val"] - row["val"], 2) and row["latency_ms"] > 0


def test_int8_recipe_for_openvino_keeps_layers_found_by_the_sweep(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("nncf")
    from benchmarks import int8_recipe

    monkeypatch.chdir(tmp_path)
    recipe, model = _tiny_shapes(tmp_path, 10, 5)
    result = int8_recipe.choose_recipe(model, recipe, "tiny.shapes", (32, 32), "miou", n_calibration=2, n_check=2,
                                       n_holdout=2, depth=2, max_keep=1, target=-100.0, repeats=1, crop=24,
                                       backend="openvino")
    assert result["backend"] == "openvino" and list(result["methods"]) == ["nncf"]
    assert result["calibration_crop"] == 24 and result["sensitivity"]["method"] == "minmax"
    positive = [r["group"] for r in result["sensitivity"]["groups"] if r["gain"] > 0]
    assert [s["kept_float_modules"] for s in result["keep_steps"]] == [[]] + [positive[:1]] * bool(positive)


@pytest.fixture
def quantize_calls(tmp_path, monkeypatch):
    """The keyword arguments of every ``quantize`` call that benchmarks.int8_recipe makes, run from ``tmp_path``."""
    pytest.importorskip("onnxruntime")
    from benchmarks import int8_recipe

    monkeypatch.chdir(tmp_path)
    seen = []
    real_quantize = int8_recipe.quantize
    monkeypatch.setattr(int8_recipe, "quantize", lambda *a, **k: seen.append(k) or real_quantize(*a, **k))
    return seen


def test_int8_recipe_without_vnni_calibrates_and_sweeps_with_7_bit_weights(tmp_path, quantize_calls):
    """The recipe for CPUs without VNNI: every INT8 candidate and the sensitivity sweep use 7-bit signed weights,
    and the recipe records them under onnxruntime-no-vnni."""
    from benchmarks import int8_recipe

    seen = quantize_calls
    recipe, model = _tiny_shapes(tmp_path, 10, 5)
    result = int8_recipe.choose_recipe(model, recipe, "tiny.shapes", (32, 32), "miou", n_calibration=2, n_check=2,
                                       n_holdout=2, depth=2, max_keep=1, target=-100.0, repeats=1,
                                       methods=("minmax",), reduce_range=True)
    assert result["backend"] == "onnxruntime-no-vnni"
    assert result["recipe"]["reduce_range"] is True and result["recipe"]["weight_type"] == "int8"
    assert seen and all(k["reduce_range"] is True and k["weight_type"] == "int8" for k in seen)
    assert result["sensitivity"]["reduce_range"] is True
    with pytest.raises(ValueError, match="onnxruntime's"):
        int8_recipe.choose_recipe(model, recipe, "tiny.shapes", (32, 32), "miou", backend="openvino",
                                  reduce_range=True)


def test_int8_recipe_without_vnni_starts_from_the_8_bit_recipes_float_layers(tmp_path, quantize_calls):
    """7-bit weights are coarser in every layer: the no-VNNI search keeps the 8-bit recipe's float layers in every
    candidate, and the sweep only adds others to them."""
    from benchmarks import int8_recipe

    seen = quantize_calls
    recipe, model = _tiny_shapes(tmp_path, 10, 5)
    floor = next(n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and n.startswith("encoder"))
    result = int8_recipe.choose_recipe(model, recipe, "tiny.shapes", (32, 32), "miou", n_calibration=2, n_check=2,
                                       n_holdout=2, depth=2, max_keep=1, target=-100.0, repeats=1,
                                       methods=("minmax",), reduce_range=True, keep_floor=[floor])
    assert result["keep_floor"] == [floor] and result["recipe"]["keep_float"][0] == floor
    assert seen and all(k["keep_float"][:1] == [floor] for k in seen)
    assert all(step["kept_float_modules"].count(floor) == 1 for step in result["keep_steps"])


def test_random_crop_is_one_size_even_from_a_smaller_image():
    """Crops of a 20x30 image by 24: the 30-pixel width gives a window of the image, the 20-pixel height is
    padded by repeating the last row (as tiled prediction pads)."""
    import numpy as np

    from benchmarks.int8_recipe import random_crop

    rng = np.random.default_rng(0)
    image = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    for _ in range(4):
        crop = random_crop(image, 24, rng)
        assert crop.shape == (24, 24, 3)
        lefts = [x for x in range(7) if (image[:, x:x + 24] == crop[:20]).all()]
        assert len(lefts) == 1 and (crop[20:] == crop[19]).all()


def _readme_block(readme, start, end):
    """What stands between a README's generated-table markers (both must be there)."""
    text = readme.read_text()
    assert start in text and end in text, f"README lacks {start!r} ... {end!r}"
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def test_readme_deploy_table_is_the_benchmarks_results():
    """The Deploy page (docs/deploy.md) is generated from every file in benchmarks/results/deploy/, never typed by
    hand, and each file sits where a run on its CPU would write it."""
    from benchmarks import deploy
    from conftest import REPO
    from segzoo.storage.manifest import read_manifest

    folder = REPO / deploy.RESULTS_DIR
    results = deploy.load_results(folder)
    assert [deploy.results_file(r["cpu"], folder) for r in results] == sorted(folder.glob("*.json"))
    # figures of a weights file the zoo no longer publishes are stale: re-run deploy --weights for it
    published = {f"{r['model']}.{r['tag']}": r["sha256"] for r in read_manifest()}
    stale = [(r["cpu"]["model"], e["weights"]) for r in results for e in r["deploy"]
             if "weights_sha256" in e and published.get(e["weights"]) != e["weights_sha256"]]
    assert not stale, f"deploy figures of replaced or withdrawn weights: {stale}"
    block = _readme_block(REPO / "docs" / "deploy.md", deploy.README_START, deploy.README_END)
    assert block == deploy.render_readme(results).strip(), "run python -m benchmarks.deploy --readme-only"


def test_readme_pruning_table_is_the_benchmarks_results():
    """The Compression page's pruning table is generated from benchmarks/results/prune.json, never typed by hand."""
    from benchmarks import prune_curve
    from conftest import REPO

    result = json.loads((REPO / "benchmarks" / "results" / "prune.json").read_text())
    block = _readme_block(REPO / "docs" / "compression.md", prune_curve.README_START, prune_curve.README_END)
    assert block == prune_curve.render_table(result).strip(), "run python -m benchmarks.prune_curve --readme"
    assert len(result["rows"]) >= 4  # the parent and three pruning ratios


def test_prune_curve_measures_parent_and_pruned_models(tmp_path, monkeypatch):
    """The pruning benchmark on a tiny model: FLOPs kept against the parent, val and latency of each, a table row
    per model with changes against the parent, and a plot."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch_pruning")
    import numpy as np

    from benchmarks import deploy, prune_curve
    from segzoo.data.dataset import build_pairs
    from segzoo.deploy import prune

    monkeypatch.chdir(tmp_path)
    recipe, model = _tiny_shapes(tmp_path, 8, 6)
    model = model.eval()
    small = prune(model, flops=0.5, example_size=(32, 32), round_to=1)
    val = deploy._dataset(recipe, build_pairs(recipe.data, "val"))
    calibration = [np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8) for i in range(2)]
    base = prune_curve.measure(model, "parent", val, "miou", (32, 32), calibration, None, 2)
    row = prune_curve.measure(small, "pruned 50%", val, "miou", (32, 32), calibration, base["flops"], 2)
    assert base["kept_flops"] == 1.0 and row["kept_flops"] <= 0.5 and row["params"] < base["params"]
    assert row["pruning"]["target_flops"] == 0.5 and set(row["latency_ms"]) == {"fast fp32", "onnxruntime int8"}
    result = {"cpu": {"model": "x", "cores": 2}, "machine": {"torch": "t"}, "parent": "tiny.shapes",
              "metric": "miou", "image_size": [32, 32], "rows": [base, row]}
    table = prune_curve.render_table(result).splitlines()
    assert len(table) == 6 and table[-1].startswith("| pruned 50% |")
    change = row["val"]["metric"] - base["val"]["metric"]
    assert f"| {change:+.2f} |" in table[-1]
    assert prune_curve.plot(result, tmp_path / "curve.png").stat().st_size > 0


def test_int8_recipe_results_accumulate_per_weight_and_backend(tmp_path):
    from benchmarks.int8_recipe import merge_results

    path = tmp_path / "r.json"
    first = merge_results(path, [{"weights": "a.x", "backend": "onnxruntime", "recipe": {"method": "minmax"}},
                                 {"weights": "a.x", "backend": "openvino", "recipe": {"method": "nncf"}}])
    path.write_text(json.dumps(first))
    again = merge_results(path, [{"weights": "a.x", "backend": "onnxruntime", "recipe": {"method": "entropy"}},
                                 {"weights": "b.y", "backend": "onnxruntime", "recipe": {"method": "minmax"}}])
    assert again["recipes"] == {"a.x onnxruntime": {"method": "entropy"}, "a.x openvino": {"method": "nncf"},
                                "b.y onnxruntime": {"method": "minmax"}}
    assert [e["weights"] for e in again["weights"]] == ["a.x", "a.x", "b.y"]
    # a command recorded in the file survives a run of other weights; a fresh entry brings its own
    path.write_text(json.dumps({**again, "commands": {"a.x openvino": "old ov", "a.x onnxruntime": "old ort"}}))
    third = merge_results(path, [{"weights": "a.x", "backend": "onnxruntime", "recipe": {"method": "minmax"},
                                  "command": "new ort"}])
    assert third["commands"] == {"a.x onnxruntime": "new ort", "a.x openvino": "old ov"}


def _tiny_shapes(tmp_path, n_images: int, seed: int):
    """A synthetic shapes dataset's recipe and a fresh tiny U-Net that names its classes."""
    from conftest import TINY_UNET
    from segzoo.core.config import ModelMeta
    from segzoo.data.synthetic import SHAPE_CLASSES, write_shapes_dataset
    from segzoo.training.recipe import Recipe

    root = write_shapes_dataset(tmp_path / "shapes", n_images=n_images, size=32, seed=seed)
    recipe = Recipe.from_dict({"model": TINY_UNET, "data": {"root": str(root), "classes": SHAPE_CLASSES,
                                                            "val_fraction": 0.25}})
    model = recipe.model.build(len(SHAPE_CLASSES))
    model.meta = ModelMeta(class_names=list(SHAPE_CLASSES))
    return recipe, model


def test_prune_curve_times_models_in_blocks_round_robin():
    """Every round runs each model for an untimed call then ``block`` timed ones, so a model is never timed right
    after another model's call, and the rounds spread the machine's drift over all models."""
    import torch

    from benchmarks import prune_curve

    calls: list[tuple[str, str]] = []

    def fake(name: str, fmt: str):
        return lambda x: calls.append((name, fmt))

    models = [{fmt: fake(name, fmt) for fmt in prune_curve.FORMATS} for name in ("a", "b")]
    out = prune_curve.interleaved_latency(models, torch.zeros(1), repeats=5, block=2, warmup=1)
    assert [set(o) for o in out] == [set(prune_curve.FORMATS)] * 2
    fmt = prune_curve.FORMATS[0]
    one_round = [("a", fmt)] * 3 + [("b", fmt)] * 3
    assert calls[:20] == [("a", fmt), ("b", fmt)] + one_round * 3  # warm-up, then 5 timed calls in blocks of 2
    assert len(calls) == 40

    from benchmarks.measure import round_robin_seconds

    seen: list[str] = []
    timed = round_robin_seconds({"a": lambda: seen.append("a"), "b": lambda: seen.append("b")}, rounds=2, block=3,
                                warmup=0, settle=2)
    assert seen == (["a"] * 5 + ["b"] * 5) * 2  # 2 untimed settling calls, then 3 timed, per function and round
    assert [len(r) for r in timed["a"]] == [3, 3] and all(t >= 0 for r in timed["b"] for t in r)


def test_int8_profile_gives_each_graphs_kernel_times(tmp_path, monkeypatch):
    """onnxruntime's profile of a tiny U-Net, fp32 and INT8: every node timed once per run, the per-operator sums
    adding up to the kernel total, and the INT8 graph running quantized convolutions where fp32 runs Conv."""
    pytest.importorskip("onnxruntime")
    from benchmarks import int8_profile

    monkeypatch.chdir(tmp_path)
    recipe, model = _tiny_shapes(tmp_path, 6, 3)
    result = int8_profile.profile_model(model, recipe, "tiny.shapes", (32, 32), [[]], runs=3, n_calibration=2,
                                        top=100)
    fp32, int8 = result["graphs"]["fp32"], result["graphs"]["int8 keep []"]
    for graph in (fp32, int8):
        assert graph["nodes"] and graph["wall_ms"] > 0
        assert sum(graph["by_op_ms"].values()) == pytest.approx(graph["kernel_ms"], abs=0.05)
        assert len({n["node"] for n in graph["nodes"]}) == len(graph["nodes"])
    assert "Conv" in fp32["by_op_ms"] and not any("QLinear" in op or "Integer" in op for op in fp32["by_op_ms"])
    assert any("QLinear" in op or "Integer" in op or "Quant" in op for op in int8["by_op_ms"])


def test_distill_gain_fits_each_arms_epochs_to_the_budget():
    """Epochs that fit the budget from the measured step and validation times: 10 steps of 1 s plus a 20 s
    validation every 2 epochs is 20 s an epoch; 97% of 1000 s holds 48 of them, and never fewer than one."""
    from benchmarks.distill_gain import fit_epochs

    assert fit_epochs(1.0, 10, 20.0, 2, 1000) == 48
    assert fit_epochs(5.0, 10, 0.0, 1, 10) == 1


def test_distill_gain_trains_both_arms_scores_them_and_reuses_finished_runs(tmp_path, monkeypatch):
    """Both arms on a tiny recipe within one budget, the taught arm naming its teacher, the gain their difference
    and the Compression page's table generated from the results; a second call reuses the finished runs."""
    import yaml

    from benchmarks import distill_gain
    from conftest import TINY_UNET
    from segzoo.core.io import sha256_of
    from segzoo.data.synthetic import SHAPE_CLASSES, write_shapes_dataset
    from segzoo.training.recipe import Recipe
    from segzoo.training.trainer import Trainer

    monkeypatch.chdir(tmp_path)
    root = write_shapes_dataset(tmp_path / "shapes", n_images=12, size=32, seed=3)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": TINY_UNET, "data": {"root": str(root), "classes": list(SHAPE_CLASSES), "val_fraction": 0.25},
        "augment": {"crop_size": 32},
        "train": {"epochs": 1, "batch_size": 4, "lr": 0.01, "progress": False, "plots": False}}))
    Trainer(Recipe.load(recipe, ["train.epochs=2"]), tmp_path / "teacher").fit()
    teacher = tmp_path / "teacher" / "best"
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "compression.md"  # where --readme writes the tables: the docs site's page
    page.write_text(f"x\n{distill_gain.README_START}\nold\n{distill_gain.README_END}\ny\n")
    argv = ["--recipe", str(recipe), "--teacher", str(teacher), "--minutes", "0.02", "--probe-steps", "1",
            "--teacher-set", "distill.weight=2", "-o", "kd"]
    results = tmp_path / "benchmarks" / "results" / "distill" / "tiny_kl_w2_t1.json"  # recipe, loss, weight, T
    alone = distill_gain.main([*argv, "--arm", "distilled"])  # one arm, in its own session
    assert alone["teacher"] is not None and not results.parent.exists()
    result = distill_gain.main(argv)
    base, taught = result["arms"]
    assert taught["val"] == alone["val"]  # the finished arm was reused
    assert [base["arm"], taught["arm"]] == list(distill_gain.ARMS)
    for arm in (base, taught):
        # the budget is a step-level limit: under load an arm may stop inside its first epoch (then its weights
        # at that step are validated into best/, which is what val reads)
        assert 0 <= arm["epochs_run"] <= arm["epochs_planned"] and arm["stop"] in ("completed", "time_limit")
        assert len(arm["val"]["iou"]) == len(SHAPE_CLASSES)
    assert base["teacher"] is None and taught["teacher"]["sha256"] == sha256_of(teacher / "model.safetensors")
    assert result["teacher_sha256"] == taught["teacher"]["sha256"]
    assert result["gain"] == round(taught["val"]["miou"] - base["val"]["miou"], 2)
    assert base["architecture"] == taught["architecture"] and not list(tmp_path.glob("kd/.probe-*"))

    finished = (tmp_path / "kd" / "distilled" / "summary.json").stat().st_mtime_ns
    again = distill_gain.main([*argv, "--readme"])
    assert (tmp_path / "kd" / "distilled" / "summary.json").stat().st_mtime_ns == finished  # reused, not retrained
    assert again["arms"][1]["val"] == taught["val"]
    readme = page.read_text()
    table = distill_gain.render_table([json.loads(results.read_text())])
    assert f"{distill_gain.README_START}\n{table}\n{distill_gain.README_END}" in readme
    assert table.count("\n| ") == 4 + len(SHAPE_CLASSES) and f"| {SHAPE_CLASSES[1]} |" in table
    assert "| | without teacher | kl, weight 2, T 1 | change |" in table

    with pytest.raises(SystemExit):  # only distill settings may differ between the arms
        distill_gain.main([*argv, "--teacher-set", "train.lr=1"])


def test_readme_distillation_table_is_the_benchmarks_results():
    """The Compression page's distillation tables are generated from benchmarks/results/distill/, never typed by
    hand, and each file is named by its setting as a run would name it."""
    from benchmarks import distill_gain
    from conftest import REPO

    folder = REPO / distill_gain.RESULTS_DIR
    results = distill_gain.load_results(folder)
    assert [distill_gain.results_file(r, folder) for r in results] == sorted(folder.glob("*.json"))
    block = _readme_block(REPO / "docs" / "compression.md", distill_gain.README_START, distill_gain.README_END)
    assert block == distill_gain.render_table(results).strip(), "run python -m benchmarks.distill_gain --readme"


def test_distillation_settings_against_one_baseline_share_a_table():
    """Two settings compared with the same untaught run make one table, a column and a change each; a comparison
    with another untaught run gets its own table; no results at all say so."""
    from benchmarks import distill_gain

    def arm(miou: float, teacher: dict | None) -> dict:
        return {"cpu": {"model": "CPU"}, "epochs_run": 10, "minutes": 5.0, "teacher": teacher,
                "val": {"miou": miou, "iou": [miou, miou]}}

    def comparison(base: float, taught: float, loss: str, weight: str) -> dict:
        teacher = {"loss": loss, "weight": weight, "temperature": "4.0"}
        return {"recipe": "r", "teacher": "t", "budget_minutes": 5, "classes": ["a", "b"],
                "arms": [arm(base, None), arm(taught, teacher)]}

    tables = distill_gain.render_table([comparison(70, 69, "kl", "1.0"), comparison(70, 71.5, "cwd", "3.0"),
                                        comparison(60, 62, "cwd", "3.0")]).split("\n\n")
    shared = tables[1].splitlines()  # tables[0] is the first table's "Measured by" line
    assert shared[0] == "| | without teacher | kl, weight 1, T 4 | change | cwd, weight 3, T 4 | change |"
    assert "| **mIoU** | 70.00 | 69.00 | -1.00 | 71.50 | +1.50 |" in shared
    assert "| epochs in the budget | 10 | 10 |  | 10 |  |" in shared
    assert len(tables) == 4 and "| **mIoU** | 60.00 | 62.00 | +2.00 |" in tables[3]
    assert distill_gain.render_table([]).startswith("Not measured yet")
    decaying = comparison(70, 70.5, "cwd", "3.0")
    decaying["arms"][1]["teacher"]["weight_schedule"] = "linear"
    assert distill_gain.results_file(decaying).name == "r_cwd_w3-linear_t4.json"
    assert distill_gain.variant(decaying["arms"][1]) == "cwd, weight 3 linear to 0, T 4"


def test_recipe_sweep_runs_variants_side_by_side_and_tabulates_their_val_readings(tmp_path):
    """Two variants of a tiny recipe trained as two ``segzoo train`` processes at once; the table and
    sweep.json hold each one's best and last val reading, and a bad variant fails before anything starts."""
    import yaml

    from benchmarks.recipe_sweep import main, read_sweep
    from conftest import TINY_UNET
    from segzoo.core.errors import InvalidValueError
    from segzoo.data.synthetic import SHAPE_CLASSES, write_shapes_dataset

    root = write_shapes_dataset(tmp_path / "shapes", n_images=8, size=32, seed=3)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": TINY_UNET, "data": {"root": str(root), "classes": list(SHAPE_CLASSES), "val_fraction": 0.25},
        "augment": {"crop_size": 32}, "train": {"epochs": 2, "batch_size": 2, "val_every": 1}}))
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"common": ["train.lr=0.01"], "variants": {
        "base": {"recipe": str(recipe)}, "slow": {"recipe": str(recipe), "set": ["train.lr=0.0001"]}}}))
    summary = main([str(sweep), "-o", str(tmp_path / "out"), "--parallel", "2", "--workers", "0",
                    "--threads", "1"])
    assert summary["classes"] == list(SHAPE_CLASSES)
    for name in ("base", "slow"):
        result = summary["variants"][name]
        assert result["returncode"] == 0, (tmp_path / "out" / f"{name}.log").read_text()
        assert result["epochs"] == 2 and sorted(result["curve"]) == [1, 2]
        assert max(result["curve"].values()) == pytest.approx(result["best"]["miou"], abs=1e-4)
        assert len(result["best"]["iou"]) == len(SHAPE_CLASSES)
    assert summary["variants"]["slow"]["command"][-2:] == ["--set", "train.lr=0.0001"]
    assert json.loads((tmp_path / "out" / "sweep.json").read_text())["variants"].keys() == {"base", "slow"}

    sweep.write_text(yaml.safe_dump({"variants": {"typo": {"recipe": str(recipe), "set": ["train.lr=-1"]}}}))
    with pytest.raises(InvalidValueError, match="train.lr"):
        read_sweep(sweep)
    assert not (tmp_path / "out" / "typo").exists()


def test_deploy_page_predict_overhead_table_is_the_benchmarks_results():
    """The Deploy page's predict-overhead table is generated from benchmarks/results/predict_overhead_*.json."""
    from benchmarks import predict_overhead
    from conftest import REPO

    results = REPO / predict_overhead.RESULTS
    block = _readme_block(REPO / "docs" / "deploy.md", predict_overhead.DOCS_START, predict_overhead.DOCS_END)
    assert block == predict_overhead.render_tables(results).strip(), "run python -m benchmarks.predict_overhead --docs"
    files = [f for f in results.parent.glob("predict_overhead_*.json") if not f.stem.endswith("_before")]
    assert block.count("| runtime |") == len(files) and block.count(" before |") == 1  # one table per CPU
    run = {"weights": "w", "size": [8, 8], "rounds": 1, "goal": 1.15,
           "runtimes": {"onnxruntime int8": {"predict_ms": 2.0, "graph_ms": 1.0, "overhead": 2.0}}}
    for cap, said in ((None, "on Some CPU (AVX512-VNNI) ("), ("avx2", "on Some CPU (AVX512-VNNI, capped at AVX2) ("),
                      ("avx2-cpuid", "on Some CPU (AVX512-VNNI, CPUID masked to AVX2) (")):
        cpu = {"model": "Some CPU", "isa": ["avx2", "avx512_vnni"], **({"isa_cap": cap} if cap else {})}
        assert said in predict_overhead.render_table({**run, "cpu": cpu})


def test_fp32_runtimes_never_call_an_uncapped_runtime_fastest_under_an_isa_cap():
    """Under --isa-cap, onnxruntime still runs its AVX512 / VNNI kernels (MLAS reads CPUID): its figure is shown,
    marked, and kept out of the capped run's fastest path."""
    from benchmarks import _report, fp32_runtimes

    ms = {"peer eager": [100.0, 110.0], "segzoo eager": [100.0, 100.0], "fast path": [80.0, 80.0],
          "onnxruntime": [50.0, 50.0], "openvino": [70.0, 74.0]}
    free = fp32_runtimes.summarise(ms)
    assert free["fastest"] == "onnxruntime" and free["fastest_x_peer_eager"] == 2.1
    assert fp32_runtimes.summarise(ms, _report.uncapped_runtimes("avx2-cpuid"))["fastest"] == "onnxruntime"
    capped = fp32_runtimes.summarise(ms, _report.uncapped_runtimes("avx2"))
    assert capped["fastest"] == "openvino" and capped["fastest_x_peer_eager"] == round(105 / 72, 2)
    assert capped["fast_path_x_peer_eager"] == round(105 / 80, 2) and capped["ms"]["peer eager"] == 105.0
    result = {"cpu": {"model": "Some CPU", "isa": ["avx2"]}, "isa_cap": "avx2", "size": [512, 512], "batch": 2,
              "passes": 2, "command": "python -m benchmarks.fp32_runtimes --isa-cap avx2",
              "pairs": [{"pair": "unet_r34", "peer": "smp Unet('resnet34')", **capped}]}
    table = fp32_runtimes.render_docs([result])
    assert "capped at AVX2" in table and "| 50 (not capped) | 72 | 1.31x | openvino 1.46x |" in table
    masked = {**result, "isa_cap": "avx2-cpuid", "cpu": {"model": "Some CPU", "isa": ["avx2"],
                                                         "host_isa": ["avx2", "avx512_vnni"]},
              "pairs": [{"pair": "unet_r34", "peer": "smp Unet('resnet34')", **free}]}
    table = fp32_runtimes.render_docs([masked])
    assert "Some CPU (avx2, avx512_vnni), CPUID masked to an AVX2-only CPU" in table
    assert "not capped" not in table and "| onnxruntime 2.10x |" in table


def test_benchmarks_page_fp32_runtimes_table_is_the_benchmarks_results():
    """The Benchmarks page's fp32-runtimes tables are generated from benchmarks/results/fp32_runtimes/, each file
    where a run on its CPU (and cap) would write it."""
    from benchmarks import _report, deploy, fp32_runtimes
    from conftest import REPO

    folder = REPO / fp32_runtimes.RESULTS_DIR
    results = _report.read_results(folder)
    assert results and [deploy.results_file(r["cpu"], folder) for r in results] == sorted(folder.glob("*.json"))
    block = _readme_block(REPO / "docs" / "benchmarks.md", fp32_runtimes.DOCS_START, fp32_runtimes.DOCS_END)
    assert block == fp32_runtimes.render_docs(results).strip(), "run python -m benchmarks.fp32_runtimes --docs"


def test_a_cpu_generation_sharing_a_name_gets_its_own_results_file(tmp_path):
    """'AMD EPYC' names Zen 1 to Zen 5: a run whose CPUID family/model differs from the file under that name (or
    which that file does not record) is filed beside it, never over it; the same generation keeps its file."""
    from benchmarks import deploy

    zen1 = {"model": "AMD EPYC", "isa": ["avx2"], "family_model": "23/1"}
    zen3 = {**zen1, "family_model": "25/1"}
    assert deploy.results_file(zen3, tmp_path).name == "amd-epyc_avx2.json"  # nothing there yet
    (tmp_path / "amd-epyc_avx2.json").write_text(json.dumps({"cpu": zen1, "deploy": []}))
    assert deploy.results_file(zen1, tmp_path).name == "amd-epyc_avx2.json"
    assert deploy.results_file(zen3, tmp_path).name == "amd-epyc-cpuid-25-1_avx2.json"
    (tmp_path / "amd-epyc_avx2.json").write_text(json.dumps({"cpu": {"model": "AMD EPYC", "isa": ["avx2"]}}))
    assert deploy.results_file(zen1, tmp_path).name == "amd-epyc-cpuid-23-1_avx2.json"  # unknown generation
    (tmp_path / "amd-epyc_avx2.json").write_text("{not json")
    assert deploy.results_file(zen3, tmp_path).name == "amd-epyc-cpuid-25-1_avx2.json"
    assert deploy.cpu_label(zen3) == "AMD EPYC (AVX2, CPUID 25/1)"


def test_benchmarks_page_dilated_depthwise_table_is_the_benchmarks_results():
    """The Benchmarks page's tap-sum tables are generated from benchmarks/results/dilated_depthwise/, each file
    where a run on its CPU would write it, and each model row's speed-up is its two timings' ratio."""
    from benchmarks import _report, deploy, dilated_depthwise
    from conftest import REPO

    folder = REPO / dilated_depthwise.RESULTS_DIR
    results = _report.read_results(folder)
    assert results and [deploy.results_file(r["cpu"], folder) for r in results] == sorted(folder.glob("*.json"))
    for row in (m for r in results for m in r["models"]):
        assert row["tap_sums_speed_up"] == round(row["ms"][dilated_depthwise.KINDS[0]] / row["ms"]["fast path"], 2)
    block = _readme_block(REPO / "docs" / "benchmarks.md", dilated_depthwise.DOCS_START, dilated_depthwise.DOCS_END)
    assert block == dilated_depthwise.render_docs(results).strip(), "run python -m benchmarks.dilated_depthwise --docs"


def test_deploy_formats_bring_what_they_are_compared_with_and_a_cap_keeps_its_own_results(monkeypatch):
    """--formats measures a subset, but never one without its fp32 twin or the fast path; a run under an
    instruction-set cap is labelled and filed apart from the same CPU's uncapped results, and its fastest format
    is chosen among the runtimes the cap reached."""
    from pathlib import Path

    from benchmarks import _report, deploy

    assert deploy.format_names(True, ["eager fp32", "fast fp32", "openvino fp32", "openvino int8"]) == [
        "eager fp32", "fast fp32", "openvino fp32", "openvino int8"]
    assert "openvino int8" not in deploy.format_names(False)
    with pytest.raises(ValueError, match=r"also need \['eager fp32', 'openvino fp32'\]"):
        deploy.format_names(True, ["fast fp32", "openvino int8"])
    cpu = {"model": "Intel(R) Xeon(R) Processor", "isa": ["avx2", "avx512_vnni", "amx_int8"]}
    assert deploy.results_file(cpu, Path("r")) == Path("r/intel-xeon-processor_amx.json")
    capped = {**cpu, "isa_cap": "avx2"}
    assert deploy.results_file(capped, Path("r")) == Path("r/intel-xeon-processor_amx_cap-avx2.json")
    assert deploy.cpu_label({**cpu, "isa_cap": "avx2"}) == "Intel(R) Xeon(R) Processor (AMX, capped at AVX2)"
    assert "capped at AVX2" in deploy.cap_said({**cpu, "isa_cap": "avx2"}) and deploy.cap_said(cpu) == ""
    formats = ["fast fp32", "onnxruntime int8", "openvino int8"]
    for key in _report.ISA_CAPS["avx2"]:
        monkeypatch.delenv(key, raising=False)
    assert _report.isa_cap() is None and deploy.comparable(formats) == formats
    with pytest.raises(ValueError, match="applies to a whole process"):
        _report.run_under_isa_cap("avx2", "benchmarks.deploy", ["--isa-cap", "avx2"])
    for key, value in _report.ISA_CAPS["avx2"].items():
        monkeypatch.setenv(key, value)
    assert _report.isa_cap() == "avx2" and _report.cpu_description()["isa_cap"] == "avx2"
    assert deploy.comparable(formats) == ["fast fp32", "openvino int8"]
    # masked CPUID: the process saw AVX2 alone, the file and label go by the host's tier, every runtime was capped
    masked = {"model": "AMD EPYC", "isa": ["avx2"], "isa_cap": "avx2-cpuid", "host_isa": ["avx2", "avx512_vnni"]}
    assert deploy.results_file(masked, Path("r")) == Path("r/amd-epyc_avx512-vnni_cap-avx2-cpuid.json")
    assert deploy.cpu_label(masked) == "AMD EPYC (AVX512-VNNI, CPUID masked to AVX2)"
    assert "CPUID masked" in deploy.cap_said(masked) and "onnxruntime" not in deploy.cap_said(masked)
    assert _report.uncapped_runtimes("avx2-cpuid") == () and _report.uncapped_runtimes(None) == ()


def test_int8_avx2_emulated_compares_the_two_kernels_class_maps_and_scores_each():
    """The emulation benchmark's arithmetic on hand-made logits: agreement over all pixels and per image, the
    largest logit difference, and each run's metric against the masks; its table shows both drops."""
    from benchmarks import int8_avx2_emulated as emu

    native = {"000": np.zeros((1, 2, 2, 4), np.float32), "001": np.zeros((1, 2, 2, 2), np.float32)}
    native["000"][0, 1, :, :2] = 1.0  # class 1 on the left half, class 0 (the first maximum) elsewhere
    emulated = {k: v.copy() for k, v in native.items()}
    emulated["000"][0, 1, 0, 0] = -0.5  # one pixel of eight flips to class 0
    found = emu.compare(native, emulated)
    assert found["agreement"] == round(11 / 12, 5) and found["min_image_agreement"] == 0.875
    assert found["max_abs_logit_diff"] == 1.5
    masks = [torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0]]), torch.zeros(2, 2, dtype=torch.long)]
    exact = emu.scored(found["maps"]["native"], masks, 2, 255, "miou", ["a", "b"])
    flipped = emu.scored(found["maps"]["avx2"], masks, 2, 255, "miou", ["a", "b"])
    assert exact == {"metric": 100.0, "iou": [100.0, 100.0]}
    assert flipped["iou"] == [round(100 * 8 / 9, 1), 75.0]
    row = {"drop_native": 0.0, "drop_avx2": 12.5, "agreement": found["agreement"], "max_abs_logit_diff": 1.5}
    result = {"cpu": {"model": "Some CPU"}, "emulated_cpu": {"avx2": True, "avx512": False, "vnni": False},
              "weights": [{"weights": "unet.x", "val_images": [0, 1], "calibration_images": 3,
                           "files": dict.fromkeys(emu.FILES, row)}]}
    table = emu.render_table(result)
    assert "vnni=False" in table and "| unet.x (2 / 3) | int8 7-bit | +0.00 | +12.50 | 91.67% | 1.5000 |" in table


def test_int8_avx2_emulated_refuses_a_missing_emulator_or_one_that_is_not_an_avx2_cpu(monkeypatch):
    """Figures are an AVX2 CPU's only if the emulated process reads AVX2 without AVX512 or VNNI: run natively
    (``env`` as the 'emulator'), the probe reads this machine, refused wherever it has AVX512 or VNNI."""
    from benchmarks import int8_avx2_emulated as emu

    native = {"avx2": torch.cpu._is_avx2_supported(), "avx512": torch.cpu._is_avx512_supported(),
              "vnni": torch.cpu._is_vnni_supported()}
    if native["avx2"] and not native["avx512"] and not native["vnni"]:
        assert emu.emulated_cpu(("env",)) == native
    else:
        with pytest.raises(RuntimeError, match="expected AVX2 without AVX512 or VNNI"):
            emu.emulated_cpu(("env",))
    monkeypatch.setattr(emu.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="qemu-x86_64 is not installed .*qemu-user"):
        emu.emulated_cpu()


def test_ort_logits_child_gives_the_sessions_logits(tmp_path):
    """The child the emulation benchmark runs (numpy and onnxruntime only) returns what segzoo's session gives."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript", reason="the export extra (onnxscript) is not installed")
    from benchmarks import int8_avx2_emulated as emu
    from conftest import TINY_UNET
    from segzoo.deploy import export_onnx
    from segzoo.inference.runtime import OnnxModel
    from segzoo.training.recipe import ModelSpec

    model = ModelSpec(**TINY_UNET).build(3).eval()
    export_onnx(model, tmp_path / "m.onnx", example_size=(32, 32))
    x = {"000": np.random.default_rng(0).standard_normal((1, 3, 32, 48)).astype(np.float32)}
    np.savez(tmp_path / "in.npz", **x)
    assert emu.run_child(tmp_path / "m.onnx", tmp_path / "in.npz", tmp_path / "out.npz", emulate=False) > 0
    with np.load(tmp_path / "out.npz") as out:
        expected = OnnxModel.load(tmp_path / "m.onnx")(torch.from_numpy(x["000"])).numpy()
        assert out.files == ["000"] and np.array_equal(out["000"], expected)


def test_deploy_page_int8_avx2_emulated_table_is_the_benchmarks_results():
    """The Deploy page's emulated-AVX2 table is generated from benchmarks/results/int8_avx2_emulated.json."""
    from benchmarks import int8_avx2_emulated as emu
    from conftest import REPO

    block = _readme_block(REPO / "docs" / "deploy.md", emu.DOCS_START, emu.DOCS_END)
    assert block == emu.render_table(json.loads((REPO / emu.RESULTS).read_text())).strip(), \
        "run python -m benchmarks.int8_avx2_emulated --docs"


def test_cpu_description_reads_the_cpuid_family_and_model_that_names_alike_hide():
    from benchmarks import _report

    text = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n"
            "flags\t\t: avx2 avx512f\n\nprocessor\t: 1\ncpu family\t: 99\nmodel\t\t: 9\n")
    assert _report._cpuinfo_field(text, "cpu family") == "26"
    assert _report._cpuinfo_field(text, "model") == "2"  # not "model name"'s value
    assert _report._cpuinfo_field(text, "model name") == "AMD EPYC"
    assert _report._cpuinfo_field(text, "stepping") is None


def test_int8_gemm_peak_times_the_products_it_claims_and_keeps_one_file_per_cpu(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from benchmarks import int8_gemm_peak

    a = np.random.default_rng(3).integers(0, 256, (4, 6)).astype(np.uint8)
    for kind, signed in (("u8 x s8", np.int8), ("u8 x u8", np.uint8)):  # exact products, weights of their type
        graph = int8_gemm_peak.product_graph(kind, 4, 6, 5, seed=7)
        w = numpy_helper.to_array(onnx.load_from_string(graph).graph.initializer[0])
        assert w.dtype == signed and w.shape == (6, 5) and w.min() >= (-64 if signed is np.int8 else 0)
        got = ort.InferenceSession(graph, providers=["CPUExecutionProvider"]).run(None, {"a": a})[0]
        np.testing.assert_array_equal(got, a.astype(np.int32) @ w.astype(np.int32))
    out = tmp_path / "peak.json"
    result = int8_gemm_peak.main(["--shape", "8", "16", "8", "--rounds", "2", "--output", str(out)])
    assert json.loads(out.read_text())["products"] == result["products"]
    assert set(result["products"]) == {"fp32", "u8 x s8", "u8 x u8"}
    assert result["products"]["u8 x s8"]["speed_vs_fp32"] > 0 and "isa" in result["cpu"]
    with pytest.raises(SystemExit):
        int8_gemm_peak.main(["--shape", "8", "0", "8"])
    assert "--shape and --rounds take positive numbers, got [8, 0, 8]" in capsys.readouterr().err
