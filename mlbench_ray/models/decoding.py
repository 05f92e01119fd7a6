"""Batched greedy and beam-search decoding for the translation models.

A model decodes through three methods. `start(source, lengths)` encodes a batch and returns a cache.
`step(cache, tokens)` feeds one token per row and returns the next-token logits and the new cache.
`reorder(cache, index)` selects rows of the cache, the beams that survive a step.

Beam search keeps `beam` hypotheses per sentence, all sentences of a batch at once. A hypothesis ends
with `</s>`; a sentence is done once it has `beam` ended hypotheses or reaches its length limit, and
its best hypothesis maximizes log-probability / lp with GNMT's length penalty
lp = ((5 + length) / 6) ** alpha (Wu et al., 2016; the coverage penalty is not used).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from mlbench_ray.data.translation import BOS_ID, EOS_ID, PAD_ID


class Decodable(Protocol):
    def start(self, source: torch.Tensor, source_lengths: torch.Tensor) -> dict[str, Any]: ...

    def step(self, cache: dict[str, Any], tokens: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]: ...

    def reorder(self, cache: dict[str, Any], index: torch.Tensor) -> dict[str, Any]: ...


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    log_probs = logits.float().log_softmax(dim=-1)
    # Never generated: padding and the start symbol.
    log_probs[:, PAD_ID] = float("-inf")
    log_probs[:, BOS_ID] = float("-inf")
    return log_probs


def length_penalty(length: int, alpha: float) -> float:
    return ((5.0 + length) / 6.0) ** alpha


@torch.no_grad()
def greedy_decode(
    model: Decodable, source: torch.Tensor, source_lengths: torch.Tensor, max_lengths: list[int]
) -> list[list[int]]:
    """Decode greedily: take the most likely token at each step until `</s>` or the length limit."""
    rows = source.size(0)
    cache = model.start(source, source_lengths)
    tokens = torch.full((rows,), BOS_ID, dtype=torch.long, device=source.device)
    outputs: list[list[int]] = [[] for _ in range(rows)]
    done = [False] * rows
    for position in range(max(max_lengths)):
        logits, cache = model.step(cache, tokens)
        tokens = _log_probs(logits).argmax(dim=-1)
        for row, token in enumerate(tokens.tolist()):
            if done[row]:
                continue
            if token == EOS_ID or position >= max_lengths[row]:
                done[row] = True
            else:
                outputs[row].append(token)
        if all(done):
            break
    return outputs


@torch.no_grad()
def beam_search(
    model: Decodable,
    source: torch.Tensor,
    source_lengths: torch.Tensor,
    max_lengths: list[int],
    beam: int,
    alpha: float = 0.6,
) -> list[list[int]]:
    """Return each sentence's best hypothesis under beam search with GNMT's length penalty."""
    rows = source.size(0)
    device = source.device
    cache = model.start(source, source_lengths)
    cache = model.reorder(cache, torch.arange(rows, device=device).repeat_interleave(beam))
    scores = torch.zeros(rows, beam, device=device)
    scores[:, 1:] = float("-inf")  # the first step expands one hypothesis per sentence
    tokens = torch.full((rows * beam,), BOS_ID, dtype=torch.long, device=device)
    history = torch.zeros(rows * beam, 0, dtype=torch.long, device=device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(rows)]
    done = [False] * rows
    for position in range(max(max_lengths) + 1):
        logits, cache = model.step(cache, tokens)
        log_probs = _log_probs(logits).view(rows, beam, -1)
        vocab = log_probs.size(-1)
        candidates = (scores.unsqueeze(2) + log_probs).view(rows, -1)
        # The best 2 x beam extensions: at most `beam` of them end, so at least `beam` go on.
        top_scores, top_index = candidates.topk(2 * beam, dim=1)
        top_origin = top_index // vocab
        top_tokens = top_index % vocab
        ends = top_tokens.eq(EOS_ID)
        history_rows = history.view(rows, beam, -1)
        top_list, ends_list, origin_list = top_scores.tolist(), ends.tolist(), top_origin.tolist()
        for row in range(rows):
            if done[row]:
                continue
            if position >= max_lengths[row]:
                # At the length limit every live hypothesis ends, as if `</s>` came next.
                for k, score in enumerate(scores[row].tolist()):
                    if score != float("-inf"):
                        hypothesis = history_rows[row, k].tolist()
                        finished[row].append((score / length_penalty(position, alpha), hypothesis))
                done[row] = True
                continue
            # An ending extension among the best `beam` ends its hypothesis.
            for j in range(beam):
                if ends_list[row][j] and top_list[row][j] != float("-inf"):
                    hypothesis = history_rows[row, origin_list[row][j]].tolist()
                    finished[row].append((top_list[row][j] / length_penalty(position, alpha), hypothesis))
            if len(finished[row]) >= beam:
                done[row] = True
        if all(done):
            break
        # The `beam` best extensions that do not end go on.
        rank = torch.arange(2 * beam, device=device).expand(rows, -1) + ends.long() * 2 * beam
        keep = rank.argsort(dim=1)[:, :beam]
        scores = top_scores.gather(1, keep)
        origin = top_origin.gather(1, keep)
        next_tokens = top_tokens.gather(1, keep)
        finished_rows = torch.tensor(done, device=device)
        scores = scores.masked_fill(finished_rows.unsqueeze(1), float("-inf"))  # done rows idle on
        index = (origin + torch.arange(rows, device=device).unsqueeze(1) * beam).view(-1)
        cache = model.reorder(cache, index)
        tokens = next_tokens.reshape(-1)
        history = torch.cat([history.index_select(0, index), tokens.unsqueeze(1)], dim=1)
    results = []
    for row in range(rows):
        if finished[row]:
            results.append(max(finished[row], key=lambda item: item[0])[1])
        else:
            results.append([])
    return results


def decode(
    model: Decodable,
    source: torch.Tensor,
    source_lengths: torch.Tensor,
    max_lengths: list[int],
    beam: int,
    alpha: float,
) -> list[list[int]]:
    """Decode greedily when `beam` is 1, with beam search otherwise."""
    if beam == 1:
        return greedy_decode(model, source, source_lengths, max_lengths)
    return beam_search(model, source, source_lengths, max_lengths, beam, alpha)
