import math

import torch

from styledrop.schedule import mask_ratio, masked_after_step, training_mask_counts


def test_cosine_schedule_endpoints_and_monotone():
    ratios = mask_ratio(torch.linspace(0, 1, 101))
    assert ratios[0] == 1.0 and abs(float(ratios[-1])) < 1e-6
    assert (ratios[1:] <= ratios[:-1]).all()
    assert math.isclose(float(mask_ratio(0.5)), math.cos(math.pi / 4), rel_tol=1e-6)


def test_training_counts_are_between_one_and_all():
    counts = training_mask_counts(torch.tensor([0.0, 0.5, 1.0]), 64)
    assert counts.tolist() == [64, round(64 * math.cos(math.pi / 4)), 1]


def test_sampling_leaves_nothing_masked_after_the_last_step():
    assert [masked_after_step(s, 4, torch.tensor([64, 10])).tolist() for s in range(4)] == [
        [59, 9],
        [45, 7],
        [24, 3],
        [0, 0],
    ]
