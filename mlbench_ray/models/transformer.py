"""Transformer "big" (Vaswani et al., 2017) with pre-norm layers, as fairseq trains it on WMT en-de.

6 encoder and 6 decoder layers, d_model 1024, feed-forward 4096, 16 heads, dropout 0.1, ReLU and
sinusoidal positions. Each stack ends with a layer norm, which pre-norm layers need. One embedding
matrix is shared by the encoder, the decoder and the output projection (fairseq's
`--share-all-embeddings`).
The layers are PyTorch's own `nn.TransformerEncoderLayer`/`nn.TransformerDecoderLayer`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlbench_ray.data.translation import PAD_ID


def sinusoidal_positions(length: int, size: int) -> torch.Tensor:
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    frequencies = torch.exp(torch.arange(0, size, 2, dtype=torch.float32) * (-math.log(10000.0) / size))
    table = torch.zeros(length, size)
    table[:, 0::2] = torch.sin(position * frequencies)
    table[:, 1::2] = torch.cos(position * frequencies[: size // 2])
    return table


class Transformer(nn.Module):
    """Encoder-decoder Transformer with shared embeddings and pre-norm layers."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 1024,
        ffn_size: int = 4096,
        heads: int = 16,
        layers: int = 6,
        dropout: float = 0.1,
        max_positions: int = 1024,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=PAD_ID)
        nn.init.normal_(self.embedding.weight, mean=0.0, std=d_model**-0.5)
        with torch.no_grad():
            self.embedding.weight[PAD_ID].zero_()
        self.register_buffer("positions", sinusoidal_positions(max_positions, d_model), persistent=False)
        self.dropout = nn.Dropout(dropout)

        def encoder_layer() -> nn.Module:
            return nn.TransformerEncoderLayer(
                d_model, heads, ffn_size, dropout, activation="relu", batch_first=True, norm_first=True
            )

        def decoder_layer() -> nn.Module:
            return nn.TransformerDecoderLayer(
                d_model, heads, ffn_size, dropout, activation="relu", batch_first=True, norm_first=True
            )

        self.encoder = nn.TransformerEncoder(
            encoder_layer(), layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False
        )
        self.decoder = nn.TransformerDecoder(decoder_layer(), layers, norm=nn.LayerNorm(d_model))
        for name, parameter in self.named_parameters():
            if parameter.dim() > 1 and not name.startswith("embedding"):
                nn.init.xavier_uniform_(parameter)

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = self.positions
        if tokens.size(1) > positions.size(0):  # a test sentence longer than any seen in training
            positions = sinusoidal_positions(tokens.size(1), self.d_model).to(positions.device)
        x = self.embedding(tokens) * math.sqrt(self.d_model) + positions[: tokens.size(1)]
        return self.dropout(x)

    def encode(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        padding = source.eq(PAD_ID)
        return self.encoder(self._embed(source), src_key_padding_mask=padding), padding

    def decode(self, target_input: torch.Tensor, memory: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        length = target_input.size(1)
        causal = torch.ones(length, length, dtype=torch.bool, device=target_input.device).triu(diagonal=1)
        x = self.decoder(
            self._embed(target_input),
            memory,
            tgt_mask=causal,
            tgt_key_padding_mask=target_input.eq(PAD_ID),
            memory_key_padding_mask=padding,
        )
        return F.linear(x, self.embedding.weight)

    def forward(
        self, source: torch.Tensor, source_lengths: torch.Tensor, target_input: torch.Tensor
    ) -> torch.Tensor:
        memory, padding = self.encode(source)
        return self.decode(target_input, memory, padding)

    # Incremental decoding (see mlbench_ray.models.decoding). Each decoder layer caches the normalized
    # inputs of its self-attention for the positions decoded so far, so a step runs the layers for the
    # new position only; the result equals the full decoder run over the prefix (tested).

    def start(self, source: torch.Tensor, source_lengths: torch.Tensor) -> dict[str, Any]:
        memory, padding = self.encode(source)
        empty = memory.new_zeros((source.size(0), 0, self.d_model))
        states = [empty for _ in self.decoder.layers]
        return {"memory": memory, "padding": padding, "states": states, "length": 0}

    def step(self, cache: dict[str, Any], tokens: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        position = cache["length"]
        if position >= self.positions.size(0):
            positions = sinusoidal_positions(position + 1, self.d_model).to(self.positions.device)
        else:
            positions = self.positions
        x = self.dropout(self.embedding(tokens.unsqueeze(1)) * math.sqrt(self.d_model) + positions[position])
        memory, padding = cache["memory"], cache["padding"]
        states = []
        for layer, past in zip(self.decoder.layers, cache["states"], strict=True):
            # The pre-norm decoder layer of nn.TransformerDecoderLayer, for one new position.
            normalized = layer.norm1(x)
            keys = torch.cat([past, normalized], dim=1)
            attended = layer.self_attn(normalized, keys, keys, need_weights=False)[0]
            x = x + layer.dropout1(attended)
            attended = layer.multihead_attn(
                layer.norm2(x), memory, memory, key_padding_mask=padding, need_weights=False
            )[0]
            x = x + layer.dropout2(attended)
            x = x + layer._ff_block(layer.norm3(x))
            states.append(keys)
        x = self.decoder.norm(x)
        logits = F.linear(x[:, 0], self.embedding.weight)
        return logits, {"memory": memory, "padding": padding, "states": states, "length": position + 1}

    def reorder(self, cache: dict[str, Any], index: torch.Tensor) -> dict[str, Any]:
        return {
            "memory": cache["memory"].index_select(0, index),
            "padding": cache["padding"].index_select(0, index),
            "states": [state.index_select(0, index) for state in cache["states"]],
            "length": cache["length"],
        }
