"""Fast tests for thunder_train.corpus (no dependency on the built corpus)."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from thunder_train import corpus as C  # noqa: E402


def test_assign_splits_deterministic_disjoint_and_order_free():
    keys = [f"file{i:03d}" for i in range(57)]
    a = C.assign_splits(keys, seed=7)
    b = C.assign_splits(list(reversed(keys)), seed=7)
    assert a == b
    assert set(a) == set(keys)  # every key in exactly one split
    counts = {s: sum(v == s for v in a.values()) for s in C.SPLITS}
    assert counts["test"] == round(57 * 0.1) and counts["val"] == round(57 * 0.1)
    assert C.assign_splits(keys, seed=8) != a  # the seed matters


def test_assign_splits_small_sets():
    assert C.assign_splits(["a", "b"]) == {"a": "train", "b": "train"}
    s = C.assign_splits(["a", "b", "c"])
    assert sorted(s.values()) == ["test", "train", "val"]


def test_split_of_key_is_stable():
    ks = [f"spk{i}" for i in range(2000)]
    sp = [C.split_of_key(k) for k in ks]
    assert sp == [C.split_of_key(k) for k in ks]
    frac = {s: sp.count(s) / len(sp) for s in C.SPLITS}
    assert 0.75 < frac["train"] < 0.85 and 0.07 < frac["val"] < 0.13


def test_fixed_speaker_splits_are_disjoint():
    # asterisk: one speaker per language; a speaker never appears in two splits
    by_speaker = {}
    for lang, (_, spk, split) in C.ASTERISK.items():
        assert by_speaker.setdefault(spk, split) == split
    assert C.ASTERISK["fr"][2] == "val" and C.ASTERISK["it"][2] == "test"
    # flite/festival share speakers (kal is the same voice in both engines)
    speakers = set(C.FLITE_VOICES.values()) | {s for s, _ in C.FESTIVAL_VOICES.values()}
    assert speakers <= set(C.CMU_SPEAKER_SPLIT)
    assert {C.CMU_SPEAKER_SPLIT[s] for s in speakers} == set(C.SPLITS)
    # kokoro blends: whole speakers, exactly 80/10/10 over any 10 consecutive speakers
    sp = [C.kokoro_split(i) for i in range(100)]
    assert sp.count("train") == 80 and sp.count("val") == 10 and sp.count("test") == 10


def test_shared_noise_and_rir_split_rules():
    forced = {"speechcommands_exercise_bike": "test", "speechbrain_noise5": "test", "speechbrain_noise1": "val"}
    items = C.noise_shared() if (C.SHARED_DATA / "noise").is_dir() else []
    if items:
        got = {it.key: it.split for it in items}
        assert sum(v == "test" for v in got.values()) == 2 and sum(v == "val" for v in got.values()) == 1
        assert {k: got[k] for k in forced} == forced
    assert C.SHARED_RIR_SPLIT == {"iosr_roomA_az000_left": "test", "iosr_roomA_az090_left": "test",
                                  "iosr_roomA_az030_left": "val"}


def test_manifest_round_trip(tmp_path):
    root = tmp_path
    x = (0.1 * np.sin(2 * np.pi * 200 * np.arange(C.SR * 2) / C.SR)).astype(np.float32)
    p = C.speech_path(root, "val", "espeak", "espeak_f3", "u000")
    dur = C.write_wav(p, x)
    st = C.StateLog(root, "speech", "espeak")
    st.add([C.speech_row(root, p, "val", "espeak", "espeak_f3", "en", 8000, dur)], "f3:0")
    st.add([], "f3:1")  # an item that produced nothing
    q = root / "noise" / "train" / "supersonic" / "n1.wav"
    C.write_wav(q, x)
    C.StateLog(root, "noise", "supersonic").add(
        [{"path": "noise/train/supersonic/n1.wav", "split": "train", "source": "supersonic",
          "category": "music", "duration_s": 2.0, "licence": "CC0-1.0"}], "n1")
    rows = C.write_all_manifests(root)
    back = C.read_manifest(root / "speech.csv")
    assert list(back[0].keys()) == C.SPEECH_COLUMNS
    assert back[0]["path"] == "speech/val/espeak/espeak_f3/u000.wav"
    assert float(back[0]["duration_s"]) == pytest.approx(2.0)
    assert C.read_manifest(root / "noise.csv")[0]["category"] == "music"
    assert C.read_manifest(root / "rirs.csv") == []
    assert (root / "LICENCES.md").exists()
    # resume: a fresh StateLog sees both items as done
    st2 = C.StateLog(root, "speech", "espeak")
    assert st2.done("f3:0") and st2.done("f3:1") and not st2.done("f3:2")
    # a row whose file vanished is dropped from the manifest
    p.unlink()
    C.write_all_manifests(root)
    assert C.read_manifest(root / "speech.csv") == []
    assert len(rows["speech"]) == 1


def test_trim_and_split_at_pauses():
    sr = C.SR
    rng = np.random.default_rng(0)
    tone = lambda s: (0.3 * rng.standard_normal(int(s * sr))).astype(np.float32)  # noqa: E731
    sil = lambda s: np.zeros(int(s * sr), np.float32)  # noqa: E731
    x = np.concatenate([sil(1.0), tone(6), sil(0.5), tone(6), sil(0.5), tone(6), sil(1.0)])
    t = C.trim_silence(x)
    assert len(t) < len(x) and len(t) > 18.5 * sr
    chunks = C.split_at_pauses(t)
    assert len(chunks) >= 2
    assert all(C.MIN_SPEECH_S * sr <= len(c) <= C.MAX_SPEECH_S * sr for c in chunks)
    assert sum(len(c) for c in chunks) > 17 * sr


def test_categories_are_valid():
    for name in ["TraficHigh1", "SportsCroud2", "wind", "beep3", "drum_snare_hard", "loop_amen", "xyz"]:
        assert C.categorize(name) in C.NOISE_CATEGORIES


def test_kokoro_phoneme_mapping():
    assert C.espeak_ipa_to_kokoro("həlˈo^ʊ wˈɜːld") == "həlˈO wˈɜɹld"
    assert C.espeak_ipa_to_kokoro("a^ɪ θˈɪŋk") == "I θˈɪŋk"


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_g722_decode_roundtrip(tmp_path):
    sr = C.SR
    t = np.arange(int(0.5 * sr)) / sr
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    src = tmp_path / "tone.wav"
    C.write_wav(src, x)
    g = tmp_path / "tone.g722"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), "-ar", "16000", "-ac", "1",
                    "-acodec", "g722", "-f", "g722", str(g)], check=True)
    y = C.decode_g722(g)
    assert abs(len(y) - len(x)) < 0.02 * sr  # decodes at 16 kHz (not 8 kHz)
    n = min(len(x), len(y))
    # G.722 has a small codec delay; compare energies and the dominant frequency
    assert 0.5 < np.std(y[:n]) / np.std(x[:n]) < 2.0
    f = np.fft.rfftfreq(n, 1 / sr)[np.argmax(np.abs(np.fft.rfft(y[:n])))]
    assert abs(f - 440) < 5


def test_missing_tool_message():
    with pytest.raises(C.ToolError, match="install"):
        C.require_tool("definitely-not-a-tool-xyz")


def test_statelog_ignores_empty_markers_and_missing_files(tmp_path):
    st = C.StateLog(tmp_path, "speech", "espeak")
    st.add([], "nothing")
    p = C.speech_path(tmp_path, "train", "espeak", "s", "a")
    C.write_wav(p, np.zeros(C.SR, np.float32))
    st.add([C.speech_row(tmp_path, p, "train", "espeak", "s", "en", 8000, 1.0)], "a")
    st.add([{"path": "speech/train/espeak/s/gone.wav", "duration_s": 1.0}], "gone")
    st2 = C.StateLog(tmp_path, "speech", "espeak")
    assert [r["item"] for r in st2.rows] == ["a"]
    assert st2.done("nothing") and st2.done("a") and not st2.done("gone")


def _burst(rng, seconds, sr, amp=0.3):
    """A speech-like take: 200 ms of silence, a noise burst with a 150 Hz buzz, 200 ms of silence."""
    n = int(seconds * sr)
    t = np.arange(n) / sr
    body = amp * (0.6 * np.sign(np.sin(2 * np.pi * 150 * t)) * 0.3 + rng.standard_normal(n) * 0.2)
    body *= np.hanning(n)
    pad = np.zeros(int(0.2 * sr))
    return np.concatenate([pad, body, pad]).astype(np.float32)


def test_klettres_keeps_clean_takes_and_groups_them(tmp_path):
    import soundfile as sf

    rng = np.random.default_rng(0)
    src, sr = tmp_path / "klettres", 44100
    for voice, n in (("aa", 6), ("bb", 3)):
        for i in range(n):
            d = src / voice / ("alpha" if i % 2 else "syllab")
            d.mkdir(parents=True, exist_ok=True)
            sf.write(d / f"{i}.ogg", _burst(rng, 0.6, sr), sr, format="OGG", subtype="VORBIS")
    d = src / "aa" / "alpha"
    clipped = np.clip(_burst(rng, 0.6, sr, amp=6.0), -1, 1)
    sf.write(d / "clipped.ogg", clipped, sr, format="OGG", subtype="VORBIS")
    noisy = _burst(rng, 0.6, sr) + 0.05 * rng.standard_normal(int(1.0 * sr)).astype(np.float32)
    sf.write(d / "noisy.ogg", noisy, sr, format="OGG", subtype="VORBIS")
    (src / "empty").mkdir()  # a folder without takes is not a voice

    # The take filter itself, on the decoded files.
    ok = {f.name: C.klettres_take_ok(*C.load_audio(f)) for f in d.glob("*.ogg")}
    assert ok["clipped.ogg"] is False and ok["noisy.ogg"] is False
    assert all(v for k, v in ok.items() if k not in ("clipped.ogg", "noisy.ogg"))

    out = tmp_path / "corpus"
    C.build_klettres(out, src)
    rows = C.read_state_rows(out, "speech")
    assert {r["speaker"] for r in rows} == {"klettres_aa", "klettres_bb"}
    assert all(r["split"] == "train" and r["source"] == "klettres" for r in rows)
    for r in rows:
        x, rsr = C.load_audio(out / r["path"])
        assert rsr == C.SR and C.MIN_SPEECH_S <= len(x) / rsr <= 5.0
        assert abs(len(x) / rsr - r["duration_s"]) < 1e-2
    # 6 takes of ~0.6 s trimmed, joined with 250 ms gaps into >= 2.5 s utterances: two for "aa";
    # the 3 takes of "bb" make one shorter utterance (still >= 1 s).
    assert sorted(sum(r["speaker"] == s for r in rows) for s in ("klettres_aa", "klettres_bb")) == [1, 2]
    # Resuming adds nothing.
    C.build_klettres(out, src)
    assert len(C.read_state_rows(out, "speech")) == len(rows)


def test_fillets_splits_speakers_by_language_and_character(tmp_path):
    import soundfile as sf

    rng = np.random.default_rng(1)
    src, sr = tmp_path / "sound", 22050
    lines = {("city", "cs"): ["city-m-a", "city-m-b", "city-v-a", "city-v-b", "city-v-c"],
             ("bank", "cs"): ["bank-m-x", "bank-pap-x"],
             ("bank", "nl"): ["bank-m-x", "bank-m-y", "menu"]}
    for (level, lang), names in lines.items():
        d = src / level / lang
        d.mkdir(parents=True)
        for n in names:
            sf.write(d / f"{n}.ogg", _burst(rng, 1.2, sr), sr, format="OGG", subtype="VORBIS")
    hissy = _burst(rng, 1.2, sr) + 0.05 * rng.standard_normal(int(1.6 * sr)).astype(np.float32)
    sf.write(src / "city" / "cs" / "city-v-hiss.ogg", hissy, sr, format="OGG", subtype="VORBIS")
    (src / "music").mkdir()  # a folder without a language level is not dialogue

    assert C.fillets_speaker(Path("city-pap-hello.ogg")) == "pap" and C.fillets_speaker(Path("menu.ogg")) == "misc"
    out = tmp_path / "corpus"
    C.build_fillets(out, src)
    rows = C.read_state_rows(out, "speech")
    assert {r["source"] for r in rows} == {"fillets_cs", "fillets_nl"}
    assert {r["speaker"] for r in rows} == {"fillets_cs_m", "fillets_cs_v", "fillets_cs_pap", "fillets_nl_m",
                                            "fillets_nl_misc"}
    assert all(r["split"] == "train" and r["language"] == r["source"][-2:] for r in rows)
    # the hissy line is dropped: the three clean "v" lines (~1.2 s each) make two utterances
    # (two joined to >= 2.5 s, then the third alone)
    v = [r for r in rows if r["speaker"] == "fillets_cs_v"]
    assert len(v) == 2 and 3.0 < sum(r["duration_s"] for r in v) < 4.2
    for r in rows:
        x, rsr = C.load_audio(out / r["path"])
        assert rsr == C.SR and abs(len(x) / rsr - r["duration_s"]) < 1e-2
    C.build_fillets(out, src)  # resuming adds nothing
    assert len(C.read_state_rows(out, "speech")) == len(rows)
    C.build_fillets(tmp_path / "other", tmp_path / "missing")  # not installed: a warning, no rows
    assert C.read_state_rows(tmp_path / "other", "speech") == []


def test_voice_folder_sources_skip_aliases_and_excluded_packs(tmp_path):
    import soundfile as sf

    rng = np.random.default_rng(2)
    kt, hw = tmp_path / "ktuberling", tmp_path / "hedgewars"
    for lang, ext in (("ca", "ogg"), ("fr", "wav")):
        (kt / lang).mkdir(parents=True)
        for i in range(4):
            sf.write(kt / lang / f"w{i}.{ext}", _burst(rng, 0.7, 44100), 44100)
    shutil.copytree(kt / "ca", kt / "ca@valencia")  # a locale alias with the same takes
    (kt / "ca.soundtheme").write_text("<language/>")  # not a folder
    for pack in ("Default", "Default_es", "Robot"):
        (hw / pack).mkdir(parents=True)
        for i in range(4):
            sf.write(hw / pack / f"Hello{i}.ogg", _burst(rng, 0.7, 48000), 48000, format="OGG", subtype="VORBIS")

    out = tmp_path / "corpus"
    C.build_ktuberling(out, kt)
    C.build_hedgewars(out, hw)
    rows = C.read_state_rows(out, "speech")
    by = {(r["source"], r["speaker"], r["language"]) for r in rows}
    assert by == {("ktuberling", "ktuberling_ca", "ca"), ("ktuberling", "ktuberling_fr", "fr"),
                  ("hedgewars", "hedgewars_Default", "en"), ("hedgewars", "hedgewars_Default_es", "es")}
    assert all(r["split"] == "train" for r in rows)
    C.build_ktuberling(out, kt)  # resuming adds nothing
    assert len(C.read_state_rows(out, "speech")) == len(rows)
    C.build_hedgewars(tmp_path / "other", tmp_path / "missing")  # not installed: a warning, no rows
    assert C.read_state_rows(tmp_path / "other", "speech") == []


def test_group_clips():
    n = int(0.5 * C.SR)
    # 4 clips + 3 gaps = 2.75 s >= 2.5 s: two groups of 4; the last lone 0.5 s clip is dropped.
    assert C.group_clips([n] * 9) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert C.group_clips([n] * 3, max_n=2) == [[0, 1]]  # the lone third clip is under 1 s
    assert C.group_clips([2 * n] * 2) == [[0, 1]]  # 2.25 s, the remainder, is long enough
    x = C.join_clips([np.ones(n, np.float32)] * 4)
    assert len(x) == int(2.75 * C.SR) and x[n: n + int(C.CLIP_GAP_S * C.SR)].max() == 0


def test_session18_noise_sources_drop_speech_and_interface_sounds_keep_one_copy_and_train_only(tmp_path):
    """megaglest tilesets share files (one copy each); flightgear's callouts and checklists are
    speech; widelands' top-level sounds are interface chimes. All go to the training split, so
    the validation and test sets drawn from the corpus stay as they were."""
    import soundfile as sf

    rng = np.random.default_rng(5)

    def wav(path, seed_shift=0.0):
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, (0.1 * rng.standard_normal(8000) + seed_shift).astype(np.float32), 16000)

    mg = tmp_path / "megaglest"
    wav(mg / "tilesets" / "forest" / "sounds" / "rain.wav")
    shutil.copy(mg / "tilesets" / "forest" / "sounds" / "rain.wav", tmp_path / "rain.wav")
    (mg / "tilesets" / "meadow" / "sounds").mkdir(parents=True)
    shutil.copy(tmp_path / "rain.wav", mg / "tilesets" / "meadow" / "sounds" / "rain.wav")  # the same file
    wav(mg / "tilesets" / "meadow" / "sounds" / "night.wav")
    wav(mg / "data" / "core" / "water_sounds" / "water0.wav")
    items = C.noise_megaglest(mg)
    assert sorted(i.key for i in items) == ["core_water0", "forest_rain", "meadow_night"]

    fg = tmp_path / "flightgear"
    for rel in ("Sounds/rain.wav", "Sounds/avionics-400Hz.wav", "Sounds/engine-prop.wav", "Sounds/mk-viii/pull-up.wav",
                "Sounds/tcas/female/climb.wav", "Aircraft/c172p/Sounds/checklist1.wav",
                "Aircraft/c172p/Sounds/engine-idle.wav", "Sounds/coughing.wav"):
        wav(fg / rel)
    fitems = {i.key: i.category for i in C.noise_flightgear(fg)}
    assert fitems == {"Sounds_rain": "nature", "Sounds_avionics_400Hz": "tonal", "Sounds_engine_prop": "traffic",
                      "Aircraft_c172p_Sounds_engine_idle": "traffic"}

    wl = tmp_path / "widelands"
    for rel in ("click.wav", "message_00.wav", "animals/bird1_00.wav", "barbarians/taverns/inn_00.wav",
                "sawmill/sawmill_00.wav"):
        wav((wl / rel).with_suffix(".ogg"))
    witems = {i.key: i.category for i in C.noise_widelands(wl)}
    assert witems == {"animals_bird1_00": "nature", "barbarians_taverns_inn_00": "household",
                      "sawmill_sawmill_00": "machine"}

    for it in items + C.noise_flightgear(fg) + C.noise_widelands(wl):
        assert it.split == "train" and it.category in C.NOISE_CATEGORIES
        assert it.source in C.LICENCES
