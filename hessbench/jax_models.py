"""hessbench's models as pure JAX functions of the SAME weights as the PyTorch modules.

``from_torch(model) -> (apply_fn, params)`` converts a trained ``torch.nn.Module`` of a known
structure: ``apply_fn(params, x)`` is its forward pass in plain ``jax.numpy``/``jax.lax`` and
``params`` an ``OrderedDict`` of NumPy arrays keyed by the torch parameter names, in the order
of ``model.named_parameters()`` and in torch's layouts (Linear weight (out, in), Conv2d weight
OIHW, images NCHW). ``jax.flatten_util.ravel_pytree(params)`` therefore gives exactly the flat
vector of ``hessbench.backends.torch.HessianOperator``: the same seed draws the same start vector
on both backends, and vectors move between them unchanged.

Supported: ``nn.Sequential``, ``nn.Linear``, ``nn.Conv2d`` (zero padding, any stride, dilation,
groups), ``nn.BatchNorm1d/2d`` (inference form: running statistics and the module's ``eps``,
whatever the module's train flag, as the torch operator's eval mode), ``nn.Tanh``, ``nn.ReLU``,
``nn.Flatten``, ``nn.Identity``, ``nn.Dropout`` (identity, as in eval mode), the CIFAR ResNets
of :mod:`hessbench.resnet` (``CifarResNet``, ``BasicBlock``) and the stochastic quadratic's
``StochasticQuadraticModel``. Anything else raises ``TypeError`` naming the module.

Activation layout. ``apply_fn`` takes NCHW images like the torch model and returns what it
returns, but by default (``layout="NHWC"``) keeps 4-D activations channels-last inside: XLA's
CPU convolutions (Eigen) are channels-last, so NCHW convolutions cost transposes around every
convolution and its derivatives, and convolutions inside a ``lax.scan``/``while`` body stay in
a slow NCHW loop. Layers that depend on the layout (Conv2d, BatchNorm2d, Flatten, Linear on a
4-D input, the ResNet's pooling) read it; the values are the same up to float32 rounding (the
order of the sums in a convolution). ``layout="NCHW"`` computes in torch's layout throughout.

Buffers (BatchNorm running statistics, the quadratic's spectrum and bases) and parameters that do
not require grad are constants of ``apply_fn``, cast at trace time to the dtype of ``params``
(as the torch operator casts them to its dtype). ``loss_from_torch`` translates the losses the
problems use (``F.cross_entropy``, ``F.mse_loss``, the quadratic's mean) and
``operator_from_parts`` builds the JAX operator of a problem's ``TorchProblemParts``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from jax import lax
from torch import nn

__all__ = ["cross_entropy", "from_torch", "loss_from_torch", "operator_from_parts"]

State = dict[str, Any]
Forward = Callable[[State, Any], Any]

SUPPORTED = ("Sequential", "Linear", "Conv2d", "BatchNorm1d", "BatchNorm2d", "Tanh", "ReLU",
             "Flatten", "Identity", "Dropout", "CifarResNet", "BasicBlock",
             "StochasticQuadraticModel")


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


LAYOUTS = ("NHWC", "NCHW")


def from_torch(model: nn.Module, *, layout: str = "NHWC"
               ) -> tuple[Callable[[Any, Any], Any], OrderedDict]:
    """``(apply_fn, params)`` with ``apply_fn(params, x)`` equal to ``model(x)`` in eval mode.

    ``params`` holds the parameters with ``requires_grad`` (the ones the torch operator
    differentiates by default); the others and the floating buffers are constants.
    ``layout``: of 4-D activations inside ``apply_fn`` (module docstring); inputs and outputs
    are in torch's layout either way.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"from_torch expects a torch.nn.Module, got {type(model).__name__}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
    nhwc = layout == "NHWC"
    forward = _build(model, "", nhwc)
    params = OrderedDict((k, _numpy(p)) for k, p in model.named_parameters() if p.requires_grad)
    if not params:
        raise ValueError("the model has no parameters that require grad")
    constants = {k: _numpy(p) for k, p in model.named_parameters() if not p.requires_grad}
    constants.update({k: _numpy(b) for k, b in model.named_buffers()
                      if b.is_floating_point()})
    names = tuple(params)

    def apply_fn(params: Any, x: Any) -> Any:
        missing = [k for k in names if k not in params]
        if missing:
            raise KeyError(f"params lacks {missing}; expected the keys {list(names)}")
        dtype = jnp.result_type(*[params[k] for k in names])
        state = {k: jnp.asarray(c, dtype=dtype) for k, c in constants.items()}
        state.update({k: params[k] for k in names})
        if not nhwc:
            return forward(state, x)
        return _nchw(forward(state, _nhwc(x)))

    return apply_fn, params


# -- layers -------------------------------------------------------------------------------------
def _nhwc(x: Any) -> Any:
    """A 4-D array NCHW -> NHWC; others as they are."""
    return x.transpose(0, 2, 3, 1) if getattr(x, "ndim", 0) == 4 else x


def _nchw(x: Any) -> Any:
    """A 4-D array NHWC -> NCHW; others as they are."""
    return x.transpose(0, 3, 1, 2) if getattr(x, "ndim", 0) == 4 else x


def _build(m: nn.Module, prefix: str, nhwc: bool) -> Forward:
    """``forward(state, x)`` of ``m``; with ``nhwc``, 4-D ``x`` and results are channels-last."""
    from hessbench.problems.quadratic import StochasticQuadraticModel
    from hessbench.resnet import BasicBlock, CifarResNet

    p = prefix
    if isinstance(m, nn.Sequential):
        fns = [_build(child, f"{p}{name}.", nhwc) for name, child in m.named_children()]

        def sequential(s: State, x: Any) -> Any:
            for f in fns:
                x = f(s, x)
            return x
        return sequential
    if type(m) is nn.Linear:
        has_bias = m.bias is not None

        def linear(s: State, x: Any) -> Any:  # on the last axis of torch's layout
            y = _nchw(x) if nhwc else x
            y = y @ s[p + "weight"].T + s[p + "bias"] if has_bias else y @ s[p + "weight"].T
            return _nhwc(y) if nhwc else y
        return linear
    if type(m) is nn.Conv2d:
        return _conv(m, p, nhwc)
    if type(m) in (nn.BatchNorm1d, nn.BatchNorm2d):
        return _batchnorm(m, p, nhwc)
    if type(m) is nn.Tanh:
        return lambda s, x: jnp.tanh(x)
    if type(m) is nn.ReLU:
        return lambda s, x: jax.nn.relu(x)
    if type(m) in (nn.Identity, nn.Dropout):
        return lambda s, x: x
    if type(m) is nn.Flatten:
        start, end = m.start_dim, m.end_dim

        def flatten(s: State, x: Any) -> Any:
            x = _nchw(x) if nhwc else x  # flattened in torch's order
            lo, hi = start % x.ndim, end % x.ndim
            y = x.reshape(x.shape[:lo] + (-1,) + x.shape[hi + 1:])
            return _nhwc(y) if nhwc else y
        return flatten
    if type(m) is BasicBlock:
        return _basic_block(m, p, nhwc)
    if type(m) is CifarResNet:
        return _resnet(m, p, nhwc)
    if type(m) is StochasticQuadraticModel:
        return _quadratic(p)
    raise TypeError(
        f"from_torch: no JAX translation for {type(m).__module__}.{type(m).__name__} "
        f"(at {prefix.rstrip('.') or 'the top level'!r}); supported modules: "
        f"{', '.join(SUPPORTED)}")


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _conv(m: nn.Conv2d, p: str, nhwc: bool) -> Forward:
    if m.padding_mode != "zeros":
        raise TypeError(f"from_torch: Conv2d {p.rstrip('.')!r} has padding_mode="
                        f"{m.padding_mode!r}; only 'zeros' is supported")
    stride, dilation = _pair(m.stride), _pair(m.dilation)
    if isinstance(m.padding, str):
        if m.padding == "valid":
            padding = [(0, 0), (0, 0)]
        else:  # "same" (stride 1): torch puts the extra pad of an even kernel at the end
            totals = [d * (k - 1) for d, k in zip(dilation, _pair(m.kernel_size))]
            padding = [(t // 2, t - t // 2) for t in totals]
    else:
        padding = [(q, q) for q in _pair(m.padding)]
    groups, has_bias = m.groups, m.bias is not None
    dims = ("NHWC", "OIHW", "NHWC") if nhwc else ("NCHW", "OIHW", "NCHW")
    bias_shape = (1, 1, 1, -1) if nhwc else (1, -1, 1, 1)

    def conv(s: State, x: Any) -> Any:
        y = lax.conv_general_dilated(x, s[p + "weight"], window_strides=stride,
                                     padding=padding, rhs_dilation=dilation,
                                     feature_group_count=groups, dimension_numbers=dims)
        return y + s[p + "bias"].reshape(bias_shape) if has_bias else y
    return conv


def _batchnorm(m: nn.modules.batchnorm._BatchNorm, p: str, nhwc: bool) -> Forward:
    if m.running_mean is None or m.running_var is None:
        raise TypeError(f"from_torch: BatchNorm {p.rstrip('.')!r} has no running statistics "
                        "(track_running_stats=False); only the inference form is supported")
    eps, affine = float(m.eps), m.affine

    def batchnorm(s: State, x: Any) -> Any:
        if nhwc and x.ndim == 4:
            shape: tuple[int, ...] = (1, 1, 1, -1)  # channels last
        else:
            shape = (1, -1) + (1,) * (x.ndim - 2)  # channels on axis 1
        scale = lax.rsqrt(s[p + "running_var"] + eps)
        if affine:
            scale = scale * s[p + "weight"]
        y = (x - s[p + "running_mean"].reshape(shape)) * scale.reshape(shape)
        return y + s[p + "bias"].reshape(shape) if affine else y
    return batchnorm


def _basic_block(m: Any, p: str, nhwc: bool) -> Forward:
    conv1, bn1 = _conv(m.conv1, p + "conv1.", nhwc), _batchnorm(m.bn1, p + "bn1.", nhwc)
    conv2, bn2 = _conv(m.conv2, p + "conv2.", nhwc), _batchnorm(m.bn2, p + "bn2.", nhwc)
    shortcut = _build(m.shortcut, p + "shortcut.", nhwc)

    def block(s: State, x: Any) -> Any:
        out = jax.nn.relu(bn1(s, conv1(s, x)))
        out = bn2(s, conv2(s, out))
        return jax.nn.relu(out + shortcut(s, x))
    return block


def _resnet(m: Any, p: str, nhwc: bool) -> Forward:
    conv1, bn1 = _conv(m.conv1, p + "conv1.", nhwc), _batchnorm(m.bn1, p + "bn1.", nhwc)
    layers = _build(m.layers, p + "layers.", nhwc)
    fc = _build(m.fc, p + "fc.", nhwc)
    spatial = (1, 2) if nhwc else (2, 3)

    def resnet(s: State, x: Any) -> Any:
        out = jax.nn.relu(bn1(s, conv1(s, x)))
        out = layers(s, out)
        return fc(s, jnp.mean(out, axis=spatial))  # adaptive average pool to 1x1, flatten
    return resnet


def _quadratic(p: str) -> Forward:
    def quadratic(s: State, c: Any) -> Any:
        w = s[p + "w"]
        y = w
        for k in range(s[p + "reflections"].shape[0]):  # R^T w = P_3 P_2 P_1 ... as in torch
            u = s[p + "reflections"][k]
            y = y - 2 * (u @ y) * u
        base = 0.5 * jnp.sum(s[p + "lam"] * y * y)
        z = s[p + "G"].T @ w
        return base + 0.5 * (c @ (z * z))
    return quadratic


# -- losses -------------------------------------------------------------------------------------
def cross_entropy(logits: Any, targets: Any) -> Any:
    """Mean cross-entropy of integer class targets (``F.cross_entropy``'s default)."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, targets[:, None].astype(jnp.int32), axis=-1))


def _mse(outputs: Any, targets: Any) -> Any:
    return jnp.mean((outputs - targets) ** 2)


def _mean(outputs: Any, targets: Any) -> Any:
    return jnp.mean(outputs)


def loss_from_torch(loss_fn: Callable) -> Callable[[Any, Any], Any]:
    """The JAX twin of a problem's torch loss ``loss_fn(outputs, targets)``."""
    from hessbench.problems.quadratic import _mean_loss

    table = {F.cross_entropy: cross_entropy, F.mse_loss: _mse, _mean_loss: _mean}
    if loss_fn in table:
        return table[loss_fn]
    raise TypeError(f"no JAX translation for the loss {getattr(loss_fn, '__name__', loss_fn)!r};"
                    " known: cross_entropy, mse_loss, the quadratic's mean")


def operator_from_parts(parts: Any, *, dtype: Any = None, device: Any = None,
                        batch_size: int | None = None, devices: Any = None,
                        layout: str = "NHWC", **options: Any):
    """The JAX ``HessianOperator`` of a problem's ``TorchProblemParts`` (same weights, data,
    loss and batch size as the torch operator, hence the same flat vectors); ``devices``
    (``"all"``, K or a list) shards the samples over that many devices; ``layout`` as in
    :func:`from_torch`; ``options`` go to the operator (``check_deterministic``, ...)."""
    from hessbench.backends.jax import HessianOperator

    apply_fn, params = from_torch(parts.model, layout=layout)
    loss = loss_from_torch(parts.loss_fn)

    def loss_fn(params: Any, batch: tuple[Any, Any]) -> Any:
        inputs, targets = batch
        return loss(apply_fn(params, inputs), targets)

    return HessianOperator(loss_fn, params, (_numpy(parts.inputs), _numpy(parts.targets)),
                           batch_size=batch_size or parts.batch_size, dtype=dtype,
                           device=device, devices=devices, **options)
