"""The one Python definition of Thunder's DSP constants and ONNX contract.

The Rust engine has its own single definition (`src/contract.rs`); the two are pinned together
by `tests/fixtures/contract.json`, which `python -m thunder_train.fixtures` writes and both
test suites check.
"""

SAMPLE_RATE = 16_000
N_FFT = 510  # -> 256 one-sided bins
HOP = 128
N_BINS = N_FFT // 2 + 1
WINDOW = "hann-periodic"
# Centred framing: the signal is padded with N_FFT // 2 zeros at the start (and the end, offline),
# so frame k is centred on sample k * HOP. Zero padding (not reflect) keeps streaming and offline identical.
CENTER_PAD = N_FFT // 2

# Amplitude compression c~ = BETA * |c|^ALPHA * exp(j angle(c)).
ALPHA = 0.5
BETA = 0.15

# Brownian bridge and the two-stage sampler.
T_MIN = 0.03
T_MAX = 0.999
T_REGRESSION = 1.0
INTERP_WEIGHT = 0.8  # y' = w * x_reg + (1 - w) * y
CORRECTOR_SNR = 0.5

# Tensor names of the ONNX graph. States pair mechanically: state_in_k -> state_out_k.
INPUT_XT = "x_t"
INPUT_Y = "y"
INPUT_T = "t"
OUTPUT_X0 = "x0"
STATE_IN = "state_in_{}"
STATE_OUT = "state_out_{}"

# metadata_props keys (all values are strings; lists/objects are JSON).
META_KEYS = (
    "thunder.contract_version",
    "thunder.model_name",
    "thunder.model_version",
    "thunder.sample_rate",
    "thunder.n_fft",
    "thunder.hop",
    "thunder.window",
    "thunder.center_pad",
    "thunder.alpha",
    "thunder.beta",
    "thunder.lookahead_frames",
    "thunder.t_min",
    "thunder.t_max",
    "thunder.interp_weight",
    "thunder.corrector_snr",
    "thunder.state_shapes",
    "thunder.noise_rng",
    "thunder.training_data",
)
CONTRACT_VERSION = "1"
NOISE_RNG = "splitmix64-boxmuller-v1"
