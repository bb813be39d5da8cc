// defines (internal to src/model): modeling_xft_moe, kRemoteCodeFile, remote_code_auto_map,
//          names_remote_code
//
// transformers loads an xft MoE directory through remote code: config.json's `auto_map` names
// classes of modeling_xft_moe.py, which ModelConfig::save writes beside it (its text is
// src/model/modeling_xft_moe.py, embedded at build time by cmake/EmbedText.cmake). Then
// AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True) builds the MoE. A dense
// config names none of its classes: xft writes no remote code beside it.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "xft/core/error.h"
#include "xft/model/config.h"

namespace xft {

// The modeling file's text.
const char* modeling_xft_moe();

// The file's name in a model directory.
inline constexpr const char* kRemoteCodeFile = "modeling_xft_moe.py";

// {"AutoModelForCausalLM": "modeling_xft_moe.XftMoe<Llama|StableLm>ForCausalLM"}: the model
// class of the architecture; the config stays transformers' own class of its model_type.
// One case per architecture, no default: -Wswitch names this place when one is added.
inline nlohmann::json remote_code_auto_map(Architecture a) {
  std::string cls;
  switch (a) {
    case Architecture::kLlama: cls = "XftMoeLlamaForCausalLM"; break;
    case Architecture::kStableLm: cls = "XftMoeStableLmForCausalLM"; break;
  }
  XFT_CHECK(!cls.empty(), "remote_code_auto_map: architecture ", static_cast<int>(a), " has no MoE class in ",
            kRemoteCodeFile);
  return {{"AutoModelForCausalLM", "modeling_xft_moe." + cls}};
}

// Whether an auto_map entry names a class of the modeling file (a dense export of an xft MoE
// drops those: it is written without the file).
inline bool names_remote_code(const nlohmann::json& entry) {
  return entry.is_string() && entry.get<std::string>().rfind("modeling_xft_moe.", 0) == 0;
}

}  // namespace xft
