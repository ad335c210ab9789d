"""The zoo's catalog: the facts the driver's checks read without importing any model library
agree with the architecture modules, and the Hub-weights check reads the cache layout that
``from_pretrained`` and smp read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hf_snapshots import hub_snapshot_dir, smp_repo

from trainables.models import MODELS
from trainables.models.catalog import BUILT_IN, architectures

ROOT = Path(__file__).resolve().parents[1]


def test_every_built_in_entry_is_registered_by_its_module() -> None:
    assert sorted(BUILT_IN) == sorted(n for n, e in MODELS.items() if e.builder.__module__.startswith("trainables."))
    for name, info in BUILT_IN.items():
        assert MODELS[name].builder.__module__ == info.module, name
        assert MODELS[name].info is info


def test_hub_repos_are_the_ones_the_builders_load() -> None:
    from trainables.models.mask2former import HF_ID
    from trainables.models.segformer import SEGFORMER_VARIANTS

    assert BUILT_IN["mask2former_swin"].hub_repo({}) == HF_ID
    assert BUILT_IN["segformer_b4"].hub_repo({}) == SEGFORMER_VARIANTS["b4"]["hf_id"]
    assert BUILT_IN["segformer_b5"].hub_repo({"size": "base"}) == SEGFORMER_VARIANTS["b5"]["hf_id"]
    for enc in ("b0", "b2", "b5"):
        assert BUILT_IN["segformer_unet"].hub_repo({"encoder": enc}) == SEGFORMER_VARIANTS[enc]["hf_id"]
    assert BUILT_IN["segformer_unet"].hub_repo({}) == SEGFORMER_VARIANTS["b4"]["hf_id"]  # its default
    for arch, encoder in (("unetpp", "resnet34"), ("resnet_unet", "resnet50"), ("resnet_transformer", "resnet50")):
        assert (BUILT_IN[arch].hub_repo({}), BUILT_IN[arch].revision) == smp_repo(encoder), arch
    for name, info in BUILT_IN.items():  # the test-sized variants have no released weights
        assert info.hub_repo({"size": "tiny"}) is None, name
    assert BUILT_IN["unet"].hub_repo({}) is None and not BUILT_IN["unet"].has_released_weights


def test_depth_pretrained_hub_repos_are_the_ones_the_builders_load() -> None:
    from trainables.models import depth_anything, dpt, glpn

    for size in ("small", "base", "large"):
        assert BUILT_IN["depth_anything_v2"].hub_repo({"size": size}) == depth_anything.HUB[size]
        assert BUILT_IN["depth_anything_v2_metric"].hub_repo({"size": size}) == depth_anything.HUB_METRIC[size]
    assert BUILT_IN["depth_anything_v2"].hub_repo({}) == depth_anything.HUB["small"]  # the builder's default
    assert BUILT_IN["dpt"].hub_repo({}) == dpt.HUB["large"] == "Intel/dpt-large"
    assert BUILT_IN["dpt"].hub_repo({"size": "hybrid"}) == dpt.HUB["hybrid"]
    assert BUILT_IN["glpn"].hub_repo({}) == glpn.HUB["nyu"]
    assert BUILT_IN["glpn"].hub_repo({"dataset": "kitti", "size": "base"}) == glpn.HUB["kitti"]
    assert BUILT_IN["glpn"].hub_repo({"dataset": "kitti", "size": "tiny"}) is None
    for name in ("depth_anything_v2", "depth_anything_v2_metric", "dpt", "glpn"):
        info = BUILT_IN[name]
        assert set(info.params_m) == set(info.hub) and info.licence, name


def test_a_plugin_architecture_joins_the_catalog() -> None:
    from trainables.models import register_model

    @register_model("test_catalog_plugin", source="none (test)", description="a plugin's model")
    def _builder(**kw):  # never built
        raise AssertionError

    try:
        assert architectures()["test_catalog_plugin"].description == "a plugin's model"
    finally:
        del MODELS["test_catalog_plugin"]
    with pytest.raises(ValueError, match="catalog.py"):
        register_model("unet", source="x", description="y")


def _python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=120)


def test_the_checks_import_no_model_library() -> None:
    proc = _python("""
        import sys
        from grid.experiment.plan import check_archs, ExperimentError
        check_archs({"unet", "segformer_b5"}, {"segformer_b5"})
        try:
            check_archs({"segformer_b9"})
        except ExperimentError as e:
            print(e)
        heavy = sorted(m for m in ("torch", "transformers", "timm", "segmentation_models_pytorch") if m in sys.modules)
        print("heavy:", heavy)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "unknown architecture(s) ['segformer_b9']" in proc.stdout
    assert "heavy: []" in proc.stdout


CHECK = """
    import json, sys
    from grid.experiment.hub import check_hub_weights
    from trainables.weights import WeightsUnavailableError
    try:
        check_hub_weights(json.loads(sys.argv[1]))
        print("ok")
    except WeightsUnavailableError as e:
        print("missing:", e)
"""


def _check(configs: list[dict], hf_home: Path) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(CHECK), json.dumps(configs)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HOME": str(hf_home),
                                                       "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_hub_weights_are_looked_up_where_the_loaders_read_them(tmp_path: Path) -> None:
    hf_home = tmp_path / "hf"
    b4 = {"arch": "segformer_b4", "pretrained": "yes", "model_kwargs": {"size": "base"}}
    unetpp = {"arch": "unetpp", "pretrained": "yes"}
    out = _check([b4, unetpp], hf_home)
    assert out.startswith("missing: segformer_b4 with pretrained=yes needs nvidia/segformer-b4-finetuned-ade-512-512")
    assert "HF_HUB_OFFLINE is set" in out and "hf download nvidia/segformer-b4-finetuned-ade-512-512" in out
    # Under if_available, or at the test size, a trial needs no weights.
    assert _check([{**b4, "pretrained": "if_available"}, {**b4, "model_kwargs": {"size": "tiny"}}], hf_home) == "ok"
    (hub_snapshot_dir(hf_home, "nvidia/segformer-b4-finetuned-ade-512-512") / "config.json").write_text("{}")
    out = _check([b4, unetpp], hf_home)
    assert out.startswith("missing: unetpp with pretrained=yes needs smp-hub/resnet34.imagenet"), out
    # smp downloads its pinned commit: a snapshot of the main branch is not it.
    repo, revision = smp_repo("resnet34")
    (hub_snapshot_dir(hf_home, repo) / "model.safetensors").write_bytes(b"x")
    assert _check([unetpp], hf_home).startswith("missing: unetpp")
    (hub_snapshot_dir(hf_home, repo, revision) / "model.safetensors").write_bytes(b"x")
    assert _check([b4, unetpp], hf_home) == "ok"
    # A depth model's variant picks its repo: the check names the one the trial loads.
    kitti = {"arch": "glpn", "pretrained": "yes", "model_kwargs": {"dataset": "kitti"}}
    assert _check([kitti], hf_home).startswith("missing: glpn with pretrained=yes needs vinvino02/glpn-kitti")
