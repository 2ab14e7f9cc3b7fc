import torch
from test_adapters import perturb_

from styledrop.adapters import AdapterConfig
from styledrop.guidance import Term, guided_logits, merge, styledrop_guidance, text_guidance


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


def test_text_guidance_is_cfg():
    assert text_guidance(5.0) == [Term(6.0, "text", None), Term(-5.0, "negative", None)]


def test_merge_sums_same_branches_and_drops_zeros():
    merged = merge([Term(2.0, "text", "s"), Term(1.0, "text", None), Term(-1.0, "text", None), Term(0.5, "text", "s")])
    assert merged == [Term(2.5, "text", "s")]
