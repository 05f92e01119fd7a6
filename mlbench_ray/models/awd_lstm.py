"""AWD-LSTM (Merity et al., 2017): a multi-layer LSTM language model with five kinds of dropout.

- embedding dropout: whole rows of the embedding matrix (words) are dropped for a forward pass;
- input dropout and dropout between layers and on the output: one mask per sequence, shared over time;
- weight-drop (DropConnect) on each layer's hidden-to-hidden weights, one mask per forward pass.

Weight-drop is applied functionally: each layer owns its weights as ordinary parameters and passes a
dropped copy of the hidden-to-hidden matrix to the fused LSTM kernel that `nn.LSTM` itself calls. No
parameter is deleted or replaced, so DDP, the all-reduce scheme and `model.parameters()` see a fixed
set of parameters, all of which every step uses.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

Hidden = list[tuple[torch.Tensor, torch.Tensor]]


class WeightDropLSTM(nn.Module):
    """One LSTM layer whose hidden-to-hidden weights get dropout in training (DropConnect)."""

    def __init__(self, input_size: int, hidden_size: int, weight_drop: float) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_drop = weight_drop
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size))
        bound = 1.0 / math.sqrt(hidden_size)  # nn.LSTM's initialisation
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def forward(
        self, inputs: torch.Tensor, hidden: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """`inputs` is (time, batch, features); `hidden` is (h, c), each (1, batch, hidden_size)."""
        weight_hh = F.dropout(self.weight_hh, self.weight_drop, self.training)
        # NOTE: not yet run on a GPU. There cuDNN gets the weights as separate tensors, not one flat
        # buffer, and may warn that it copies them into its own layout on every call.
        # The fused kernel behind nn.LSTM (cuDNN on GPU), called with our weights: one layer,
        # unidirectional, time-major, no inter-layer dropout (AWD-LSTM applies its own).
        output, h, c = torch._VF.lstm(  # type: ignore[attr-defined]
            inputs,
            hidden,
            [self.weight_ih, weight_hh, self.bias_ih, self.bias_hh],
            True,
            1,
            0.0,
            self.training,
            False,
            False,
        )
        return output, (h, c)


def locked_dropout(inputs: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout with one mask per sequence, shared over the time dimension (dim 0)."""
    if not training or p == 0.0:
        return inputs
    mask = inputs.new_empty(1, inputs.size(1), inputs.size(2)).bernoulli_(1.0 - p) / (1.0 - p)
    return inputs * mask


def embedding_dropout(embedding: nn.Embedding, words: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Drop whole words: rows of the embedding matrix are zeroed for this forward pass."""
    weight = embedding.weight
    if training and p > 0.0:
        mask = weight.new_empty(weight.size(0), 1).bernoulli_(1.0 - p) / (1.0 - p)
        weight = weight * mask
    return F.embedding(words, weight)


class AWDLSTM(nn.Module):
    """Embedding, `layers` weight-dropped LSTM layers and a decoder tied to the embedding."""

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int = 400,
        hidden_size: int = 1150,
        layers: int = 3,
        dropout_output: float = 0.4,
        dropout_between: float = 0.2,
        dropout_input: float = 0.65,
        dropout_embedding: float = 0.1,
        weight_drop: float = 0.5,
    ) -> None:
        super().__init__()
        self.dropout_output = dropout_output
        self.dropout_between = dropout_between
        self.dropout_input = dropout_input
        self.dropout_embedding = dropout_embedding
        self.encoder = nn.Embedding(vocab_size, embedding_size)
        # The last layer's size is the embedding size, so that the decoder can share its weights.
        sizes = [embedding_size] + [hidden_size] * (layers - 1) + [embedding_size]
        self.rnns = nn.ModuleList(WeightDropLSTM(sizes[i], sizes[i + 1], weight_drop) for i in range(layers))
        self.decoder = nn.Linear(embedding_size, vocab_size)
        self.decoder.weight = self.encoder.weight
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def init_hidden(self, batch_size: int) -> Hidden:
        weight = self.encoder.weight
        return [
            (
                weight.new_zeros(1, batch_size, rnn.hidden_size),
                weight.new_zeros(1, batch_size, rnn.hidden_size),
            )
            for rnn in self.rnns
        ]

    def forward(
        self, words: torch.Tensor, hidden: Hidden
    ) -> tuple[torch.Tensor, Hidden, torch.Tensor, torch.Tensor]:
        """`words` is (time, batch). Returns logits (time, batch, vocabulary), the new hidden state,
        and the last layer's output before and after its dropout (for activation regularization)."""
        embedded = embedding_dropout(self.encoder, words, self.dropout_embedding, self.training)
        output = locked_dropout(embedded, self.dropout_input, self.training)
        new_hidden: Hidden = []
        raw_output = output
        for index, rnn in enumerate(self.rnns):
            raw_output, state = rnn(output, hidden[index])
            new_hidden.append(state)
            last = index == len(self.rnns) - 1
            output = locked_dropout(
                raw_output, self.dropout_output if last else self.dropout_between, self.training
            )
        return self.decoder(output), new_hidden, raw_output, output
