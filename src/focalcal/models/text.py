"""The paper's two text classifiers: a global-pooling CNN (20 Newsgroups) and a binary Tree-LSTM (SST).

Both follow the authors' code (github.com/torrvision/focal_calibration, ``NewsGroup/ng_model.py`` and
``treeLSTM/model.py``) and take their word vectors from the data (``embeddings``, a float ``[V, d]`` matrix; the
paper uses GloVe, 100-d for 20 Newsgroups and 300-d for SST).

* :class:`GlobalPoolingCNN` (``gpcnn``): frozen embeddings of front-padded token ids ``[B, L]`` -> three valid
  Conv1d(k=5) + ReLU layers with MaxPool1d(5, stride 1) after the first two -> global max over time -> Linear +
  ReLU -> Dropout(0.3) -> Linear. Its output depends on at most :data:`RECEPTIVE_FIELD` (21) consecutive
  tokens per time step, which makes trimming front padding exact (:func:`trim_front_padding`).
* :class:`TreeLSTM` (``treelstm``): the binary constituency Tree-LSTM of Tai et al. (2015), memory 150,
  fine-tuned embeddings, dropout 0.5 and a linear classifier at every node, evaluated level by level over a
  :class:`focalcal.data.trees.TreeBatch`.

>>> import torch
>>> from focalcal.data.trees import Trees, batch_trees
>>> vectors = torch.randn(10, 8)
>>> tree_lstm = TreeLSTM(3, vectors, memory=4, output_classes=(0, 2)).eval()
>>> trees = Trees.from_lists([([5, 7, -1], [-1, -1, 0], [-1, -1, 1], [2, 1, 2])])
>>> tree_lstm(batch_trees(trees, targets="nodes")).shape, tree_lstm(batch_trees(trees)).shape
(torch.Size([3, 3]), torch.Size([1, 2]))
>>> cnn = GlobalPoolingCNN(20, vectors).eval()
>>> cnn(torch.randint(0, 10, (2, 50))).shape, cnn.receptive_field
(torch.Size([2, 20]), 21)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.trees import TreeBatch
from ..errors import InputError

__all__ = ["RECEPTIVE_FIELD", "GlobalPoolingCNN", "TreeLSTM", "trim_front_padding"]

#: Kernel size of the global-pooling CNN's convolutions and of its max-pools (stride 1), as the authors' code.
KERNEL_SIZE = 5
POOL_SIZE = 5
#: Input tokens one output time step of the CNN's last convolution sees: three k=5 convolutions and two
#: 5-wide stride-1 max-pools, 1 + 3 * (5 - 1) + 2 * (5 - 1) = 21.
RECEPTIVE_FIELD = 1 + 3 * (KERNEL_SIZE - 1) + 2 * (POOL_SIZE - 1)


def _embedding(
    model: str,
    embeddings: Tensor | None,
    vocab_size: int | None,
    embedding_dim: int,
    *,
    freeze: bool,
    padding_idx: int | None,
) -> nn.Embedding:
    """An ``nn.Embedding`` holding a float32 copy of ``embeddings`` (or a random one of ``vocab_size`` rows)."""
    if embeddings is None:
        if vocab_size is None:
            raise InputError(
                f"{model} needs word vectors: pass embeddings=<float tensor [V, d]> (the data's GloVe matrix), or "
                "vocab_size=V (and embedding_dim=d) for randomly initialised ones"
            )
        if vocab_size < 1 or embedding_dim < 1:
            raise InputError(f"{model}: vocab_size and embedding_dim must be >= 1; got {vocab_size}, {embedding_dim}")
        layer = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
        layer.weight.requires_grad_(not freeze)
        return layer
    if not isinstance(embeddings, Tensor):
        try:
            embeddings = torch.as_tensor(embeddings)
        except (TypeError, ValueError, RuntimeError):
            raise InputError(
                f"{model}: embeddings must be a float tensor [V, d] (the data's word vectors); got "
                f"{type(embeddings).__name__}"
            ) from None
    if embeddings.dim() != 2 or not embeddings.dtype.is_floating_point or min(embeddings.shape) < 1:
        raise InputError(
            f"{model}: embeddings must be a float tensor [V, d] with V, d >= 1; got dtype {embeddings.dtype}, "
            f"shape {tuple(embeddings.shape)}"
        )
    if vocab_size is not None and vocab_size != embeddings.shape[0]:
        raise InputError(f"{model}: vocab_size={vocab_size} but embeddings have {embeddings.shape[0]} rows")
    if not bool(torch.isfinite(embeddings).all()):
        raise InputError(f"{model}: embeddings contain NaN or infinite values")
    weight = embeddings.detach().to(device="cpu", dtype=torch.float32).clone()  # never alias the data's matrix
    return nn.Embedding.from_pretrained(weight, freeze=freeze, padding_idx=padding_idx)


class GlobalPoolingCNN(nn.Module):
    """The authors' 20 Newsgroups classifier: token ids ``[B, L]`` int64 -> logits ``[B, num_classes]`` float32.

    Embedding (frozen by default) -> Conv1d(d->128, k5) + ReLU -> MaxPool1d(5, stride 1) -> Conv1d(128->128, k5)
    + ReLU -> MaxPool1d(5, stride 1) -> Conv1d(128->128, k5) + ReLU -> max over time -> Linear(128, 128) + ReLU
    -> Dropout -> Linear(128, num_classes) (``fc``, the classifier). All convolutions are 'valid' (no padding),
    so ``L >= receptive_field`` (21) is required.

    Args:
        num_classes: K, the number of classes (20).
        embeddings: ``[V, d]`` float word vectors (row 0 = padding id 0, the zero vector; out-of-vocabulary
            words zero rows too); copied to float32. Or None with ``vocab_size``: a random ``[V, embedding_dim]``.
        vocab_size, embedding_dim: the random embedding's size (only without ``embeddings``).
        freeze: keep the embedding fixed (the paper's setting); when False row 0 still gets no gradient.
        dropout: drop probability after the hidden layer (0.3 = the authors' keep_prob 0.7).
        group_rows: the convolutions see the batch's rows sorted by length in groups of this many, each group
            trimmed to its longest row plus the receptive field (:func:`trim_front_padding`, exact), and the
            features are put back in the batch's order before the hidden layer and dropout. The batch, its
            loss and its dropout draws are those of one ungrouped pass; only the convolutions' work shrinks
            (documents are mostly far shorter than the 1,000 tokens they are padded to: measured by
            ``benchmarks/text_speed.py``). None: one group, trimmed to the batch's longest row.

    Raises:
        InputError: no or malformed embeddings (not a finite float ``[V, d]``), ``dropout`` outside [0, 1), or
            ``group_rows`` < 1.

    Source: Mukhoti et al. (2020), Sec. 6 / appendix, and the authors' ``NewsGroup/ng_model.py``.
    """

    #: Input tokens seen by one output time step of the last convolution (see :data:`RECEPTIVE_FIELD`).
    receptive_field = RECEPTIVE_FIELD

    def __init__(
        self,
        num_classes: int,
        embeddings: Tensor | None = None,
        *,
        vocab_size: int | None = None,
        embedding_dim: int = 100,
        freeze: bool = True,
        dropout: float = 0.3,
        group_rows: int | None = 16,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"gpcnn: dropout must be in [0, 1); got {dropout}")
        if group_rows is not None and group_rows < 1:
            raise InputError(f"gpcnn: group_rows must be >= 1 or None; got {group_rows}")
        self.group_rows = group_rows
        self.embedding = _embedding("gpcnn", embeddings, vocab_size, embedding_dim, freeze=freeze, padding_idx=0)
        d = self.embedding.embedding_dim
        self.conv1 = nn.Conv1d(d, 128, KERNEL_SIZE)
        self.conv2 = nn.Conv1d(128, 128, KERNEL_SIZE)
        self.conv3 = nn.Conv1d(128, 128, KERNEL_SIZE)
        self.hidden = nn.Linear(128, 128)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(128, num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        """Logits ``[B, num_classes]`` float32 (float64 for a float64 model) of token ids ``tokens`` ``[B, L]``.

        ``tokens`` are int64 ids, front-padded with 0.

        Raises:
            InputError: ``tokens`` is not 2-D, or ``L < receptive_field``.
        """
        if tokens.dim() != 2 or tokens.shape[1] < self.receptive_field:
            raise InputError(
                f"gpcnn takes token ids [B, L] with L >= {self.receptive_field}; got shape {tuple(tokens.shape)} "
                "(front-pad shorter documents with id 0)"
            )
        if self.group_rows is None or tokens.shape[0] <= self.group_rows:
            x = self._features(trim_front_padding(tokens))
        else:  # rows of similar length together, each group trimmed to its own longest row, then the batch's order
            real = tokens != 0
            lengths = torch.where(real.any(dim=1), tokens.shape[1] - real.to(torch.uint8).argmax(dim=1), 0)
            order = torch.argsort(lengths, stable=True)
            parts = [self._features(trim_front_padding(tokens[rows])) for rows in order.split(self.group_rows)]
            inverse = torch.empty_like(order)
            inverse[order] = torch.arange(len(order), device=order.device)
            x = torch.cat(parts).index_select(0, inverse)
        logits = self.fc(self.dropout(F.relu(self.hidden(x))))
        return logits.to(torch.promote_types(logits.dtype, torch.float32))

    def _features(self, tokens: Tensor) -> Tensor:
        """The convolutional trunk: token ids ``[b, l]`` -> the global max over time ``[b, 128]``."""
        x = self.embedding(tokens).transpose(1, 2)  # [b, d, l]
        x = F.max_pool1d(F.relu(self.conv1(x)), POOL_SIZE, stride=1)
        x = F.max_pool1d(F.relu(self.conv2(x)), POOL_SIZE, stride=1)
        return F.relu(self.conv3(x)).amax(dim=2)


def trim_front_padding(tokens: Tensor, *, pad_id: int = 0, receptive_field: int = RECEPTIVE_FIELD) -> Tensor:
    """Drop leading columns of front-padded token ids that cannot change :class:`GlobalPoolingCNN`'s logits.

    Returns ``tokens[:, L - L']`` with ``L' = min(L, max_i(n_i) + receptive_field)``, where ``n_i`` counts the
    tokens of row ``i`` from its first non-``pad_id`` token on, so every row keeps at least ``receptive_field``
    (21) pad tokens in front (or all of them when it had fewer).

    Why this is exact: each output step ``t`` of the last convolution is a function of the 21-token window
    ``x[t:t+21]`` only (valid convolutions and stride-1 pools are translation-equivariant). With ``p >= 21`` pad
    tokens in front, the windows are: the windows that overlap the real tokens, holding 0..20 pad tokens before
    them (the same set for every ``p >= 20``), plus the all-padding window, a constant vector (its value is not
    0 in general: the convolution biases pass through ReLU). The global max over time therefore does not depend on
    ``p`` once ``p >= 21``. With exactly 20 pad tokens the all-padding window is missing and the max can differ,
    so ``receptive_field - 1`` is not enough. Leading tokens whose embedding equals the padding row (e.g.
    out-of-vocabulary zero rows when they share id ``pad_id``) are indistinguishable from padding, so counting
    them as padding is exact as well.

    Args:
        tokens: ``[B, L]`` integer token ids, front-padded with ``pad_id``.
        pad_id: the padding id (0).
        receptive_field: the model's receptive field (:data:`RECEPTIVE_FIELD`).

    Returns:
        A ``[B, L']`` view of ``tokens``.

    Raises:
        InputError: ``tokens`` is not 2-D.
    """
    if tokens.dim() != 2:
        raise InputError(f"tokens must be [B, L] token ids; got shape {tuple(tokens.shape)}")
    length = tokens.shape[1]
    real = tokens != pad_id
    if length == 0 or not bool(real.any()):
        keep = min(length, receptive_field)
    else:
        first = torch.where(real.any(dim=1), real.to(torch.uint8).argmax(dim=1), length)  # first real column
        keep = min(length, length - int(first.min()) + receptive_field)
    return tokens[:, length - keep :]


class TreeLSTM(nn.Module):
    """The binary constituency Tree-LSTM of Tai et al. (2015) with a classifier at every node.

    Leaf with word vector ``x``: ``c = W_c x + b_c``, ``h = sigmoid(W_o x + b_o) * tanh(c)``. Internal node with
    children ``(h_l, c_l)``, ``(h_r, c_r)``: gates ``[i, f_l, f_r, u(, o)] = W [h_l; h_r] + b`` (one linear layer
    over the concatenation, the same function as the authors' ``U_l h_l + U_r h_r + b``), ``c = sigmoid(i) *
    tanh(u) + sigmoid(f_l) * c_l + sigmoid(f_r) * c_r``, and ``h = tanh(c)`` by default: the authors' code
    (``treeLSTM/model.py``, ``BinaryTreeComposer``) has no output gate at internal nodes, so ``output_gate=False``
    reproduces the paper's numbers; ``output_gate=True`` gives Tai et al.'s ``h = sigmoid(o) * tanh(c)``. Each
    node's logits are ``fc(dropout(h))``.

    All trees of a batch are evaluated together, one step per tree level (:attr:`TreeBatch.levels`), gathering
    children from ``[M_b, memory]`` state buffers by index; no per-node Python work.

    Args:
        num_classes: width of the classifier (3 for SST: negative 0 / neutral 1 / positive 2).
        embeddings: ``[V, d]`` float word vectors (GloVe; out-of-vocabulary rows random), copied to float32. Or
            None with ``vocab_size``: a random ``[V, embedding_dim]``.
        vocab_size, embedding_dim: the random embedding's size (only without ``embeddings``).
        freeze: keep the embedding fixed (default False: fine-tuned, as the authors).
        memory: size of the memory cell and hidden state (150).
        dropout: drop probability on each node's ``h`` before the classifier (0.5).
        output_classes: class indices (e.g. ``(0, 2)``) kept in the logits of ROOT batches only
            (``batch.target_kind == "roots"``): SST's binary task predicts the sentence with the neutral logit
            removed, and softmax over the kept columns is the renormalised binary distribution. Column ``j`` is
            class ``output_classes[j]``, so root labels must be positions in ``output_classes``
            (:meth:`output_labels` maps them). Node batches (``"nodes"``, training) always get all
            ``num_classes`` columns.
        output_gate: add Tai et al.'s output gate at internal nodes (default False, as the authors' code).

    Raises:
        InputError: no or malformed embeddings, ``memory < 1``, ``dropout`` outside [0, 1), or
            ``output_classes`` not >= 2 distinct indices in ``[0, num_classes)``.

    Source: Tai, Socher & Manning (2015), "Improved Semantic Representations From Tree-Structured Long Short-Term
    Memory Networks", Sec. 3.2; Mukhoti et al. (2020) and the authors' ``treeLSTM/model.py``.
    """

    def __init__(
        self,
        num_classes: int = 3,
        embeddings: Tensor | None = None,
        *,
        vocab_size: int | None = None,
        embedding_dim: int = 300,
        freeze: bool = False,
        memory: int = 150,
        dropout: float = 0.5,
        output_classes: Sequence[int] | None = None,
        output_gate: bool = False,
    ) -> None:
        super().__init__()
        if memory < 1:
            raise InputError(f"treelstm: memory must be >= 1; got {memory}")
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"treelstm: dropout must be in [0, 1); got {dropout}")
        self.embedding = _embedding("treelstm", embeddings, vocab_size, embedding_dim, freeze=freeze, padding_idx=None)
        self.memory = memory
        self.num_classes = num_classes
        self.output_gate = bool(output_gate)
        self.leaf = nn.Linear(self.embedding.embedding_dim, 2 * memory)  # [c; o]
        self.compose = nn.Linear(2 * memory, (5 if self.output_gate else 4) * memory)  # [i; f_l; f_r; u(; o)]
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(memory, num_classes)
        self.output_classes: tuple[int, ...] | None = None
        if output_classes is not None:
            kept = tuple(int(k) for k in output_classes)
            if len(kept) < 2 or len(set(kept)) != len(kept) or not all(0 <= k < num_classes for k in kept):
                raise InputError(
                    f"treelstm: output_classes must be >= 2 distinct class indices in [0, {num_classes}); "
                    f"got {list(output_classes)}"
                )
            self.output_classes = kept
            self.register_buffer("_output_index", torch.tensor(kept, dtype=torch.int64), persistent=False)

    def output_labels(self, labels: Tensor) -> Tensor:
        """Map class labels ``[T]`` int64 to positions in ``output_classes`` (the root logits' columns).

        Raises:
            InputError: ``output_classes`` is not set, or a label is not one of them (e.g. a neutral root in
                the binary task).
        """
        if self.output_classes is None:
            raise InputError("treelstm: output_labels needs output_classes (e.g. output_classes=0,2)")
        index = self._output_index.to(labels.device)
        match = labels.unsqueeze(1) == index
        if not bool(match.any(dim=1).all()):
            bad = sorted(set(labels[~match.any(dim=1)].tolist()))
            raise InputError(f"labels {bad} are not among output_classes {list(self.output_classes)}")
        return match.to(torch.uint8).argmax(dim=1)

    def forward(self, batch: TreeBatch) -> Tensor:
        """Logits ``[len(batch.targets), C]`` float32 (float64 for a float64 model) of the batch's target nodes.

        ``C = len(output_classes)`` for root batches when ``output_classes`` is set, ``num_classes`` otherwise.

        Raises:
            InputError: ``batch`` is not a :class:`~focalcal.data.trees.TreeBatch`.
        """
        if not isinstance(batch, TreeBatch):
            raise InputError(f"treelstm takes a TreeBatch (focalcal.data.trees.batch_trees); got {type(batch)}")
        leaves = batch.levels[0]
        c_leaf, o_leaf = self.leaf(self.embedding(batch.words.index_select(0, leaves))).chunk(2, dim=1)
        dtype = torch.promote_types(c_leaf.dtype, torch.float32)  # states stay float32 (or float64) under autocast
        c_leaf = c_leaf.to(dtype)
        h_leaf = torch.sigmoid(o_leaf.to(dtype)) * torch.tanh(c_leaf)
        # state buffers indexed by global node id; index_copy_ and index_select save no tensor for backward,
        # so writing a level in place never invalidates the gradients of earlier reads
        h = h_leaf.new_zeros(batch.num_nodes, self.memory).index_copy_(0, leaves, h_leaf)
        c = c_leaf.new_zeros(batch.num_nodes, self.memory).index_copy_(0, leaves, c_leaf)
        for nodes in batch.levels[1:]:
            left, right = batch.left.index_select(0, nodes), batch.right.index_select(0, nodes)
            gates = self.compose(torch.cat([h.index_select(0, left), h.index_select(0, right)], dim=1)).to(dtype)
            parts = gates.chunk(5 if self.output_gate else 4, dim=1)
            c_new = (
                torch.sigmoid(parts[0]) * torch.tanh(parts[3])
                + torch.sigmoid(parts[1]) * c.index_select(0, left)
                + torch.sigmoid(parts[2]) * c.index_select(0, right)
            )
            h_new = torch.tanh(c_new)
            if self.output_gate:
                h_new = torch.sigmoid(parts[4]) * h_new
            h.index_copy_(0, nodes, h_new)
            c.index_copy_(0, nodes, c_new)
        logits = self.fc(self.dropout(h.index_select(0, batch.targets))).to(dtype)
        if self.output_classes is not None and batch.target_kind == "roots":
            logits = logits.index_select(1, self._output_index)
        return logits
