"""Is the gap to DeepFilterNet3 in the speech pauses or under the speech?

    python -m thunder_train.splice --model ../thunder-16k-base.onnx --steps 1 --out eval/splice-base

On each real dev file, Thunder's and DeepFilterNet3's outputs are spliced by the clean reference's
speech activity: one system's output where someone speaks, the other's in the pauses (10 ms
cross-fades). If "Thunder under speech, DeepFilterNet3 in pauses" scores like DeepFilterNet3, the
gap is the noise left in the pauses; if it scores like Thunder, the gap is under the speech.
Activity: 10 ms frames within ACTIVE_DB of the file's loudest frame, widened by 30 ms each side.
Writes <out>.json (per file) and <out>.md (means).
"""

import argparse
from pathlib import Path

import numpy as np

from .evaluate import load_dev, peer_systems, write_report
from .metrics import dnsmos, pesq_wb
from .onnx_runner import OnnxThunder
from .study import step_list

HOP = 160  # 10 ms
ACTIVE_DB = 35.0
WIDEN_FRAMES = 3
FADE = 161  # samples of the cross-fade window


def speech_activity(clean):
    """Per-sample weight in [0, 1]: 1 where the clean reference speaks, 0 in its pauses."""
    n = len(clean) // HOP
    frames = clean[: n * HOP].astype(np.float64).reshape(n, HOP)
    level = 10 * np.log10((frames**2).mean(1) + 1e-12)
    active = level > level.max() - ACTIVE_DB
    active = np.convolve(active.astype(float), np.ones(2 * WIDEN_FRAMES + 1), "same") > 0
    w = np.repeat(active.astype(np.float64), HOP)
    w = np.concatenate([w, np.full(len(clean) - len(w), w[-1] if len(w) else 0.0)])
    win = np.hanning(FADE)
    padded = np.pad(w, FADE // 2, mode="edge")
    return np.clip(np.convolve(padded, win / win.sum(), "valid"), 0.0, 1.0)


def splice(speech_part, pause_part, w):
    """speech_part where w = 1, pause_part where w = 0, cross-faded between."""
    return (w * speech_part + (1 - w) * pause_part).astype(np.float32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="Thunder ONNX")
    ap.add_argument("--steps", type=step_list, default=[1], help="comma list of reverse-step counts")
    ap.add_argument("--out", required=True, help="output prefix (writes .json and .md)")
    args = ap.parse_args(argv)
    peer = peer_systems("dfn3")["DeepFilterNet3"]
    model = OnnxThunder(args.model)
    rows = []
    for name, noisy, clean in load_dev():
        w = speech_activity(clean)
        d = peer(noisy)
        outputs = [("DeepFilterNet3", d)]  # scored once per file, whatever the step counts
        for k in args.steps:
            t = model.enhance(noisy, k)
            th = f"Thunder steps={k}"
            outputs += [(th, t), (f"{th} under speech, DeepFilterNet3 in pauses", splice(t, d, w)),
                        (f"DeepFilterNet3 under speech, {th} in pauses", splice(d, t, w))]
        for system, out in outputs:
            rows.append({"file": name, "system": system, "active": float(w.mean()),
                         "pesq": pesq_wb(out, clean), "dnsmos_ovrl": dnsmos(out)["ovrl"]})
        print(name, {r["system"]: round(r["pesq"], 3) for r in rows[-len(outputs):]}, flush=True)
    systems = list(dict.fromkeys(r["system"] for r in rows))
    active = np.mean([r["active"] for r in rows])
    lines = [f"### {Path(args.model).stem} and DeepFilterNet3 spliced by speech activity "
             f"(dev files, {active:.0%} of the time active)", "",
             "| system | PESQ-WB | DNSMOS OVRL |", "|---|---|---|"]
    for s in systems:
        lines.append(f"| {s} | {np.mean([r['pesq'] for r in rows if r['system'] == s]):.3f} | "
                     f"{np.mean([r['dnsmos_ovrl'] for r in rows if r['system'] == s]):.3f} |")
    write_report(args.out, "\n".join(lines) + "\n", rows)


if __name__ == "__main__":
    main()
