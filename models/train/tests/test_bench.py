import json
from pathlib import Path

from thunder_train import bench

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures"


def test_bench_interleaves_models_and_carries_the_streaming_state(capsys):
    models = [str(FIXTURES / "tiny-thunder-lines.onnx"), str(FIXTURES / "tiny-thunder-la1.onnx")]
    subject = bench.Subject(models[0], 1, bench.np.random.default_rng(0))
    start = {k: v.copy() for k, v in subject.stream.items()}
    subject.round(3)
    carried = [k for k in subject.shapes if not (subject.stream[k] == start[k]).all()]
    assert carried, "the states fed to the next call must be the last call's outputs"
    assert len(subject.rtf) == 1 and len(subject.chunked_rtf) == 1 and len(subject.call_ms) == 3

    bench.main([*sum([["--model", m] for m in models], []), "--calls", "6", "--rounds", "2"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["model"] for r in rows] == models
    for r in rows:
        assert r["macs_per_frame"] > 0
        assert 0 < r["offline_rtf_fastest_round"] <= r["offline_rtf_per_pass"]
        assert r["chunk_frames"] == bench.ENGINE_FRAMES_PER_CALL
        assert 0 < r["chunked_rtf_fastest_round"] <= r["chunked_rtf_per_pass"]
        assert 0 < r["stream_ms_p50"] <= r["stream_ms_p99"] <= r["stream_ms_max"]


def test_chunked_calls_carry_the_state_like_one_offline_call():
    """The chunked measurement runs the same 10 s as the offline call, so its outputs must match."""
    subject = bench.Subject(str(FIXTURES / "tiny-thunder-lines.onnx"), 1, bench.np.random.default_rng(0), chunk=100)
    whole = subject.session.run(None, subject.offline)[0]
    parts = subject.chunked()
    assert len(parts) == 13  # 1250 frames in calls of 100
    assert bench.np.abs(bench.np.concatenate(parts, axis=-1) - whole).max() < 1e-4
