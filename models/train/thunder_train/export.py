"""Export a ThunderNet checkpoint to the ONNX contract (+ EMA weights as safetensors).

    python -m thunder_train.export --ckpt runs/base/best.pt --out ../thunder-16k-base.onnx
"""

import argparse
import json
from pathlib import Path

import onnx
import torch
from safetensors.torch import save_file

from . import contract as C
from .net import NetConfig, ThunderNet, macs_per_frame

OPSET = 17


def state_names(n):
    return [C.STATE_IN.format(k) for k in range(n)], [C.STATE_OUT.format(k) for k in range(n)]


def metadata(net: ThunderNet, name: str, version: str, training_data: str) -> dict:
    shapes = {C.STATE_IN.format(k): ["B", *s] for k, s in enumerate(net.state_shapes())}
    meta = {
        "thunder.contract_version": C.CONTRACT_VERSION,
        "thunder.model_name": name,
        "thunder.model_version": version,
        "thunder.sample_rate": str(C.SAMPLE_RATE),
        "thunder.n_fft": str(C.N_FFT),
        "thunder.hop": str(C.HOP),
        "thunder.window": C.WINDOW,
        "thunder.center_pad": str(C.CENTER_PAD),
        "thunder.alpha": repr(C.ALPHA),
        "thunder.beta": repr(C.BETA),
        "thunder.lookahead_frames": str(net.cfg.lookahead),
        "thunder.t_min": repr(C.T_MIN),
        "thunder.t_max": repr(C.T_MAX),
        "thunder.interp_weight": repr(C.INTERP_WEIGHT),
        "thunder.corrector_snr": repr(C.CORRECTOR_SNR),
        "thunder.state_shapes": json.dumps(shapes),
        "thunder.noise_rng": C.NOISE_RNG,
        "thunder.training_data": training_data,
        "thunder.net_config": json.dumps(net.cfg.to_dict()),
        "thunder.macs_per_frame": str(macs_per_frame(net)),
    }
    assert all(k in meta for k in C.META_KEYS)
    return meta


def weights_for_merge(net: ThunderNet) -> dict:
    """Float parameters and BatchNorm running statistics, named exactly as the ONNX initializers."""
    sd = net.state_dict()
    return {k: v.detach().contiguous().float() for k, v in sd.items() if v.is_floating_point()}


def export_onnx(net: ThunderNet, path, name="thunder-16k", version="0.0.0", training_data="", frames=8):
    net = net.eval()
    n_states = len(net.state_shapes())
    s_in, s_out = state_names(n_states)
    x = torch.zeros(1, 2, C.N_BINS, frames)
    t = torch.ones(1)
    states = net.zero_states(1)
    dyn = {C.INPUT_XT: {0: "B", 3: "T"}, C.INPUT_Y: {0: "B", 3: "T"}, C.INPUT_T: {0: "B"}, C.OUTPUT_X0: {0: "B", 3: "T"}}
    for a, b in zip(s_in, s_out):
        dyn[a] = {0: "B"}
        dyn[b] = {0: "B"}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(
        net,
        (x, x, t, *states),
        str(tmp),
        input_names=[C.INPUT_XT, C.INPUT_Y, C.INPUT_T, *s_in],
        output_names=[C.OUTPUT_X0, *s_out],
        dynamic_axes=dyn,
        opset_version=OPSET,
        do_constant_folding=False,  # keep initializers named as the parameters (merge maps by name)
        keep_initializers_as_inputs=True,  # disables initializer de-duplication, which would drop names
        dynamo=False,
    )
    model = onnx.load(str(tmp))
    inits = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(graph_inputs)
    for k, v in metadata(net, name, version, training_data).items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    onnx.checker.check_model(model)
    onnx.save(model, str(tmp))
    tmp.replace(path)
    return path


def export_safetensors(net: ThunderNet, path, meta: dict | None = None):
    path = Path(path)
    tmp = path.with_suffix(".tmp.safetensors")
    save_file(weights_for_merge(net), str(tmp), metadata=meta or {})
    tmp.replace(path)
    return path


def load_checkpoint(path, use_ema=True) -> ThunderNet:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    net = ThunderNet(NetConfig(**ck["net_config"]))
    net.load_state_dict(ck["ema"] if use_ema and "ema" in ck else ck["model"])
    return net.eval()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", help="training checkpoint (.pt); omit with --random for an untrained graph")
    ap.add_argument("--random", action="store_true", help="export a randomly initialised net (tests, engine dev)")
    ap.add_argument("--lookahead", type=int, default=0, help="with --random: look-ahead frames")
    ap.add_argument("--out", required=True, help="output .onnx; the .safetensors is written beside it")
    ap.add_argument("--name", default="thunder-16k")
    ap.add_argument("--version", default="0.1.0")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--raw", action="store_true",
                    help="export the raw training weights instead of the EMA (diagnostics: a block grown a few "
                         "hundred steps ago is still mostly its zero start in the EMA)")
    ap.add_argument("--training-data",
                    help="the model's thunder.training_data text (default: the checkpoint's own summary, which "
                         "names its whole lineage for runs trained since session 15)")
    args = ap.parse_args(argv)
    if args.random:
        torch.manual_seed(args.seed)
        net = ThunderNet(NetConfig(lookahead=args.lookahead)).eval()
        data = "untrained (random init, seed %d)" % args.seed
    else:
        ck = torch.load(args.ckpt, map_location="cpu", weights_only=False)
        net = load_checkpoint(args.ckpt, use_ema=not args.raw)
        data = (args.training_data or ck.get("training_data", "")) + (" (raw weights, not EMA)" if args.raw else "")
    out = Path(args.out)
    export_onnx(net, out, args.name, args.version, data)
    export_safetensors(net, out.with_suffix(".safetensors"), {"thunder.net_config": json.dumps(net.cfg.to_dict())})
    print(f"wrote {out} and {out.with_suffix('.safetensors')} (MACs/frame {macs_per_frame(net)})")


if __name__ == "__main__":
    main()
