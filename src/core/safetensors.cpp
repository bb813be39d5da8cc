// Safetensors reader (mmap, fully validated header) and atomic writer; Hugging Face
// checkpoint directories (one file, or shards + model.safetensors.index.json).
#include "xft/core/safetensors.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "core/atomic_writer.h"
#include "xft/core/error.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes a little-endian host");

namespace xft {
using nlohmann::json;

namespace {

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";
constexpr const char* kDtypeList = "F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL";

const std::pair<const char*, c10::ScalarType> kDtypes[] = {
    {"F64", torch::kFloat64}, {"F32", torch::kFloat32}, {"F16", torch::kFloat16}, {"BF16", torch::kBFloat16},
    {"I64", torch::kInt64},   {"I32", torch::kInt32},   {"I16", torch::kInt16},   {"I8", torch::kInt8},
    {"U8", torch::kUInt8},    {"BOOL", torch::kBool}};

bool lookup_dtype(const std::string& name, c10::ScalarType* out) {
  for (const auto& d : kDtypes) {
    if (name == d.first) return *out = d.second, true;
  }
  return false;
}

const char* dtype_name_or_null(c10::ScalarType dtype) {
  for (const auto& d : kDtypes) {
    if (dtype == d.second) return d.first;
  }
  return nullptr;
}

// A non-negative JSON integer (nlohmann stores those as unsigned; floats are rejected).
bool as_u64(const json& j, uint64_t* out) { return j.is_number_unsigned() && (*out = j.get<uint64_t>(), true); }

// POSIX file helpers. std::filesystem is avoided on purpose: libtorch.so and libtorch_cpu.so
// export their own copy of it, which gets mixed with libstdc++'s (fs::remove_all segfaults).
std::string join_path(const std::string& dir, const std::string& file) {
  if (dir.empty()) return file;
  return dir.back() == '/' ? dir + file : dir + "/" + file;
}

bool path_exists(const std::string& p) { return ::access(p.c_str(), F_OK) == 0; }
bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// mkdir -p; returns false (errno set) on failure.
bool make_dirs(const std::string& dir) {
  if (dir.empty() || is_dir(dir)) return true;
  const size_t slash = dir.find_last_of('/', dir.size() - 2);
  if (slash != std::string::npos && slash > 0 && !make_dirs(dir.substr(0, slash))) return false;
  return ::mkdir(dir.c_str(), 0755) == 0 || (errno == EEXIST && is_dir(dir));
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) out.emplace_back(e->d_name);
    ::closedir(d);
  }
  return out;
}

// Checks names and tensors before anything is written, so a bad input leaves no file behind.
void check_tensors(const std::string& where, const std::vector<std::pair<std::string, torch::Tensor>>& tensors) {
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    XFT_CHECK(name != "__metadata__", where, ": tensor name '__metadata__' is reserved");
    XFT_CHECK(seen.insert(name).second, where, ": duplicate tensor name '", name, "'");
    XFT_CHECK(t.defined(), where, ": tensor '", name, "' is undefined");
    XFT_CHECK(dtype_name_or_null(t.scalar_type()) != nullptr, where, ": tensor '", name, "' has dtype ",
              t.scalar_type(), "; safetensors stores only ", kDtypeList);
  }
}

// Serializes JSON; names or metadata that are not valid UTF-8 become an xft::Error.
std::string dump_json(const json& j, int indent, const std::string& path) {
  try {
    return j.dump(indent);
  } catch (const json::exception& e) {
    fail("saving ", path, ": tensor names and metadata must be valid UTF-8 (", e.what(), ")");
  }
}

}  // namespace

c10::ScalarType safetensors_dtype(const std::string& name) {
  c10::ScalarType out;
  XFT_CHECK(lookup_dtype(name, &out), "unknown safetensors dtype '", name, "' (expected one of ", kDtypeList, ")");
  return out;
}

std::string safetensors_dtype_name(c10::ScalarType dtype) {
  const char* name = dtype_name_or_null(dtype);
  XFT_CHECK(name != nullptr, "dtype ", dtype, " has no safetensors name (supported: ", kDtypeList, ")");
  return name;
}

// ---- reader ----

namespace {

// One header entry, checked against the data buffer of `buffer` bytes.
TensorEntry parse_entry(const std::string& path, const std::string& name, const json& v, uint64_t buffer) {
  const std::string where = "safetensors file " + path + ", tensor '" + name + "'";
  XFT_CHECK(v.is_object(), where, ": entry must be an object");
  XFT_CHECK(v.contains("dtype") && v["dtype"].is_string(), where, ": missing string 'dtype'");
  XFT_CHECK(v.contains("shape") && v["shape"].is_array(), where, ": missing array 'shape'");
  XFT_CHECK(v.contains("data_offsets") && v["data_offsets"].is_array() && v["data_offsets"].size() == 2, where,
            ": missing 'data_offsets' [begin, end]");
  TensorEntry e;
  e.name = name;
  const std::string dt = v["dtype"].get<std::string>();
  XFT_CHECK(lookup_dtype(dt, &e.dtype), where, ": unknown dtype '", dt, "' (expected one of ", kDtypeList, ")");
  uint64_t numel = 1;
  for (const auto& d : v["shape"]) {
    uint64_t dim = 0;
    XFT_CHECK(as_u64(d, &dim) && dim <= static_cast<uint64_t>(INT64_MAX), where,
              ": shape must hold non-negative integers, got ", v["shape"].dump());
    XFT_CHECK(!__builtin_mul_overflow(numel, dim, &numel), where, ": shape ", v["shape"].dump(), " overflows");
    e.shape.push_back(static_cast<int64_t>(dim));
  }
  XFT_CHECK(as_u64(v["data_offsets"][0], &e.begin) && as_u64(v["data_offsets"][1], &e.end), where,
            ": data_offsets must be two non-negative integers, got ", v["data_offsets"].dump());
  XFT_CHECK(e.begin <= e.end, where, ": data_offsets begin ", e.begin, " > end ", e.end);
  XFT_CHECK(e.end <= buffer, where, ": data_offsets [", e.begin, ", ", e.end, "] run past the data buffer of ", buffer,
            " bytes (file truncated?)");
  uint64_t nbytes = 0;
  XFT_CHECK(!__builtin_mul_overflow(numel, c10::elementSize(e.dtype), &nbytes) && nbytes == e.end - e.begin, where,
            ": data_offsets span ", e.end - e.begin, " bytes but shape ", v["shape"].dump(), " of ", dt, " needs ",
            numel, " x ", c10::elementSize(e.dtype));
  return e;
}

// The ranges must tile the buffer exactly: no overlaps, no holes, no trailing bytes.
void check_tiling(const std::string& path, const std::map<std::string, TensorEntry>& entries, uint64_t buffer) {
  std::vector<const TensorEntry*> order;
  for (const auto& kv : entries) order.push_back(&kv.second);
  std::sort(order.begin(), order.end(), [](const TensorEntry* a, const TensorEntry* b) {
    return std::tie(a->begin, a->end) < std::tie(b->begin, b->end);
  });
  uint64_t expect = 0;
  const TensorEntry* prev = nullptr;
  for (const TensorEntry* e : order) {
    XFT_CHECK(e->begin >= expect, "safetensors file ", path, ": tensor '", e->name, "' overlaps tensor '",
              prev ? prev->name : "", "' (begins at ", e->begin, ", previous ends at ", expect, ")");
    XFT_CHECK(e->begin == expect, "safetensors file ", path, ": hole of ", e->begin - expect, " bytes before tensor '",
              e->name, "' (expected it to begin at ", expect, ")");
    expect = e->end;
    prev = e;
  }
  XFT_CHECK(expect == buffer, "safetensors file ", path, ": ", buffer - expect,
            " unused bytes at the end of the data buffer (tensors cover ", expect, " of ", buffer, ")");
}

}  // namespace

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());  // its destructor unmaps on throw
  f->path_ = path;
  f->self_ = f;

  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  XFT_CHECK(fd >= 0, "cannot open safetensors file ", path, ": ", std::strerror(errno));
  struct stat st {};
  const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  const uint64_t size = regular ? static_cast<uint64_t>(st.st_size) : 0;
  // Private writable mapping of a read-only fd: the file is never modified, and a caller that
  // writes into a returned tensor gets copy-on-write pages instead of a segfault.
  void* m = regular && size >= 8 ? ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0) : MAP_FAILED;
  const int map_errno = errno;
  ::close(fd);
  XFT_CHECK(regular, "safetensors file ", path, ": not a regular file");
  XFT_CHECK(size >= 8, "safetensors file ", path, ": ", size, " bytes, shorter than the 8-byte header length");
  XFT_CHECK(m != MAP_FAILED, "cannot mmap safetensors file ", path, ": ", std::strerror(map_errno));
  f->map_ = m;
  f->map_size_ = size;
  const uint8_t* bytes = static_cast<const uint8_t*>(m);

  uint64_t n = 0;
  std::memcpy(&n, bytes, 8);
  XFT_CHECK(n <= size - 8, "safetensors file ", path, ": header length ", n, " runs past the end of the file (",
            size - 8, " bytes follow the length)");
  json header;
  try {
    header = json::parse(bytes + 8, bytes + 8 + n);
  } catch (const json::exception& e) {
    fail("safetensors file ", path, ": header is not valid JSON: ", e.what());
  }
  XFT_CHECK(header.is_object(), "safetensors file ", path, ": header must be a JSON object, got ", header.type_name());
  f->data_ = bytes + 8 + n;
  const uint64_t buffer = size - 8 - n;

  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") {
      XFT_CHECK(v.is_object(), "safetensors file ", path, ": __metadata__ must be an object");
      for (const auto& [k, s] : v.items()) {
        XFT_CHECK(s.is_string(), "safetensors file ", path, ": __metadata__ value '", k, "' must be a string, got ",
                  s.type_name());
        f->metadata_[k] = s.get<std::string>();
      }
      continue;
    }
    f->entries_.emplace(name, parse_entry(path, name, v, buffer));
  }
  check_tiling(path, f->entries_, buffer);
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

template <typename Map>
static std::vector<std::string> keys(const Map& m) {
  std::vector<std::string> out;
  for (const auto& kv : m) out.push_back(kv.first);
  return out;
}

std::vector<std::string> SafetensorsFile::names() const { return keys(entries_); }

const TensorEntry& SafetensorsFile::entry(const std::string& name) const {
  auto it = entries_.find(name);
  XFT_CHECK(it != entries_.end(), "safetensors file ", path_, ": no tensor named '", name, "'");
  return it->second;
}

torch::Tensor SafetensorsFile::get(const std::string& name) const {
  const TensorEntry& e = entry(name);
  auto opts = torch::TensorOptions().dtype(e.dtype).device(torch::kCPU);
  if (e.end == e.begin) return torch::empty(e.shape, opts);
  const uint8_t* p = data_ + e.begin;
  const size_t elem = c10::elementSize(e.dtype);
  if (reinterpret_cast<uintptr_t>(p) % elem != 0) {
    torch::Tensor out = torch::empty(e.shape, opts);
    std::memcpy(out.data_ptr(), p, e.end - e.begin);
    return out;
  }
  std::shared_ptr<const SafetensorsFile> keep = self_.lock();
  XFT_CHECK(keep != nullptr, "safetensors file ", path_, ": mapping released while reading '", name, "'");
  return torch::from_blob(
      const_cast<uint8_t*>(p), e.shape, [keep](void*) {}, opts);
}

// ---- writer ----

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  check_tensors("saving " + path, tensors);
  std::vector<std::pair<std::string, torch::Tensor>> sorted;
  for (const auto& [name, t] : tensors) {
    torch::Tensor c = t.detach();
    if (c.layout() != torch::kStrided) c = c.to_dense();
    sorted.emplace_back(name, c.to(torch::kCPU).contiguous());
  }
  // Like Python's safetensors: widest dtype first, then by name, so every tensor's data stays
  // aligned to its element size (the buffer starts 8-aligned) and get() can be zero copy.
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    const size_t ea = a.second.element_size(), eb = b.second.element_size();
    return ea != eb ? ea > eb : a.first < b.first;
  });

  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : sorted) {
    const uint64_t nbytes = t.nbytes();
    header[name] = {{"dtype", safetensors_dtype_name(t.scalar_type())},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string text = dump_json(header, -1, path);
  text.append((8 - (8 + text.size()) % 8) % 8, ' ');  // data buffer starts 8-aligned
  const uint64_t n = text.size();

  AtomicWriter w(path);
  w.write(&n, 8);
  w.write(text.data(), text.size());
  for (const auto& [name, t] : sorted) {
    if (t.nbytes() > 0) w.write(t.data_ptr(), t.nbytes());
  }
  w.commit();
}

// ---- directories ----

TensorDirectory TensorDirectory::open(const std::string& dir) {
  TensorDirectory d;
  d.dir_ = dir;
  XFT_CHECK(is_dir(dir), "checkpoint directory ", dir, " does not exist");
  const std::string index = join_path(dir, kIndexFile);
  const std::string single = join_path(dir, kSingleFile);
  if (path_exists(index)) {
    json j;
    try {
      std::ifstream in(index, std::ios::binary);
      XFT_CHECK(in.good(), "cannot open checkpoint index ", index);
      j = json::parse(in);
    } catch (const json::exception& e) {
      fail("checkpoint index ", index, ": not valid JSON: ", e.what());
    }
    XFT_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(), "checkpoint index ", index,
              ": expected an object with a 'weight_map' object");
    std::map<std::string, std::shared_ptr<SafetensorsFile>> shards;
    for (const auto& [name, file] : j["weight_map"].items()) {
      XFT_CHECK(file.is_string(), "checkpoint index ", index, ": weight_map entry '", name,
                "' must be a file name string");
      const std::string rel = file.get<std::string>();
      XFT_CHECK(!rel.empty() && rel[0] != '/', "checkpoint index ", index, ": tensor '", name, "' names shard '", rel,
                "', expected a relative file name");
      auto& shard = shards[rel];
      if (!shard) {
        const std::string shard_path = join_path(dir, rel);
        XFT_CHECK(path_exists(shard_path), "checkpoint index ", index, ": tensor '", name, "' is in shard ", shard_path,
                  ", which does not exist");
        shard = SafetensorsFile::open(shard_path);
      }
      XFT_CHECK(shard->contains(name), "checkpoint index ", index, ": tensor '", name, "' is listed in shard ",
                shard->path(), ", which does not hold it");
      d.files_[name] = shard;
    }
  } else if (path_exists(single)) {
    auto f = SafetensorsFile::open(single);
    for (const auto& name : f->names()) d.files_[name] = f;
  } else {
    fail("checkpoint directory ", dir, ": has neither ", kSingleFile, " nor ", kIndexFile);
  }
  return d;
}

std::vector<std::string> TensorDirectory::names() const { return keys(files_); }

static const SafetensorsFile& shard_of(const std::map<std::string, std::shared_ptr<SafetensorsFile>>& files,
                                       const std::string& dir, const std::string& name) {
  auto it = files.find(name);
  XFT_CHECK(it != files.end(), "checkpoint directory ", dir, ": no tensor named '", name, "'");
  return *it->second;
}

const std::string& TensorDirectory::file_of(const std::string& name) const {
  return shard_of(files_, dir_, name).path();
}
const TensorEntry& TensorDirectory::entry(const std::string& name) const {
  return shard_of(files_, dir_, name).entry(name);
}
torch::Tensor TensorDirectory::get(const std::string& name) const { return shard_of(files_, dir_, name).get(name); }

void save_tensor_directory(const std::string& dir, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                           int64_t max_shard_bytes, const std::map<std::string, std::string>& metadata) {
  check_tensors("saving checkpoint directory " + dir, tensors);
  XFT_CHECK(make_dirs(dir), "cannot create checkpoint directory ", dir, ": ", std::strerror(errno));
  auto sorted = tensors;
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  uint64_t total = 0;
  for (const auto& kv : sorted) total += kv.second.numel() * kv.second.element_size();

  const std::string index = join_path(dir, kIndexFile);
  const std::string single = join_path(dir, kSingleFile);
  if (max_shard_bytes <= 0 || total <= static_cast<uint64_t>(max_shard_bytes)) {
    save_safetensors(single, sorted, metadata);
    ::unlink(index.c_str());  // the index would otherwise take precedence over the new file
    return;
  }

  // Greedy fill in name order; a tensor over the limit gets a shard of its own.
  std::vector<std::vector<std::pair<std::string, torch::Tensor>>> shards(1);
  uint64_t cur = 0;
  for (const auto& kv : sorted) {
    const uint64_t b = kv.second.numel() * kv.second.element_size();
    if (!shards.back().empty() && cur + b > static_cast<uint64_t>(max_shard_bytes)) {
      shards.emplace_back();
      cur = 0;
    }
    shards.back().push_back(kv);
    cur += b;
  }
  json weight_map = json::object();
  std::set<std::string> written;
  for (size_t i = 0; i < shards.size(); ++i) {
    char file[64];
    std::snprintf(file, sizeof(file), "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    save_safetensors(join_path(dir, file), shards[i], metadata);
    for (const auto& kv : shards[i]) weight_map[kv.first] = file;
    written.insert(file);
  }
  json j = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  const std::string text = dump_json(j, 2, index) + "\n";
  AtomicWriter w(index);
  w.write(text.data(), text.size());
  w.commit();

  // Leave one unambiguous checkpoint: drop a stale single file and shards of an older layout.
  ::unlink(single.c_str());
  for (const auto& fname : list_dir(dir)) {
    int a = 0, b = 0, len = 0;  // model-NNNNN-of-NNNNN.safetensors
    if (fname.size() == 32 && !written.count(fname) &&
        std::sscanf(fname.c_str(), "model-%5d-of-%5d.safetensors%n", &a, &b, &len) == 2 && len == 32)
      ::unlink(join_path(dir, fname).c_str());
  }
}

}  // namespace xft
