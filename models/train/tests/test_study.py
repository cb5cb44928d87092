"""The domain-expert study end to end at CI size, so it cannot rot: fine-tune -> safetensors ->
thunder-merge -> ONNX -> enhance (the Rust engine) -> scores -> report -> ship -> re-merge."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from safetensors.numpy import load_file

from thunder_train import study, train
from thunder_train.domains import DOMAINS, domain_set, make_mixer

ROOT = Path(__file__).resolve().parents[3]
BIN = ROOT / "target" / "release"


@pytest.fixture(scope="module")
def binaries():
    # Real components: the release binaries the README builds (cheap when already up to date).
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "enhance", "--bin", "thunder-merge"],
                   cwd=ROOT, check=True)
    os.environ.setdefault("ORT_DYLIB_PATH", str(ROOT / ".cache" / "ort" / "libonnxruntime.so"))
    return BIN


def test_domains_draw_what_they_promise(tiny_corpus):
    for d in (*DOMAINS, "union", "babble+machines"):
        noisy, clean, band = make_mixer(tiny_corpus, "train", d, 1.0, seed=1).example()
        assert noisy.shape == clean.shape == (16000,) and np.isfinite(noisy).all()
    with pytest.raises(ValueError, match="unknown domain"):
        make_mixer(tiny_corpus, "train", "nope")
    # Deterministic sets: the same seed gives the same mixtures.
    a = domain_set(tiny_corpus, "test", "babble", 2, seconds=1.0, seed=5)
    b = domain_set(tiny_corpus, "test", "babble", 2, seconds=1.0, seed=5)
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a, b))
    # Babble is speech-like noise: not the white noise file of the tiny corpus.
    m = make_mixer(tiny_corpus, "train", "babble", 1.0, seed=2)
    assert m.cfg.p_babble == 1.0 and m.cfg.p_procedural == 0.0


def test_study_pipeline_end_to_end(tiny_corpus, tmp_path, binaries):
    base_run = tmp_path / "base"
    train.main(["--corpus", str(tiny_corpus), "--run", str(base_run), "--steps", "3", "--batch", "2",
                "--seconds", "1", "--val-every", "3", "--val-n", "2", "--workers", "0", "--warmup", "1",
                # a non-default network: the fine-tunes must take it from the base checkpoint
                "--net", '{"frame_hidden": 16}'])
    work, report, ship = tmp_path / "work", tmp_path / "report" / "study", tmp_path / "ship"
    args = ["--base-ckpt", str(base_run / "last.pt"), "--corpus", str(tiny_corpus), "--work", str(work),
            "--report", str(report), "--domains", "babble,machines", "--methods", "ta,ties", "--ft-steps", "2",
            "--batch", "2", "--seconds", "1", "--ft-val-n", "2", "--n-val", "2", "--n-test", "2", "--grid", "0.5,1.0",
            "--no-dev", "--workers", "0", "--jobs", "2", "--bin-dir", str(binaries), "--ship", "--ship-to", str(ship)]
    study.main(args)

    rep = json.loads(report.with_suffix(".json").read_text())
    names = ["base", "expert-babble", "expert-machines", "multi", "ta", "ta+svc", "ties", "ties+svc"]
    assert list(rep["results"]) == names
    for n in names:
        for col in ("babble__s1", "machines__s1", "babble__s0", "machines__s0"):
            m = rep["results"][n][col]
            assert set(m) == {"pesq", "sisdr", "estoi", "dnsmos_ovrl"}
            assert all(np.isfinite(v) for v in m.values()), (n, col, m)
    # Equal, recorded budgets: each expert 2 steps, the multi-domain model 2 x 2.
    assert [rep["budgets"][k]["steps"] for k in ("expert-babble", "expert-machines", "multi")] == [2, 2, 4]
    assert rep["budgets"]["multi"]["domain"] == "babble+machines"
    for n in ("ta", "ta+svc", "ties", "ties+svc"):
        assert set(rep["tuning"][n]["grid"]) == {"0.5", "1.0"}
    assert report.with_suffix(".png").stat().st_size > 10_000
    md = report.with_suffix(".md").read_text()
    assert "| ties+svc |" in md and "pesq at --steps 0" in md
    # The chosen merge's paired differences agree with the table's means.
    for c, p in rep["summary"]["best_merge_minus_base_paired"].items():
        want = rep["results"][rep["summary"]["best_merge_by_val"]][f"{c}__s1"]["pesq"] - rep["results"]["base"][f"{c}__s1"]["pesq"]
        assert p["n"] >= 2 and abs(p["mean"] - want) < 1e-9, c
    assert "minus the babble expert, babble" in md
    # The default is chosen on validation at --steps 1 and 0 (the base run's checkpoint rule):
    # the mean of the cached per-domain validation scores at both settings, best among the merges.
    assert rep["summary"]["val_steps"] == [1, 0]
    merges = ("ta", "ta+svc", "ties", "ties+svc")

    def val(n):
        tag = f"{n}@{rep['tuning'][n]['chosen']}"
        return np.mean([json.loads((work / "scores" / f"{tag}__{d}-val__s{s}_quick.json").read_text())["mean"]["pesq"]
                        for d in ("babble", "machines") for s in (1, 0)])

    for n in merges:
        assert abs(rep["summary"]["val_pesq"][n] - val(n)) < 1e-9, n
    assert rep["summary"]["best_merge_by_val"] == max(merges, key=val)

    # The merge really is task arithmetic of the exported experts: base + lambda * sum(tau).
    mdir = work / "models"
    base = load_file(mdir / "base.safetensors")
    ex = [load_file(mdir / f"expert-{d}.safetensors") for d in ("babble", "machines")]
    ta = load_file(work / "merges" / "ta@0.5.safetensors")
    moved = 0
    for k, v in base.items():
        want = v + 0.5 * sum(e[k] - v for e in ex)
        np.testing.assert_allclose(ta[k], want, atol=1e-6, rtol=1e-5, err_msg=k)
        moved += int(not np.array_equal(ta[k], v))
    assert moved > 0, "the experts did not move away from the base"
    # Every enhanced file of every model exists (the engine really ran).
    for n in names:
        tag = f"{n}@{rep['tuning'][n]['chosen']}" if n in rep["tuning"] else n
        for steps in (0, 1):
            assert len(list((work / "enhanced" / tag / f"machines-test_s{steps}").glob("*.wav"))) == 2, n

    # Shipping: the shipped default is the merge chosen on validation, and the shipped recipe
    # reproduces it exactly (tensors, graph, metadata other than the provenance paths).
    recipe = ship / "merge-recipe.toml"
    chosen = rep["summary"]["best_merge_by_val"]
    assert recipe.read_text().startswith(f"# {chosen}:")
    again = tmp_path / "again.onnx"
    subprocess.run([str(binaries / "thunder-merge"), "--recipe", str(recipe), "-o", str(again), "--quiet"], check=True)
    a, b = onnx.load(str(again)), onnx.load(str(ship / "thunder-16k.onnx"))
    c = onnx.load(str(work / "merges" / f"{chosen}@{rep['tuning'][chosen]['chosen']}.onnx"))
    for other in (b, c):
        assert a.graph.node == other.graph.node
        assert {i.name: i.raw_data for i in a.graph.initializer} == {i.name: i.raw_data for i in other.graph.initializer}
    meta = [{p.key: p.value for p in m.metadata_props if p.key not in ("thunder.merge.recipe", "thunder.merge.sources")}
            for m in (a, b)]
    assert meta[0] == meta[1]
    # The default names itself (recipe [metadata]), not the base it was merged from.
    assert meta[1]["thunder.model_name"] == "thunder-16k"
    assert meta[1]["thunder.model_version"] == f"{chosen} of base step3"
    # And the engine runs the shipped default.
    noisy = next((work / "sets" / "babble" / "test" / "noisy").glob("*.wav"))
    out = tmp_path / "out.wav"
    subprocess.run([str(binaries / "enhance"), str(noisy), str(out), "--model", str(ship / "thunder-16k.onnx"),
                    "--quiet"], check=True)
    assert out.stat().st_size > 1000

    # --experts-only (fine-tuning A/B runs) reuses the runs and writes base-vs-expert gains.
    quick = tmp_path / "report" / "experts"
    study.main([a if a != str(report) else str(quick) for a in args if a not in ("--ship",)] + ["--experts-only"])
    rep = json.loads(quick.with_suffix(".json").read_text())
    assert list(rep["results"]) == ["base", "expert-babble", "expert-machines"]
    for d in ("babble", "machines"):
        want = rep["results"][f"expert-{d}"][f"{d}__s1"]["pesq"] - rep["results"]["base"][f"{d}__s1"]["pesq"]
        p = rep["expert_minus_base_pesq_paired"][f"{d}__s1"]
        assert p["n"] == 2 and abs(p["mean"] - want) < 1e-9 and 0 <= p["wins"] <= 2 and p["se"] >= 0
    assert "Expert minus base on its own domain" in quick.with_suffix(".md").read_text()
