// Tests for xft/safetensors.h: round trips, the Python layout, header validation, directories.
#include <dirent.h>
#include <ftw.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "xft/core/error.h"
#include "xft/core/safetensors.h"

using nlohmann::json;
using Named = std::vector<std::pair<std::string, torch::Tensor>>;

namespace {

// POSIX helpers: std::filesystem is avoided because libtorch exports a clashing copy of it.
std::string join(const std::string& a, const std::string& b) { return a + "/" + b; }
bool exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}
void make_dir(const std::string& p) { ASSERT_EQ(::mkdir(p.c_str(), 0755), 0) << p; }
std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") out.emplace_back(e->d_name);
    }
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}
void rm_rf(const std::string& p) {
  ::nftw(
      p.c_str(), [](const char* f, const struct stat*, int, struct FTW*) { return ::remove(f); }, 16,
      FTW_DEPTH | FTW_PHYS);
}

class Safetensors : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/xft_st_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { rm_rf(dir_); }
  std::string path(const std::string& name) const { return join(dir_, name); }

  // Writes [u64 N][header][data] by hand; `n` overrides the stored header length.
  std::string write_raw(const std::string& name, const std::string& header, const std::string& data = "",
                        int64_t n = -1) {
    std::string p = path(name);
    std::ofstream out(p, std::ios::binary);
    uint64_t len = n >= 0 ? static_cast<uint64_t>(n) : header.size();
    char le[8];
    for (int i = 0; i < 8; ++i) le[i] = static_cast<char>((len >> (8 * i)) & 0xff);
    out.write(le, 8);
    out << header << data;
    return p;
  }

  std::vector<std::string> files() const { return list_dir(dir_); }

  std::string dir_;
};

// Runs fn, expects an xft::Error whose message holds every needle.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& needles) {
  try {
    fn();
  } catch (const xft::Error& e) {
    const std::string msg = e.what();
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
    return;
  } catch (const std::exception& e) {
    FAIL() << "expected xft::Error, got another exception: " << e.what();
  }
  FAIL() << "expected xft::Error, nothing thrown";
}

void expect_open_error(const std::string& p, std::vector<std::string> needles) {
  needles.push_back(p);
  expect_error([&] { xft::SafetensorsFile::open(p); }, needles);
}

void expect_same(const torch::Tensor& a, const torch::Tensor& b) {
  ASSERT_EQ(a.scalar_type(), b.scalar_type());
  ASSERT_EQ(a.sizes(), b.sizes());
  EXPECT_TRUE(torch::equal(a, b));
}

Named sample_tensors() {
  torch::manual_seed(0);
  auto base = torch::randn({4, 6});
  return {
      {"f32", torch::randn({3, 5})},
      {"bf16", torch::randn({7}).to(torch::kBFloat16)},
      {"f16", torch::randn({2, 3, 4}).to(torch::kFloat16)},
      {"f64", torch::randn({5}, torch::kFloat64)},
      {"i64", torch::arange(-5, 5, torch::kInt64)},
      {"i32", torch::arange(0, 9, torch::kInt32).reshape({3, 3})},
      {"i16", torch::arange(-3, 3, torch::kInt16)},
      {"i8", torch::arange(-128, 127, 17, torch::kInt8)},
      {"u8", torch::arange(0, 255, 13, torch::kUInt8)},
      {"bool", torch::rand({9}) > 0.5},
      {"scalar", torch::tensor(3.5f).reshape({})},
      {"empty", torch::empty({0, 3})},
      {"noncontig", base.t()},  // strides (1, 6)
  };
}

// A valid two-tensor header: a F32[2] at [0,8), b I8[3] at [8,11).
json two_tensor_header() {
  return json{{"a", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}},
              {"b", {{"dtype", "I8"}, {"shape", {3}}, {"data_offsets", {8, 11}}}}};
}

}  // namespace

// ---- round trips ----

TEST_F(Safetensors, RoundTripAllDtypes) {
  const Named in = sample_tensors();
  ASSERT_FALSE(in.back().second.is_contiguous());
  const std::string p = path("all.safetensors");
  xft::save_safetensors(p, in);
  auto f = xft::SafetensorsFile::open(p);
  std::vector<std::string> want;
  for (const auto& kv : in) want.push_back(kv.first);
  std::sort(want.begin(), want.end());
  EXPECT_EQ(f->names(), want);
  for (const auto& [name, t] : in) {
    SCOPED_TRACE(name);
    auto got = f->get(name);
    EXPECT_EQ(got.device(), torch::kCPU);
    expect_same(got, t);
    EXPECT_EQ(f->entry(name).dtype, t.scalar_type());
    EXPECT_EQ(f->entry(name).shape, t.sizes().vec());
    if (t.numel() > 0) {
      EXPECT_EQ(got.data_ptr(), f->get(name).data_ptr()) << "not zero copy";
    }
  }
  EXPECT_EQ(f->get("scalar").dim(), 0);
  EXPECT_EQ(f->get("empty").numel(), 0);
  EXPECT_TRUE(f->metadata().empty());
}

TEST_F(Safetensors, MetadataRoundTrip) {
  const std::string p = path("meta.safetensors");
  std::map<std::string, std::string> meta{{"format", "pt"}, {"step", "42"}, {"note", "a \"q\" b"}};
  xft::save_safetensors(p, {{"x", torch::ones({2})}}, meta);
  EXPECT_EQ(xft::SafetensorsFile::open(p)->metadata(), meta);
}

TEST_F(Safetensors, ZeroCopyTensorOutlivesFile) {
  const std::string p = path("zc.safetensors");
  auto src = torch::arange(0, 1000, torch::kFloat32);
  xft::save_safetensors(p, {{"w", src}, {"b", torch::ones({3}, torch::kInt8)}});
  torch::Tensor t;
  {
    auto f = xft::SafetensorsFile::open(p);
    t = f->get("w");
    // Zero copy: two gets alias the same mapped bytes.
    EXPECT_EQ(t.data_ptr(), f->get("w").data_ptr());
  }
  ::unlink(p.c_str());  // the mapping stays valid after unlink too
  expect_same(t, src);
  EXPECT_FLOAT_EQ(t.sum().item<float>(), 999.0f * 1000.0f / 2.0f);
}

TEST_F(Safetensors, WritingIntoReturnedTensorDoesNotTouchFile) {
  const std::string p = path("cow.safetensors");
  xft::save_safetensors(p, {{"w", torch::zeros({16})}});
  xft::SafetensorsFile::open(p)->get("w").fill_(7.0f);
  EXPECT_TRUE(torch::equal(xft::SafetensorsFile::open(p)->get("w"), torch::zeros({16})));
}

TEST_F(Safetensors, ReadsPythonLayout) {
  // What Python's safetensors writes: compact JSON with __metadata__, space-padded so the
  // buffer starts at a multiple of 8.
  std::string header = R"({"__metadata__":{"format":"pt"},"bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("weight":{"dtype":"BF16","shape":[2,2],"data_offsets":[8,16]}})";
  header.append((8 - (8 + header.size()) % 8) % 8, ' ');
  ASSERT_EQ((8 + header.size()) % 8, 0u);
  std::string data(16, '\0');
  float bias[2] = {1.5f, -2.0f};
  std::memcpy(data.data(), bias, 8);
  uint16_t w[4] = {0x3f80, 0x4000, 0xbf80, 0x0000};  // bf16 1, 2, -1, 0
  std::memcpy(data.data() + 8, w, 8);
  auto f = xft::SafetensorsFile::open(write_raw("py.safetensors", header, data));
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->names(), (std::vector<std::string>{"bias", "weight"}));
  expect_same(f->get("bias"), torch::tensor({1.5f, -2.0f}));
  expect_same(f->get("weight"), torch::tensor({1.0f, 2.0f, -1.0f, 0.0f}).reshape({2, 2}).to(torch::kBFloat16));
  EXPECT_EQ(f->entry("weight").begin, 8u);
  EXPECT_EQ(f->entry("weight").end, 16u);
}

TEST_F(Safetensors, MisalignedDataIsCopied) {
  // Header length 3 mod 8: the F32 data starts unaligned, so get() must copy.
  std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  while ((8 + header.size()) % 4 == 0) header += ' ';
  std::string data(8, '\0');
  float v[2] = {3.0f, 4.0f};
  std::memcpy(data.data(), v, 8);
  auto f = xft::SafetensorsFile::open(write_raw("mis.safetensors", header, data));
  expect_same(f->get("a"), torch::tensor({3.0f, 4.0f}));
}

TEST_F(Safetensors, WrittenHeaderIsPaddedAndSorted) {
  const std::string p = path("pad.safetensors");
  xft::save_safetensors(p, {{"z", torch::ones({1})}, {"a", torch::ones({1, 2})}});
  std::ifstream in(p, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
  auto f = xft::SafetensorsFile::open(p);
  EXPECT_EQ(f->entry("a").begin, 0u);
  EXPECT_EQ(f->entry("z").begin, 8u);
  // Wider dtypes go first so every tensor stays aligned.
  xft::save_safetensors(p, {{"a", torch::ones({3}, torch::kInt8)}, {"b", torch::ones({1}, torch::kFloat64)}});
  EXPECT_EQ(xft::SafetensorsFile::open(p)->entry("b").begin, 0u);
}

// ---- writer errors ----

TEST_F(Safetensors, WriteRejectsBadInput) {
  const std::string p = path("bad.safetensors");
  expect_error([&] { xft::save_safetensors(p, {{"u", torch::Tensor()}}); }, {p, "'u'", "undefined"});
  expect_error(
      [&] {
        xft::save_safetensors(p, {{"d", torch::ones({1})}, {"d", torch::ones({1})}});
      },
      {p, "'d'", "duplicate"});
  expect_error([&] { xft::save_safetensors(p, {{"c", torch::ones({2}, torch::kComplexFloat)}}); }, {p, "'c'"});
  expect_error([&] { xft::save_safetensors(p, {{"bad\xff", torch::ones({1})}}); }, {p, "UTF-8"});
  EXPECT_TRUE(files().empty());
}

// ---- reader errors ----

TEST_F(Safetensors, FileShorterThan8Bytes) {
  std::string p = path("short.safetensors");
  std::ofstream(p, std::ios::binary) << "abc";
  expect_open_error(p, {"8"});
}

TEST_F(Safetensors, HeaderLengthPastEnd) {
  expect_open_error(write_raw("n.safetensors", "{}", "", 1000), {"header length 1000"});
}

TEST_F(Safetensors, InvalidHeaderJson) {
  expect_open_error(write_raw("j.safetensors", R"({"a": {"dtype": )"), {"JSON"});
}

TEST_F(Safetensors, HeaderNotObject) { expect_open_error(write_raw("arr.safetensors", "[1, 2, 3]"), {"object"}); }

TEST_F(Safetensors, EntryMissingDtype) {
  json h = two_tensor_header();
  h["a"].erase("dtype");
  expect_open_error(write_raw("x.safetensors", h.dump(), std::string(11, '\0')), {"'a'", "dtype"});
}

TEST_F(Safetensors, EntryMissingShape) {
  json h = two_tensor_header();
  h["b"].erase("shape");
  expect_open_error(write_raw("x.safetensors", h.dump(), std::string(11, '\0')), {"'b'", "shape"});
}

TEST_F(Safetensors, EntryMissingDataOffsets) {
  json h = two_tensor_header();
  h["a"].erase("data_offsets");
  expect_open_error(write_raw("x.safetensors", h.dump(), std::string(11, '\0')), {"'a'", "data_offsets"});
}

TEST_F(Safetensors, UnknownDtype) {
  json h = two_tensor_header();
  h["a"]["dtype"] = "F8_E9";
  expect_open_error(write_raw("x.safetensors", h.dump(), std::string(11, '\0')), {"'a'", "F8_E9"});
  expect_error([] { xft::safetensors_dtype("F8_E9"); }, {"F8_E9"});
}

TEST_F(Safetensors, NegativeShape) {
  json h = two_tensor_header();
  h["b"]["shape"] = {-3};
  expect_open_error(write_raw("x.safetensors", h.dump(), std::string(11, '\0')), {"'b'", "shape"});
}

TEST_F(Safetensors, NonIntegerShape) {
  json h = two_tensor_header();
  h["a"]["shape"] = {2.0};
  expect_open_error(write_raw("x.safetensors", h.dump(), std::string(11, '\0')), {"'a'", "shape"});
  h["a"]["shape"] = {"2"};
  expect_open_error(write_raw("y.safetensors", h.dump(), std::string(11, '\0')), {"'a'", "shape"});
}

TEST_F(Safetensors, DataOffsetsOutOfRange) {
  json h = two_tensor_header();
  h["b"]["data_offsets"] = {8, 20};
  h["b"]["shape"] = {12};
  expect_open_error(write_raw("x.safetensors", h.dump(), std::string(11, '\0')), {"'b'", "data_offsets"});
}

TEST_F(Safetensors, DataOffsetsBeginAfterEnd) {
  json h = two_tensor_header();
  h["b"]["data_offsets"] = {11, 8};
  expect_open_error(write_raw("x.safetensors", h.dump(), std::string(11, '\0')), {"'b'", "begin"});
}

TEST_F(Safetensors, OverlappingRanges) {
  json h = two_tensor_header();
  h["b"]["data_offsets"] = {4, 7};  // inside a's [0, 8)
  expect_open_error(write_raw("x.safetensors", h.dump(), std::string(8, '\0')), {"'b'", "overlaps"});
}

TEST_F(Safetensors, ByteCountMismatch) {
  json h = two_tensor_header();
  h["a"]["shape"] = {3};  // 12 bytes, range holds 8
  expect_open_error(write_raw("x.safetensors", h.dump(), std::string(11, '\0')), {"'a'", "needs"});
}

TEST_F(Safetensors, HoleBetweenTensors) {
  json h = two_tensor_header();
  h["b"]["data_offsets"] = {9, 12};
  expect_open_error(write_raw("x.safetensors", h.dump(), std::string(12, '\0')), {"'b'", "hole"});
}

TEST_F(Safetensors, UnusedBytesAtEnd) {
  expect_open_error(write_raw("x.safetensors", two_tensor_header().dump(), std::string(16, '\0')), {"unused"});
}

TEST_F(Safetensors, TruncatedData) {
  const std::string p = path("trunc.safetensors");
  xft::save_safetensors(p, {{"a", torch::ones({64})}, {"z", torch::ones({64})}});
  struct stat st {};
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  ASSERT_EQ(::truncate(p.c_str(), st.st_size - 10), 0);
  expect_open_error(p, {"'z'", "truncated"});
}

TEST_F(Safetensors, MissingFile) { expect_open_error(path("nope.safetensors"), {"cannot open"}); }

TEST_F(Safetensors, UnknownTensorName) {
  const std::string p = path("one.safetensors");
  xft::save_safetensors(p, {{"a", torch::ones({1})}});
  auto f = xft::SafetensorsFile::open(p);
  EXPECT_FALSE(f->contains("zz"));
  expect_error([&] { f->entry("zz"); }, {p, "'zz'"});
  expect_error([&] { f->get("zz"); }, {p, "'zz'"});
}

// ---- directories ----

TEST_F(Safetensors, DirectorySingleFile) {
  const Named in = sample_tensors();
  const std::string d = path("ckpt");
  xft::save_tensor_directory(d, in);
  EXPECT_TRUE(exists(join(d, "model.safetensors")));
  EXPECT_FALSE(exists(join(d, "model.safetensors.index.json")));
  auto td = xft::TensorDirectory::open(d);
  EXPECT_EQ(td.dir(), d);
  EXPECT_EQ(td.names().size(), in.size());
  for (const auto& [name, t] : in) {
    SCOPED_TRACE(name);
    expect_same(td.get(name), t);
    EXPECT_EQ(td.file_of(name), join(d, "model.safetensors"));
  }
  EXPECT_EQ(xft::SafetensorsFile::open(td.file_of("f32"))->metadata().at("format"), "pt");
}

TEST_F(Safetensors, DirectorySharded) {
  Named in;
  int64_t total = 0;
  for (int i = 0; i < 10; ++i) {
    in.emplace_back("layer." + std::to_string(i) + ".weight", torch::randn({100}));  // 400 B
    total += 400;
  }
  in.emplace_back("huge", torch::randn({1000}));  // 4000 B > limit: a shard of its own
  total += 4000;
  const std::string d = path("sharded");
  make_dir(d);
  xft::save_safetensors(join(d, "model.safetensors"), {{"stale", torch::ones({1})}});
  xft::save_safetensors(join(d, "model-00009-of-00009.safetensors"), {{"old", torch::ones({1})}});
  xft::save_tensor_directory(d, in, 1000);

  EXPECT_FALSE(exists(join(d, "model.safetensors")));                 // stale single file removed
  EXPECT_FALSE(exists(join(d, "model-00009-of-00009.safetensors")));  // and an older layout's shard
  std::ifstream idx(join(d, "model.safetensors.index.json"));
  json j = json::parse(idx);
  ASSERT_TRUE(j.contains("metadata") && j.contains("weight_map"));
  EXPECT_EQ(j["metadata"]["total_size"].get<int64_t>(), total);
  std::set<std::string> shard_files;
  for (const auto& [name, file] : j["weight_map"].items()) shard_files.insert(file.get<std::string>());
  EXPECT_GE(shard_files.size(), 3u);
  const std::string n = std::to_string(shard_files.size());
  for (const auto& f : shard_files) {
    EXPECT_TRUE(exists(join(d, f))) << f;
    EXPECT_NE(f.find("-of-0000" + n + ".safetensors"), std::string::npos) << f;
  }
  EXPECT_EQ(j["weight_map"]["huge"], "model-00001-of-0000" + n + ".safetensors");  // name order

  auto td = xft::TensorDirectory::open(d);
  EXPECT_EQ(td.names().size(), in.size());
  EXPECT_FALSE(td.contains("stale"));
  for (const auto& [name, t] : in) expect_same(td.get(name), t);
  EXPECT_NE(td.file_of("huge"), td.file_of("layer.0.weight"));

  // Re-saving as one file removes the index so the directory is never ambiguous.
  xft::save_tensor_directory(d, {{"only", torch::ones({2})}});
  EXPECT_FALSE(exists(join(d, "model.safetensors.index.json")));
  EXPECT_EQ(xft::TensorDirectory::open(d).names(), std::vector<std::string>{"only"});
}

TEST_F(Safetensors, DirectoryMissing) {
  expect_error([&] { xft::TensorDirectory::open(path("absent")); }, {path("absent")});
}

TEST_F(Safetensors, DirectoryWithoutCheckpoint) {
  const std::string d = path("emptydir");
  make_dir(d);
  expect_error([&] { xft::TensorDirectory::open(d); }, {d, "model.safetensors"});
}

TEST_F(Safetensors, IndexNamesMissingShard) {
  const std::string d = path("ck");
  make_dir(d);
  xft::save_safetensors(join(d, "model-00001-of-00002.safetensors"), {{"a", torch::ones({1})}});
  std::ofstream(join(d, "model.safetensors.index.json"))
      << R"({"metadata":{"total_size":8},"weight_map":{"a":"model-00001-of-00002.safetensors",)"
      << R"("b":"model-00002-of-00002.safetensors"}})";
  expect_error([&] { xft::TensorDirectory::open(d); }, {"model-00002-of-00002.safetensors", "'b'", d});
}

TEST_F(Safetensors, IndexInvalidJson) {
  const std::string d = path("ck");
  make_dir(d);
  const std::string idx = join(d, "model.safetensors.index.json");
  std::ofstream(idx) << R"({"weight_map": {"a": )";
  expect_error([&] { xft::TensorDirectory::open(d); }, {idx, "JSON"});
}

TEST_F(Safetensors, DirectoryUnknownName) {
  const std::string d = path("ck");
  xft::save_tensor_directory(d, {{"a", torch::ones({1})}});
  auto td = xft::TensorDirectory::open(d);
  EXPECT_FALSE(td.contains("missing"));
  expect_error([&] { td.entry("missing"); }, {d, "'missing'"});
  expect_error([&] { td.get("missing"); }, {d, "'missing'"});
  expect_error([&] { td.file_of("missing"); }, {d, "'missing'"});
}

// ---- atomic writes ----

TEST_F(Safetensors, AtomicWriteLeavesNoTemporary) {
  const std::string p = path("m.safetensors");
  xft::save_safetensors(p, {{"a", torch::ones({4})}});
  EXPECT_EQ(files(), std::vector<std::string>{"m.safetensors"});
  xft::save_tensor_directory(path("d"), {{"a", torch::ones({400})}, {"b", torch::ones({400})}}, 1000);
  for (const auto& f : list_dir(path("d"))) EXPECT_EQ(f.find(".tmp"), std::string::npos) << f;
}

TEST_F(Safetensors, OverwriteReplacesWholeFile) {
  const std::string p = path("m.safetensors");
  xft::save_safetensors(p, {{"big", torch::ones({1000})}, {"x", torch::ones({3})}});
  auto old = xft::SafetensorsFile::open(p);
  auto old_big = old->get("big");
  xft::save_safetensors(p, {{"y", torch::full({2}, 5, torch::kInt64)}});
  EXPECT_EQ(files(), std::vector<std::string>{"m.safetensors"});
  auto f = xft::SafetensorsFile::open(p);
  EXPECT_EQ(f->names(), std::vector<std::string>{"y"});
  expect_same(f->get("y"), torch::full({2}, 5, torch::kInt64));
  // A reader of the old file still sees the old bytes (rename keeps the old inode alive).
  EXPECT_TRUE(torch::equal(old_big, torch::ones({1000})));
}
