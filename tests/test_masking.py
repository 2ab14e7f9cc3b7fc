import torch

from styledrop.masking import apply_mask, edit_mask, random_mask
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


def test_edit_mask_redraws_the_asked_fraction_per_row_from_its_seed():
    gens = lambda *seeds: [torch.Generator().manual_seed(s) for s in seeds]  # noqa: E731
    mask = edit_mask(3, 64, 0.25, gens(0, 1, 0))
    assert mask.sum(1).tolist() == [16, 16, 16]
    assert torch.equal(mask[0], mask[2]) and not torch.equal(mask[0], mask[1])
    assert not edit_mask(1, 64, 0.0, gens(0)).any() and edit_mask(1, 64, 1.0, gens(0)).all()
