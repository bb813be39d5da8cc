// defines: model_tensors, load_weights, load_model, save_model,
//          write_directory_atomic, dtype_from_name, dtype_name
//
// A model directory is Hugging Face's: config.json + model.safetensors (or shards with an
// index), plus checksums.json (core/manifest.h) when xft wrote it. Loading first verifies the
// checksums (a damaged file is an error naming it), then checks the sizes config.json implies
// against the safetensors headers before anything is allocated (model/config_check.h), then
// every tensor against the module built: a missing, unexpected or misshapen tensor is an error
// naming the file and the tensor; nothing is half-loaded. Saving writes a whole new directory,
// checksums it and renames it into place; a failed save (full disk) removes its partial files
// and leaves the previous directory as it was.
#pragma once
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <torch/nn/module.h>

#include "xft/core/named_tensors.h"
#include "xft/core/safetensors.h"
#include "xft/model/llama.h"

namespace xft {

// Parameters and buffers under their checkpoint names (a tied lm_head appears once, as
// model.embed_tokens.weight).
NamedTensors model_tensors(const torch::nn::Module& module);

// Copies every tensor of `dir` into `module` (converting dtype), after checking that the names
// and shapes match exactly. Throws before modifying anything if they do not.
void load_weights(torch::nn::Module& module, const TensorDirectory& dir);

struct LoadOptions {
  torch::Dtype dtype = torch::kFloat32;
  torch::Device device = torch::kCPU;
};
CausalLM load_model(const std::string& dir, const LoadOptions& options = {});

// config.json (config.torch_dtype set to save_dtype's name) + safetensors, replaced atomically.
void save_model(CausalLMImpl& model, const std::string& dir, torch::Dtype save_dtype = torch::kFloat32,
                int64_t max_shard_bytes = 0);
// Same, for tensors that are not held by a module (the upcycler's output, say).
void save_model_tensors(const ModelConfig& config, const NamedTensors& tensors, const std::string& dir,
                        torch::Dtype save_dtype = torch::kFloat32, int64_t max_shard_bytes = 0);

// Calls write(tmp_dir) on a fresh sibling directory, writes its checksums.json, syncs it, then
// puts it in place of `dir`: a reader finds the old whole directory or the new whole one, never
// a mixture. On any error the temporary directory is removed and the error (naming the file
// and the cause, e.g. "the disk is full") says whether a previous `dir` is left as it was.
void write_directory_atomic(const std::string& dir, const std::function<void(const std::string&)>& write);

torch::Dtype dtype_from_name(const std::string& name);  // float32 | bfloat16 | float16 (+ fp32, bf16, fp16)
std::string dtype_name(torch::Dtype dtype);

}  // namespace xft
