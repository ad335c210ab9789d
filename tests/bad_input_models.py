"""Mistakes with the commands that read an experiment or a checkpoint, or write outputs: leaderboard,
predict, submit, evaluate, figures, export."""

from __future__ import annotations

import csv
import shutil
import zipfile

from bad_input_world import Case, World, text_file


def _best_checkpoint(w: World) -> str:
    """The world's best trial checkpoint, as its leaderboard names it."""
    with open(w.exp / "leaderboard.csv", newline="") as fh:
        return next(row["checkpoint"] for row in csv.DictReader(fh) if row["checkpoint"])


def _checkpoint_folder(w: World) -> str:
    return _best_checkpoint(w).rsplit("/", 1)[0]


def _truncated_checkpoint(w: World) -> None:
    with open(_best_checkpoint(w), "rb") as fh:
        (w.here / "cut.pt").write_bytes(fh.read(3000))


def _zip_of_notes(w: World) -> None:
    with zipfile.ZipFile(w.here / "other.pt", "w") as archive:
        archive.writestr("notes.txt", "not weights")


def _state_dict_only(w: World) -> None:
    import torch

    torch.save({"encoder.weight": torch.zeros(2)}, w.here / "weights.pt")


def _truncated_png(w: World) -> None:
    (w.here / "photos").mkdir()
    (w.here / "photos" / "bad.png").write_bytes((w.data / "sample_000000_rgb.png").read_bytes()[:300])


def _photos(w: World) -> None:
    (w.here / "photos").mkdir()
    shutil.copy(w.data / "sample_000000_rgb.png", w.here / "photos" / "a.png")


def _comma_named_test_list(w: World) -> None:
    (w.here / "k").mkdir()
    shutil.copy(w.data / "sample_000000_rgb.png", w.here / "k" / "a,b_rgb.png")
    (w.here / "k" / "test_list.txt").write_text("a,b_rgb.png\n")


def _comma_separated_list(w: World) -> None:
    (w.here / "k").mkdir()
    shutil.copy(w.data / "sample_000000_rgb.png", w.here / "k" / "sample_000000_rgb.png")
    (w.here / "k" / "c.txt").write_text("sample_000000_rgb.png,sample_000000_depth.npy\n")


def _folder(name: str, *files: tuple[str, str]):
    def make(w: World) -> None:
        (w.here / name).mkdir(parents=True)
        for file, content in files:
            (w.here / name / file).write_text(content)
    return make


def _ones_as_predictions(w: World) -> None:
    """A prediction of 1 m for every item of the world's dataset, at its size."""
    import numpy as np

    (w.here / "p").mkdir()
    for depth in w.data.glob("*_depth.npy"):
        np.save(w.here / "p" / depth.name, np.ones_like(np.load(depth)))


def _experiment_copy_with_foreign_figure(w: World) -> None:
    shutil.copytree(w.exp, w.here / "exp")
    (w.here / "exp" / "figures").mkdir(exist_ok=True)
    (w.here / "exp" / "figures" / "comparison.png").write_text("my own picture")


def _pack(w: World) -> None:
    """The world's dataset packed into ``w.here / "pack"`` (``depth-grid pack``)."""
    from grid.experiment.pack import pack_dataset
    from trainables.data import DatasetSpec

    pack_dataset(DatasetSpec.detect(w.data), str(w.here / "pack"))


def _test_pack(w: World) -> None:
    """Two of the world's images as a test list (no depth), packed: a test pack."""
    from grid.experiment.pack import pack_dataset
    from trainables.data import DatasetSpec

    (w.here / "t").mkdir()
    for name in ("sample_000000_rgb.png", "sample_000001_rgb.png"):
        shutil.copy(w.data / name, w.here / "t" / name)
    (w.here / "t" / "test_list.txt").write_text("sample_000000_rgb.png\nsample_000001_rgb.png\n")
    pack_dataset(DatasetSpec.detect(w.here / "t", list_file="test_list.txt"), str(w.here / "tpack"))


_PREDICT_LIST = lambda w: ["predict", "--experiment", w.exp, "--input", w.data / "train_list.txt"]  # noqa: E731
_SUBMIT_LIST = lambda w: ["submit", "--experiment", w.exp, "--data", w.data, "--list", "train_list.txt"]  # noqa: E731
_EVALUATE = lambda w: ["evaluate", "--pred", w.here / "p", "--data", w.data]  # noqa: E731

# ---- commands that read an experiment or a checkpoint -----------------------------------------
MODEL = [
    Case("predict-not-an-experiment", lambda w: ["predict", "--experiment", w.here, "--input", w.data,
                                                 "--out", w.here / "p"], named="experiment.json: not found"),
    Case("predict-both-sources", lambda w: ["predict", "--experiment", w.exp, "--checkpoint", w.here / "c.pt",
                                            "--input", w.data, "--out", w.here / "p"], named="exactly one of"),
    Case("export-unknown-trial", lambda w: ["export", "--experiment", w.exp, "--trial", "t9", "--out", w.here / "e"],
         named="no trial 't9'"),
    Case("evaluate-missing-preds", lambda w: ["evaluate", "--pred", w.here / "none", "--data", w.data],
         named="prediction folder does not exist"),
    Case("predict-pack-another-crop", lambda w: ["predict", "--experiment", w.exp, "--input", w.here / "pack",
                                                 "--out", w.here / "p", "--crop", "eigen"],
         setup=_pack, named="packed with --crop none, not 45,471,41,601"),
    Case("evaluate-test-pack", lambda w: ["evaluate", "--pred", w.here / "p", "--data", w.here / "tpack"],
         setup=_test_pack, named="a test pack (images only, no depth)"),
    Case("leaderboard-not-an-experiment", lambda w: ["leaderboard", w.here], named="experiment.json: not found"),
    Case("submit-no-test-list", lambda w: ["submit", "--experiment", w.exp, "--data", w.data, "--out",
                                           w.here / "s.csv"], named="test_list.txt: test list not found"),
    # a checkpoint that is not one: refused by its first bytes, before torch loads
    Case("predict-checkpoint-text-file", lambda w: ["predict", "--checkpoint", w.here / "notes.txt", "--input", w.data,
                                                    "--out", w.here / "p"],
         setup=text_file("notes.txt", "my notes"), named="notes.txt: not a readable PyTorch checkpoint"),
    Case("submit-checkpoint-leaderboard-csv", lambda w: ["submit", "--checkpoint", w.exp / "leaderboard.csv", "--data",
                                                         w.data, "--list", "train_list.txt", "--out", w.here / "s.csv"],
         named="leaderboard.csv: not a readable PyTorch checkpoint"),
    Case("predict-checkpoint-truncated", lambda w: ["predict", "--checkpoint", w.here / "cut.pt", "--input", w.data,
                                                    "--out", w.here / "p"],
         setup=_truncated_checkpoint, named="cut.pt: not a readable PyTorch checkpoint"),
    Case("predict-checkpoint-zip-of-other-things", lambda w: ["predict", "--checkpoint", w.here / "other.pt", "--input",
                                                              w.data, "--out", w.here / "p"],
         setup=_zip_of_notes, named="other.pt: not a readable PyTorch checkpoint"),
    Case("predict-checkpoint-empty", lambda w: ["predict", "--checkpoint", w.here / "empty.pt", "--input", w.data,
                                                "--out", w.here / "p"],
         setup=text_file("empty.pt", ""), named="empty.pt: not a readable PyTorch checkpoint (empty file)"),
    Case("predict-checkpoint-bare-state-dict", lambda w: ["predict", "--checkpoint", w.here / "weights.pt", "--input",
                                                          w.data, "--out", w.here / "p"],
         setup=_state_dict_only, named="weights.pt: not a depth-grid trial checkpoint", fast=False),
    Case("predict-checkpoint-missing", lambda w: ["predict", "--checkpoint", w.here / "nope.pt", "--input", w.data,
                                                  "--out", w.here / "p"], named="nope.pt: checkpoint file not found"),
    Case("predict-checkpoint-empty-folder", lambda w: ["predict", "--checkpoint", w.here, "--input", w.data,
                                                       "--out", w.here / "p"], named="a folder without a checkpoint.pt"),
    # the inputs
    Case("predict-input-missing", lambda w: ["predict", "--experiment", w.exp, "--input", w.here / "nope.png",
                                             "--out", w.here / "p"], named="nope.png: input does not exist"),
    Case("predict-input-not-an-image", lambda w: ["predict", "--experiment", w.exp, "--input", w.here / "notes.csv",
                                                  "--out", w.here / "p"],
         setup=text_file("notes.csv", "a,b\n"), named="notes.csv: not an image"),
    Case("predict-input-text-named-png", lambda w: ["predict", "--experiment", w.exp, "--input", w.here / "photo.png",
                                                    "--out", w.here / "p"],
         setup=text_file("photo.png", "not a picture"), named="photo.png: not an image file"),
    Case("predict-input-truncated-png", lambda w: ["predict", "--experiment", w.exp, "--input", w.here / "photos",
                                                   "--out", w.here / "p"],
         setup=_truncated_png, named="bad.png: unreadable or corrupt image", fast=False),
    Case("predict-input-empty-folder", lambda w: ["predict", "--experiment", w.exp, "--input", w.here / "photos",
                                                  "--out", w.here / "p"],
         setup=_folder("photos"), named="holds no images"),
    # the options
    Case("predict-ensemble-zero", lambda w: [*_PREDICT_LIST(w), "--ensemble", "0", "--out", w.here / "p"],
         named="--ensemble"),
    Case("predict-ensemble-99", lambda w: [*_PREDICT_LIST(w), "--ensemble", "99", "--out", w.here / "p"],
         named="--ensemble 99 needs 99 finished trials"),
    Case("predict-ensemble-with-checkpoint", lambda w: ["predict", "--checkpoint", _best_checkpoint(w), "--ensemble",
                                                        "2", "--input", w.data, "--out", w.here / "p"],
         named="--ensemble needs --experiment"),
    Case("predict-batch-size-zero", lambda w: [*_PREDICT_LIST(w), "--batch-size", "0", "--out", w.here / "p"],
         named="--batch-size"),
    Case("predict-image-size-3x4", lambda w: [*_PREDICT_LIST(w), "--image-size", "3x4", "--out", w.here / "p"],
         named="--image-size"),
    Case("predict-device-cuda-without-one", lambda w: [*_PREDICT_LIST(w), "--device", "cuda", "--out", w.here / "p"],
         named="--device cuda: no CUDA device", env=lambda w: {"CUDA_VISIBLE_DEVICES": ""}),
    Case("submit-id-with-a-comma", lambda w: ["submit", "--experiment", w.exp, "--data", w.here / "k", "--out",
                                              w.here / "s.csv"],
         setup=_comma_named_test_list, named="would break the CSV"),
    Case("submit-list-separated-by-commas", lambda w: ["submit", "--experiment", w.exp, "--data", w.here / "k",
                                                       "--list", "c.txt", "--out", w.here / "s.csv"],
         setup=_comma_separated_list, named="c.txt:1"),
    Case("evaluate-ensemble-without-experiment", lambda w: ["evaluate", "--ensemble", "2"],
         named="--ensemble needs --experiment"),
    Case("evaluate-ensemble-zero", lambda w: ["evaluate", "--experiment", w.exp, "--ensemble", "0"], named="--ensemble"),
    Case("evaluate-without-pred", lambda w: ["evaluate", "--data", w.data], named="--pred and --data are required"),
    Case("evaluate-unknown-protocol", lambda w: [*_EVALUATE(w), "--protocol", "nyu2"], setup=_folder("p"),
         named="unknown protocol 'nyu2'; valid: none, nyu, kitti_eigen, kitti_garg"),
    Case("evaluate-nyu-protocol-on-small-frames", lambda w: [*_EVALUATE(w), "--protocol", "nyu"],
         setup=_ones_as_predictions, named="defined on 480x640 frames, got a 64x80 ground truth", fast=False),
    Case("figures-n-negative", lambda w: ["figures", "--experiment", w.exp, "--n", "-1"], named="--n"),
    Case("figures-max-models-zero", lambda w: ["figures", "--experiment", w.exp, "--max-models", "0"],
         named="--max-models"),
    Case("figures-not-an-experiment", lambda w: ["figures", "--experiment", w.here], named="experiment.json: not found"),
    Case("leaderboard-missing-prices", lambda w: ["leaderboard", w.exp, "--prices", w.here / "nope.toml"],
         named="nope.toml"),
]

# ---- outputs: never over an input, a foreign file only with --overwrite ------------------------
OUTPUT = [
    # the two ground-truth overwrites of issue 25
    Case("predict-out-over-ground-truth", lambda w: [*_PREDICT_LIST(w), "--out", w.data],
         named="_depth.npy: --out would replace a ground-truth depth file"),
    Case("submit-maps-over-ground-truth", lambda w: [*_SUBMIT_LIST(w), "--out", w.data / "submission.csv"],
         named="_depth.npy: a map beside --out would replace a ground-truth depth file"),
    Case("predict-over-ground-truth-even-with-overwrite", lambda w: [*_PREDICT_LIST(w), "--out", w.data, "--overwrite"],
         named="would replace a ground-truth depth file"),
    Case("predict-ensemble-over-ground-truth", lambda w: ["predict", "--experiment", w.exp, "--ensemble", "2",
                                                          "--input", w.data, "--out", w.data],
         named="would replace a ground-truth depth file"),
    Case("submit-npy-dir-over-ground-truth", lambda w: [*_SUBMIT_LIST(w), "--out", w.here / "s.csv", "--npy-dir",
                                                        w.data], named="--npy-dir would replace a ground-truth"),
    Case("predict-out-over-input-image", lambda w: ["predict", "--checkpoint", _best_checkpoint(w), "--input",
                                                    w.here / "photos", "--out", w.here / "photos"],
         setup=_photos, named="a.png: --out would replace an input image"),
    # records and checkpoints
    Case("submit-out-over-list", lambda w: [*_SUBMIT_LIST(w), "--out", w.data / "train_list.txt"],
         named="train_list.txt: --out would replace the list file"),
    Case("submit-out-over-leaderboard", lambda w: [*_SUBMIT_LIST(w), "--out", w.exp / "leaderboard.csv", "--npy-dir",
                                                   w.here / "n", "--overwrite"],
         named="leaderboard.csv: --out would replace an experiment record"),
    Case("submit-checkpoint-out-over-leaderboard", lambda w: [
        "submit", "--checkpoint", _best_checkpoint(w), "--data", w.data, "--list", "train_list.txt", "--out",
        w.exp / "leaderboard.csv", "--npy-dir", w.here / "n", "--overwrite"],
        named="leaderboard.csv: exists in an experiment folder"),
    Case("submit-out-over-checkpoint", lambda w: [
        "submit", "--checkpoint", _best_checkpoint(w), "--data", w.data, "--list", "train_list.txt", "--out",
        _best_checkpoint(w), "--npy-dir", w.here / "n"], named="checkpoint.pt: --out would replace a checkpoint"),
    Case("predict-out-experiment-folder", lambda w: [*_PREDICT_LIST(w), "--out", w.exp],
         named="--out is an experiment folder"),
    Case("predict-out-checkpoint-folder", lambda w: [*_PREDICT_LIST(w), "--out", _checkpoint_folder(w)],
         named="--out is a trial's checkpoint folder"),
    Case("submit-maps-into-experiment-folder", lambda w: [*_SUBMIT_LIST(w), "--out", w.exp / "submission.csv"],
         named="the folder of --out is an experiment folder"),
    Case("evaluate-json-over-experiment-record", lambda w: [*_EVALUATE(w), "--experiment", w.exp, "--json",
                                                            w.exp / "experiment.json"],
         setup=_folder("p"), named="experiment.json: --json would replace an experiment record"),
    Case("evaluate-json-over-ground-truth", lambda w: [*_EVALUATE(w), "--json", w.data / "sample_000001_depth.npy"],
         setup=_folder("p"), named="sample_000001_depth.npy: --json would replace a dataset file"),
    Case("evaluate-json-over-list", lambda w: [*_EVALUATE(w), "--json", w.data / "train_list.txt", "--overwrite"],
         setup=_folder("p"), named="train_list.txt: --json would replace the list file"),
    Case("evaluate-json-over-a-prediction", lambda w: [*_EVALUATE(w), "--json", w.here / "p" / "sample_000000_depth.npy"],
         setup=_folder("p", ("sample_000000_depth.npy", "x")), named="--json would replace a prediction"),
    # files that are there and depth-grid did not write
    Case("predict-out-is-a-file", lambda w: [*_PREDICT_LIST(w), "--out", w.here / "notes.txt"],
         setup=text_file("notes.txt", "mine"), named="notes.txt: --out is an existing file"),
    Case("predict-foreign-file-in-out", lambda w: [*_PREDICT_LIST(w), "--out", w.here / "p"],
         setup=_folder("p", ("sample_000003_depth.png", "my drawing")),
         named="sample_000003_depth.png: exists and depth-grid did not write it; pass --overwrite"),
    Case("submit-foreign-csv", lambda w: [*_SUBMIT_LIST(w), "--out", w.here / "s.csv"],
         setup=text_file("s.csv", "my own table"), named="s.csv: exists and depth-grid did not write it"),
    Case("submit-out-is-a-folder", lambda w: [*_SUBMIT_LIST(w), "--out", w.here], named="would replace a folder"),
    Case("evaluate-json-foreign-file", lambda w: [*_EVALUATE(w), "--json", w.here / "m.json"],
         setup=lambda w: (_folder("p")(w), text_file("m.json", "{}")(w)),
         named="m.json: exists and depth-grid did not write it"),
    Case("figures-foreign-figure", lambda w: ["figures", "--experiment", w.here / "exp"],
         setup=_experiment_copy_with_foreign_figure,
         named="comparison.png: exists and depth-grid did not write it; pass --overwrite"),
    Case("export-out-is-a-file", lambda w: ["export", "--experiment", w.exp, "--out", w.here / "notes.txt"],
         setup=text_file("notes.txt", "mine"), named="notes.txt: --out is an existing file"),
    Case("export-out-experiment-folder", lambda w: ["export", "--experiment", w.exp, "--out", w.exp],
         named="--out is an experiment folder"),
    Case("export-out-checkpoint-folder", lambda w: ["export", "--experiment", w.exp, "--out", _checkpoint_folder(w)],
         named="--out is a trial's checkpoint folder"),
    Case("export-out-foreign-folder", lambda w: ["export", "--experiment", w.exp, "--out", w.here / "e"],
         setup=_folder("e", ("README.md", "my notes")), named="exists and is not an earlier export"),
]


CASES: list[Case] = [*MODEL, *OUTPUT]
