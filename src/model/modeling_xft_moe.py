"""An xft MoE checkpoint as a transformers model (trust_remote_code).

xft writes this file into every MoE model directory it saves (the upcycled model, the tuned MoE)
and names its classes in config.json's `auto_map`, so that

    AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=True)

builds the MoE. Everything but the FFNs is transformers' own Llama / StableLM decoder, which the
config's model_type ("llama" | "stablelm") selects as for a dense checkpoint; each layer's `mlp`
becomes XftMoeBlock, which reads the tensors under the names xft saves them with:

    model.layers.L.mlp.experts.{gate_proj, up_proj}  [N, F, D]   expert 0 is the shared one
    model.layers.L.mlp.experts.down_proj             [N, D, F]
    model.layers.L.mlp.router.weight                 [R, D]      router "linear"
    model.layers.L.mlp.router.{w1 [R, D], w2 [R, R]}             router "mlp": w2 tanh(w1 x)
    model.layers.L.mlp.router.noise_weight           [R, D]      router_noise (training only)

R is the number of routed experts: N - 1 with a shared expert, N without. The forward is xft's
eval-mode forward (no router noise). A config this file cannot represent is an error naming the
field, and a checkpoint whose tensors do not fill the model exactly is an error naming them:
nothing loads silently wrong.
"""
import torch
from torch import nn
from transformers import LlamaForCausalLM, StableLmForCausalLM

# The moe section's fields. These change the forward; the rest shape training only (the aux loss
# and the noisy gating's load estimate) and are accepted whatever their value.
_FORWARD_FIELDS = ("num_experts", "top_k", "shared_expert", "routing", "vanilla_renormalize", "router", "router_noise")
_TRAINING_FIELDS = ("load_estimate", "router_init_std", "aux_loss", "aux_loss_coef", "aux_counts_padding")
_ROUTINGS = ("xft", "shared_no_norm", "vanilla")
_SHARED_ROUTINGS = ("xft", "shared_no_norm")
_ROUTERS = ("linear", "mlp")


class XftMoeSettings:
    """config.json's `moe` section, checked as xft checks it (model/config.cpp)."""

    def __init__(self, section):
        where = "config.json: moe"
        if not isinstance(section, dict):
            raise ValueError(f"{where}: expected an object with num_experts and top_k, got {section!r}")
        unknown = sorted(set(section) - set(_FORWARD_FIELDS) - set(_TRAINING_FIELDS))
        if unknown:
            raise ValueError(f"{where}: field(s) {unknown} are not known to this modeling file; "
                             f"loading would ignore them (known: {list(_FORWARD_FIELDS + _TRAINING_FIELDS)})")
        self.num_experts = self._int(section, "num_experts", where)
        self.top_k = self._int(section, "top_k", where)
        self.shared_expert = self._bool(section, "shared_expert", True, where)
        # Without a shared expert the routing defaults to vanilla (Eq. 1), as in xft.
        self.routing = section.get("routing", "xft" if self.shared_expert else "vanilla")
        if self.routing not in _ROUTINGS:
            raise ValueError(f"{where}.routing: unsupported value {self.routing!r} (supported: {list(_ROUTINGS)})")
        self.vanilla_renormalize = self._bool(section, "vanilla_renormalize", True, where)
        self.router = section.get("router", "linear")
        if self.router not in _ROUTERS:
            raise ValueError(f"{where}.router: unsupported value {self.router!r} (supported: {list(_ROUTERS)})")
        self.router_noise = self._bool(section, "router_noise", False, where)
        if self.num_experts < 2:
            raise ValueError(f"{where}.num_experts must be >= 2, got {self.num_experts}")
        if (self.routing in _SHARED_ROUTINGS) != self.shared_expert:
            raise ValueError(f"{where}.routing {self.routing!r} requires shared_expert="
                             f"{str(self.routing in _SHARED_ROUTINGS).lower()}")
        least = 2 if self.shared_expert else 1  # with a shared expert: it plus at least one routed
        if not least <= self.top_k <= self.num_experts:
            raise ValueError(f"{where}.top_k must be between {least} and num_experts ({self.num_experts}), "
                             f"got {self.top_k}")

    @staticmethod
    def _int(section, key, where):
        if key not in section:
            raise ValueError(f"{where}: missing required field '{key}'")
        value = section[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}.{key} must be an integer, got {value!r}")
        return value

    @staticmethod
    def _bool(section, key, default, where):
        value = section.get(key, default)
        if not isinstance(value, bool):
            raise ValueError(f"{where}.{key} must be true or false, got {value!r}")
        return value

    @property
    def num_routed(self):  # R
        return self.num_experts - 1 if self.shared_expert else self.num_experts

    @property
    def routed_k(self):  # how many routed experts each token gets
        return self.top_k - 1 if self.shared_expert else self.top_k


class XftRouter(nn.Module):
    """Logits over the R routed experts: Eq. 2's u^T e_i (router "linear"), or w2 tanh(w1 u)."""

    def __init__(self, hidden, settings):
        super().__init__()
        r = settings.num_routed
        self.mlp = settings.router == "mlp"
        if self.mlp:
            self.w1 = nn.Parameter(torch.empty(r, hidden))
            self.w2 = nn.Parameter(torch.empty(r, r))
        else:
            self.weight = nn.Parameter(torch.empty(r, hidden))
        # Training-time noisy gating only: loaded so that the checkpoint fills the model exactly,
        # never used here (the forward is the eval-mode one).
        if settings.router_noise:
            self.noise_weight = nn.Parameter(torch.empty(r, hidden))

    def forward(self, x):
        logits = nn.functional.linear(torch.tanh(nn.functional.linear(x, self.w1)), self.w2) if self.mlp \
            else nn.functional.linear(x, self.weight)
        # The routing is computed in fp32 at least: Eq. 2's softmax is never taken in bf16.
        return logits.to(torch.float64 if x.dtype == torch.float64 else torch.float32)


class XftExperts(nn.Module):
    """N SwiGLU FFNs stacked: FFN_i(u) = down_i (silu(gate_i u) * up_i u)."""

    def __init__(self, num_experts, hidden, intermediate):
        super().__init__()
        self.gate_proj = nn.Parameter(torch.empty(num_experts, intermediate, hidden))
        self.up_proj = nn.Parameter(torch.empty(num_experts, intermediate, hidden))
        self.down_proj = nn.Parameter(torch.empty(num_experts, hidden, intermediate))

    def expert(self, i, x):
        h = nn.functional.silu(nn.functional.linear(x, self.gate_proj[i])) * nn.functional.linear(x, self.up_proj[i])
        return nn.functional.linear(h, self.down_proj[i])


def routing_scores(logits):
    """s_{i,t} = Softmax_i(u^T e_i) over the routed experts (Eq. 1; Eq. 2 for i >= 2).

    Non-finite logits follow xft's rule so that a diverged router routes the same here: each logit
    is clamped to the finite range of its dtype, +inf to the largest value, -inf and NaN to the
    lowest, before the softmax."""
    info = torch.finfo(logits.dtype)
    return torch.softmax(torch.nan_to_num(logits, nan=info.min, posinf=info.max, neginf=info.min), dim=-1)


def routing_weights(s, settings):
    """The gate values g of the routing rule, as (weights [T, S], expert ids [T, S]).

    With a shared expert, slot 0 is expert 0 (the paper's expert i = 1) for every token and ids
    1.. are the routed experts; without one, ids index all N experts. Ties in the top-k go to the
    lower expert index (a stable descending sort), as in xft."""
    v, idx = s.sort(dim=-1, descending=True, stable=True)
    v, idx = v[:, :settings.routed_k], idx[:, :settings.routed_k]
    if settings.routing == "vanilla":
        # Eq. 1: g_i = s_i for the top K of all N experts. vanilla_renormalize divides the chosen K
        # by their sum (the reference code's plain upcycling, whose fresh MoE is the dense model).
        return (v / v.sum(dim=-1, keepdim=True) if settings.vanilla_renormalize else v), idx
    s_max = v[:, :1]  # Eq. 2: s_tmax, the largest routed score
    if settings.routing == "xft":
        # Eq. 2: g_i = Softmax_i(s_i) * s_tmax over S_tK, the top K - 1 routed scores (the softmax
        # is over the chosen scores themselves), so the routed weights sum to s_tmax.
        routed = torch.softmax(v, dim=-1) * s_max
    else:
        # shared_no_norm, Table 4's "- Normalization": the chosen raw scores g_i = s_i.
        routed = v
    # Eq. 2: g_1 = 1 - s_tmax for the shared expert.
    weights = torch.cat([1 - s_max, routed], dim=-1)
    ids = torch.cat([torch.zeros_like(idx[:, :1]), idx + 1], dim=-1)
    return weights, ids


class XftMoeBlock(nn.Module):
    """h = sum_i g_i FFN_i(u) (Eq. 1 / Eq. 2 without the residual, which the decoder layer adds)."""

    def __init__(self, config, settings):
        super().__init__()
        self.settings = settings
        self.router = XftRouter(config.hidden_size, settings)
        self.experts = XftExperts(settings.num_experts, config.hidden_size, config.intermediate_size)

    def forward(self, hidden_states):
        x = hidden_states.reshape(-1, hidden_states.shape[-1])
        weights, ids = routing_weights(routing_scores(self.router(x)), self.settings)
        # The gate-weighted sum is accumulated in fp32 (fp64 stays fp64), then cast back.
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        out = torch.zeros(x.shape, dtype=acc, device=x.device)
        first = 0
        if self.settings.shared_expert:
            out += self.experts.expert(0, x).to(acc) * weights[:, :1]  # the shared expert sees every token
            first = 1
        for i in ids[:, first:].unique().tolist():
            token, slot = (ids[:, first:] == i).nonzero(as_tuple=True)
            y = self.experts.expert(i, x[token]).to(acc) * weights[:, first:][token, slot].unsqueeze(-1)
            out.index_add_(0, token, y)
        return out.to(hidden_states.dtype).view(hidden_states.shape)


class _XftMoeMixin:
    """Replaces each decoder layer's FFN with XftMoeBlock and refuses inexact loads."""

    def _install_moe(self, config):
        if not hasattr(config, "moe"):
            raise ValueError("config.json has no 'moe' section: this is not an xft MoE checkpoint")
        settings = XftMoeSettings(config.moe)
        for layer in self.model.layers:
            layer.mlp = XftMoeBlock(config, settings)
        self._init_moe_parameters(config)

    def _init_moe_parameters(self, config):
        # Only a model built from a config (not loaded) keeps these: xft's initial scales.
        std = config.moe.get("router_init_std", 0.02)
        for layer in self.model.layers:
            for name, p in layer.mlp.named_parameters():
                nn.init.normal_(p, 0.0, std if name.startswith("router.") else 0.02)

    def _init_weights(self, module):
        if isinstance(module, (XftRouter, XftExperts)):
            return  # initialised in _init_moe_parameters; from_pretrained fills them or fails
        super()._init_weights(module)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        # transformers only warns about these; a missing expert or router would run on its
        # initial values, an unexpected tensor would mean the file is not this model's.
        problems = {k: v for k, v in info.items() if v}
        if problems:
            raise ValueError(f"{cls.__name__}: the checkpoint does not fill the xft MoE exactly: {problems}")
        return (model, info) if want_info else model


class XftMoeLlamaForCausalLM(_XftMoeMixin, LlamaForCausalLM):
    """An xft MoE upcycled from a Llama model (config.json model_type "llama")."""

    def __init__(self, config):
        super().__init__(config)
        self._install_moe(config)


class XftMoeStableLmForCausalLM(_XftMoeMixin, StableLmForCausalLM):
    """An xft MoE upcycled from a StableLM model (config.json model_type "stablelm")."""

    def __init__(self, config):
        super().__init__(config)
        self._install_moe(config)

