#include "xft/model/config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <type_traits>

#include "core/config_reader.h"
#include "model/hf_remote_code.h"
#include "xft/core/error.h"

namespace fs = std::filesystem;

namespace xft {

namespace {

// The JSON value as T; an integer field refuses 4096.5 or 1e30 instead of truncating them.
template <typename T>
T as_field(const nlohmann::json& v, const char* key, const std::string& source) {
  if constexpr (std::is_same_v<T, int64_t>) {
    XFT_CHECK(v.is_number_integer() && !(v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)), source,
              ": field '", key, "' must be an integer, got ", v.dump());
  } else if constexpr (std::is_same_v<T, double>) {
    XFT_CHECK(v.is_number(), source, ": field '", key, "' must be a number, got ", v.dump());
  }
  try {
    return v.get<T>();
  } catch (const nlohmann::json::exception&) {
    fail(source, ": field '", key, "' has the wrong type (", v.type_name(), ")");
  }
}

template <typename T>
T required(const nlohmann::json& j, const char* key, const std::string& source) {
  XFT_CHECK(j.contains(key) && !j.at(key).is_null(), source, ": missing required field '", key, "'");
  return as_field<T>(j.at(key), key, source);
}

template <typename T>
T optional_field(const nlohmann::json& j, const char* key, T fallback, const std::string& source) {
  if (!j.contains(key) || j.at(key).is_null()) return fallback;
  return as_field<T>(j.at(key), key, source);
}

// Sizes are checked one by one so that the message names the field.
void check_positive(int64_t value, const char* key, const std::string& source) {
  XFT_CHECK(value > 0, source, ": ", key, " must be a positive integer, got ", value);
}

// lo < value <= hi (or lo <= value with lo_inclusive), finite: NaN and inf fail every comparison.
void check_range(double value, double lo, double hi, bool lo_inclusive, const std::string& key,
                 const std::string& source, const char* why) {
  const bool above = lo_inclusive ? value >= lo : value > lo;
  XFT_CHECK(std::isfinite(value) && above && value <= hi, source, ": ", key, " must be ", lo_inclusive ? ">= " : "> ",
            lo, " and <= ", hi, " (", why, "), got ", value);
}

// bos/eos may be an int or a list of ints (Llama 3); the first one is the one we emit.
std::optional<int64_t> token_id(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
  const auto& v = j.at(key);
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<int64_t>();
  return std::nullopt;
}

RopeScaling parse_rope_scaling(const nlohmann::json& j, const std::string& source) {
  RopeScaling rs;
  // transformers >= 4.45 writes rope_type, older versions type; 5.x nests it in rope_parameters.
  const nlohmann::json* s = nullptr;
  if (j.contains("rope_scaling") && j.at("rope_scaling").is_object())
    s = &j.at("rope_scaling");
  else if (j.contains("rope_parameters") && j.at("rope_parameters").is_object())
    s = &j.at("rope_parameters");
  if (!s) return rs;
  const std::string where = source + ": rope_scaling";
  rs.type = s->contains("rope_type") ? required<std::string>(*s, "rope_type", where)
                                     : optional_field<std::string>(*s, "type", "default", where);
  if (rs.type == "default") return rs;
  rs.factor = required<double>(*s, "factor", where);
  check_range(rs.factor, 1.0, 1e6, true, "factor", where, "the context is stretched, never shrunk");
  if (rs.type == "llama3") {
    rs.low_freq_factor = required<double>(*s, "low_freq_factor", where);
    rs.high_freq_factor = required<double>(*s, "high_freq_factor", where);
    rs.original_max_position_embeddings = required<int64_t>(*s, "original_max_position_embeddings", where);
    check_range(rs.low_freq_factor, 0.0, 1e6, false, "low_freq_factor", where, "a wavelength divisor");
    XFT_CHECK(
        std::isfinite(rs.high_freq_factor) && rs.high_freq_factor > rs.low_freq_factor && rs.high_freq_factor <= 1e6,
        where, ": high_freq_factor must be > low_freq_factor (", rs.low_freq_factor,
        ") and <= 1e+06: the smoothing divides by their difference; got ", rs.high_freq_factor);
    check_positive(rs.original_max_position_embeddings, "original_max_position_embeddings", where);
  } else if (rs.type != "linear") {
    fail(where, ": unsupported type '", rs.type, "' (supported: default, linear, llama3)");
  }
  return rs;
}

}  // namespace

namespace {

const EnumNames<RoutingMode> kRoutingNames = {
    {"xft", RoutingMode::kXft}, {"shared_no_norm", RoutingMode::kSharedNoNorm}, {"vanilla", RoutingMode::kVanilla}};
const EnumNames<RouterKind> kRouterNames = {{"linear", RouterKind::kLinear}, {"mlp", RouterKind::kMlp}};
const EnumNames<AuxLossKind> kAuxLossNames = {
    {"cv2", AuxLossKind::kCv2}, {"switch", AuxLossKind::kSwitch}, {"none", AuxLossKind::kNone}};
const EnumNames<LoadEstimate> kLoadEstimateNames = {{"shazeer", LoadEstimate::kShazeer},
                                                    {"reference", LoadEstimate::kReference}};

const ConfigReader<MoeConfig>& moe_reader() {
  static const ConfigReader<MoeConfig> r = ConfigReader<MoeConfig>("moe")
                                               .field("num_experts", &MoeConfig::num_experts, /*required=*/true)
                                               .field("top_k", &MoeConfig::top_k, /*required=*/true)
                                               .field("shared_expert", &MoeConfig::shared_expert)
                                               .field("routing", &MoeConfig::routing, kRoutingNames)
                                               .field("vanilla_renormalize", &MoeConfig::vanilla_renormalize)
                                               .field("router", &MoeConfig::router, kRouterNames)
                                               .field("router_noise", &MoeConfig::router_noise)
                                               .field("load_estimate", &MoeConfig::load_estimate, kLoadEstimateNames)
                                               .field("router_init_std", &MoeConfig::router_init_std)
                                               .field("aux_loss", &MoeConfig::aux_loss, kAuxLossNames)
                                               .field("aux_loss_coef", &MoeConfig::aux_loss_coef)
                                               .field("aux_counts_padding", &MoeConfig::aux_counts_padding);
  return r;
}

}  // namespace

const char* to_string(RoutingMode mode) { return enum_name(kRoutingNames, mode); }
// One case per rule, no default: -Wswitch names this place when a rule is added.
bool routing_has_shared_expert(RoutingMode mode) {
  switch (mode) {
    case RoutingMode::kXft:
    case RoutingMode::kSharedNoNorm: return true;
    case RoutingMode::kVanilla: return false;
  }
  fail("routing mode ", static_cast<int>(mode), " is not one of RoutingMode's values");
}
const char* to_string(RouterKind kind) { return enum_name(kRouterNames, kind); }
const char* to_string(AuxLossKind kind) { return enum_name(kAuxLossNames, kind); }
const char* to_string(LoadEstimate rule) { return enum_name(kLoadEstimateNames, rule); }
RoutingMode routing_mode_from_string(const std::string& text, const std::string& where) {
  return parse_enum(kRoutingNames, text, where);
}
RouterKind router_kind_from_string(const std::string& text, const std::string& where) {
  return parse_enum(kRouterNames, text, where);
}

void MoeConfig::validate(const std::string& source) const {
  XFT_CHECK(num_experts >= 2, source, ": moe.num_experts must be >= 2, got ", num_experts);
  XFT_CHECK(top_k <= num_experts, source, ": moe.top_k (", top_k, ") exceeds moe.num_experts (", num_experts, ")");
  if (shared_expert) {
    XFT_CHECK(top_k >= 2, source,
              ": moe.top_k must be >= 2 with a shared expert (the shared one plus at least one routed), got ", top_k);
  } else {
    XFT_CHECK(top_k >= 1, source, ": moe.top_k must be >= 1, got ", top_k);
  }
  const bool shared = routing_has_shared_expert(routing);
  XFT_CHECK(shared == shared_expert, source, ": moe.routing '", to_string(routing),
            "' requires shared_expert=", shared ? "true" : "false");
  XFT_CHECK(router_init_std >= 0, source, ": moe.router_init_std must be >= 0");
}

nlohmann::json MoeConfig::to_json() const { return moe_reader().write(*this); }

MoeConfig MoeConfig::from_json(const nlohmann::json& j, const std::string& source) {
  // Without a shared expert the routing defaults to vanilla (Eq. 1).
  MoeConfig init;
  if (j.is_object() && j.contains("shared_expert") && j.at("shared_expert").is_boolean() &&
      !j.at("shared_expert").get<bool>())
    init.routing = RoutingMode::kVanilla;
  MoeConfig m = moe_reader().read(j, source, init);
  m.validate(source);
  return m;
}

namespace {

const EnumNames<Architecture> kArchitectures = {{"llama", Architecture::kLlama}, {"stablelm", Architecture::kStableLm}};

// model_type picks the architecture; `architectures`, when present, must name its class.
Architecture read_architecture(const nlohmann::json& j, const std::string& source) {
  const auto model_type = optional_field<std::string>(j, "model_type", "", source);
  const auto known = std::find_if(kArchitectures.begin(), kArchitectures.end(),
                                  [&](const auto& entry) { return model_type == entry.first; });
  XFT_CHECK(known != kArchitectures.end(), source, ": unsupported model_type '", model_type,
            "' (supported: ", enum_choices(kArchitectures), ")");
  const Architecture a = known->second;
  if (j.contains("architectures") && j.at("architectures").is_array()) {
    for (const auto& name : j.at("architectures")) {
      XFT_CHECK(name.is_string() && name.get<std::string>() == architecture_class(a), source,
                ": unsupported architecture ", name.dump(), " (model_type \"", model_type, "\" expects ",
                architecture_class(a), ")");
    }
  }
  return a;
}

// The fields every architecture spells the same way.
void read_common_fields(const nlohmann::json& j, const std::string& source, ModelConfig& c) {
  c.vocab_size = required<int64_t>(j, "vocab_size", source);
  c.hidden_size = required<int64_t>(j, "hidden_size", source);
  c.intermediate_size = required<int64_t>(j, "intermediate_size", source);
  c.num_hidden_layers = required<int64_t>(j, "num_hidden_layers", source);
  c.num_attention_heads = required<int64_t>(j, "num_attention_heads", source);
  // StableLmConfig defaults to 32 kv heads whatever the head count; LlamaConfig to the head count.
  const int64_t kv_default = c.architecture == Architecture::kStableLm ? 32 : c.num_attention_heads;
  c.num_key_value_heads = optional_field<int64_t>(j, "num_key_value_heads", kv_default, source);
  check_positive(c.vocab_size, "vocab_size", source);
  check_positive(c.hidden_size, "hidden_size", source);
  check_positive(c.intermediate_size, "intermediate_size", source);
  check_positive(c.num_hidden_layers, "num_hidden_layers", source);
  check_positive(c.num_attention_heads, "num_attention_heads", source);
  check_positive(c.num_key_value_heads, "num_key_value_heads", source);
  XFT_CHECK(c.num_attention_heads % c.num_key_value_heads == 0, source, ": num_attention_heads (",
            c.num_attention_heads, ") must be a multiple of num_key_value_heads (", c.num_key_value_heads, ")");
  const auto act = optional_field<std::string>(j, "hidden_act", "silu", source);
  XFT_CHECK(act == "silu", source, ": unsupported hidden_act '", act, "' (the SwiGLU FFN uses silu)");
  c.rope_theta = optional_field<double>(j, "rope_theta", 10000.0, source);
  if (j.contains("rope_parameters") && j.at("rope_parameters").is_object()) {
    c.rope_theta =
        optional_field<double>(j.at("rope_parameters"), "rope_theta", c.rope_theta, source + ": rope_parameters");
  }
  check_range(c.rope_theta, 1.0, 1e12, false, "rope_theta", source,
              "the RoPE base: Llama uses 10000 to 500000; <= 1 leaves no low frequencies");
  c.rope_scaling = parse_rope_scaling(j, source);
  c.tie_word_embeddings = optional_field<bool>(j, "tie_word_embeddings", false, source);
  c.bos_token_id = token_id(j, "bos_token_id");
  c.eos_token_id = token_id(j, "eos_token_id");
  c.torch_dtype =
      optional_field<std::string>(j, "torch_dtype", optional_field<std::string>(j, "dtype", "float32", source), source);
}

// head_dim = hidden_size / heads unless the config says otherwise (Llama only).
int64_t derived_head_dim(const ModelConfig& c, const std::string& source) {
  XFT_CHECK(c.hidden_size % c.num_attention_heads == 0, source, ": hidden_size (", c.hidden_size,
            ") is not divisible by num_attention_heads (", c.num_attention_heads, ") and head_dim is absent");
  return c.hidden_size / c.num_attention_heads;
}

void read_llama_fields(const nlohmann::json& j, const std::string& source, ModelConfig& c) {
  c.head_dim = optional_field<int64_t>(j, "head_dim", 0, source);
  XFT_CHECK(c.head_dim >= 0, source, ": head_dim must be a positive integer (or absent), got ", c.head_dim);
  if (c.head_dim == 0) c.head_dim = derived_head_dim(c, source);
  XFT_CHECK(c.head_dim % 2 == 0, source, ": head_dim must be even for rotary embeddings, got ", c.head_dim);
  c.rms_norm_eps = optional_field<double>(j, "rms_norm_eps", 1e-6, source);
  check_range(c.rms_norm_eps, 0.0, 0.1, false, "rms_norm_eps", source, "a small constant under the square root");
  c.max_position_embeddings = optional_field<int64_t>(j, "max_position_embeddings", 2048, source);
  c.attention_bias = optional_field<bool>(j, "attention_bias", false, source);
  c.mlp_bias = optional_field<bool>(j, "mlp_bias", false, source);
}

// StableLmConfig's defaults (transformers/models/stablelm/configuration_stablelm.py) where a
// field is absent.
void read_stablelm_fields(const nlohmann::json& j, const std::string& source, ModelConfig& c) {
  // StableLmAttention always uses hidden_size / heads; a different head_dim would not load there.
  c.head_dim = derived_head_dim(c, source);
  const auto given = optional_field<int64_t>(j, "head_dim", c.head_dim, source);
  XFT_CHECK(given == c.head_dim, source, ": head_dim (", given, ") must equal hidden_size / num_attention_heads (",
            c.head_dim, ") for model_type \"stablelm\"");
  c.layer_norm_eps = optional_field<double>(j, "layer_norm_eps", 1e-5, source);
  check_range(c.layer_norm_eps, 0.0, 0.1, false, "layer_norm_eps", source, "a small constant under the square root");
  c.max_position_embeddings = optional_field<int64_t>(j, "max_position_embeddings", 4096, source);
  c.partial_rotary_factor = optional_field<double>(j, "partial_rotary_factor", 0.25, source);
  if (j.contains("rope_parameters") && j.at("rope_parameters").is_object() &&
      j.at("rope_parameters").contains("partial_rotary_factor")) {
    c.partial_rotary_factor = j.at("rope_parameters").at("partial_rotary_factor").get<double>();
  }
  XFT_CHECK(c.partial_rotary_factor > 0 && c.partial_rotary_factor <= 1, source,
            ": partial_rotary_factor must be in (0, 1], got ", c.partial_rotary_factor);
  XFT_CHECK(c.rotary_dim() >= 2 && c.rotary_dim() % 2 == 0, source, ": int(head_dim (", c.head_dim,
            ") * partial_rotary_factor (", c.partial_rotary_factor, ")) = ", c.rotary_dim(),
            " rotary dims; expected an even number >= 2");
  c.use_qkv_bias = optional_field<bool>(j, "use_qkv_bias", false, source);
  c.qk_layernorm = optional_field<bool>(j, "qk_layernorm", false, source);
  c.use_parallel_residual = optional_field<bool>(j, "use_parallel_residual", false, source);
  if (!c.bos_token_id) c.bos_token_id = 0;
  if (!c.eos_token_id) c.eos_token_id = 0;
}

}  // namespace

const char* model_type_name(Architecture a) { return enum_name(kArchitectures, a); }
const char* architecture_class(Architecture a) {
  return a == Architecture::kStableLm ? "StableLmForCausalLM" : "LlamaForCausalLM";
}

ModelConfig ModelConfig::from_json(const nlohmann::json& j, const std::string& source) {
  XFT_CHECK(j.is_object(), source, ": a model config must be a JSON object");
  ModelConfig c;
  c.architecture = read_architecture(j, source);
  c.raw = j;
  read_common_fields(j, source, c);
  if (c.architecture == Architecture::kStableLm)
    read_stablelm_fields(j, source, c);
  else
    read_llama_fields(j, source, c);
  XFT_CHECK(c.max_position_embeddings > 0 && c.max_position_embeddings <= (int64_t(1) << 30), source,
            ": max_position_embeddings must be between 1 and 2^30, got ", c.max_position_embeddings);
  if (j.contains("moe") && !j.at("moe").is_null()) c.moe = MoeConfig::from_json(j.at("moe"), source);
  return c;
}

ModelConfig ModelConfig::load(const std::string& path) {
  const std::string file = fs::is_directory(path) ? (fs::path(path) / "config.json").string() : path;
  XFT_CHECK(fs::exists(file), file, ": not found (expected a Hugging Face config.json)");
  return from_json(read_json_file(file), file);
}

namespace {

void write_llama_fields(const ModelConfig& c, nlohmann::json& j) {
  j["head_dim"] = c.head_dim;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["attention_bias"] = c.attention_bias;
  j["mlp_bias"] = c.mlp_bias;
}

// head_dim is not a StableLM field (it is always hidden_size / heads); a source's copy stays.
void write_stablelm_fields(const ModelConfig& c, nlohmann::json& j) {
  j["layer_norm_eps"] = c.layer_norm_eps;
  j["partial_rotary_factor"] = c.partial_rotary_factor;
  j["use_qkv_bias"] = c.use_qkv_bias;
  j["qk_layernorm"] = c.qk_layernorm;
  j["use_parallel_residual"] = c.use_parallel_residual;
}

nlohmann::json rope_scaling_json(const RopeScaling& rs) {
  if (rs.type == "default") return nullptr;
  nlohmann::json s = {{"rope_type", rs.type}, {"type", rs.type}, {"factor", rs.factor}};
  if (rs.type == "llama3") {
    s["low_freq_factor"] = rs.low_freq_factor;
    s["high_freq_factor"] = rs.high_freq_factor;
    s["original_max_position_embeddings"] = rs.original_max_position_embeddings;
  }
  return s;
}

// A dense config keeps its source's auto_map (if any) but not the entries naming the MoE's
// modeling file, which is not written beside it.
void drop_remote_code_entries(nlohmann::json& j) {
  if (!j.contains("auto_map") || !j.at("auto_map").is_object()) return;
  auto& map = j.at("auto_map");
  for (auto it = map.begin(); it != map.end();) it = names_remote_code(it.value()) ? map.erase(it) : std::next(it);
  if (map.empty()) j.erase("auto_map");
}

}  // namespace

nlohmann::json ModelConfig::to_json() const {
  nlohmann::json j = raw.is_object() ? raw : nlohmann::json::object();
  j["model_type"] = model_type_name(architecture);
  j["architectures"] = {architecture_class(architecture)};
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["hidden_act"] = "silu";
  if (architecture == Architecture::kStableLm)
    write_stablelm_fields(*this, j);
  else
    write_llama_fields(*this, j);
  j["rope_theta"] = rope_theta;
  j.erase("rope_parameters");
  j["rope_scaling"] = rope_scaling_json(rope_scaling);
  j["max_position_embeddings"] = max_position_embeddings;
  j["tie_word_embeddings"] = tie_word_embeddings;
  if (bos_token_id) j["bos_token_id"] = *bos_token_id;
  if (eos_token_id && !(j.contains("eos_token_id") && j["eos_token_id"].is_array())) j["eos_token_id"] = *eos_token_id;
  j["torch_dtype"] = torch_dtype;
  j["dtype"] = torch_dtype;  // transformers >= 4.56 reads this name
  if (moe) {
    j["moe"] = moe->to_json();
    // The directory's model code is modeling_xft_moe.py (save() writes it): another entry, a
    // base model's remote code say, would name a file xft does not write.
    j["auto_map"] = remote_code_auto_map(architecture);
  } else {
    j.erase("moe");
    drop_remote_code_entries(j);
  }
  return j;
}

void ModelConfig::save(const std::string& dir) const {
  fs::create_directories(dir);
  // The file config.json's auto_map names, so that transformers can load the MoE
  // (trust_remote_code); written first, so a config.json on disk never names a missing file.
  if (moe) write_file_atomic((fs::path(dir) / kRemoteCodeFile).string(), modeling_xft_moe());
  write_file_atomic((fs::path(dir) / "config.json").string(), to_json().dump(2) + "\n");
}

ModelConfig ModelConfig::dense() const {
  ModelConfig c = *this;
  c.moe.reset();
  c.raw.erase("moe");
  return c;
}

}  // namespace xft
