import torch

from thunder_train.mixback import post_mix, post_power


def test_mixback_changes_are_identity_at_zero_and_move_the_right_way():
    g = torch.Generator().manual_seed(3)
    y = torch.randn(1, 2, 16, 5, generator=g)
    x = 0.5 * y + 0.1 * torch.randn(1, 2, 16, 5, generator=g)
    assert torch.equal(post_mix(x, y, 0.0), x)
    assert torch.allclose(post_mix(x, y, 1.0), y)
    assert torch.allclose(post_power(x, y, 0.0), x)

    def mag(a):
        return a.pow(2).sum(1).sqrt()

    # gamma > 0 never makes a bin louder, gamma < 0 never quieter (r <= 1).
    assert (mag(post_power(x, y, 0.5)) <= mag(x) + 1e-6).all()
    assert (mag(post_power(x, y, -0.25)) >= mag(x) - 1e-6).all()
    assert (mag(post_power(x, y, -0.25)) > mag(x) + 1e-6).any()
