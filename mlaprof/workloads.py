"""Named and user-defined MLA decode workloads, and the tensors that realise them on any torch device."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

from mlaprof import format as fmt
from mlaprof.errors import UserError


class WorkloadError(UserError):
    """A workload definition that cannot be used; the message says what to change."""


# The megakernel runs one GPU's decode step: 128 Mi tokens of latent KV are 155 GB of bf16, more than one H200
# holds; at that size the planners and the simulator still answer within about a minute (one sequence of
# 2^27 tokens: 60 s for `mlaprof schedule` on the 2-core CPU machine).
MAX_TOTAL_KV_TOKENS = 1 << 27
MAX_SEQUENCES = 1 << 16  # a batch far past any decode step's; 65,536 sequences plan in ~8 s


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    lens: tuple[int, ...]  # KV length of each sequence (tokens already cached, new tokens included)
    s_q: int  # new query tokens per sequence, causal among themselves
    h_q: int = fmt.NUM_HEADS_Q
    d: int = fmt.HEAD_DIM_QK
    dv: int = fmt.HEAD_DIM_V
    page_size: int = fmt.PAGE_SIZE

    def __post_init__(self):
        if not self.lens:
            raise WorkloadError(f"workload {self.name!r}: no sequences; give at least one KV length")
        if any(int(n) < 1 for n in self.lens):
            raise WorkloadError(f"workload {self.name!r}: every KV length must be >= 1, got {min(self.lens)}")
        if len(self.lens) > MAX_SEQUENCES:
            raise WorkloadError(f"workload {self.name!r}: {len(self.lens)} sequences; at most {MAX_SEQUENCES} "
                                "(one GPU's decode step): split the batch")
        total = sum(int(n) for n in self.lens)
        if total > MAX_TOTAL_KV_TOKENS:
            raise WorkloadError(f"workload {self.name!r}: {total} KV tokens in all; at most "
                                f"{MAX_TOTAL_KV_TOKENS} ({MAX_TOTAL_KV_TOKENS * fmt.HEAD_DIM_QK * 2 / 1e9:.0f} GB of "
                                "bf16 KV, more than one GPU holds): shorten the sequences or split the batch")
        if not 1 <= self.s_q <= fmt.MAX_S_Q:
            raise WorkloadError(f"workload {self.name!r}: s_q must be 1..{fmt.MAX_S_Q}, got {self.s_q}")
        if min(self.lens) < self.s_q:
            raise WorkloadError(
                f"workload {self.name!r}: a sequence of {min(self.lens)} tokens cannot hold {self.s_q} new tokens"
            )
        if (self.h_q, self.d, self.dv, self.page_size) != (
            fmt.NUM_HEADS_Q, fmt.HEAD_DIM_QK, fmt.HEAD_DIM_V, fmt.PAGE_SIZE,
        ):
            raise WorkloadError("only h_q=16, d=576, dv=512, page 64 (DeepSeek-V3 MLA, TP8) is supported")

    @property
    def batch(self) -> int:
        return len(self.lens)

    @property
    def total_kv(self) -> int:
        return sum(self.lens)

    @property
    def flops(self) -> float:
        """Peers' accounting: 2 * s_q * sum(len) * h_q * (d + dv)."""
        return 2.0 * self.s_q * self.total_kv * self.h_q * (self.d + self.dv)

    @property
    def bytes(self) -> float:
        """Peers' accounting (bf16): KV read once plus Q read and O written."""
        return 2.0 * (self.total_kv * self.d + self.batch * self.s_q * self.h_q * (self.d + self.dv))

    def hbm_floor_us(self, tbps: float = 3.35) -> float:
        return self.bytes / (tbps * 1e12) * 1e6

    def to_json(self) -> dict:
        return {"name": self.name, "lens": list(self.lens), "s_q": self.s_q}

    @classmethod
    def from_json(cls, obj: dict) -> "Workload":
        try:
            return cls(name=str(obj.get("name", "custom")), lens=tuple(int(x) for x in obj["lens"]), s_q=int(obj["s_q"]))
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, WorkloadError):
                raise
            raise WorkloadError(f'a workload needs {{"lens": [int, ...], "s_q": int}}: {e}') from None


def _rand_lens() -> tuple[int, ...]:
    rng = random.Random(0)
    return tuple(rng.randint(256, 1024) for _ in range(64))


NAMED: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("seed-representative", (4641, 45118, 1730, 1696), 4),
        Workload("b1-65536-q1", (65536,), 1),
        Workload("b64-rand256to1024-q4", _rand_lens(), 4),
        Workload("b64-512-q2", (512,) * 64, 2),
        Workload("b132-4096-q4", (4096,) * 132, 4),
    )
}


def get(name: str) -> Workload:
    """A named workload, or a JSON file path holding {"name", "lens", "s_q"}."""
    if name in NAMED:
        return NAMED[name]
    path = Path(name)
    if path.suffix == ".json" and path.is_file():
        try:
            return Workload.from_json(json.loads(path.read_text()))
        except json.JSONDecodeError as e:
            raise WorkloadError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    raise WorkloadError(
        f"unknown workload {name!r}; named ones are {', '.join(NAMED)}, or pass a .json file or --lens/--s-q"
    )


def from_lens(lens: str, s_q: int, name: str = "custom") -> Workload:
    """Parse a comma-separated list of KV lengths, as given on the command line."""
    try:
        values = tuple(int(x) for x in lens.split(",") if x.strip())
    except ValueError:
        raise WorkloadError(f"--lens must be comma-separated integers, got {lens!r}") from None
    return Workload(name, values, s_q)


@dataclasses.dataclass
class WorkloadTensors:
    """Q, a paged KV cache and its metadata; shapes follow FlashMLA's decode interface."""

    q: "torch.Tensor"  # [b, s_q, h_q, d] bf16
    kv_cache: "torch.Tensor"  # [num_pages, page_size, d] bf16 (one latent KV head)
    block_table: "torch.Tensor"  # [b, max_pages] int32: logical page -> physical page
    cache_seqlens: "torch.Tensor"  # [b] int32
    softmax_scale: float


def build_tensors(w: Workload, device="cpu", seed: int = 0, shuffle_pages: bool = True, dtype=None) -> WorkloadTensors:
    import torch

    dtype = dtype or torch.bfloat16
    gen = torch.Generator(device="cpu").manual_seed(seed)
    pages_per_seq = [(n + w.page_size - 1) // w.page_size for n in w.lens]
    num_pages = sum(pages_per_seq)
    max_pages = max(pages_per_seq)
    physical = torch.randperm(num_pages, generator=gen) if shuffle_pages else torch.arange(num_pages)
    block_table = torch.zeros(w.batch, max_pages, dtype=torch.int32)
    cursor = 0
    for i, n in enumerate(pages_per_seq):
        block_table[i, :n] = physical[cursor : cursor + n].to(torch.int32)
        cursor += n
    q = torch.randn(w.batch, w.s_q, w.h_q, w.d, generator=gen).to(dtype)
    kv = torch.randn(num_pages, w.page_size, w.d, generator=gen).to(dtype)
    return WorkloadTensors(
        q=q.to(device),
        kv_cache=kv.to(device),
        block_table=block_table.to(device),
        cache_seqlens=torch.tensor(w.lens, dtype=torch.int32, device=device),
        softmax_scale=w.d ** -0.5,
    )
