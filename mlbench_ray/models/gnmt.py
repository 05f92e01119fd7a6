"""GNMT as MLPerf trains it (Wu et al., 2016): an LSTM encoder-decoder with normalized Bahdanau attention.

Encoder: a bidirectional first layer, then `layers - 1` unidirectional layers, residual connections
from the third layer on. Decoder: the first LSTM layer's outputs query the attention over the encoder
outputs. The context is concatenated to the input of every further layer, again with residual
connections from the third layer on. Because the attention depends only on the first decoder layer,
teacher-forced training runs each layer over the whole sequence at once. Source and target share one
embedding (one subword vocabulary); the output projection has its own weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mlbench_ray.data.translation import PAD_ID


class NormalizedBahdanauAttention(nn.Module):
    """score(q, k) = g * v / |v| . tanh(W_q q + W_k k + b), as in GNMT and MLPerf's reference."""

    def __init__(self, query_size: int, key_size: int, size: int) -> None:
        super().__init__()
        self.query = nn.Linear(query_size, size, bias=False)
        self.key = nn.Linear(key_size, size, bias=False)
        self.v = nn.Parameter(torch.empty(size).uniform_(-0.1, 0.1))
        self.bias = nn.Parameter(torch.zeros(size))
        self.gain = nn.Parameter(torch.tensor(1.0 / size**0.5))

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor:
        return self.key(keys)

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        projected_keys: torch.Tensor,
        key_padding: torch.Tensor,
    ) -> torch.Tensor:
        """Context (B, T, K) of queries (B, T, Q) over keys (B, S, K); key_padding (B, S) marks padding."""
        v = self.gain * self.v / self.v.norm()
        hidden = torch.tanh(self.query(queries).unsqueeze(2) + projected_keys.unsqueeze(1) + self.bias)
        scores = hidden @ v  # (B, T, S)
        scores = scores.masked_fill(key_padding.unsqueeze(1), float("-inf"))
        return torch.softmax(scores, dim=-1) @ keys


class GNMT(nn.Module):
    """GNMT with `layers` encoder and decoder layers of `hidden_size` units."""

    def __init__(
        self, vocab_size: int, hidden_size: int = 1024, layers: int = 4, dropout: float = 0.2
    ) -> None:
        super().__init__()
        if layers < 2:
            raise ValueError(f"GNMT needs at least 2 layers, got {layers}")
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(vocab_size, hidden_size, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(dropout)
        self.encoder_first = nn.LSTM(hidden_size, hidden_size, batch_first=True, bidirectional=True)
        self.encoder_layers = nn.ModuleList(
            [
                nn.LSTM(2 * hidden_size if i == 0 else hidden_size, hidden_size, batch_first=True)
                for i in range(layers - 1)
            ]
        )
        self.decoder_first = nn.LSTM(hidden_size, hidden_size, batch_first=True)
        self.attention = NormalizedBahdanauAttention(hidden_size, hidden_size, hidden_size)
        self.decoder_layers = nn.ModuleList(
            [nn.LSTM(2 * hidden_size, hidden_size, batch_first=True) for _ in range(layers - 1)]
        )
        self.classifier = nn.Linear(hidden_size, vocab_size)
        for name, parameter in self.named_parameters():
            if name.startswith(("encoder", "decoder")) or name == "embedding.weight":
                nn.init.uniform_(parameter, -0.1, 0.1)

    def encode(self, source: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder outputs (B, S, H) and the padding mask (B, S)."""
        x = self.dropout(self.embedding(source))
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        x, _ = self.encoder_first(packed)
        x, _ = pad_packed_sequence(x, batch_first=True, total_length=source.size(1))
        for index, layer in enumerate(self.encoder_layers):
            y, _ = layer(self.dropout(x))
            x = y + x if index >= 1 else y  # residual from the third layer on
        return x, source.eq(PAD_ID)

    def decode(
        self,
        target_input: torch.Tensor,
        memory: torch.Tensor,
        padding: torch.Tensor,
        projected: torch.Tensor,
        states: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Logits (B, T, V) for target inputs (B, T), and each decoder layer's final LSTM state."""
        layers = [self.decoder_first, *self.decoder_layers]
        states = states or [None] * len(layers)  # type: ignore[list-item]
        new_states = []
        x = self.dropout(self.embedding(target_input))
        x, state = self.decoder_first(x, states[0])
        new_states.append(state)
        context = self.attention(x, memory, projected, padding)
        for index, layer in enumerate(self.decoder_layers):
            y, state = layer(self.dropout(torch.cat([x, context], dim=-1)), states[index + 1])
            new_states.append(state)
            x = y + x if index >= 1 else y
        return self.classifier(self.dropout(x)), new_states

    def forward(
        self, source: torch.Tensor, source_lengths: torch.Tensor, target_input: torch.Tensor
    ) -> torch.Tensor:
        memory, padding = self.encode(source, source_lengths)
        logits, _ = self.decode(target_input, memory, padding, self.attention.project_keys(memory))
        return logits

    # Incremental decoding (see mlbench_ray.models.decoding).

    def start(self, source: torch.Tensor, source_lengths: torch.Tensor) -> dict[str, Any]:
        memory, padding = self.encode(source, source_lengths)
        return {
            "memory": memory,
            "padding": padding,
            "projected": self.attention.project_keys(memory),
            "states": None,
        }

    def step(self, cache: dict[str, Any], tokens: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        logits, states = self.decode(
            tokens.unsqueeze(1), cache["memory"], cache["padding"], cache["projected"], cache["states"]
        )
        return logits[:, -1], {**cache, "states": states}

    def reorder(self, cache: dict[str, Any], index: torch.Tensor) -> dict[str, Any]:
        states = cache["states"]
        return {
            "memory": cache["memory"].index_select(0, index),
            "padding": cache["padding"].index_select(0, index),
            "projected": cache["projected"].index_select(0, index),
            "states": None
            if states is None
            else [(h.index_select(1, index), c.index_select(1, index)) for h, c in states],
        }
