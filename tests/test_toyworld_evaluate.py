from styledrop.toyworld.evaluate import METRICS, StyleReport, format_table


def report():
    base = dict.fromkeys(METRICS, 0.5)
    adapter = {**base, "style_score": 0.6, "content_accuracy": 0.9}
    ceiling = {**base, "style_score": 0.8, "content_accuracy": 1.0, "leakage": 0.0}
    return StyleReport("candy", base, adapter, ceiling, images={})


def test_fractions_of_the_ceiling():
    assert report().fraction_of_ceiling("adapter") == {"content_accuracy": 0.9, "style_score": 0.6 / 0.8}


def test_table_lists_every_metric_with_its_fraction():
    table = format_table([report()])
    assert table.startswith("candy:")
    for metric in METRICS:
        assert metric in table
    assert "0.75" in table  # style score as a fraction of the ceiling


def test_toy_demo_runs_round1_evaluation_and_grid(tiny_base_dir, tmp_path, monkeypatch):
    """The demo's code path end to end, with the tiny random base standing in for the toy base (same 32x32
    geometry) and the shipped ruler; the numbers are meaningless here, the wiring is what is checked."""
    import styledrop.models.amused as amused
    from styledrop.demo import run_demo

    monkeypatch.setattr(amused, "TOY_BASE", tiny_base_dir)
    result = run_demo(tmp_path, steps=2, progress=False)
    assert (tmp_path / "adapter" / "adapter.safetensors").is_file()
    for metric in METRICS:
        assert metric in result["scores"]
    from PIL import Image

    assert Image.open(result["grid"]).size[0] > 5 * 32
