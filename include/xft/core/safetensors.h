// defines: SafetensorsFile (memory-mapped reader), save_safetensors (atomic writer),
//          TensorDirectory (a Hugging Face checkpoint directory: one file or sharded with
//          model.safetensors.index.json), save_tensor_directory
//
// Format: 8-byte little-endian header length N, N bytes of JSON, then the data buffer.
// Every header field is validated before any tensor is trusted; each failure is an xft::Error
// naming the file and, where there is one, the tensor.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

namespace xft {

struct TensorEntry {
  std::string name;
  c10::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets relative to the start of the data buffer
  uint64_t end = 0;
};

// Parses "F32", "BF16", ... (F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL); throws on others.
c10::ScalarType safetensors_dtype(const std::string& name);
std::string safetensors_dtype_name(c10::ScalarType dtype);

class SafetensorsFile {
 public:
  // Maps the file and validates the header; throws xft::Error on any malformation.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  const TensorEntry& entry(const std::string& name) const;  // throws naming file and tensor
  // A CPU tensor over the mapped bytes (zero copy when aligned); it keeps the mapping alive.
  torch::Tensor get(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data buffer inside the mapping
  std::map<std::string, TensorEntry> entries_;
  std::map<std::string, std::string> metadata_;
  std::weak_ptr<SafetensorsFile> self_;
};

// Writes the tensors (any device/layout; written contiguous, CPU, little-endian) to `path`
// through a temporary file and a rename, so a file on disk is always whole.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// A checkpoint directory: `model.safetensors`, or shards listed in
// `model.safetensors.index.json` ({"weight_map": {name: file}}).
class TensorDirectory {
 public:
  static TensorDirectory open(const std::string& dir);
  const std::string& dir() const { return dir_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return files_.count(name) != 0; }
  const TensorEntry& entry(const std::string& name) const;
  torch::Tensor get(const std::string& name) const;
  const std::string& file_of(const std::string& name) const;  // path of the shard holding it

 private:
  std::string dir_;
  std::map<std::string, std::shared_ptr<SafetensorsFile>> files_;  // tensor name -> shard
};

// Writes `model.safetensors`, or when the total exceeds max_shard_bytes (>0), shards
// `model-0000i-of-0000n.safetensors` plus `model.safetensors.index.json`. Each file atomic.
void save_tensor_directory(const std::string& dir, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                           int64_t max_shard_bytes = 0,
                           const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace xft
