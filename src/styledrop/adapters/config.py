"""What an adapter is (its shape) and what it records about itself (its card)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import StyleDropError

# Where StyleDrop puts adapters: on the output of each layer's cross-attention and MLP (paper, appendix B).
PLACEMENTS = ("cross_attn", "mlp")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class AdapterConfig:
    """Bottleneck adapters `h + up(gelu(down(h)))` at each placement of every transformer layer.

    shared=True is the paper's round-1 form: one down/up pair for all layers plus a learned per-layer
    embedding added to each projection's output (about L times fewer parameters). shared=False gives every
    layer its own projections (the paper's round 2).
    """

    rank: int = 4
    shared: bool = True
    placements: tuple[str, ...] = PLACEMENTS
    init_std: float = 0.02

    def __post_init__(self):
        object.__setattr__(self, "placements", tuple(self.placements))
        if not isinstance(self.rank, int) or not 1 <= self.rank <= 4096:
            raise StyleDropError(f"--rank: must be an integer from 1 to 4096, got {self.rank!r}")
        if (
            not self.placements
            or not set(self.placements) <= set(PLACEMENTS)
            or len(set(self.placements)) != len(self.placements)
        ):
            raise StyleDropError(f"placements: must be distinct names from {PLACEMENTS}, got {self.placements!r}")
        if not self.init_std > 0:
            raise StyleDropError(f"init_std: must be positive, got {self.init_std!r}")

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "placements": list(self.placements)}

    @classmethod
    def from_dict(cls, d: dict) -> AdapterConfig:
        return cls(**d)


# The paper's round-2 adapter: larger, per layer. Subject adapters use it too: on the shapes world's two-tone
# subject, 300 steps gave subject fidelity 0.56 with it and 0.00 with the round-1 default (rank 4, shared), at
# lB 5 (benchmarks/toyworld_mixing.py, and with --subject-rank 4 --subject-shared; toyworld_subject.jsonl).
LARGE_ADAPTER = AdapterConfig(rank=32, shared=False)


@dataclass(frozen=True)
class BaseIdentity:
    """Which base model an adapter belongs to: where it came from, and a fingerprint of its transformer config."""

    source: str
    fingerprint: str


@dataclass
class AdapterCard:
    """Everything saved beside an adapter's weights (`adapter_config.json`)."""

    config: AdapterConfig
    base: BaseIdentity
    style: str = ""  # the style descriptor, e.g. "in watercolor painting style"
    kind: str = "style"
    prompts: list[str] = field(default_factory=list)  # the training prompts, content + descriptor
    training: dict = field(default_factory=dict)  # the training settings
    weights_sha256: str = ""
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        return {
            "format_version": self.format_version,
            "kind": self.kind,
            "style": self.style,
            "adapter": self.config.to_dict(),
            "base": dataclasses.asdict(self.base),
            "prompts": list(self.prompts),
            "training": dict(self.training),
            "weights_sha256": self.weights_sha256,
        }

    @classmethod
    def from_dict(cls, d: dict) -> AdapterCard:
        """Raises KeyError/TypeError/ValueError on a malformed card; the loader turns those into one message."""
        if d["format_version"] != FORMAT_VERSION:
            raise ValueError(f"unsupported format_version {d['format_version']!r} (expected {FORMAT_VERSION})")
        return cls(
            config=AdapterConfig.from_dict(d["adapter"]),
            base=BaseIdentity(**d["base"]),
            style=str(d.get("style", "")),
            kind=str(d.get("kind", "style")),
            prompts=[str(p) for p in d.get("prompts", [])],
            training=dict(d.get("training", {})),
            weights_sha256=str(d.get("weights_sha256", "")),
        )
