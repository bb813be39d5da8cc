// defines: fold_experts (an MoE checkpoint's tensors -> a dense checkpoint's, each layer's
//          experts mixed by given coefficients), fold_stack
//
// One rule serves both ways back to a dense model:
//   XFT merge (paper Eq. 5-6): c = [lambda, (1 - lambda) * softmax(logits)] per layer, learned;
//   EWA's final average (paper 2.3, A.2): c = 1/N for every expert.
// W = sum_i c_i W_i for gate, up and down alike, mixed in fp32 (fp64 for fp64 stacks).
#pragma once
#include <torch/types.h>

#include "xft/core/named_tensors.h"

namespace xft {

// sum_i c_N[i] * stack[i] over the expert dim of a [N, ...] stack, in fp32 (fp64 stays fp64).
torch::Tensor fold_stack(const torch::Tensor& c_N, const torch::Tensor& stack);

// `moe_tensors`: an MoE checkpoint's named tensors (hf_names.h). `coefficients_LN`: one row of
// N coefficients per layer, or a single [N] row for every layer. Every layer's expert stacks
// become model.layers.L.mlp.{gate,up,down}_proj.weight; routers and merge logits are dropped;
// all else passes through in order. Throws naming the tensor when a layer lacks a stack or
// the coefficients do not match the stacks.
NamedTensors fold_experts(const NamedTensors& moe_tensors, const torch::Tensor& coefficients_LN);

}  // namespace xft
