#include "xft/model/model_io.h"

#include <unistd.h>
#include <cerrno>
#include <csignal>
#include <filesystem>
#include <set>

#include "xft/core/error.h"
#include "xft/core/files.h"
#include "xft/core/manifest.h"
#include "xft/model/config_check.h"

namespace fs = std::filesystem;

namespace xft {

torch::Dtype dtype_from_name(const std::string& n) {
  if (n == "float32" || n == "fp32" || n == "float") return torch::kFloat32;
  if (n == "bfloat16" || n == "bf16") return torch::kBFloat16;
  if (n == "float16" || n == "fp16" || n == "half") return torch::kFloat16;
  fail("unknown dtype '", n, "' (expected float32, bfloat16 or float16)");
}

std::string dtype_name(torch::Dtype d) {
  switch (d) {
    case torch::kFloat32: return "float32";
    case torch::kBFloat16: return "bfloat16";
    case torch::kFloat16: return "float16";
    default: fail("dtype ", c10::toString(d), " is not a model dtype");
  }
}

NamedTensors model_tensors(const torch::nn::Module& module) {
  NamedTensors out;
  for (const auto& p : module.named_parameters()) out.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers()) out.emplace_back(b.key(), b.value());
  return out;
}

namespace {
// Tensors some checkpoints carry that hold nothing to load.
bool ignorable(const std::string& name, const std::set<std::string>& expected) {
  if (name.size() >= 9 && name.compare(name.size() - 9, 9, ".inv_freq") == 0) return true;
  // A tied model's checkpoint may still hold lm_head.weight (a copy of the embedding).
  return name == "lm_head.weight" && !expected.count(name) && expected.count("model.embed_tokens.weight");
}

std::string shape_str(c10::IntArrayRef s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}
}  // namespace

void load_weights(torch::nn::Module& module, const TensorDirectory& dir) {
  auto targets = model_tensors(module);
  std::set<std::string> expected;
  for (const auto& [n, _] : targets) expected.insert(n);
  // Validate everything first, so an error leaves the module untouched.
  std::vector<std::string> missing;
  for (const auto& [name, t] : targets) {
    if (!dir.contains(name)) {
      missing.push_back(name);
      continue;
    }
    const auto& e = dir.entry(name);
    XFT_CHECK(c10::IntArrayRef(e.shape) == t.sizes(), dir.file_of(name), ": tensor '", name, "' has shape ",
              shape_str(e.shape), " but the model config implies ", shape_str(t.sizes()));
  }
  if (!missing.empty()) {
    std::string list;
    for (size_t i = 0; i < missing.size() && i < 8; ++i) list += (i ? ", " : "") + missing[i];
    if (missing.size() > 8) list += ", ... (" + std::to_string(missing.size()) + " in all)";
    fail(dir.dir(), ": checkpoint is missing tensors: ", list);
  }
  for (const auto& name : dir.names()) {
    XFT_CHECK(expected.count(name) || ignorable(name, expected), dir.file_of(name), ": unexpected tensor '", name,
              "' (the model built from config.json has no such parameter)");
  }
  torch::NoGradGuard ng;
  for (auto& [name, t] : targets) t.copy_(dir.get(name));
}

CausalLM load_model(const std::string& dir, const LoadOptions& options) {
  verify_manifest(dir);  // a damaged file is named before anything is parsed
  auto config = ModelConfig::load(dir);
  auto files = TensorDirectory::open(dir);
  // Before the model allocates what config.json asks for: the headers say what the files hold.
  check_config_against_tensors(config, files, (fs::path(dir) / "config.json").string());
  CausalLM model(config);
  load_weights(*model, files);
  model->to(options.device, options.dtype);
  return model;
}

namespace {

// fs calls that report through std::error_code, turned into xft::Error naming the path.
void rename_or_fail(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::rename(from, to, ec);
  XFT_CHECK(!ec, "cannot rename ", from.string(), " to ", to.string(), ": ", ec.message());
}

// Puts the whole new directory `tmp` in place of `final_path` (moved aside to `old` first);
// when the second rename fails, the old directory goes back.
void swap_into_place(const fs::path& tmp, const fs::path& final_path, const fs::path& old) {
  const bool had_old = fs::exists(final_path);
  if (had_old) rename_or_fail(final_path, old);
  try {
    rename_or_fail(tmp, final_path);
  } catch (const Error&) {
    std::error_code ec;
    if (had_old) fs::rename(old, final_path, ec);
    throw;
  }
  fsync_directory(final_path.parent_path().string());
  remove_tree(old.string());
}

// The pid of a writer's sibling "<name>.tmp.<pid>" / "<name>.old.<pid>" (0 for other names).
pid_t writer_pid(const std::string& entry, const std::string& name, const char* kind) {
  const std::string prefix = name + kind;
  if (entry.size() <= prefix.size() || entry.compare(0, prefix.size(), prefix) != 0) return 0;
  const std::string digits = entry.substr(prefix.size());
  if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) return 0;
  return static_cast<pid_t>(std::stol(digits));
}

// What a writer killed mid-save (kill -9, power loss) left next to `final_path`: its temporary
// directory is removed, and when it died between its two renames, the previous whole directory
// (moved aside as .old) goes back in place. Writers still alive are left alone.
void recover_interrupted(const fs::path& final_path) {
  const std::string name = final_path.filename().string();
  std::vector<std::pair<fs::path, bool>> stale;  // (entry, is .old), collected before changing the directory
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(final_path.parent_path(), ec)) {
    const std::string entry = e.path().filename().string();
    for (const char* kind : {".tmp.", ".old."}) {
      const pid_t pid = writer_pid(entry, name, kind);
      if (pid > 0 && pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH)
        stale.emplace_back(e.path(), kind[1] == 'o');
    }
  }
  for (const auto& [path, old] : stale) {
    std::error_code rc;
    if (old && !fs::exists(final_path))
      fs::rename(path, final_path, rc);
    else
      remove_tree(path.string());
  }
}

}  // namespace

void write_directory_atomic(const std::string& dir, const std::function<void(const std::string&)>& write) {
  fs::path final_path = fs::absolute(dir).lexically_normal();
  if (final_path.filename().empty()) final_path = final_path.parent_path();
  const std::string suffix = "." + std::to_string(::getpid());
  const fs::path tmp = final_path.string() + ".tmp" + suffix;
  const fs::path old = final_path.string() + ".old" + suffix;
  try {
    std::error_code ec;
    fs::create_directories(final_path.parent_path(), ec);
    XFT_CHECK(!ec, "cannot create ", final_path.parent_path().string(), ": ", ec.message());
    recover_interrupted(final_path);
    remove_tree(tmp.string());
    fs::create_directories(tmp, ec);
    XFT_CHECK(!ec, "cannot create ", tmp.string(), ": ", ec.message());
    write(tmp.string());
    // Checksums last, over the files as they are on disk; then the directory entries are synced
    // so that after a power loss the renamed directory holds every file.
    write_manifest(tmp.string());
    fsync_directory(tmp.string());
    swap_into_place(tmp, final_path, old);
  } catch (const Error& e) {
    remove_tree(tmp.string());  // nothing partial stays behind
    fail("cannot write ", final_path.string(), ": ", e.what(), "; ",
         fs::exists(final_path) ? "the previous " + final_path.filename().string() + " is left as it was"
                                : std::string("nothing was written"));
  } catch (...) {
    remove_tree(tmp.string());
    throw;
  }
}

void save_model_tensors(const ModelConfig& config, const NamedTensors& tensors, const std::string& dir,
                        torch::Dtype save_dtype, int64_t max_shard_bytes) {
  NamedTensors cast;
  cast.reserve(tensors.size());
  for (const auto& [n, t] : tensors) {
    cast.emplace_back(n, t.is_floating_point() ? t.detach().to(torch::kCPU, save_dtype) : t.detach().cpu());
  }
  ModelConfig c = config;
  c.torch_dtype = dtype_name(save_dtype);
  write_directory_atomic(dir, [&](const std::string& tmp) {
    save_tensor_directory(tmp, cast, max_shard_bytes);
    c.save(tmp);
  });
}

void save_model(CausalLMImpl& model, const std::string& dir, torch::Dtype save_dtype, int64_t max_shard_bytes) {
  save_model_tensors(model.config(), model_tensors(model), dir, save_dtype, max_shard_bytes);
}

}  // namespace xft
