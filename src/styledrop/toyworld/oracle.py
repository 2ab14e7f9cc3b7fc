"""The oracle: a small CNN that reads a shapes-world image's content (shape, colour) and style family, and
embeds its style independently of content. It is the ruler for every toy-world metric.

It is trained on training-region styles only (renders and their VQ reconstructions), so its accuracy on the
held-out styles measures real robustness to style, not memory.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..fileio import write_json, write_with
from ..images import array_to_tensor
from .render import COLOUR_NAMES, FAMILIES, SHAPES, Scene
from .world import render_all, sample_content, sample_style


@dataclass(frozen=True)
class OracleConfig:
    width: int = 32
    style_dim: int = 64
    steps: int = 5000  # 2000 (the v2 build) left the family head at 81% on training-region renders
    pool_styles: int = 8000  # pre-rendered style groups the batches are drawn from
    styles_per_batch: int = 24
    contents_per_style: int = 4
    lr: float = 2e-3
    seed: int = 0


def conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.GELU())


class Oracle(nn.Module):
    def __init__(self, config: OracleConfig = OracleConfig()):
        super().__init__()
        self.config = config
        w = config.width
        self.trunk = nn.Sequential(
            conv(3, w), conv(w, w), conv(w, 2 * w, 2), conv(2 * w, 2 * w), conv(2 * w, 4 * w, 2), conv(4 * w, 4 * w)
        )
        self.shape = nn.Linear(4 * w, len(SHAPES))
        self.colour = nn.Linear(4 * w, len(COLOUR_NAMES))
        self.family = nn.Linear(4 * w, len(FAMILIES))
        # Style from second-order statistics of early features (Gram-like), which are blind to where things are.
        self.style = nn.Sequential(nn.Linear(2 * (2 * w), 256), nn.GELU(), nn.Linear(256, config.style_dim))

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """pixels (B, 3, 32, 32) in [0, 1] -> logits per head and a unit style embedding (B, style_dim)."""
        x = pixels * 2 - 1
        early = self.trunk[:4](x)
        late = self.trunk[4:](early)
        pooled = late.mean(dim=(2, 3))
        stats = torch.cat([early.mean(dim=(2, 3)), early.std(dim=(2, 3))], dim=1)
        return {
            "shape": self.shape(pooled),
            "colour": self.colour(pooled),
            "family": self.family(pooled),
            "style": F.normalize(self.style(stats), dim=-1),
        }

    @torch.no_grad()
    def predict(self, pixels: torch.Tensor, batch: int = 256) -> dict[str, torch.Tensor]:
        self.eval()
        outs = [self(pixels[i : i + batch]) for i in range(0, len(pixels), batch)]
        return {
            "shape": torch.cat([o["shape"].argmax(-1) for o in outs]),
            "colour": torch.cat([o["colour"].argmax(-1) for o in outs]),
            "family": torch.cat([o["family"].argmax(-1) for o in outs]),
            "style": torch.cat([o["style"] for o in outs]),
        }


def save_oracle(oracle: Oracle, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in oracle.state_dict().items()}
    write_with(folder / "oracle.safetensors", lambda p: save_file(state, str(p)))
    write_json(folder / "oracle_config.json", asdict(oracle.config))


def load_oracle(folder: Path) -> Oracle:
    oracle = Oracle(OracleConfig(**json.loads((folder / "oracle_config.json").read_text())))
    oracle.load_state_dict(load_file(folder / "oracle.safetensors"))
    return oracle.eval()


def style_batch(rng: np.random.Generator, styles: int, contents: int, held_out: bool = False):
    """`styles` random styles, each rendered with `contents` random contents. Returns pixels and labels."""
    scenes, style_ids = [], []
    for s in range(styles):
        style = sample_style(rng, held_out=held_out)
        for _ in range(contents):
            scenes.append(Scene(sample_content(rng), style))
            style_ids.append(s)
    pixels = array_to_tensor(render_all(scenes))
    labels = {
        "shape": torch.tensor([SHAPES.index(sc.content.shape) for sc in scenes]),
        "colour": torch.tensor([COLOUR_NAMES.index(sc.content.colour) for sc in scenes]),
        "family": torch.tensor([FAMILIES.index(sc.style.family) for sc in scenes]),
        "style_id": torch.tensor(style_ids),
    }
    return pixels, labels, scenes


def supervised_contrastive(embeddings: torch.Tensor, ids: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Pull together embeddings of the same style id, push apart the rest (SupCon)."""
    sim = embeddings @ embeddings.T / temperature
    eye = torch.eye(len(ids), dtype=torch.bool)
    sim = sim.masked_fill(eye, -1e9)
    positive = (ids[:, None] == ids[None, :]) & ~eye
    log_prob = sim - sim.logsumexp(dim=1, keepdim=True)
    return -(log_prob * positive).sum(1).div(positive.sum(1).clamp_min(1)).mean()


def train_oracle(config: OracleConfig = OracleConfig(), reconstruct=None, progress: bool = True) -> Oracle:
    """Train on training-region styles; `reconstruct` (pixels -> pixels), if given, makes VQ reconstructions of
    the pool, and each sample is seen as either version, so the oracle also reads decoded tokens."""
    from tqdm.auto import tqdm

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    g = torch.Generator().manual_seed(config.seed)
    pixels, labels, _ = style_batch(rng, config.pool_styles, config.contents_per_style)
    versions = [pixels]
    if reconstruct is not None:
        with torch.no_grad():
            versions.append(torch.cat([reconstruct(pixels[i : i + 500]) for i in range(0, len(pixels), 500)]))
    oracle = Oracle(config)
    optimizer = torch.optim.AdamW(oracle.parameters(), lr=config.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.steps)
    per = config.contents_per_style
    bar = tqdm(range(config.steps), desc="oracle", disable=not progress)
    for _ in bar:
        groups = torch.randperm(config.pool_styles, generator=g)[: config.styles_per_batch]
        idx = (groups[:, None] * per + torch.arange(per)).flatten()
        which = torch.randint(len(versions), (len(idx),), generator=g)
        batch = torch.stack([versions[v][i] for v, i in zip(which.tolist(), idx.tolist(), strict=True)])
        oracle.train()
        out = oracle(batch)
        loss = sum(F.cross_entropy(out[k], labels[k][idx]) for k in ("shape", "colour", "family"))
        loss = loss + supervised_contrastive(out["style"], labels["style_id"][idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return oracle.eval()
