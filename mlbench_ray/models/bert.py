"""A BERT-style encoder with a masked-language-model head (Devlin et al., 2019).

Token and position embeddings, post-norm Transformer encoder layers with GELU (as in BERT), and the
MLM head (dense, GELU, LayerNorm, decoder tied to the token embedding). Logits are computed only at
the masked positions, which saves most of the decoder's cost. Weights start from a normal
distribution with standard deviation 0.02, as in BERT.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def weight_decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Return optimizer parameter groups that decay weight matrices only, as BERT does.

    Biases and LayerNorm weights get no weight decay.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.dim() >= 2 and "norm" not in name:
            decay.append(param)
        else:
            no_decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class BertMLM(nn.Module):
    """BERT encoder and masked-LM head."""

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        layers: int,
        heads: int,
        ffn_size: int,
        max_length: int,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, hidden_size)
        self.position_embedding = nn.Embedding(max_length, hidden_size)
        self.embedding_norm = nn.LayerNorm(hidden_size, eps=1e-12)
        self.embedding_dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            hidden_size,
            heads,
            ffn_size,
            dropout,
            activation="gelu",
            batch_first=True,
            norm_first=False,
            layer_norm_eps=1e-12,
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(
            nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.LayerNorm(hidden_size, eps=1e-12)
        )
        self.decoder_bias = nn.Parameter(torch.zeros(vocab_size))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, ids: torch.Tensor, predict: torch.Tensor) -> torch.Tensor:
        """`ids` is (batch, length); `predict` a boolean mask of the same shape. Returns the logits of
        the selected positions, (number selected, vocabulary), in row-major order."""
        positions = torch.arange(ids.size(1), device=ids.device)
        hidden = self.token_embedding(ids) + self.position_embedding(positions)[None]
        hidden = self.encoder(self.embedding_dropout(self.embedding_norm(hidden)))
        selected = self.head(hidden[predict])
        return selected @ self.token_embedding.weight.t() + self.decoder_bias
