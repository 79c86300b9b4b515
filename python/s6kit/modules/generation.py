"""Autoregressive generation for the language model: prefill once, then one ``step`` per token.

The prompt runs through the model once with fresh :class:`InferenceParams`; every later token goes
through the cached conv and SSM states of each block (O(1) work per token). A model whose blocks
reorder tokens has no such recurrence (every output depends on the whole sequence), so it
re-runs the full sequence for each new token.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from .mamba import InferenceParams


@dataclass
class GenerationOutput:
    sequences: Tensor  # (batch, max_length): the prompt and the generated tokens
    scores: Optional[tuple[Tensor, ...]] = None  # logits of each generated position


def sample_tokens(logits: Tensor, top_k: int = 1, top_p: float = 0.0, temperature: float = 1.0,
                  generator: Optional[torch.Generator] = None) -> Tensor:
    """Next tokens (batch,) from logits (batch, vocab).

    ``top_k=1`` (or temperature 0) is greedy. Otherwise the logits are divided by ``temperature``,
    restricted to the ``top_k`` largest (0: no restriction) and to the smallest set whose
    probability exceeds ``top_p`` (0: no restriction), and sampled.
    """
    if top_k == 1 or temperature == 0:
        return logits.argmax(dim=-1)
    if temperature < 0:
        raise ValueError(f"sample_tokens: argument 'temperature' must be >= 0, got {temperature}")
    if top_k < 0 or not 0.0 <= top_p <= 1.0:
        raise ValueError(f"sample_tokens: expected top_k >= 0 and 0 <= top_p <= 1, got {top_k}, {top_p}")
    logits = logits.float() / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        sorted_probs = sorted_logits.softmax(dim=-1)
        drop = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p  # keep the token that crosses top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class GenerationMixin:
    """``generate`` for models with ``forward(input_ids, inference_params=..., num_last_tokens=...)``."""

    @torch.inference_mode()
    def generate(self, input_ids: Tensor, max_length: int, top_k: int = 1, top_p: float = 0.0,
                 temperature: float = 1.0, eos_token_id: Optional[int] = None,
                 return_dict_in_generate: bool = False, output_scores: bool = False,
                 generator: Optional[torch.Generator] = None, **kwargs):
        """Extend ``input_ids`` (batch, L0) to ``max_length`` tokens (or until every row emitted
        ``eos_token_id``). Greedy by default (top_k=1); see :func:`sample_tokens` for sampling.

        Returns the sequences (batch, <= max_length), or a :class:`GenerationOutput` with
        ``return_dict_in_generate`` (and the logits of every step with ``output_scores``).
        """
        batch, prompt_len = input_ids.shape
        if max_length <= prompt_len:
            raise ValueError(f"generate: 'max_length' ({max_length}) must exceed the prompt length ({prompt_len})")
        vocab = self.config.vocab_size  # the padded tail of the embedding is never sampled
        recurrent = not getattr(self, "reorders", False)
        params = InferenceParams(max_seqlen=max_length, max_batch_size=batch) if recurrent else None
        sequences, scores = input_ids, []
        next_input = input_ids
        finished = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
        while sequences.shape[1] < max_length:
            if recurrent:
                logits = self(next_input, inference_params=params, num_last_tokens=1).logits[:, -1]
                params.seqlen_offset += next_input.shape[1]
            else:
                logits = self(sequences, num_last_tokens=1).logits[:, -1]
            logits = logits[:, :vocab]
            token = sample_tokens(logits, top_k=top_k, top_p=top_p, temperature=temperature, generator=generator)
            if eos_token_id is not None:
                token = token.masked_fill(finished, eos_token_id)
                finished |= token == eos_token_id
            if output_scores:
                scores.append(logits)
            next_input = token[:, None]
            sequences = torch.cat([sequences, next_input], dim=1)
            if eos_token_id is not None and bool(finished.all()):
                break
        if not return_dict_in_generate:
            return sequences
        return GenerationOutput(sequences=sequences, scores=tuple(scores) if output_scores else None)
