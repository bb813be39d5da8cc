// defines: AutocastScope (bf16 autocast of a forward, as the reference merge stage runs),
//          prepare_model (a model moved to a stage's device and weight dtype)
#pragma once
#include <ATen/autocast_mode.h>
#include <torch/types.h>

#include "xft/model/llama.h"
#include "xft/train/train_config.h"

namespace xft {

class AutocastScope {
 public:
  AutocastScope(bool on, torch::Device device) : on_(on), type_(device.type()) {
    if (!on_) return;
    prev_ = at::autocast::is_autocast_enabled(type_);
    at::autocast::set_autocast_enabled(type_, true);
    at::autocast::set_autocast_dtype(type_, at::kBFloat16);
    at::autocast::increment_nesting();
  }
  AutocastScope(Precision precision, torch::Device device)
      : AutocastScope(precision == Precision::kBf16Autocast, device) {}
  ~AutocastScope() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(type_, prev_);
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool on_, prev_ = false;
  at::DeviceType type_;
};

// Moves the model to config.device and config.precision's weight dtype.
void prepare_model(CausalLMImpl& model, const TrainConfig& config);

}  // namespace xft
