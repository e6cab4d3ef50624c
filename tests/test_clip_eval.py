"""`wit eval` on real images: a tiny CLIP trained on captioned scikit-learn digits must
classify held-out digits zero-shot far above chance; the CIFAR-pickle and ImageFolder
loaders must give the same images as the in-memory set."""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from tests.builders import repo_env, tiny_reference, write_shard
from wit_builder.clip import eval_job
from wit_builder.clip.configs import EvalConfig, TrainConfig
from wit_builder.clip.evalsets import (
    DIGIT_NAMES,
    DIGIT_TEMPLATES,
    load_digits_set,
    load_eval_set,
    read_templates,
)
from wit_builder.clip.evaluate import load_model
from wit_builder.clip.results import read_results
from wit_builder.clip.tokenizer import Tokenizer
from wit_builder.clip.train import train
from wit_builder.errors import ConfigError, InputError

CHANCE = 1 / len(DIGIT_NAMES)


def run_eval(cfg: EvalConfig) -> dict:
    """`wit eval` as a stage, in process: the results it wrote."""
    return read_results(eval_job.run(cfg).out_dir)


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def caption_shards(root: Path, split, parts: int) -> str:
    """The split's digits as webdataset shards captioned "a photo of the number seven"."""
    root.mkdir(parents=True, exist_ok=True)
    for part in range(parts):
        members = []
        for i in range(part, len(split), parts):
            name = DIGIT_NAMES[split.labels[i]]
            members += [(f"{i:06d}.png", png(split.load(i))),
                        (f"{i:06d}.txt", f"a photo of the number {name}".encode())]
        write_shard(root / f"{part:05d}.tar", members)
    return f"{root}/{{00000..{parts - 1:05d}}}.tar"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny CLIP trained 150 steps on the 1,347 training digits; (checkpoint, tmp)."""
    root = tmp_path_factory.mktemp("digits_clip")
    shards = caption_shards(root / "train", load_digits_set().train, parts=2)
    cfg = TrainConfig(shards=shards, out=root / "run", model="tiny", batch_size=64,
                      steps=150, lr=2e-3, warmup_steps=10, weight_decay=0.1, workers=0,
                      precision="fp32", group_text=True, save_every=150, log_every=50)
    return train(cfg), root


def wit_eval(*args: str) -> subprocess.CompletedProcess:
    env = repo_env()
    return subprocess.run([sys.executable, "-m", "wit_builder.cli", "eval", *args],
                          env=env, capture_output=True, text=True)


def test_zero_shot_on_held_out_digits_is_far_above_chance(trained):
    checkpoint, root = trained
    test_shards = caption_shards(root / "test", load_digits_set().test, parts=1)
    proc = wit_eval("--checkpoint", str(checkpoint), "--out", str(root / "eval"),
                    "--dataset", "digits", "--retrieval-shards", test_shards)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((root / "eval" / "eval.json").read_text())
    digits = results["datasets"]["digits"]
    assert results["model"] == "tiny" and digits["test_images"] == 450
    assert digits["zero_shot"]["top1"] >= 5 * CHANCE  # measured 0.78
    assert digits["zero_shot"]["mean_per_class_recall"] >= 5 * CHANCE
    assert digits["zero_shot"]["top5"] >= digits["zero_shot"]["top1"]
    assert digits["linear_probe"]["top1"] >= 0.7  # measured 0.89
    assert digits["linear_probe"]["C"] in EvalConfig.model_fields["probe_cs"].default
    # 45 test images share each caption: an exact-image hit in the top 10 has chance
    # 10/450; a model that ranks the right digit first gets about 10/45
    retrieval = results["retrieval"]
    assert retrieval["pairs"] == 450
    assert retrieval["text_to_image_R@10"] > 5 * 10 / 450
    assert "retrieval over 450 pairs" in proc.stdout + proc.stderr


def test_untrained_model_is_near_chance(trained, tmp_path):
    """The same evaluation of random weights: the metric can fail."""
    torch.manual_seed(0)
    path = tmp_path / "random.pt"
    torch.save({"state_dict": tiny_reference().state_dict(), "config": {"model": "tiny"}}, path)
    results = run_eval(EvalConfig(checkpoint=path, out=tmp_path / "eval", linear_probe=False))
    assert results["datasets"]["digits"]["zero_shot"]["top1"] < 3 * CHANCE


def cifar_pixels(split) -> np.ndarray:
    """The split's images as 32×32 RGB, exactly as the eval transform would resize them."""
    return np.stack([np.asarray(split.load(i).convert("RGB").resize(
        (32, 32), Image.Resampling.BICUBIC)) for i in range(len(split))])


def write_cifar10(directory: Path, train, test) -> None:
    """CIFAR-10's python layout: rows of R, G, B planes; 5 train batches, 1 test batch."""
    directory.mkdir()

    def dump(name: str, pixels: np.ndarray, labels: np.ndarray) -> None:
        rows = pixels.transpose(0, 3, 1, 2).reshape(len(pixels), -1)
        with (directory / name).open("wb") as f:
            pickle.dump({b"data": rows, b"labels": [int(v) for v in labels]}, f)

    pixels = cifar_pixels(train)
    for b, chunk in enumerate(np.array_split(np.arange(len(pixels)), 5), start=1):
        dump(f"data_batch_{b}", pixels[chunk], train.labels[chunk])
    dump("test_batch", cifar_pixels(test), test.labels)
    with (directory / "batches.meta").open("wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in DIGIT_NAMES]}, f)


def test_cifar_pickles_give_the_same_results_as_the_arrays(trained, tmp_path):
    checkpoint, _ = trained
    digits = load_digits_set()
    write_cifar10(tmp_path / "cifar", digits.train, digits.test)
    templates = tmp_path / "templates.txt"
    templates.write_text("\n".join(DIGIT_TEMPLATES) + "\n")
    cifar = load_eval_set(f"cifar10:{tmp_path / 'cifar'}", templates)
    assert cifar.classnames == list(DIGIT_NAMES) and len(cifar.train) == 1347
    assert np.array_equal(np.asarray(cifar.test.load(7)), cifar_pixels(digits.test)[7])
    results = run_eval(EvalConfig(checkpoint=checkpoint, out=tmp_path / "a",
                                  datasets=[f"cifar10:{tmp_path / 'cifar'}", "digits"],
                                  templates=templates, linear_probe=False))["datasets"]
    assert results["cifar10"]["zero_shot"] == pytest.approx(results["digits"]["zero_shot"],
                                                            abs=1 / 450)


def test_cifar100_layout_and_a_wrong_kind_is_a_clear_error(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 255, (6, 3 * 32 * 32), dtype=np.uint8)
    for name in ("train", "test"):
        with (tmp_path / name).open("wb") as f:
            pickle.dump({b"data": pixels, b"fine_labels": [0, 1, 2, 0, 1, 2]}, f)
    with (tmp_path / "meta").open("wb") as f:
        pickle.dump({b"fine_label_names": [b"apple", b"maple_tree", b"ray"]}, f)
    cifar = load_eval_set(f"cifar100:{tmp_path}")
    assert cifar.classnames == ["apple", "maple tree", "ray"] and len(cifar.templates) == 80
    red = np.asarray(cifar.test.load(0))[..., 0]
    assert np.array_equal(red, pixels[0, :1024].reshape(32, 32))
    with pytest.raises(InputError, match=r"CIFAR file missing: .*batches\.meta"):
        load_eval_set(f"cifar10:{tmp_path}")
    (tmp_path / "batches.meta").write_bytes(b"not a pickle")
    with pytest.raises(InputError, match="not a CIFAR pickle"):
        load_eval_set(f"cifar10:{tmp_path}")
    with (tmp_path / "batches.meta").open("wb") as f:
        pickle.dump({b"label_names": [b"a", b"b", b"c"]}, f)
    (tmp_path / "test_batch").write_bytes((tmp_path / "test").read_bytes())  # a CIFAR-100 file
    with pytest.raises(InputError, match="lacks 'labels'"):
        load_eval_set(f"cifar10:{tmp_path}")


def test_imagefolder_counts_unreadable_images(trained, tmp_path):
    checkpoint, _ = trained
    digits = load_digits_set()
    for split_name, split in (("train", digits.train), ("test", digits.test)):
        for i in range(len(split)):
            folder = tmp_path / "set" / split_name / DIGIT_NAMES[split.labels[i]]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i:04d}.png").write_bytes(png(split.load(i)))
    (tmp_path / "set" / "test" / "seven" / "broken.png").write_bytes(b"\x89PNG broken")
    results = run_eval(EvalConfig(checkpoint=checkpoint, out=tmp_path / "out",
                                  datasets=[f"imagefolder:{tmp_path / 'set'}"]))
    result = results["datasets"]["set"]
    assert result["classes"] == 10 and result["templates"] == 80
    assert (result["test_images"], result["train_images"]) == (450, 1347)
    assert result["unreadable_images"] == 1
    assert result["unreadable_examples"][0].endswith("seven/broken.png")
    assert result["linear_probe"]["top1"] >= 0.7
    assert json.loads((tmp_path / "out" / "eval.json").read_text())["datasets"]["set"] == result


def test_open_clip_state_dicts_load(tmp_path):
    torch.manual_seed(1)
    reference = tiny_reference()
    path = tmp_path / "open_clip.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v
                                           for k, v in reference.state_dict().items()}}, path)
    model, name = load_model(path, "tiny", torch.device("cpu"))
    assert name == "tiny"
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(images), reference.encode_image(images),
                                   rtol=0, atol=1e-5)


def test_bare_state_dicts_load(tmp_path):
    """A plain `model.state_dict()` file, no wrapper dict: the model is named by --model."""
    torch.manual_seed(2)
    reference = tiny_reference()
    path = tmp_path / "bare.pt"
    torch.save(reference.state_dict(), path)
    model, _ = load_model(path, "tiny", torch.device("cpu"))
    tokens = Tokenizer()(["a photo of the number seven", "a cat"])
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(tokens), reference.encode_text(tokens),
                                   rtol=0, atol=1e-5)
    with pytest.raises(ConfigError, match="does not name its model"):
        load_model(path, None, torch.device("cpu"))


def test_bad_inputs_are_clear_errors(trained, tmp_path):
    checkpoint, _ = trained
    proc = wit_eval("--checkpoint", str(checkpoint), "--out", str(tmp_path / "eval"),
                    "--model", "ViT-S-32")
    message = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 2 and "does not fit model ViT-S-32" in message
    assert "other shapes" in message
    with pytest.raises(ValidationError, match="'mnist' is not one of digits"):
        EvalConfig(checkpoint=checkpoint, out=tmp_path / "eval", datasets=["mnist"])
    with pytest.raises(InputError, match="unknown eval set 'mnist'"):
        load_eval_set("mnist")
    with pytest.raises(InputError, match="checkpoint not found"):
        run_eval(EvalConfig(checkpoint=tmp_path / "none.pt", out=tmp_path / "eval"))
    (tmp_path / "t.txt").write_text("a photo of a {}.\nno slot here\n")
    with pytest.raises(InputError, match="no slot here"):
        read_templates(tmp_path / "t.txt")
    with pytest.raises(InputError, match="no class folders"):
        load_eval_set(f"imagefolder:{tmp_path}")
