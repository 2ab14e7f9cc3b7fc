import torch
from test_adapters import perturb_

from styledrop.adapters import AdapterConfig
from styledrop.guidance import Anchor, Term, guided_logits, merge, plausible, styledrop_guidance, text_guidance
from styledrop.sampler import decode


def setup(base):
    perturb_(base.new_adapter("style", AdapterConfig(rank=4)))
    prompts = ["a square in striped style", "a heart in striped style"]
    conds = {"text": base.condition(prompts), "negative": base.condition(["blurry", "blurry"])}
    tokens = torch.randint(0, base.mask_id + 1, (2, 8, 8), generator=torch.Generator().manual_seed(0))
    return conds, tokens


def test_zero_scales_equal_the_adapted_model_alone(tiny_base):
    conds, tokens = setup(tiny_base)
    terms = styledrop_guidance("style", style_scale=0.0, text_scale=0.0)
    assert terms == [Term(1.0, "text", "style")]
    with torch.no_grad():
        assert torch.equal(
            guided_logits(tiny_base.logits, terms, conds, tokens), tiny_base.logits(tokens, conds["text"], "style")
        )


def test_batched_guidance_equals_three_separate_evaluations(tiny_base):
    conds, tokens = setup(tiny_base)
    la, lb = 1.5, 5.0
    with torch.no_grad():
        styled = tiny_base.logits(tokens, conds["text"], "style")
        plain = tiny_base.logits(tokens, conds["text"], None)
        negative = tiny_base.logits(tokens, conds["negative"], None)
        expected = styled + la * (styled - plain) + lb * (plain - negative)
        calls = []

        def counting(tokens, cond, route):
            calls.append(len(route))
            return tiny_base.logits(tokens, cond, route)

        got = guided_logits(counting, styledrop_guidance("style", la, lb), conds, tokens)
    assert calls == [6]  # one forward pass, three branches of two rows
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_descriptor_guidance_in_one_batch_equals_its_formula_branch_by_branch(tiny_base):
    """Gs(t) + lA (Gs(t) - G(t)) + lB (G(t) - G(n)) + lD (G(t) - G(c_t))."""
    conds, tokens = setup(tiny_base)
    conds["content"] = tiny_base.condition(["a square", "a heart"])
    la, lb, ld = 1.5, 5.0, 3.0
    with torch.no_grad():
        styled = tiny_base.logits(tokens, conds["text"], "style")
        plain = tiny_base.logits(tokens, conds["text"], None)
        negative = tiny_base.logits(tokens, conds["negative"], None)
        content = tiny_base.logits(tokens, conds["content"], None)
        expected = styled + la * (styled - plain) + lb * (plain - negative) + ld * (plain - content)
        calls = []

        def counting(tokens, cond, route):
            calls.append(len(route))
            return tiny_base.logits(tokens, cond, route)

        got = guided_logits(counting, styledrop_guidance("style", la, lb, descriptor_scale=ld), conds, tokens)
    assert calls == [8]  # one forward pass, four branches of two rows
    assert not torch.allclose(plain, content)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_text_guidance_is_cfg():
    assert text_guidance(5.0) == [Term(6.0, "text", None), Term(-5.0, "negative", None)]


def test_merge_sums_same_branches_and_drops_zeros():
    merged = merge([Term(2.0, "text", "s"), Term(1.0, "text", None), Term(-1.0, "text", None), Term(0.5, "text", "s")])
    assert merged == [Term(2.5, "text", "s")]


def test_style_plus_subject_in_one_batch_equals_equations_5_and_6_branch_by_branch(tiny_base):
    """l = (1 - g) l_s(t) + g l_c(c_t), each l the StyleDrop formula (paper equations 4-6)."""
    from styledrop.guidance import Component, mixture_guidance

    perturb_(tiny_base.new_adapter("style", AdapterConfig(rank=4)), seed=1)
    perturb_(tiny_base.new_adapter("subject", AdapterConfig(rank=2)), seed=2)
    conds = {
        "full": tiny_base.condition(["a [V] square in striped style"] * 2),
        "content": tiny_base.condition(["a [V] square"] * 2),
        "negative": tiny_base.condition(["", ""]),
    }
    tokens = torch.randint(0, tiny_base.mask_id + 1, (2, 8, 8), generator=torch.Generator().manual_seed(0))
    la, lb, g = 1.0, 5.0, 0.6
    with torch.no_grad():

        def formula(adapter, prompt):
            adapted = tiny_base.logits(tokens, conds[prompt], adapter)
            plain = tiny_base.logits(tokens, conds[prompt], None)
            negative = tiny_base.logits(tokens, conds["negative"], None)
            return adapted + la * (adapted - plain) + lb * (plain - negative)

        expected = (1 - g) * formula("style", "full") + g * formula("subject", "content")
        calls = []

        def counting(tokens, cond, route):
            calls.append(len(route))
            return tiny_base.logits(tokens, cond, route)

        terms = mixture_guidance([Component(1 - g, "style", "full"), Component(g, "subject", "content")], la, lb)
        got = guided_logits(counting, terms, conds, tokens)
    assert calls == [10]  # one forward pass: five distinct branches (the negative shared) of two rows
    assert not torch.allclose(formula("style", "full"), formula("subject", "content"))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def branch_model(table: dict[str, list[float]]):
    """A model whose logits at every position are table[prompt's first word], whatever the tokens."""

    def model(tokens, cond, route):
        rows = [table[key] for key in cond.keys]
        return torch.tensor(rows)[:, None, :].expand(len(rows), tokens[0].numel(), -1)

    return model


class Keys:
    """Just enough of a Conditioning for guided_logits: cat and the keys a branch_model reads."""

    def __init__(self, keys):
        self.keys = keys

    @staticmethod
    def cat(conds):
        return Keys([k for c in conds for k in c.keys])


def test_plausibility_stops_lB_5_from_drawing_a_token_both_branches_find_all_but_impossible(monkeypatch):
    import styledrop.guidance as guidance

    monkeypatch.setattr(guidance, "Conditioning", Keys)
    # Token 2 is e^-15 as likely as token 0 under the prompt and far less likely still under the negative one:
    # at lB 5 the difference of those tails outweighs token 0's lead.
    model = branch_model({"text": [10.0, 0.0, -5.0], "negative": [8.0, 0.0, -20.0]})
    conds, tokens = {"text": Keys(["text"]), "negative": Keys(["negative"])}, torch.zeros(1, 2, 2, dtype=torch.long)
    plain = guided_logits(model, text_guidance(5.0), conds, tokens)
    assert plain[0, 0].argmax() == 2  # 6 * -5 - 5 * -20 = 70 against 6 * 10 - 5 * 8 = 20
    kept = guided_logits(model, text_guidance(5.0), conds, tokens, plausibility=0.1)
    assert kept[0, 0].argmax() == 0
    assert kept[0, 0].tolist() == [plain[0, 0, 0].item(), float("-inf"), float("-inf")]  # token 1: e^-10 of token 0


def test_an_anchor_cannot_bring_back_a_token_the_constraint_rules_out(monkeypatch):
    # Stylize's input tokens get no exemption: the constraint, scaled by the strength (pipeline.anchored_config),
    # is what lets a light stylize keep them.
    import styledrop.guidance as guidance

    monkeypatch.setattr(guidance, "Conditioning", Keys)
    model = branch_model({"text": [10.0, 0.0, 9.0], "negative": [10.0, 0.0, 9.0]})
    conds, tokens = {"text": Keys(["text"]), "negative": Keys(["negative"])}, torch.zeros(1, 2, 2, dtype=torch.long)
    anchored = Anchor(torch.ones(1, 4, dtype=torch.long), 16.0).wrap(
        lambda t: guided_logits(model, text_guidance(5.0), conds, t, plausibility=0.1)
    )(tokens)
    assert anchored[0, :, 1].eq(float("-inf")).all()  # token 1 is e^-10 of token 0: out, anchor or not
    assert anchored[0, :, 2].eq(9.0).all()  # token 2, e^-1 of token 0, stays drawable, without a bonus


def test_a_token_is_plausible_when_any_pulled_toward_branch_gives_it_alpha_of_its_best():
    probs = torch.tensor([[0.70, 0.25, 0.05, 0.00], [0.02, 0.02, 0.48, 0.48]])  # two branches, four tokens
    branches = probs.clamp_min(1e-12).log()[:, None, None, :]  # (K, B, N, V)
    assert plausible(branches, 0.3).flatten().tolist() == [True, True, True, True]
    assert plausible(branches, 0.5).flatten().tolist() == [True, False, True, True]
    assert plausible(branches[:1], 0.3).flatten().tolist() == [True, True, False, False]


def test_a_plain_component_is_text_guidance():
    from styledrop.guidance import Component, mixture_guidance

    assert mixture_guidance([Component(1.0, None, "text")], 1.5, 5.0) == text_guidance(5.0)


def test_an_anchor_adds_its_weight_to_each_positions_token_only():
    logits = torch.randn(2, 3, 5)
    tokens = torch.tensor([[0, 4, 2], [1, 1, 3]])
    anchored = Anchor(tokens, 2.5).wrap(lambda _: logits.clone())(tokens)
    bonus = torch.zeros_like(logits).scatter_(-1, tokens[..., None], 2.5)
    assert torch.equal(anchored, logits + bonus)
    plain = lambda _: logits  # noqa: E731
    assert Anchor(tokens, 0.0).wrap(plain) is plain  # weight 0: sampling exactly as without an anchor
    assert torch.equal(Anchor(tokens, 2.5).rows(1, 2).tokens, tokens[1:2])


def test_sampling_keeps_more_of_the_anchor_the_larger_its_weight():
    logits = torch.randn(8, 64, 32, generator=torch.Generator().manual_seed(0))
    anchor = torch.randint(0, 32, (8, 64), generator=torch.Generator().manual_seed(1))
    masked = torch.full((8, 64), 32)

    def kept(weight: float) -> float:
        generators = [torch.Generator().manual_seed(s) for s in range(8)]
        drawn = decode(Anchor(anchor, weight).wrap(lambda _: logits), masked, 32, 4, 4.5, generators)
        return (drawn == anchor).float().mean().item()

    fractions = [kept(w) for w in (0.0, 2.0, 4.0, 8.0, 50.0)]
    assert fractions == sorted(fractions) and fractions[0] < 0.1 and fractions[-1] == 1.0
