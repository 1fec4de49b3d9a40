"""SSM-Net: patch encoder, scaled cosine self-similarity, and novelty head.

Tensors in, tensors out: no I/O here. Shapes use T for the number of patches of a track
and E = 128 for the embedding size.
"""

from __future__ import annotations


import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig

EMBEDDING_DIM = 128


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d(..., padding="same")`` that pads explicitly.

    The last conv block has an even kernel (5 x 2), as the author's model; PyTorch's 'same'
    pads it asymmetrically (``(k - 1) // 2`` zeros before, the rest after) and warns about
    the copy on every call.  Padding here the same way gives identical
    outputs without the warning, and without a process-wide warnings filter.  The parameters
    (``weight``, ``bias``) are those of ``nn.Conv2d``, so checkpoints load unchanged.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int]
                 ) -> None:
        super().__init__(in_channels, out_channels, kernel_size=kernel_size, padding=0)
        (kh, kw) = self.kernel_size
        # F.pad order: (left, right, top, bottom); PyTorch's 'same' puts the odd zero after.
        self.same_pad = ((kw - 1) // 2, kw - 1 - (kw - 1) // 2,
                         (kh - 1) // 2, kh - 1 - (kh - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.same_pad))

# (out channels, conv kernel, pool) of the first four blocks; the fifth block's conv kernel
# and pool cover what remains of the patch, so that each patch ends as one 128-d vector
# (with 80 x 40 patches: (5, 2), as the author's release).
_CONV_BLOCKS = [(32, (5, 5), (2, 2)), (32, (5, 5), (2, 2)),
                (64, (5, 5), (2, 2)), (64, (5, 5), (2, 2))]


def _conv_block(in_channels: int, out_channels: int, kernel: tuple[int, int],
                pool: tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(
        SameConv2d(in_channels, out_channels, kernel),
        nn.PReLU(),
        nn.MaxPool2d(kernel_size=pool))


class PatchEncoder(nn.Module):
    """Five conv blocks, N Transformer encoder blocks over the patch sequence, tanh, L2 norm.

    Parameters
    ----------
    config : ModelConfig

    Notes
    -----
    The convolutions see each patch on its own, so they run in chunks of
    ``conv_chunk`` patches to bound memory on long tracks; the Transformer blocks see the
    whole sequence (no positional encoding, as the author's model).
    """

    def __init__(self, config: ModelConfig, conv_chunk: int = 512) -> None:
        super().__init__()
        self.conv_chunk = conv_chunk
        height, width = config.n_mels, config.patch_steps
        blocks, in_channels = [], 1
        for out_channels, kernel, pool in _CONV_BLOCKS:
            blocks.append(_conv_block(in_channels, out_channels, kernel, pool))
            in_channels, height, width = out_channels, height // pool[0], width // pool[1]
        blocks.append(_conv_block(in_channels, EMBEDDING_DIM, (height, width), (height, width)))
        self.conv = nn.Sequential(*blocks)
        self.attention = nn.Sequential(*[
            nn.TransformerEncoderLayer(d_model=EMBEDDING_DIM, nhead=config.attention_heads,
                                       dim_feedforward=config.attention_ff,
                                       dropout=config.dropout, batch_first=True)
            for _ in range(config.attention_layers)])

    def use_cpu_layout(self, conv_chunk: int) -> None:
        """Channels-last convolution weights and chunks of ``conv_chunk`` patches: much
        faster with oneDNN on a CPU (see :class:`~msaf_learned_ssm.inference.Analyzer`)."""
        self.conv.to(memory_format=torch.channels_last)
        self.conv_chunk = conv_chunk

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """Embed the patches of one track.

        Parameters
        ----------
        patches : torch.Tensor, shape (T, n_mels, patch_steps)

        Returns
        -------
        torch.Tensor, shape (T, 128)
            Unit-norm embeddings.
        """
        return self._attend(self.conv_features(patches))

    def conv_features(self, patches: torch.Tensor) -> torch.Tensor:
        """The conv blocks alone: (T, n_mels, patch_steps) -> (T, 128). Each patch is
        independent here, so patches of several tracks may share one call."""
        x = patches.unsqueeze(1)
        if self.training:
            parts = [self.conv(chunk).flatten(1) for chunk in torch.split(x, self.conv_chunk)]
        else:
            # Per block: its PReLU slopes are all >= 0 (see _conv_blocks_eval).
            pool_first = [bool((block[1].weight >= 0).all()) for block in self.conv]
            parts = [_conv_blocks_eval(self.conv, pool_first, chunk).flatten(1)
                     for chunk in torch.split(x, self.conv_chunk)]
        return torch.cat(parts) if parts else x.new_zeros((0, EMBEDDING_DIM))

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        """Transformer blocks over one track's sequence, tanh, L2 norm: (T, 128) -> (T, 128)."""
        if len(self.attention) and x.shape[0]:
            x = x.unsqueeze(0)
            for layer in self.attention:
                # In eval mode, PyTorch's own fast path forms the (heads, T, T) attention
                # weights: ~1.9 GB per layer for a 60-minute track. The fused
                # scaled-dot-product kernel gives the same output in O(T) memory.
                x = _encoder_layer_eval(layer, x) if not self.training else layer(x)
            x = x.squeeze(0)
        return F.normalize(torch.tanh(x), p=2, dim=1)

    def forward_tracks(self, tracks: list[torch.Tensor]) -> list[torch.Tensor]:
        """Embed several tracks, their convolutions in one batch (fuller GPU batches).

        Parameters
        ----------
        tracks : list of torch.Tensor, each shape (T_i, n_mels, patch_steps)

        Returns
        -------
        list of torch.Tensor, each shape (T_i, 128)
            The same as :meth:`forward` on each track.
        """
        if not tracks:
            return []
        features = self.conv_features(torch.cat(tracks))
        return [self._attend(x) for x in torch.split(features, [len(t) for t in tracks])]


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _conv_blocks_eval(blocks: nn.Sequential, pool_first: list[bool], x: torch.Tensor
                      ) -> torch.Tensor:
    """Conv blocks (conv, PReLU, max-pool) with the pooling before the PReLU where allowed.

    A PReLU whose slopes are all >= 0 is non-decreasing, so it commutes with the max:
    ``pool(prelu(h)) == prelu(pool(h))`` exactly, and the PReLU then runs on a quarter of
    the values (the 2 x 2 pools).

    Parameters
    ----------
    blocks : nn.Sequential
        :class:`PatchEncoder`'s ``conv``.
    pool_first : list of bool
        Per block: its PReLU slopes are all >= 0.
    x : torch.Tensor, shape (B, 1, n_mels, patch_steps)

    Returns
    -------
    torch.Tensor, shape (B, 128, 1, 1)
    """
    for (conv, prelu, pool), swap in zip(blocks, pool_first):
        x = conv(x)
        x = prelu(_max_pool_eval(pool, x)) if swap else _max_pool_eval(pool, prelu(x))
    return x


def _max_pool_eval(pool: nn.MaxPool2d, x: torch.Tensor) -> torch.Tensor:
    """``pool(x)`` for a 2 x 2 pool (stride 2), as the max of four strided views.

    Same values (the max of the same four numbers, NaN propagating as in ``pool``), about
    2.5x faster than ``max_pool2d`` on channels-last tensors, which also computes the
    argmax indices that inference does not need. Other pools run ``pool(x)``.
    """
    if not (_pair(pool.kernel_size) == (2, 2) and _pair(pool.stride) == (2, 2)
            and _pair(pool.padding) == (0, 0) and _pair(pool.dilation) == (1, 1)
            and not pool.ceil_mode):
        return pool(x)
    height, width = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2  # floor, as the pool
    x = x[..., :height, :width]
    rows = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
    return torch.maximum(rows[..., 0::2], rows[..., 1::2])


def _encoder_layer_eval(layer: nn.TransformerEncoderLayer, x: torch.Tensor) -> torch.Tensor:
    """Eval-mode forward of a post-norm ReLU encoder layer, attention fused (no T x T matrix).

    Equals ``layer(x)`` in eval mode (within float rounding, ~1e-6) without materialising
    the attention weights: :func:`torch.nn.functional.scaled_dot_product_attention` uses a
    flash / memory-efficient kernel on CPU and GPU. Other layer variants (pre-norm, GELU)
    fall back to ``layer(x)``.

    Parameters
    ----------
    layer : nn.TransformerEncoderLayer
        With ``batch_first=True``; dropout is not applied (eval mode).
    x : torch.Tensor, shape (B, T, E)

    Returns
    -------
    torch.Tensor, shape (B, T, E)
    """
    attn = layer.self_attn
    # Internal attributes of torch's modules, read with defaults that choose the plain path:
    # a torch release that renames them loses the fused path, not correctness.
    relu = getattr(layer, "activation_relu_or_gelu", 0) == 1
    packed = getattr(attn, "_qkv_same_embed_dim", False)
    if (getattr(layer, "norm_first", True) or not relu or not attn.batch_first or not packed
            or getattr(attn, "in_proj_weight", None) is None or attn.in_proj_bias is None):
        return layer(x)
    batch, length, dim = x.shape
    heads = attn.num_heads
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)  # (B, T, 3E)
    q, k, v = qkv.view(batch, length, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
    a = F.scaled_dot_product_attention(q, k, v)  # (B, heads, T, E / heads)
    a = attn.out_proj(a.transpose(1, 2).reshape(batch, length, dim))
    x = layer.norm1(x + a)
    return layer.norm2(x + layer.linear2(F.relu(layer.linear1(x))))


def cosine_ssm(embeddings: torch.Tensor) -> torch.Tensor:
    """Scaled cosine self-similarity ``1 - ||e_i - e_j||^2 / 4``, in [0, 1] for unit vectors.

    Parameters
    ----------
    embeddings : torch.Tensor, shape (T, E)

    Returns
    -------
    torch.Tensor, shape (T, T)
    """
    return 1.0 - torch.cdist(embeddings, embeddings).pow(2) / 4.0


def ssm_band(embeddings: torch.Tensor, half_width: int, chunk: int = 256) -> torch.Tensor:
    """Diagonal band of :func:`cosine_ssm`, without forming the T x T matrix.

    Parameters
    ----------
    embeddings : torch.Tensor, shape (T, E)
    half_width : int >= 0
        Largest diagonal offset kept.
    chunk : int > 0
        Rows computed at once (memory ``chunk * (chunk + 2 * half_width)`` floats).

    Returns
    -------
    torch.Tensor, shape (T, 2 * half_width + 1)
        ``band[i, half_width + d] = S[i, i + d]``, and 0 where ``i + d`` is outside the
        track (the zero padding of a 'same' convolution). Memory O(T * half_width).

    Notes
    -----
    Squared distances come from ``|a|^2 + |b|^2 - 2 a.b`` with the dot products of a chunk
    of rows against its partners in one matrix product, as :func:`torch.cdist` (and so
    :func:`cosine_ssm`) computes them: one product per chunk instead of a
    (T, E, 2 * half_width + 1) difference tensor (0.4 ms instead of 20 ms for 421
    patches, measured on 2 CPU cores).
    """
    n, width = embeddings.shape[0], 2 * half_width + 1
    if n == 0:
        return embeddings.new_zeros((0, width))
    norms = embeddings.pow(2).sum(dim=1)
    padded = F.pad(embeddings, (0, 0, half_width, half_width))  # (T + 2w, E), zero rows
    padded_norms = F.pad(norms, (half_width, half_width))
    rows = []
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        size = stop - start
        dots = embeddings[start:stop] @ padded[start: stop + 2 * half_width].T  # (B, B + 2w)
        # Row i's partners i - w ... i + w sit at columns i ... i + 2w of `dots`.
        band_dots = dots.as_strided((size, width), (dots.shape[1] + 1, 1))
        partner_norms = padded_norms[start: stop + 2 * half_width].unfold(0, width, 1)
        squared = (norms[start:stop, None] + partner_norms - 2.0 * band_dots).clamp_min(0.0)
        rows.append(1.0 - squared / 4.0)
    band = torch.cat(rows)
    # Pairs outside the track are 0 (the zero padding of a 'same' convolution).
    partner = torch.arange(n, device=band.device)[:, None] + torch.arange(
        -half_width, half_width + 1, device=band.device)
    return band.masked_fill((partner < 0) | (partner >= n), 0.0)


def diagonal_conv(band: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                  chunk: int = 512) -> torch.Tensor:
    """Diagonal of a zero-padded 'same' 2-D cross-correlation of the SSM, from its band.

    Value i needs only the K x K window around (i, i), so this costs O(T K^2) time and
    O(T K) memory, and equals ``conv2d(S, weight, padding='same')[:, i, i]``.

    Parameters
    ----------
    band : torch.Tensor, shape (T, 2 * (K - 1) + 1)
        Output of :func:`ssm_band` with ``half_width = K - 1``.
    weight : torch.Tensor, shape (C, 1, K, K)
        Odd-sized kernels.
    bias : torch.Tensor, shape (C,)
    chunk : int > 0
        Rows whose K x K windows are gathered at once (``chunk * K^2`` floats, 4 MB with
        the defaults), so the memory stays O(T K) for any length.

    Returns
    -------
    torch.Tensor, shape (T, C)
    """
    n_kernels, _, size, _ = weight.shape
    half = (size - 1) // 2
    n = band.shape[0]
    padded = F.pad(band, (0, 0, half, half))  # rows outside the track are zero
    # Kernel cell (a, b) reads SSM row i + a - half at offset d = b - a, i.e. band column
    # 2 * half + b - a of padded row i + a. Gathering the windows of a chunk of rows turns
    # them into one matrix product (few large ops are much faster than K small ones).
    a = torch.arange(size, device=band.device)
    cols = ((2 * half - a)[:, None] + a[None, :])[None]  # (1, K, K)
    flat_weight = weight.reshape(n_kernels, size * size).T
    out = []
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        rows = torch.arange(start, stop, device=band.device)[:, None, None] + a[None, :, None]
        windows = padded[rows, cols]  # (chunk, K, K)
        out.append(torch.addmm(bias, windows.reshape(stop - start, size * size), flat_weight))
    return torch.cat(out) if out else band.new_zeros((0, n_kernels))


def checkerboard_kernel(half: int, sigma: float) -> np.ndarray:
    """Gaussian-tapered checkerboard kernel (Foote), centre row and column zero.

    Parameters
    ----------
    half : int
        Half-size L; the kernel is (2L + 1) x (2L + 1).
    sigma : float > 0
        Gaussian taper (in cells).

    Returns
    -------
    np.ndarray, shape (2L + 1, 2L + 1)
        ``sign(m) sign(n) exp(-(m^2 + n^2) / (2 sigma^2))``, positive on the two
        within-segment quadrants.
    """
    m = np.arange(-half, half + 1)
    sign = np.sign(m)
    gauss = np.exp(-(m[:, None] ** 2 + m[None, :] ** 2) / (2.0 * sigma ** 2))
    return sign[:, None] * sign[None, :] * gauss


class NoveltyHead(nn.Module):
    """K learnable kernels along the SSM's diagonal, a 1x1 combination and a sigmoid.

    Parameters
    ----------
    config : ModelConfig
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        size = config.kernel_size
        self.kernels = nn.Conv2d(1, config.kernel_count, kernel_size=size, padding="same")
        self.combine = nn.Conv2d(config.kernel_count, 1, kernel_size=1)
        if config.kernel_init == "checkerboard":
            init = np.stack([0.05 * checkerboard_kernel(config.kernel_half_patches,
                                                        config.kernel_sigma_steps - k)
                             for k in range(config.kernel_count)])[:, None]
            with torch.no_grad():
                self.kernels.weight.copy_(torch.from_numpy(init).float())
        if config.freeze_kernels:
            self.kernels.weight.requires_grad_(False)

    @property
    def size(self) -> int:
        return int(self.kernels.weight.shape[-1])

    def _combine(self, responses: torch.Tensor) -> torch.Tensor:
        w = self.combine.weight[0, :, 0, 0]
        return torch.sigmoid(responses @ w + self.combine.bias[0])

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Novelty curve from embeddings, computed on the SSM's diagonal band only.

        Parameters
        ----------
        embeddings : torch.Tensor, shape (T, E)

        Returns
        -------
        torch.Tensor, shape (T,)
            Boundary probability of each patch.
        """
        band = ssm_band(embeddings, self.size - 1)
        return self._combine(diagonal_conv(band, self.kernels.weight, self.kernels.bias))

    def forward_full(self, ssm: torch.Tensor) -> torch.Tensor:
        """Reference path of the author: convolve the whole T x T SSM, take the diagonal.

        O(T^2 K^2) time and O(T^2 K) memory; kept for tests and benchmarks.

        Parameters
        ----------
        ssm : torch.Tensor, shape (T, T)

        Returns
        -------
        torch.Tensor, shape (T,)
        """
        maps = self.kernels(ssm[None, None])[0]  # (K, T, T)
        return self._combine(torch.diagonal(maps, dim1=1, dim2=2).T)


class SSMNet(nn.Module):
    """The whole model: patches -> embeddings -> (SSM, novelty).

    Parameters
    ----------
    config : ModelConfig
        Stored as ``self.config``; saved in every checkpoint.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        self.encoder = PatchEncoder(self.config)
        self.novelty = NoveltyHead(self.config)

    def embed(self, patches: torch.Tensor) -> torch.Tensor:
        """(T, n_mels, patch_steps) patches -> (T, 128) unit-norm embeddings."""
        return self.encoder(patches)

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings and novelty of one track.

        Parameters
        ----------
        patches : torch.Tensor, shape (T, n_mels, patch_steps)

        Returns
        -------
        embeddings : torch.Tensor, shape (T, 128)
            Use :func:`cosine_ssm` for the T x T SSM when needed (training, plots).
        novelty : torch.Tensor, shape (T,)
        """
        embeddings = self.encoder(patches)
        return embeddings, self.novelty(embeddings)


class EnsembleEncoder(nn.Module):
    """The encoders of several models side by side, their embeddings joined.

    Member ``i``'s unit-norm embedding ``e_i`` becomes the slice ``e_i / sqrt(k)`` of a
    (T, 128 k) unit-norm embedding, so the scaled cosine SSM of the joined embeddings is
    exactly the mean of the members' SSMs (``e . e' = mean_i e_i . e_i'``), and everything
    that reads an SSM off embeddings (labels, plots) sees the ensemble's mean.

    Parameters
    ----------
    encoders : sequence of PatchEncoder
    """

    def __init__(self, encoders) -> None:
        super().__init__()
        self.members = nn.ModuleList(encoders)
        self.scale = 1.0 / float(np.sqrt(len(self.members)))

    def use_cpu_layout(self, conv_chunk: int) -> None:
        """Channels-last convolutions in chunks of ``conv_chunk`` patches, in every member."""
        for member in self.members:
            member.use_cpu_layout(conv_chunk)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """(T, n_mels, patch_steps) -> (T, 128 k) unit-norm joined embeddings."""
        return torch.cat([m(patches) for m in self.members], dim=1) * self.scale

    def forward_tracks(self, tracks: list[torch.Tensor]) -> list[torch.Tensor]:
        """:meth:`forward` of each track, each member's convolutions batched over tracks."""
        per_member = [m.forward_tracks(tracks) for m in self.members]
        return [torch.cat(parts, dim=1) * self.scale for parts in zip(*per_member)]


class EnsembleNovelty(nn.Module):
    """The members' novelty heads, each on its own slice of the joined embeddings; the
    ensemble's novelty is the mean of their curves.

    Parameters
    ----------
    heads : sequence of NoveltyHead
    """

    def __init__(self, heads) -> None:
        super().__init__()
        self.members = nn.ModuleList(heads)

    @property
    def size(self) -> int:
        return max(head.size for head in self.members)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(T, 128 k) joined embeddings -> (T,) mean of the members' novelty curves."""
        k = len(self.members)
        parts = torch.split(embeddings * float(np.sqrt(k)), EMBEDDING_DIM, dim=1)
        return torch.stack([head(part) for head, part in zip(self.members, parts)]).mean(0)


class EnsembleSSMNet(SSMNet):
    """Several SSM-Nets of one front-end as one model: mean SSM, mean novelty.

    Behaves as :class:`SSMNet` for inference (``forward``, ``embed``, ``encoder.forward_tracks``,
    ``novelty``); embeddings are (T, 128 k). It is not trained: each member is a trained
    model.

    Parameters
    ----------
    members : sequence of SSMNet
        Two or more models whose front-end settings and patch grid agree (their patches
        are the same); the first one's config is the ensemble's.
    """

    def __init__(self, members) -> None:
        nn.Module.__init__(self)
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two models, got {len(members)}")
        if any(isinstance(m, EnsembleSSMNet) for m in members):
            raise ValueError("an ensemble cannot hold another ensemble; list its members")
        self.config = members[0].config
        self.encoder = EnsembleEncoder([m.encoder for m in members])
        self.novelty = EnsembleNovelty([m.novelty for m in members])
