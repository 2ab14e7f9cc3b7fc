import torch

from styledrop.masking import apply_mask, random_mask
from styledrop.schedule import training_mask_counts


def test_mask_counts_follow_the_schedule_and_seed():
    tokens = torch.zeros(512, 64, dtype=torch.long)
    mask = random_mask(tokens, torch.Generator().manual_seed(0))
    again = random_mask(tokens, torch.Generator().manual_seed(0))
    assert torch.equal(mask, again)
    g = torch.Generator().manual_seed(0)
    expected = training_mask_counts(torch.rand(512, generator=g), 64)
    assert torch.equal(mask.sum(1), expected)
    # Progress is uniform, so the mean masked fraction is E[cos(pi u / 2)] = 2 / pi.
    assert abs(mask.float().mean().item() - 2 / torch.pi) < 0.03


def test_apply_mask():
    tokens = torch.arange(6).view(1, 6)
    mask = torch.tensor([[True, False, True, False, False, False]])
    assert apply_mask(tokens, mask, 99).tolist() == [[99, 1, 99, 3, 4, 5]]
