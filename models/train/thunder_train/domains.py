"""Acoustic domains for the domain-expert study (issue 5): one mixing recipe per domain.

Every domain draws speech from the same corpus split (so held-out speakers stay held out) and
restricts the *noise and room* side of the mixture. Test/validation sets of a domain use the
corpus's test/val noise files, speakers and rooms, none of which any training run sees.

    general   the base model's recipe (data.MixConfig defaults)
    babble    1–7 competing talkers (held-out speakers in val/test), SNR −5…10 dB
    music     music beds and loops (supersonic, MoH opsound), SNR −5…15 dB
    reverb    every example reverberant (measured + simulated rooms), noise at 5…25 dB;
              target = direct path + 50 ms of early reflections (data.early_target)
    machines  stationary and machine noise: fans, engines, hum, coloured/static noise, traffic,
              SNR −5…15 dB
    union     each example from one of the four domains above, uniformly (the multi-domain
              fine-tune that a merge must beat); `a+b` is the union of domains a and b
"""

from dataclasses import replace

import numpy as np

from .data import MixConfig, Mixer

GENERAL = MixConfig()

DOMAINS = {
    "general": GENERAL,
    "babble": replace(GENERAL, snr_db=(-5.0, 10.0), p_reverb=0.15, p_clean=0.02, p_second_noise=0.2,
                      p_procedural=0.0, p_babble=1.0, babble_talkers=(1, 7)),
    "music": replace(GENERAL, snr_db=(-5.0, 15.0), p_reverb=0.15, p_clean=0.02, p_second_noise=0.1,
                     p_procedural=0.0, p_babble=0.0, noise_categories=("music",)),
    "reverb": replace(GENERAL, snr_db=(5.0, 25.0), p_reverb=1.0, p_clean=0.1, p_second_noise=0.1),
    "machines": replace(GENERAL, snr_db=(-5.0, 15.0), p_reverb=0.15, p_clean=0.02, p_second_noise=0.2,
                        p_procedural=0.5, procedural_kinds=(0, 1, 2, 3, 4), p_babble=0.0,
                        noise_categories=("machine", "stationary", "traffic")),
}
EXPERT_DOMAINS = ("babble", "music", "reverb", "machines")
ALL = (*DOMAINS, "union")


class UnionMixer:
    """Draws each example from one of several domain mixers (uniformly), sharing decoded audio."""

    def __init__(self, corpus_root, split, domains, seconds, seed):
        self.rng = np.random.default_rng(seed)
        self.mixers = []
        for i, d in enumerate(domains):
            m = Mixer(corpus_root, split, replace(DOMAINS[d], seconds=seconds), seed=seed * 31 + i)
            if self.mixers:
                m.cache = self.mixers[0].cache
            self.mixers.append(m)

    def example(self):
        return self.mixers[self.rng.integers(0, len(self.mixers))].example()

    def reload(self):
        for m in self.mixers:
            m.reload()


def make_mixer(corpus_root, split, domain="general", seconds=2.0, seed=0):
    """A mixer for one domain (or `union` of the expert domains)."""
    if domain == "union":
        return UnionMixer(corpus_root, split, EXPERT_DOMAINS, seconds, seed)
    if "+" in domain:  # e.g. babble+music: the union of some domains
        parts = domain.split("+")
        for d in parts:
            if d not in DOMAINS:
                raise ValueError(f"unknown domain {d!r}; choose from {', '.join(ALL)}")
        return UnionMixer(corpus_root, split, parts, seconds, seed)
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; choose from {', '.join(ALL)}")
    return Mixer(corpus_root, split, replace(DOMAINS[domain], seconds=seconds), seed=seed)


def domain_set(corpus_root, split, domain, n, seconds=4.0, seed=1234):
    """A deterministic list of (noisy, clean, band_bin) examples of one domain."""
    m = make_mixer(corpus_root, split, domain, seconds, seed)
    return [m.example() for _ in range(n)]
