import torch

from styledrop.sampler import decode

MASK, VOCAB, N = 16, 16, 24


def toy_logits(tokens):
    """A deterministic function of the tokens, so decoding depends on the seeds alone."""
    known = (tokens != MASK).float().mean(1, keepdim=True)
    base = torch.linspace(-1, 1, VOCAB)[None, None, :] * (1 + torch.arange(N)[None, :, None] / N)
    return base + known[:, :, None]


def run(seeds, steps=6, temperature=4.5, tokens=None, fn=toy_logits):
    tokens = torch.full((len(seeds), N), MASK) if tokens is None else tokens
    return decode(fn, tokens, MASK, steps, temperature, [torch.Generator().manual_seed(s) for s in seeds])


def test_fills_every_masked_token_with_a_codebook_id():
    out = run([0, 1, 2])
    assert (out != MASK).all() and out.max() < VOCAB


def test_same_seed_same_tokens_and_different_seed_different_tokens():
    assert torch.equal(run([7]), run([7]))
    assert not torch.equal(run([7]), run([8]))


def test_a_row_depends_on_its_own_seed_not_on_its_batch():
    alone = run([5])[0]
    assert torch.equal(run([1, 5, 9])[1], alone)


def test_unmasks_by_the_cosine_schedule():
    masked_counts = []

    def recording(tokens):
        masked_counts.append((tokens == MASK).sum(1).tolist())
        return toy_logits(tokens)

    run([0, 1], steps=4, fn=recording)
    assert masked_counts == [[24, 24], [22, 22], [16, 16], [9, 9]]


def test_known_tokens_are_kept():
    tokens = torch.full((1, N), MASK)
    tokens[0, :5] = torch.tensor([3, 1, 4, 1, 5])
    out = run([0], tokens=tokens)
    assert out[0, :5].tolist() == [3, 1, 4, 1, 5]


def test_editing_spreads_the_schedule_over_the_masked_part_of_each_row():
    """Rows with 12 and 0 masked tokens (an edit at two strengths): the cosine schedule runs over each row's
    own masked count, and a fully known row is left alone."""
    tokens = torch.arange(2 * N).remainder(VOCAB).view(2, N)
    tokens[0, ::2] = MASK
    masked_counts = []

    def recording(t):
        masked_counts.append((t == MASK).sum(1).tolist())
        return toy_logits(t)

    out = run([0, 1], steps=4, tokens=tokens.clone(), fn=recording)
    assert masked_counts == [[12, 0], [11, 0], [8, 0], [4, 0]]
    assert torch.equal(out[1], tokens[1]) and torch.equal(out[0, 1::2], tokens[0, 1::2])
    assert (out[0] != MASK).all()


def test_gumbel_noise_is_finite_and_gumbel_distributed():
    from styledrop.sampler import gumbel

    u = torch.rand(200_000, generator=torch.Generator().manual_seed(0))
    g = gumbel(u)
    assert torch.isfinite(g).all()
    assert abs(g.mean().item() - 0.5772) < 0.01  # the Euler-Mascheroni constant


def test_token_sampling_follows_the_softmax():
    from styledrop.sampler import sample_tokens

    logits = torch.log(torch.tensor([0.1, 0.2, 0.7]))[None, None].expand(1, 20_000, 3)
    draws = sample_tokens(logits, [torch.Generator().manual_seed(0)])
    freq = torch.bincount(draws[0], minlength=3).float() / 20_000
    assert torch.allclose(freq, torch.tensor([0.1, 0.2, 0.7]), atol=0.01)


def test_token_temperature_sharpens_the_softmax_and_zero_takes_the_argmax():
    from styledrop.sampler import sample_tokens

    p = torch.tensor([0.1, 0.2, 0.7])
    logits = torch.log(p)[None, None].expand(1, 20_000, 3)

    def frequencies(temperature):
        draws = sample_tokens(logits, [torch.Generator().manual_seed(0)], temperature)
        return torch.bincount(draws[0], minlength=3).float() / 20_000

    sharpened = p**2 / (p**2).sum()  # softmax(logits / 0.5)
    assert torch.allclose(frequencies(0.5), sharpened, atol=0.01)
    assert torch.equal(frequencies(0.0), torch.tensor([0.0, 0.0, 1.0]))


def test_decoding_at_token_temperature_zero_fills_with_each_position_s_most_likely_token():
    tokens = torch.full((2, N), MASK)
    out = decode(
        toy_logits, tokens, MASK, 6, 4.5, [torch.Generator().manual_seed(s) for s in (0, 1)], token_temperature=0.0
    )
    assert (out == VOCAB - 1).all()  # toy_logits rises with the id at every position
    assert (run([0, 1]) != VOCAB - 1).any()  # at temperature 1 the draws spread
