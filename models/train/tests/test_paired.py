import json

import pytest

from thunder_train import paired


def _eval(a, b):
    return {"dev": {"x steps=1": {"files": [{"pesq": v, "dnsmos_ovrl": 3.0} for v in a]},
                    "y steps=1": {"files": [{"pesq": v, "dnsmos_ovrl": 2.0} for v in b]}}}


def test_pairs_files_across_both_layouts_and_pools_them(tmp_path, capsys):
    ev = tmp_path / "ev.json"
    sweep = tmp_path / "sweep.json"
    ev.write_text(json.dumps(_eval([2.0, 1.0], [1.5, 1.5])))
    sweep.write_text(json.dumps({"0.0": {"x steps=1": [1.2, 1.4], "y steps=1": [1.0, 1.0], "z steps=1": [9, 9]}}))
    paired.main([str(ev), str(sweep), "--a", "x", "--b", "y", "--steps", "1"])
    out = capsys.readouterr().out
    # ev/dev: +0.5 and -0.5; sweep: +0.2 and +0.4 -> pooled mean +0.15 over 4 files, 3 wins
    assert "ev/dev pesq: +0.0000 ± 0.5000 (1/2)" in out
    assert "sweep/0.0 pesq: +0.3000 ± 0.1000 (2/2)" in out
    assert "pooled pesq: +0.1500 ± 0.2255 (3/4)" in out
    assert "pooled dnsmos_ovrl: +1.0000 ± 0.0000 (2/2)" in out


def test_unknown_system_names_are_an_error_that_says_so(tmp_path):
    ev = tmp_path / "ev.json"
    ev.write_text(json.dumps(_eval([1.0], [1.0])))
    with pytest.raises(SystemExit, match="no set has both"):
        paired.main([str(ev), "--a", "x", "--b", "nope", "--steps", "1"])


def test_a_missing_file_is_an_error_that_names_it(tmp_path):
    with pytest.raises(SystemExit, match="no such file: .*gone.json"):
        paired.main([str(tmp_path / "gone.json"), "--a", "x", "--b", "y"])


def test_runs_on_the_same_files_join_with_plus_and_other_mixtures_are_refused(tmp_path, capsys):
    first, second, other = tmp_path / "first.json", tmp_path / "second.json", tmp_path / "other.json"
    noisy = {"files": [{"pesq": 1.1}, {"pesq": 1.2}]}
    first.write_text(json.dumps({"dev": {"noisy": noisy, "x steps=1": {"files": [{"pesq": 2.0}, {"pesq": 1.0}]}}}))
    second.write_text(json.dumps({"dev": {"noisy": noisy, "y steps=1": {"files": [{"pesq": 1.5}, {"pesq": 1.5}]}}}))
    paired.main([f"{first}+{second}", "--a", "x", "--b", "y", "--steps", "1"])
    assert "first+second/dev pesq: +0.0000 ± 0.5000 (1/2)" in capsys.readouterr().out
    other.write_text(json.dumps({"dev": {"noisy": {"files": [{"pesq": 1.1}, {"pesq": 1.3}]},
                                         "y steps=1": {"files": [{"pesq": 1.5}, {"pesq": 1.5}]}}}))
    with pytest.raises(SystemExit, match="other mixtures"):
        paired.main([f"{first}+{other}", "--a", "x", "--b", "y", "--steps", "1"])


def test_domain_gap_rows_pair_per_kind_and_join_across_runs(tmp_path, capsys):
    def rows(system, values):
        return [{"kind": k, "mixture": f"m{i}", "system": s, "pesq": v}
                for s, vals in (("noisy", [1.0, 1.1]), (system, values))
                for k in ("dev noise", "test noise") for i, v in enumerate(vals)]

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(rows("x steps=1", [2.0, 1.6])))
    b.write_text(json.dumps(rows("y steps=1", [1.5, 1.5])))
    paired.main([f"{a}+{b}", "--a", "x", "--b", "y", "--steps", "1"])
    out = capsys.readouterr().out
    assert "a+b/dev noise pesq: +0.3000 ± 0.2000 (2/2)" in out
    assert "pooled pesq: +0.3000 ± 0.1155 (4/4)" in out
